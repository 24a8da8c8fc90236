"""``zoo eval``: a registered name on a dataset, the papers' view protocols, one process or many
(torchrun), results beside the registry's claims."""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from .data import DataError, VideoDataset, read_samples, views_mode
from .eval import (combine_scores, compare_claims, dist_env, evaluate, load_scores, save_scores, shard_range,
                   write_summary)
from .registry import registry

__all__ = ["add_commands", "run_eval", "run_ensemble"]


def _stem(name: str, views: str) -> str:
    return f"{name}-{views}"


def _labels_for(a, name, num_classes):
    """What read_samples gets as ``labels``: the user's list, else the names bundled for the
    variant's dataset (zoo.labels), else the number of classes (indices range-checked, names refused)."""
    from .labels import label_names

    if a.labels:
        return a.labels
    names = label_names(name) if name in registry().variants else None
    if names is not None and len(names) == num_classes:
        return list(names)
    return num_classes


def _print_report(name: str, views: str, result: dict, rows: list, skipped, file=None) -> None:
    file = file or sys.stdout
    m = result["metrics"]
    print(f"{name}  views {views}  videos {len(result['ids'])}" + (f"  skipped {len(skipped)}" if skipped else ""),
          file=file)
    print("  " + "  ".join(f"{k} {v:.2f}" for k, v in m.items()), file=file)
    if rows:
        print(f"  {'metric':<10} {'measured':>9} {'claimed':>8} {'diff':>7}  source", file=file)
        for r in rows:
            print(f"  {r['metric']:<10} {r['measured']:>9.2f} {r['claimed']:>8.2f} {r['diff']:>+7.2f}  "
                  f"{r['paper']} {r['table']}, views {r['views']}" + (f" ({r['note']})" if r["note"] else ""), file=file)
    elif name in registry().variants or name in registry().ensembles:
        print(f"  no claim of the registry for {name} with views {views}", file=file)
    for b in skipped:
        print(f"  skipped {b}", file=file)


def _relaunch(a, parser) -> int:
    from .launch import relaunch

    return relaunch(a, parser, "eval")


def _build_model(a, name):
    import torch

    from .factory import create_model

    over = {}
    if a.num_classes:
        over["num_classes"] = a.num_classes
    if a.frames:
        over["num_frames"] = a.frames
    if a.random_weights or a.checkpoint:
        torch.manual_seed(a.seed)          # every rank builds the same random model
        model = create_model(name, **over)
        if a.checkpoint:
            from safetensors.torch import load_file

            model.load_state_dict(load_file(a.checkpoint), strict=True)
        return model, ("checkpoint " + str(a.checkpoint)) if a.checkpoint else f"random (seed {a.seed})"
    return create_model(name, pretrained=True, weights_dir=a.weights_dir, **over), "pretrained"


