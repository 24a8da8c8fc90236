"""Evaluation: per-video scores, the papers' metrics, sharding over torchrun ranks, score files,
ensembles from saved scores and the registry's claims beside the measurement.

How views combine. A video's score is the mean of the raw classifier outputs (logits) of its
views (crops x clips), as TSM's ``test_models.py`` does (``rst.reshape(batch, num_crop,
-1).mean(1)``; its ``--softmax`` flag is off by default) and TDN's and GC's copies of that script
follow. An ensemble's score is the mean of its members' video scores, the same script's rule for
several ``--weights`` (the papers' "(8+16) frames" rows). ``average="prob"`` averages softmax
probabilities instead (MMAction2's ``average_clips='prob'``); the rule is stored with the scores.

Sharding. Rank r of W takes the contiguous slice ``[r*N//W, (r+1)*N//W)`` of the list: every
video exactly once, no padding (unlike DistributedSampler, which repeats videos to even out the
shards and so biases the metrics). Rank 0 gathers the per-video scores and writes the same files
as a single process. Scores of a video do not depend on the shard: its clips are sampled from its
own index. On CPU the numbers agree with one process to float rounding (batches differ, and
oneDNN may block a batch of 3 differently from a batch of 4); tests check 1e-6.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

__all__ = ["evaluate", "topk_accuracy", "mean_class_accuracy", "metrics", "shard_range", "dist_env",
           "gather_scores", "save_scores", "load_scores", "combine_scores", "claims_for", "compare_claims",
           "SCORES_FORMAT"]

SCORES_FORMAT = "zoo-eval-scores/1"


# -- metrics ----------------------------------------------------------------------------------------

def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict:
    """Percent of videos whose label is among the k highest scores, for each k (k capped at the
    number of classes). Ties rank by index, as torch.topk does."""
    scores, labels = torch.as_tensor(scores), torch.as_tensor(labels).long()
    if len(labels) == 0:
        return {f"top{k}": float("nan") for k in ks}
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices
    hit = top == labels.unsqueeze(1)
    return {f"top{k}": 100.0 * hit[:, :min(k, kmax)].any(1).double().mean().item() for k in ks}


def mean_class_accuracy(scores: torch.Tensor, labels: torch.Tensor, num_classes: Optional[int] = None) -> float:
    """Mean over the classes present in ``labels`` of the per-class top-1 recall, in percent
    (TSM's test script's "class accuracy"; classes without a video are not averaged)."""
    scores, labels = torch.as_tensor(scores), torch.as_tensor(labels).long()
    if len(labels) == 0:
        return float("nan")
    k = num_classes or scores.shape[1]
    pred = scores.argmax(1)
    count = torch.bincount(labels, minlength=k).double()
    hit = torch.bincount(labels[pred == labels], minlength=k).double()
    present = count > 0
    return 100.0 * (hit[present] / count[present]).mean().item()


def metrics(scores: torch.Tensor, labels: torch.Tensor, dataset: Optional[str] = None) -> dict:
    """top1, top5, mean_class; EPIC-KITCHENS verb/noun models also under the registry's
    top1_verb/top5_verb (or _noun) keys."""
    m = topk_accuracy(scores, labels, (1, 5))
    m["mean_class"] = mean_class_accuracy(scores, labels)
    for part in ("verb", "noun"):
        if dataset and dataset.startswith("epic") and dataset.endswith(part):
            m[f"top1_{part}"], m[f"top5_{part}"] = m["top1"], m["top5"]
    return m


# -- distributed --------------------------------------------------------------------------------------

def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def shard_range(n: int, rank: int, world: int) -> range:
    """The contiguous slice of ``n`` videos rank ``rank`` of ``world`` evaluates (sizes differ by at most one)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in [0, {world})")
    return range(rank * n // world, (rank + 1) * n // world)


def gather_scores(part: dict, world: int) -> Optional[dict]:
    """Merge every rank's ``{index: (id, label, scores)}`` on rank 0 (others get None); checks that
    no video is missing or duplicated."""
    if world == 1:
        return part
    import torch.distributed as dist

    rank = dist.get_rank()
    parts = [None] * world if rank == 0 else None
    dist.gather_object(part, parts, dst=0)
    if rank != 0:
        return None
    merged: dict = {}
    for p in parts:
        dup = merged.keys() & p.keys()
        if dup:
            raise RuntimeError(f"videos {sorted(dup)[:5]} were evaluated by two ranks")
        merged.update(p)
    return merged


# -- the engine --------------------------------------------------------------------------------------

class _Progress:
    """tqdm on a terminal; otherwise a plain line every ~10% (or 60 s) for logs."""

    def __init__(self, total: int, enabled: bool, desc: str = "eval"):
        self.total, self.enabled, self.desc = total, enabled, desc
        self.done, self.t0, self.last, self.bar = 0, time.perf_counter(), 0.0, None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="video", file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter() - self.t0
        step = max(self.total // 10, 1)
        if self.done == self.total or self.done // step != (self.done - n) // step or now - self.last > 60:
            self.last = now
            rate = self.done / now if now > 0 else 0.0
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            print(f"[{self.desc}] {self.done}/{self.total} videos "
                  f"{rate:.2f} videos/s elapsed {now:.0f}s ETA {eta:.0f}s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _autocast(device: torch.device, amp: Optional[str]):
    import contextlib

    if amp is None:
        return contextlib.nullcontext()
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if amp not in dtypes:
        raise ValueError(f"amp must be bf16 or fp16, got {amp!r}")
    return torch.autocast(device.type, dtype=dtypes[amp])


@torch.inference_mode()
def evaluate(model, loader, *, device="cpu", amp: Optional[str] = None, average: str = "logits",
             progress: bool = False, dataset: Optional[str] = None, world: int = 1) -> dict:
    """Run ``model`` over ``loader`` (items of :class:`zoo.data.VideoDataset`) and score every video.

    Returns ``{"ids": [...], "index": LongTensor, "labels": LongTensor, "scores": (N, K) float32,
    "by_id": {id: (K,) tensor}, "metrics": {...}}`` in the dataset's sample order. Under torchrun
    (``world`` > 1, the loader holding this rank's shard) every rank returns its own part and rank
    0 the merged result with the metrics of all videos; the other ranks get ``None``."""
    if average not in ("logits", "prob"):
        raise ValueError(f"average must be 'logits' or 'prob', got {average!r}")
    device = torch.device(device)
    model.eval().to(device)
    part: dict = {}
    bar = _Progress(len(loader.dataset), progress, "eval" if world == 1 else f"eval, rank 0's shard of {world}")
    try:
        for batch in loader:
            video = batch["video"].to(device, non_blocking=True)
            if video.dim() == 5:                                    # one view per video
                video = video.unsqueeze(1)
            B, V = video.shape[:2]
            with _autocast(device, amp):
                out = model(video.flatten(0, 1))
            out = out.float().view(B, V, -1)
            if average == "prob":
                out = F.softmax(out, dim=-1)
            score = out.mean(1).cpu()
            for i in range(B):
                part[int(batch["index"][i])] = (batch["id"][i], int(batch["label"][i]), score[i].clone())
            bar.update(B)
    finally:
        bar.close()
    merged = gather_scores(part, world)
    if merged is None:
        return None
    return _result(merged, dataset)


def _result(merged: dict, dataset: Optional[str]) -> dict:
    order = sorted(merged)
    ids = [merged[i][0] for i in order]
    labels = torch.tensor([merged[i][1] for i in order], dtype=torch.long)
    scores = torch.stack([merged[i][2] for i in order]) if order else torch.zeros(0, 0)
    return {"ids": ids, "index": torch.tensor(order, dtype=torch.long), "labels": labels, "scores": scores,
            "by_id": dict(zip(ids, scores)), "metrics": metrics(scores, labels, dataset) if order else {}}


# -- score files -----------------------------------------------------------------------------------

def _owned(path: Path) -> bool:
    """True if ``path`` is absent or a file this module wrote (never overwrite anything else)."""
    if not path.exists():
        return True
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text()).get("format") == SCORES_FORMAT
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("format") == SCORES_FORMAT
    except Exception:
        return False


def _write(path: Path, write) -> None:
    if not _owned(path):
        raise FileExistsError(f"{path} exists and was not written by zoo eval; choose another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_scores(path, result: dict, meta: Optional[dict] = None) -> Path:
    """Per-video scores as safetensors: ``scores`` (N, K) float32, ``labels`` (N,), ``index`` (N,);
    the video ids (JSON) and ``meta`` (model, views, average rule, ...) in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    md = {"format": SCORES_FORMAT, "ids": json.dumps(result["ids"])}
    md.update({k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (meta or {}).items()})
    tensors = {"scores": result["scores"].float().contiguous(), "labels": result["labels"].contiguous(),
               "index": result["index"].contiguous()}
    _write(path, lambda tmp: save_file(tensors, str(tmp), metadata=md))
    return path


def load_scores(path) -> dict:
    """A score file back as a result dict (``meta`` holds its metadata)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"score file {path} does not exist (write it with `zoo eval NAME --out DIR`)")
    with safe_open(str(path), "pt") as f:
        md = dict(f.metadata() or {})
        if md.get("format") != SCORES_FORMAT:
            raise ValueError(f"{path} is not a zoo eval score file (no format={SCORES_FORMAT} in its metadata)")
        t = {k: f.get_tensor(k) for k in f.keys()}
    ids = json.loads(md.pop("ids"))
    return {"ids": ids, "index": t["index"], "labels": t["labels"], "scores": t["scores"],
            "by_id": dict(zip(ids, t["scores"])), "meta": md}


def write_summary(path, summary: dict) -> Path:
    path = Path(path)
    text = json.dumps({"format": SCORES_FORMAT, **summary}, indent=1, default=str)
    _write(path, lambda tmp: tmp.write_text(text + "\n"))
    return path


def combine_scores(results: Sequence[dict], weights: Optional[Sequence[float]] = None,
                   dataset: Optional[str] = None) -> dict:
    """An ensemble's result from its members' results (e.g. :func:`load_scores` of each): the
    (weighted) mean of the video scores, matched by video id. The members must cover the same
    videos with the same labels."""
    if len(results) < 2:
        raise ValueError("an ensemble needs the scores of at least two members")
    w = list(weights) if weights is not None else [1.0] * len(results)
    ids = results[0]["ids"]
    ref = dict(zip(ids, results[0]["labels"].tolist()))
    for n, r in enumerate(results[1:], 2):
        if set(r["ids"]) != set(ids):
            miss = sorted(set(ids) ^ set(r["ids"]))
            raise ValueError(f"member {n} was evaluated on other videos than member 1 ({len(miss)} differ, "
                             f"e.g. {miss[:3]}); evaluate every member on the same list")
        bad = [i for i, lab in zip(r["ids"], r["labels"].tolist()) if ref[i] != lab]
        if bad:
            raise ValueError(f"member {n} has other labels than member 1 for {len(bad)} videos (e.g. {bad[:3]})")
    total = sum(w)
    scores = sum(wi * torch.stack([r["by_id"][i] for i in ids]) for wi, r in zip(w, results)) / total
    labels = results[0]["labels"]
    return {"ids": list(ids), "index": results[0]["index"], "labels": labels, "scores": scores.float(),
            "by_id": dict(zip(ids, scores)), "metrics": metrics(scores, labels, dataset)}


# -- claims -----------------------------------------------------------------------------------------

def claims_for(name: str, views: str) -> list:
    """The registry's claims for a variant/ensemble measured with ``views``, plus claims whose views
    the paper did not state (flagged by ``views == ""``)."""
    from .registry import registry

    reg = registry()
    obj = reg.variants.get(name) or reg.ensembles.get(name)
    if obj is None:
        return []
    return [c for c in obj.claims if c.views in (views, "")]


def compare_claims(name: str, views: str, measured: dict) -> list[dict]:
    """One row per (claim, metric) the claim states and we measured: claimed, measured, difference."""
    rows = []
    for c in claims_for(name, views):
        for k, v in c.metrics.items():
            if k in measured and not math.isnan(measured[k]):
                rows.append({"metric": k, "claimed": v, "measured": round(measured[k], 2),
                             "diff": round(measured[k] - v, 2), "table": c.table, "paper": c.paper,
                             "views": c.views or "not stated", "note": c.note})
    return rows
