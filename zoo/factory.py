"""create_model / model_info: from a registered name to an nn.Module and its metadata."""
from __future__ import annotations

import dataclasses
import warnings
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn

from .registry import Arch, Ensemble, Variant, registry

__all__ = ["create_model", "model_info", "EnsembleModel"]

DEFAULT_CLASSES = 400   # a bare architecture defaults to a Kinetics-400 head
DEFAULT_FRAMES = 8


class EnsembleModel(nn.Module):
    """Members trained on the same dataset with different frame counts, scores averaged.

    ``forward`` takes one clip batch per member (a list/tuple, in ``members`` order), or a
    single tensor that every member sees. Returns the mean of the members' logits, the
    score averaging of the papers' "(8+16) frames" rows."""

    def __init__(self, members: dict[str, nn.Module]):
        super().__init__()
        self.member_names = list(members)
        self.members = nn.ModuleList(members.values())

    @property
    def member_frames(self) -> list[int]:
        return [m.num_frames for m in self.members]

    def forward(self, clips: Union[torch.Tensor, Sequence[torch.Tensor]]) -> torch.Tensor:
        if isinstance(clips, torch.Tensor):
            clips = [clips] * len(self.members)
        if len(clips) != len(self.members):
            raise ValueError(
                f"this ensemble has {len(self.members)} members ({', '.join(self.member_names)}) "
                f"with frames {self.member_frames}: pass one clip batch per member, got {len(clips)}"
            )
        return torch.stack([m(c) for m, c in zip(self.members, clips)]).mean(0)


def _variant_info(reg, v: Variant) -> dict:
    d = dataclasses.asdict(v)
    d["kind"] = "variant"
    d["dataset_title"] = reg.datasets[v.dataset].title
    d["sampling_protocol"] = reg.sampling[v.sampling]
    d["paper_title"] = reg.papers[v.paper].title
    d["family"] = reg.archs[v.arch].family
    d["weights"] = reg.weights(v.name)
    d["complexity_rows"] = [dataclasses.asdict(r) for r in reg.complexity
                            if r.arch == v.arch and r.kwargs == v.kwargs and r.frames == v.frames]
    return d


def model_info(name: str) -> dict:
    """The full declarative entry of a registered name (variant, ensemble or architecture)."""
    reg = registry()
    obj = reg.resolve(name)
    if isinstance(obj, Variant):
        return _variant_info(reg, obj)
    if isinstance(obj, Ensemble):
        d = dataclasses.asdict(obj)
        d["kind"] = "ensemble"
        d["members"] = {m: _variant_info(reg, reg.variants[m]) for m in obj.members}
        d["weights"] = {m: reg.weights(m) for m in obj.members}
        return d
    return {"kind": "arch", "name": obj.name, "family": obj.family, "kwargs": dict(obj.defaults),
            "doc": obj.doc, "variants": sorted(n for n, v in reg.variants.items() if v.arch == obj.name),
            "num_classes": DEFAULT_CLASSES, "frames": DEFAULT_FRAMES, "weights": None}


def _build(arch: Arch, num_classes: int, num_frames: int, kwargs: dict) -> nn.Module:
    bad = set(kwargs) - set(arch.defaults)
    if bad:
        raise TypeError(f"{arch.name} got unexpected kwarg(s) {sorted(bad)}; it accepts: "
                        f"{', '.join(f'{k}={v!r}' for k, v in arch.defaults.items()) or 'none'}")
    return arch.builder(num_classes=num_classes, num_frames=num_frames, **kwargs)


def create_model(name: str, pretrained: bool = False, num_classes: Optional[int] = None,
                 num_frames: Optional[int] = None, weights_dir: Optional[str] = None,
                 pretrained_backbone: bool = False, **kwargs) -> nn.Module:
    """Build a registered network.

    ``name`` is a variant (``tsm_r50_ssv1_8f``: dataset, classes, frames and kwargs from its
    table row), an ensemble, or an architecture (``tsm_r50``) with ``num_classes`` /
    ``num_frames`` / kwargs overrides. ``pretrained=True`` loads the hosted weights (verified
    against weights_manifest.json); with a different ``num_classes`` the backbone is kept and a
    fresh head is started. ``pretrained_backbone=True`` initialises the 2D ResNet from ImageNet.
    The model's metadata is ``model.pretrained_cfg`` (the same dict as :func:`model_info`)."""
    if kwargs.pop("deploy", False):  # zoo.deploy's inference form, timed for one clip of the model's size
        from .deploy import deploy_default
        return deploy_default(create_model(name, pretrained, num_classes, num_frames, weights_dir, pretrained_backbone,
                                           **kwargs))
    reg = registry()
    obj = reg.resolve(name)
    if isinstance(obj, Ensemble):
        if num_classes is not None or num_frames is not None or kwargs:
            raise TypeError(f"{name} is an ensemble of fixed members {list(obj.members)}; build the "
                            "members with create_model to change their classes, frames or kwargs")
        model = EnsembleModel({m: create_model(m, pretrained=pretrained, weights_dir=weights_dir,
                                               pretrained_backbone=pretrained_backbone)
                               for m in obj.members})
        model.pretrained_cfg = model_info(name)
        return model
    if isinstance(obj, Variant):
        arch = reg.archs[obj.arch]
        cfg_kwargs = {**obj.kwargs, **kwargs}
        classes = obj.num_classes if num_classes is None else num_classes
        frames = obj.frames if num_frames is None else num_frames
        model = _build(arch, classes if not pretrained else obj.num_classes, frames, cfg_kwargs)
        info = model_info(name)
        if pretrained:
            from .weights import load_pretrained

            load_pretrained(model, name, weights_dir=weights_dir)
            if classes != obj.num_classes:
                model.reset_classifier(classes)
            if frames != obj.frames:
                warnings.warn(f"{name} was trained with {obj.frames} frames; the claims in its entry "
                              f"hold for that count, not for num_frames={frames}", stacklevel=2)
        if kwargs or classes != obj.num_classes or frames != obj.frames:
            info = {**info, "kwargs": cfg_kwargs, "num_classes": classes, "frames": frames,
                    "overridden": True}
    else:
        if pretrained:
            variants = sorted(n for n, v in reg.variants.items() if v.arch == obj.name)
            raise ValueError(f"{name} is an architecture, not a trained variant: pretrained=True needs a "
                             f"variant name such as {', '.join(variants[:4]) or '(none registered)'}; use "
                             "pretrained_backbone=True for ImageNet initialisation")
        classes = DEFAULT_CLASSES if num_classes is None else num_classes
        frames = DEFAULT_FRAMES if num_frames is None else num_frames
        model = _build(obj, classes, frames, kwargs)
        info = {**model_info(name), "kwargs": {**obj.defaults, **kwargs}, "num_classes": classes,
                "frames": frames}
    if pretrained_backbone:
        from .weights import load_imagenet_backbone

        load_imagenet_backbone(model)
    model.pretrained_cfg = info
    return model
