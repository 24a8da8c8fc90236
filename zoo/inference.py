"""Video in, class names out: the entry's own test protocol on video files and frame directories.

>>> rec = zoo.Recognizer("tsm_r50_ssv1_8f", weights_dir="out/tsm_r50_ssv1_8f")   # keep it between calls
>>> rec("clip.mp4")["topk"][0]
{'rank': 1, 'index': 103, 'label': 'Pushing something from left to right', 'prob': 0.91}
>>> zoo.predict(["a.mp4", "frames/b/"], model="tsm_r50_ssv1_8f", weights_dir=...)   # many, in DataLoader workers

Each video is sampled with the entry's protocol (zoo.sampling) for every clip of the views
"CxK" (C crops x K clips; default: the entry's test views), transformed with the entry's
pipeline (zoo.create_transform) and run through the model. Combining the views follows the
authors' test scripts, which the papers' multi-view rows were produced with: TSM's
test_models.py (``rst.reshape(batch_size, num_crop, -1).mean(1)``, softmax only on request,
after the mean) averages the raw class scores over crops x clips, and TDN's test script, which
GC/AIA/SDA reuse, copies it. So: mean logits over views, then one softmax for the reported
probabilities. Ensembles ("8f+16f" rows): every member samples and transforms the video with its
own frame count and protocol, and the members' view-averaged scores are averaged - TSM's
test_models.py ensemble (mean of the per-model results) and zoo.EnsembleModel.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence, Union

import torch

from .io import VideoError, detect_template, open_video
from .labels import label_info, label_names, read_label_file
from .sampling import sample

__all__ = ["Recognizer", "predict", "expand_inputs", "parse_views", "VIDEO_EXTENSIONS"]

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv",
                    ".3gp", ".ogv", ".gif"}
MAX_CLIPS = 8   # clips per forward: bounds memory for 3x10 views at 224


def parse_views(views: str) -> tuple[int, int]:
    """'3x2' -> (3 crops, 2 clips)."""
    try:
        c, k = (int(x) for x in str(views).lower().split("x"))
    except ValueError:
        raise ValueError(f"views must be CROPSxCLIPS such as 1x1, 3x2 or 3x10, got {views!r}") from None
    if c not in (1, 3) or k < 1:
        raise ValueError(f"views {views!r}: crops must be 1 or 3 and clips at least 1")
    return c, k


def expand_inputs(paths: Iterable[Union[str, os.PathLike]], template: Optional[str] = None) -> list[str]:
    """Video files and frame directories as given; a folder of videos (or of frame directories)
    becomes its entries, sorted. A frame directory is one holding numbered images."""
    out = []
    for p in map(Path, paths):
        if not p.is_dir():
            out.append(str(p))
            continue
        names = sorted(os.listdir(p))
        if (template and any(detect_template([n]) for n in names)) or detect_template(names):
            out.append(str(p))
            continue
        found = [str(p / n) for n in names if Path(n).suffix.lower() in VIDEO_EXTENSIONS and (p / n).is_file()]
        found += [str(p / n) for n in names if (p / n).is_dir() and detect_template(os.listdir(p / n))]
        if not found:
            raise ValueError(f"{p}: neither numbered frame images nor video files ({', '.join(sorted(VIDEO_EXTENSIONS))}) "
                             "nor frame directories in this folder")
        out.extend(sorted(found))
    return out


class _Member:
    """What one network needs from a video: its protocol, frames, views and transform."""

    def __init__(self, name: str, crops: int, clips: int, **overrides):
        from .transforms import create_transform

        self.name = name
        self.tf = create_transform(name, crops=crops, **overrides)
        self.clips = clips
        protocol = self.tf.protocol
        if clips == 1:
            self.mode = "1clip"
        elif clips == 2 and protocol != "dense":
            self.mode = "2clips"    # TSM's "2 clips": first + middle frame of each segment
        else:
            self.mode = "clips"     # uniform: K TSN draws (seeded per video); dense: K evenly spaced windows

    def indices(self, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)   # the same clips every run
        return sample(self.tf.protocol, n, self.tf.frames, self.mode, clips=self.clips, generator=g)


class _Clips(torch.utils.data.Dataset):
    """Decodes one video per item (in DataLoader workers): only the sampled frames, once each
    across clips and members; returns per-member views (V, 3, T, H, W) or the error line."""

    def __init__(self, paths: Sequence[str], members: Sequence[_Member], template=None, backend=None):
        self.paths, self.members, self.template, self.backend = list(paths), list(members), template, backend

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        path = self.paths[i]
        try:
            with open_video(path, template=self.template, backend=self.backend) as v:
                idx = [m.indices(len(v)) for m in self.members]
                uniq, inv = torch.cat([x.flatten() for x in idx]).unique(return_inverse=True)
                frames = v.get(uniq)
            views, start = [], 0
            for m, x in zip(self.members, idx):
                sel = frames[inv[start:start + x.numel()]].view(*x.shape, *frames.shape[1:])
                start += x.numel()
                out = [m.tf(clip) for clip in sel]
                views.append(torch.cat([o if o.dim() == 5 else o.unsqueeze(0) for o in out]))
            return {"index": i, "video": path, "views": views, "error": None}
        except VideoError as e:
            return {"index": i, "video": path, "views": None, "error": str(e)}
        except Exception as e:  # noqa: BLE001 - one bad file must not stop a batch
            return {"index": i, "video": path, "views": None, "error": f"{path}: {type(e).__name__}: {e}"}


class Recognizer:
    """A model with its transforms, sampling and class names, kept between calls.

    ``name``: a variant, an ensemble or (with ``pretrained=False``) an architecture. Weights go
    through ``zoo.create_model(name, pretrained=True, weights_dir=...)``; ``model=`` uses a module
    you already have (e.g. fine-tuned). ``labels``: a file (one name a line, in index order) or a
    list; default: the entry's bundled list (None for datasets without a public one).
    ``views``: "CxK" (default: the entry's test views). ``input_size``: test at another
    resolution (default: the entry's)."""

    def __init__(self, name: str, *, pretrained: bool = True, weights_dir=None, model: Optional[torch.nn.Module] = None,
                 labels=None, views: Optional[str] = None, device: Union[str, torch.device] = "cpu",
                 input_size: Optional[int] = None, template: Optional[str] = None, backend: Optional[str] = None):
        from .factory import create_model
        from .registry import registry

        reg = registry()
        obj = reg.resolve(name)
        members = list(obj.members) if name in reg.ensembles else [name]
        first = reg.variants.get(members[0])
        self.name = name
        self.views = views or (first.views if first else "1x1")
        crops, clips = parse_views(self.views)
        over = {"size": input_size} if input_size else {}
        self.members = [_Member(m, crops, clips, **over) for m in members]
        head = getattr(obj, "num_classes", None)     # variants and ensembles: known before building
        self.labels, self.label_source = self._labels(name, labels, head, reg)
        if model is None:
            model = create_model(name, pretrained=pretrained, weights_dir=weights_dir)
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.nets = list(model.members) if len(members) > 1 else [model]
        self.num_classes = getattr(self.nets[0], "num_classes", None) or head
        if self.labels is not None and self.num_classes is not None and len(self.labels) != self.num_classes:
            raise ValueError(f"{name}: {len(self.labels)} class names ({self.label_source}) but the model has "
                             f"{self.num_classes} classes; pass labels= (--labels FILE) for this head")
        self.template, self.backend = template, backend

    @staticmethod
    def _labels(name, labels, num_classes, reg):
        if labels is None:
            if name not in reg.variants and name not in reg.ensembles:
                return None, None
            names = label_names(name)
            info = label_info(name) if names is not None else None
            return names, info and f"{info['list']} ({info['order']})"
        if isinstance(labels, (str, os.PathLike)):
            return read_label_file(labels, num_classes), str(labels)
        labels = [str(x) for x in labels]
        if num_classes is not None and len(labels) != num_classes:
            raise ValueError(f"{len(labels)} label names for a model with {num_classes} classes")
        return labels, "given list"

    def why_no_labels(self) -> str:
        src = (label_info(self.name) or {}).get("source") or "an architecture has no dataset"
        return f"{self.name}: no class names ({src}); printing class indices - pass --labels FILE (labels=)"

    # -- the pieces ----------------------------------------------------------------------
    def dataset(self, paths: Sequence[str]) -> _Clips:
        return _Clips(paths, self.members, self.template, self.backend)

    @torch.inference_mode()
    def scores(self, views: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
        """Per-video, per-member views -> (videos, num_classes) logits averaged over views,
        then over members (see the module docstring for why logits, not probabilities)."""
        per_member = []
        for k, net in enumerate(self.nets):
            x = torch.cat([v[k] for v in views])
            logits = torch.cat([net(c.to(self.device, non_blocking=True)).float().cpu()
                                for c in x.split(MAX_CLIPS)])
            counts = [v[k].shape[0] for v in views]
            per_member.append(torch.stack([s.mean(0) for s in logits.split(counts)]))
        return torch.stack(per_member).mean(0)

    def result(self, video: str, logits: torch.Tensor, topk: int = 5) -> dict:
        probs = logits.softmax(-1)
        p, idx = probs.topk(min(topk, probs.numel()))
        top = [{"rank": r + 1, "index": int(i), "label": self.labels[int(i)] if self.labels else None,
                "prob": float(q)} for r, (q, i) in enumerate(zip(p, idx))]
        return {"video": video, "model": self.name, "views": self.views, "topk": top, "error": None}

    # -- use -----------------------------------------------------------------------------
    def __call__(self, path, topk: int = 5) -> dict:
        """Top-k of one video file or frame directory; a bad file raises VideoError."""
        item = self.dataset([str(path)])[0]
        if item["error"]:
            raise VideoError(item["error"])
        return self.result(item["video"], self.scores([item["views"]])[0], topk)

    def predict(self, paths: Iterable, topk: int = 5, batch: int = 1, workers: int = 0) -> Iterator[dict]:
        """Results in input order, one per video, as they finish; a failed video gives
        ``{"video", "error"}`` and the others go on."""
        paths = [str(p) for p in paths]
        loader = torch.utils.data.DataLoader(self.dataset(paths), batch_size=max(batch, 1), num_workers=workers,
                                             collate_fn=list, pin_memory=self.device.type == "cuda")
        for items in loader:
            ok = [it for it in items if it["error"] is None]
            logits = self.scores([it["views"] for it in ok]) if ok else None
            j = 0
            for it in items:
                if it["error"] is not None:
                    yield {"video": it["video"], "model": self.name, "views": self.views, "topk": None,
                           "error": it["error"]}
                else:
                    yield self.result(it["video"], logits[j], topk)
                    j += 1


def predict(videos, model: str, *, weights_dir=None, pretrained: bool = True, labels=None, views=None, topk: int = 5,
            batch: int = 1, workers: int = 0, device="cpu", input_size=None, template=None, backend=None):
    """Top-k class names of one video (a dict) or of many (a list of dicts, failures with
    "error" set). See :class:`Recognizer` for the arguments."""
    rec = Recognizer(model, pretrained=pretrained, weights_dir=weights_dir, labels=labels, views=views,
                     device=device, input_size=input_size, template=template, backend=backend)
    if isinstance(videos, (str, os.PathLike)):
        return rec(videos, topk)
    return list(rec.predict(expand_inputs(videos, template), topk=topk, batch=batch, workers=workers))