def run_eval(a) -> int:
    import torch
    from torch.utils.data import DataLoader, Subset

    from .transforms import create_transform

    reg = registry()
    name = a.name
    entry = reg.resolve(name)
    variant = reg.variants.get(name)
    rank, world, local = dist_env()
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if world > 1 and device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        views = a.views or (variant.views if variant else "1x1")
        tf_over = {k: v for k, v in (("size", a.size), ("frames", a.frames), ("protocol", a.protocol)) if v}
        protocol = a.protocol or (variant.sampling if variant else getattr(entry, "sampling", "uniform"))
        crops, mode, clips = views_mode(views, protocol)
        model, weights = _build_model(a, name)
        frames = a.frames or getattr(model, "num_frames", None) or (variant.frames if variant else 8)
        num_classes = a.num_classes or (variant.num_classes if variant else None) or model.pretrained_cfg.get("num_classes")
        dataset_key = variant.dataset if variant else None
        samples = read_samples(a.list, fmt=a.format, root=a.data, labels=_labels_for(a, name, num_classes),
                               template=a.template, skip_bad=a.skip_bad, name_format=a.name_format or None,
                               check_frames=not a.no_check_frames)
        if not samples:
            raise DataError(f"{a.list}: no usable videos" + (f" ({len(samples.skipped)} skipped)" if samples.skipped else ""))
        tf = create_transform(name, crops=crops, **tf_over)
        ds = VideoDataset(samples, frames=frames, protocol=protocol, mode=mode, clips=clips, transform=tf,
                          template=a.template, seed=a.seed)
        shard = Subset(ds, shard_range(len(ds), rank, world))
        loader = DataLoader(shard, batch_size=a.batch, num_workers=a.workers, shuffle=False,
                            pin_memory=device.startswith("cuda"), persistent_workers=False)
        t0 = time.perf_counter()
        try:
            result = evaluate(model, loader, device=device, amp=a.amp, average=a.average, progress=rank == 0 and not a.quiet,
                              dataset=dataset_key, world=world)
        except (RuntimeError, ValueError) as e:
            text = str(e).strip()
            if "Original Traceback" not in text:
                raise
            # a worker's error arrives with its traceback in the message: keep the error itself
            raise DataError(text.splitlines()[-1].split(": ", 1)[-1]) from None
        elapsed = time.perf_counter() - t0
        if world > 1:
            # every rank is done with the group: torn down together (as zoo.train.engine does),
            # before rank 0 writes its files, so that no rank waits on rank 0's disk
            dist.barrier()
            dist.destroy_process_group()
        if rank != 0:
            return 0
        rows = compare_claims(name, views, result["metrics"])
        meta = {"model": name, "views": views, "average": a.average, "dataset": dataset_key or "",
                "weights": weights, "frames": frames, "protocol": protocol}
        out = Path(a.out)
        scores_path = save_scores(out / f"{_stem(name, views)}.scores.safetensors", result, meta)
        summary = {**meta, "list": str(a.list), "data": str(a.data), "num_videos": len(result["ids"]),
                   "skipped": [str(b) for b in samples.skipped], "metrics": result["metrics"], "claims": rows,
                   "processes": world, "device": device, "amp": a.amp, "batch": a.batch, "workers": a.workers,
                   "seconds": round(elapsed, 3), "videos_per_s": round(len(result["ids"]) / elapsed, 3) if elapsed else None,
                   "scores_file": scores_path.name, "torch": torch.__version__, "machine": platform.machine()}
        json_path = write_summary(out / f"{_stem(name, views)}.json", summary)
        _print_report(name, views, result, rows, samples.skipped)
        print(f"wrote {scores_path} and {json_path}", file=sys.stderr)
        return 0
    finally:
        if world > 1:
            import torch.distributed as dist

            if dist.is_initialized():  # after an error: no barrier, which could wait forever
                dist.destroy_process_group()


def run_ensemble(a) -> int:
    reg = registry()
    ens = reg.ensembles[a.name]
    views = a.views or reg.variants[ens.members[0]].views
    files = [Path(f) for f in a.scores] if a.scores else [Path(a.out) / f"{_stem(m, views)}.scores.safetensors"
                                                          for m in ens.members]
    if len(files) != len(ens.members):
        raise ValueError(f"{a.name} has {len(ens.members)} members ({', '.join(ens.members)}): pass one --scores "
                         f"file per member, got {len(files)}")
    results = []
    for m, f in zip(ens.members, files):
        if not f.is_file():
            raise ValueError(f"no scores for member {m} at {f}: run `zoo eval {m} --data ROOT --list FILE "
                             f"--views {views} --out {a.out}` first (or pass --scores)")
        r = load_scores(f)
        if r["meta"].get("model") not in (m, None):
            raise ValueError(f"{f} holds scores of {r['meta'].get('model')}, not of member {m}")
        if r["meta"].get("views") != views:
            raise ValueError(f"{f} was evaluated with views {r['meta'].get('views')}, not {views}")
        results.append(r)
    averages = {r["meta"].get("average") for r in results}
    if len(averages) > 1:
        raise ValueError(f"members' scores average views differently ({sorted(averages)}); evaluate them alike")
    result = combine_scores(results, dataset=ens.dataset)
    rows = compare_claims(a.name, views, result["metrics"])
    meta = {"model": a.name, "views": views, "average": averages.pop() or "logits", "dataset": ens.dataset,
            "members": list(ens.members), "member_scores": [str(f) for f in files]}
    out = Path(a.out)
    sp = save_scores(out / f"{_stem(a.name, views)}.scores.safetensors", result, meta)
    jp = write_summary(out / f"{_stem(a.name, views)}.json", {**meta, "num_videos": len(result["ids"]),
                                                               "metrics": result["metrics"], "claims": rows})
    _print_report(a.name, views, result, rows, [])
    print(f"wrote {sp} and {jp}", file=sys.stderr)
    return 0


