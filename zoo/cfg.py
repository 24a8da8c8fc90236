"""``pretrained_cfg``: the data configuration of every registered name, under timm's key names.

One source of truth: ``create_model(name).pretrained_cfg``, ``timm.data.resolve_data_config(model=m)``
and ``zoo.create_transform(name)`` all read the values built here from the registry tables.

Keys (every name has all of them; an architecture gets the defaults its variants start from):

* timm's: ``architecture``, ``input_size`` (3, H, W), ``fixed_input_size``, ``crop_pct`` (the
  test resize is ``floor(H / crop_pct)``: 256 for 224, the papers' 256 -> 224), ``crop_mode``,
  ``test_input_size`` / ``test_crop_pct`` (the main test protocol: for 3-crop entries the crops
  are full-resolution squares of the resized frame, (3, 256, 256) with crop_pct 1.0; timm reads
  them with ``use_test_size=True``),
  ``interpolation`` ('bilinear', the resize the papers' loaders and zoo.transforms use), ``mean``,
  ``std``, ``num_classes``, ``label_names``, ``first_conv``, ``classifier``, ``hf_hub_id`` and
  ``hf_hub_filename`` (None unless the weights are hosted), ``license`` (of the hosted weights;
  None while none are), ``paper_ids`` ('arXiv:...' or 'doi:...'; None for a paper with neither),
  ``paper_name``, ``citation`` (one line: authors, title, venue and year), ``origin_url`` (the
  authors' code).
* the video keys: ``num_frames`` (segments for TDN; None for an ensemble, whose members differ:
  see ``member_frames``), ``frames_per_segment`` (5 for TDN, else 1: a clip has
  num_frames * frames_per_segment frames), ``sampling`` (the protocol of zoo.sampling),
  ``test_views`` ((crops, clips) of the main test protocol), ``dataset`` (registry key, None for
  an architecture).
"""
from __future__ import annotations

import math
from typing import Optional

from .registry import Ensemble, Variant, registry

__all__ = ["pretrained_cfg", "CFG_KEYS", "CROP_PCT", "INTERPOLATION", "DEFAULT_MEAN", "DEFAULT_STD",
           "DEFAULT_CLASSES", "DEFAULT_FRAMES", "DEFAULT_SIZE"]

CROP_PCT = 224 / 256          # resize the short side to 256, centre crop 224 (all five papers)
INTERPOLATION = "bilinear"
DEFAULT_MEAN = (0.485, 0.456, 0.406)   # ImageNet: what every paper's code normalises with
DEFAULT_STD = (0.229, 0.224, 0.225)
DEFAULT_CLASSES = 400   # a bare architecture defaults to a Kinetics-400 head
DEFAULT_FRAMES = 8
DEFAULT_SIZE = 224

CFG_KEYS = ("architecture", "input_size", "test_input_size", "fixed_input_size", "crop_pct", "test_crop_pct",
            "crop_mode", "interpolation", "mean", "std", "num_classes", "label_names", "first_conv", "classifier",
            "hf_hub_id", "hf_hub_filename", "license", "paper_ids", "paper_name", "citation", "origin_url",
            "num_frames", "frames_per_segment", "sampling", "test_views", "dataset")


def _label_names(dataset: Optional[str]) -> Optional[list]:
    # COORDINATOR: wire the label lists here once zoo.labels exists (predict branch):
    #     from .labels import label_names
    #     return label_names(dataset) if dataset else None
    return None


def _paper(reg, paper_id: Optional[str]) -> dict:
    p = reg.papers.get(paper_id) if paper_id else None
    if p is None:
        return {"paper_ids": None, "paper_name": None, "citation": None, "origin_url": None}
    if "arxiv.org/abs/" in p.url:
        ids = "arXiv:" + p.url.split("arxiv.org/abs/", 1)[1]
    elif "doi.org/" in p.url:
        ids = "doi:" + p.url.split("doi.org/", 1)[1]
    else:
        ids = p.url or None
    first = p.authors.split(",")[0].strip()
    cite = f"{first}{' et al.' if ',' in p.authors else ''}, \"{p.title}\", {p.venue} {p.year}"
    return {"paper_ids": ids, "paper_name": p.title, "citation": cite, "origin_url": p.code or None}


def _arch_paper(reg, arch: str) -> Optional[str]:
    """The paper an architecture comes from: its variants', else its complexity rows', else
    those of its family (a depth no table uses, such as c3d_r34)."""
    family = reg.archs[arch].family
    for same in (lambda a: a == arch, lambda a: reg.archs[a].family == family):
        for v in reg.variants.values():
            if same(v.arch):
                return v.paper
        for r in reg.complexity:
            if r.arch in reg.archs and same(r.arch):
                return r.paper
    return None


def _frames_per_segment(family: str) -> int:
    if family == "tdn":
        from .models.tdn import FRAMES_PER_SEGMENT

        return FRAMES_PER_SEGMENT
    return 1


def pretrained_cfg(name: str) -> dict:
    """The configuration of a registered name (variant, ensemble or architecture); see the
    module docstring for the keys. A fresh dict: callers may change it."""
    reg = registry()
    obj = reg.resolve(name)
    if isinstance(obj, Ensemble):
        first = pretrained_cfg(obj.members[0])
        return {**first, "architecture": None, "num_frames": None, "hf_hub_id": None, "hf_hub_filename": None,
                "first_conv": None, "classifier": None, **_paper(reg, obj.paper)}
    if isinstance(obj, Variant):
        arch, size, mean, std = obj.arch, obj.input_size, obj.mean, obj.std
        classes, frames, sampling, dataset, paper = obj.num_classes, obj.frames, obj.sampling, obj.dataset, obj.paper
        crops, clips = (int(v) for v in str(obj.views).split("x"))
    else:
        arch, size, mean, std = obj.name, DEFAULT_SIZE, DEFAULT_MEAN, DEFAULT_STD
        classes, frames, dataset, paper = DEFAULT_CLASSES, DEFAULT_FRAMES, None, _arch_paper(reg, obj.name)
        sampling = "tdn" if obj.family == "tdn" else "uniform"
        crops, clips = 1, 1
    full = math.floor(size / CROP_PCT)  # 3-crop testing takes full-resolution crops of the resized frame
    w = reg.weights(name) or {}
    hosted = w.get("status") == "hosted"
    cfg = {
        "architecture": arch,
        "input_size": (3, size, size),
        "test_input_size": (3, full, full) if crops == 3 else (3, size, size),
        "fixed_input_size": False,
        "crop_pct": CROP_PCT,
        "test_crop_pct": 1.0 if crops == 3 else CROP_PCT,
        "crop_mode": "center",
        "interpolation": INTERPOLATION,
        "mean": tuple(mean),
        "std": tuple(std),
        "num_classes": classes,
        "label_names": _label_names(dataset),
        "first_conv": "conv1",
        "classifier": "fc",
        "hf_hub_id": w.get("repo_id") if hosted else None,
        "hf_hub_filename": w.get("filename") if hosted else None,
        "license": w.get("license") if hosted else None,
        **_paper(reg, paper),
        "num_frames": frames,
        "frames_per_segment": _frames_per_segment(reg.archs[arch].family),
        "sampling": sampling,
        "test_views": (crops, clips),
        "dataset": dataset,
    }
    assert tuple(cfg) == CFG_KEYS
    return cfg