def _cmd_eval(a) -> int:
    rank, world, _ = dist_env()
    try:
        if a.nproc and a.nproc > 1 and world == 1:
            return _relaunch(a, a._parser)
        if a.name in registry().ensembles:
            return run_ensemble(a)
        if not a.data or not a.list:
            raise ValueError("--data ROOT and --list FILE are required (for an ensemble: the members' --scores)")
        return run_eval(a)
    except OSError as e:       # file-system problems become one line, as every other error
        raise ValueError(str(e)) from None


def add_commands(sub) -> None:
    s = sub.add_parser("eval", help="accuracy of a model on a dataset, beside the registry's claims",
                       description="Evaluate NAME on a dataset with the papers' test protocols; run under "
                                   "torchrun (or --nproc N) to shard the videos over processes.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("name", help="a variant, an architecture (with --random-weights/--checkpoint) or an ensemble")
    s.add_argument("--data", help="dataset root the list's paths are relative to")
    s.add_argument("--list", help="annotation file: list (path frames label), SSv2 JSON, Kinetics CSV or path,label CSV")
    s.add_argument("--format", default="auto", choices=["auto", "list", "ssv2", "k400", "csv"])
    s.add_argument("--labels", help="class names: a label file (one a line, in index order) or a dataset key "
                                    "(default: the variant's dataset, when its names are bundled)")
    s.add_argument("--template", help="frame file names in frame directories, e.g. 'img_{:05d}.jpg' (default: detected)")
    s.add_argument("--name-format", action="append", help="SSv2/Kinetics file-name pattern to try (repeatable), "
                                                          "e.g. '{youtube_id}_{time_start:06d}_{time_end:06d}.mp4'")
    s.add_argument("--skip-bad", action="store_true", help="leave out bad lines (listed in the summary) instead of failing")
    s.add_argument("--no-check-frames", action="store_true", help="do not count each frame directory's frames")
    s.add_argument("--views", help="crops x clips, e.g. 1x1, 3x2, 3x10 (default: the variant's main protocol)")
    s.add_argument("--average", default="logits", choices=["logits", "prob"],
                   help="combine views by averaging logits (TSM/TDN/GC test scripts) or softmax probabilities")
    s.add_argument("--batch", type=int, default=1, help="videos per batch (each with all its views)")
    s.add_argument("--workers", type=int, default=2, help="DataLoader decoding processes per rank")
    s.add_argument("--amp", choices=["bf16", "fp16"], help="autocast dtype")
    s.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available; under torchrun cuda:LOCAL_RANK)")
    s.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    s.add_argument("--weights-dir", help="folder with the variant's weights (else $ZOO_WEIGHTS_DIR / the hub cache)")
    s.add_argument("--checkpoint", help="a state dict in safetensors to load instead of the hosted weights")
    s.add_argument("--random-weights", action="store_true",
                   help="random initialisation (seeded): for testing a data pipeline, the numbers mean nothing")
    s.add_argument("--seed", type=int, default=0, help="seed of --random-weights and of random test clips")
    s.add_argument("--frames", type=int, help="override T (the claims hold for the trained T only)")
    s.add_argument("--num-classes", type=int, help="override the number of classes (architectures)")
    s.add_argument("--size", type=int, help="override the input size of the transform")
    # checked when the command runs: building the parser must not read the tables (zoo --help
    # works with a broken manifest)
    s.add_argument("--protocol", help="override the sampling protocol: a key of registry/datasets.toml [sampling] "
                                      "(uniform, dense, tdn)")
    s.add_argument("--scores", nargs="+", help="ensembles: the members' score files, in member order "
                                               "(default: OUT/<member>-<views>.scores.safetensors)")
    s.add_argument("--out", default="eval_results", help="folder for <name>-<views>.scores.safetensors and .json")
    s.add_argument("--nproc", type=int, default=0, help="launch N processes with torchrun on this machine")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    s.set_defaults(fn=_cmd_eval, _parser=s)
