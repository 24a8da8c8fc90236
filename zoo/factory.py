"""create_model / model_info: from a registered name to an nn.Module and its metadata."""
from __future__ import annotations

import dataclasses
import numbers
import warnings
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn

from .cfg import DEFAULT_CLASSES, DEFAULT_FRAMES, pretrained_cfg
from .registry import Arch, Ensemble, Variant, registry

__all__ = ["create_model", "model_info", "EnsembleModel", "param_groups"]


class EnsembleModel(nn.Module):
    """Members trained on the same dataset with different frame counts, scores averaged.

    ``forward`` takes one clip batch per member (a list/tuple, in ``members`` order: each member
    needs clips sampled with its own frame count, see ``member_frames``). A single tensor is
    accepted only when every member takes the same number of frames; otherwise it is an error,
    because a 16-frame member fed an 8-frame clip gives a silently wrong score. Returns the mean
    of the members' logits, the score averaging of the papers' "(8+16) frames" rows.

    ``num_classes`` is the members' common count; ``num_features`` / ``num_frames`` exist when
    the members agree; feature maps and the pooled head belong to each member (``members[i]``)."""

    def __init__(self, members: dict[str, nn.Module]):
        super().__init__()
        self.member_names = list(members)
        self.members = nn.ModuleList(members.values())

    @property
    def member_frames(self) -> list[int]:
        return [m.num_frames for m in self.members]

    def _common(self, attr: str):
        values = [getattr(m, attr) for m in self.members]
        if len(set(values)) != 1:
            raise ValueError(f"the members of this ensemble ({', '.join(self.member_names)}) differ in {attr}: "
                             f"{values}; use ensemble.members[i].{attr}")
        return values[0]

    @property
    def num_classes(self) -> int:
        return self._common("num_classes")

    @property
    def num_features(self) -> int:
        return self._common("num_features")

    @property
    def num_frames(self) -> int:
        return self._common("num_frames")

    def forward(self, clips: Union[torch.Tensor, Sequence[torch.Tensor]]) -> torch.Tensor:
        if isinstance(clips, torch.Tensor):
            if len(set(self.member_frames)) != 1:
                raise ValueError(
                    f"this ensemble's members take different frame counts {self.member_frames} "
                    f"({', '.join(self.member_names)}): pass one clip batch per member, each sampled with "
                    "that member's frames (zoo.create_transform(member).views(video) for each)")
            clips = [clips] * len(self.members)
        if len(clips) != len(self.members):
            raise ValueError(
                f"this ensemble has {len(self.members)} members ({', '.join(self.member_names)}) "
                f"with frames {self.member_frames}: pass one clip batch per member, got {len(clips)}"
            )
        return torch.stack([m(c) for m, c in zip(self.members, clips)]).mean(0)

    def _per_member(self, what: str):
        raise NotImplementedError(
            f"an ensemble averages its members' scores and has no single {what}: call it on each member "
            f"(ensemble.members[i], i.e. {', '.join(self.member_names)})")

    def forward_features(self, x):
        self._per_member("feature map")

    def forward_head(self, x, pre_logits: bool = False):
        self._per_member("head")

    def forward_intermediates(self, x, *args, **kwargs):
        self._per_member("feature maps")

    def get_classifier(self) -> nn.ModuleList:
        """The members' classifiers, in member order."""
        return nn.ModuleList(m.get_classifier() for m in self.members)

    def reset_classifier(self, num_classes: int, dropout: Optional[float] = None) -> None:
        """A new ``num_classes``-way head on every member (their scores are averaged); 0 is refused:
        averaged pooled features of different networks are no embedding."""
        if num_classes == 0:
            self._per_member("pooled-feature output (reset_classifier(0))")
        for m in self.members:
            m.reset_classifier(num_classes, dropout)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for m in self.members:
            m.set_grad_checkpointing(enable)


def param_groups(model: nn.Module, weight_decay: float = 1e-5, no_weight_decay: Sequence[str] = ()) -> list[dict]:
    """Optimizer parameter groups without weight decay on norms and biases, as timm's
    ``param_groups_weight_decay``: parameters with one dimension or fewer (BN/LN weights and
    biases, scalar gates), names ending in ``.bias``, and the names in ``no_weight_decay`` go to
    a group with weight decay 0; frozen parameters (requires_grad False) are left out.
    ``torch.optim.SGD(zoo.param_groups(model, 1e-4), lr=0.01, momentum=0.9)``."""
    skip = set(no_weight_decay) | set(getattr(model, "no_weight_decay", lambda: ())())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") or name in skip else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


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
        d["member_frames"] = [reg.variants[m].frames for m in obj.members]
        d["weights"] = {m: reg.weights(m) for m in obj.members}
        return d
    return {"kind": "arch", "name": obj.name, "family": obj.family, "kwargs": dict(obj.defaults),
            "doc": obj.doc, "variants": sorted(n for n, v in reg.variants.items() if v.arch == obj.name),
            "num_classes": DEFAULT_CLASSES, "frames": DEFAULT_FRAMES, "weights": None}


def _model_cfg(name: str, **changes) -> dict:
    """``model.pretrained_cfg``: the entry (model_info) under timm's and the video keys (zoo.cfg)."""
    cfg = {**model_info(name), **pretrained_cfg(name)}
    if "num_frames" in changes:
        changes["frames"] = changes["num_frames"]
    cfg.update(changes)
    return cfg


def _int(value, what: str, low: int, meaning: str):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int >= {low} ({meaning}), got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{what} must be an int >= {low} ({meaning}), got {value}")
    return int(value)


def _rate(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number in [0, 1), got {type(value).__name__} {value!r}")
    if not 0 <= value < 1:
        raise ValueError(f"{what} must be in [0, 1), got {value}")
    return float(value)


def _check_kwarg(arch: Arch, key: str, value) -> None:
    """Kwargs must have the type of their default (ints for ints, numbers for floats, a list or
    tuple for a sequence); a None default leaves the check to the builder."""
    default = arch.defaults[key]
    if default is None:
        return
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "True or False"
    elif isinstance(default, int):
        ok, want = isinstance(value, numbers.Integral) and not isinstance(value, bool), "an int"
    elif isinstance(default, float):
        ok, want = isinstance(value, numbers.Real) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, want = isinstance(value, str), "a string"
    elif isinstance(default, (list, tuple)):
        ok, want = isinstance(value, (list, tuple)), "a list or tuple"
    elif isinstance(default, dict):
        ok, want = isinstance(value, dict), "a dict"
    else:
        return
    if not ok:
        raise TypeError(f"{arch.name}: {key} must be {want} (default {default!r}), got {type(value).__name__} "
                        f"{value!r}")
    if key == "dropout":
        _rate(value, f"{arch.name}: dropout")


def _build(arch: Arch, num_classes: int, num_frames: int, kwargs: dict) -> nn.Module:
    bad = set(kwargs) - set(arch.defaults)
    if bad:
        raise TypeError(f"{arch.name} got unexpected kwarg(s) {sorted(bad)}; it accepts: "
                        f"{', '.join(f'{k}={v!r}' for k, v in arch.defaults.items()) or 'none'}")
    for k, v in kwargs.items():
        _check_kwarg(arch, k, v)
    return arch.builder(num_classes=num_classes, num_frames=num_frames, **kwargs)


def create_model(name: str, pretrained: bool = False, num_classes: Optional[int] = None,
                 num_frames: Optional[int] = None, weights_dir: Optional[str] = None,
                 pretrained_backbone: bool = False, features_only: bool = False,
                 out_indices: Optional[Sequence[int]] = None, drop_rate: Optional[float] = None,
                 drop_path_rate: float = 0.0, deploy: bool = False, **kwargs) -> nn.Module:
    """Build a registered network.

    ``name`` is a variant (``tsm_r50_ssv1_8f``: dataset, classes, frames and kwargs from its
    table row), an ensemble, or an architecture (``tsm_r50``) with ``num_classes`` /
    ``num_frames`` / kwargs overrides. ``num_classes=0`` builds no classifier: the model returns
    pooled features (B, num_features), as timm. ``pretrained=True`` loads the hosted weights
    (verified against weights_manifest.json); with a different ``num_classes`` the backbone is
    kept and a fresh head is started. ``pretrained_backbone=True`` initialises the 2D ResNet from
    ImageNet (not together with ``pretrained``, whose trained backbone it would overwrite).

    timm's options: ``features_only=True`` returns a backbone whose forward gives the feature
    maps ``out_indices`` (default all five: 0 stem, 1-4 layer1-4), each (B, C, T', h, w), described
    by ``model.feature_info``; ``drop_rate`` is the classifier dropout (the kwarg ``dropout``);
    ``drop_path_rate`` the stochastic depth of the last block (rising linearly from 0).
    The model's metadata is ``model.pretrained_cfg`` (the entry of :func:`model_info` plus the
    timm / video keys of :mod:`zoo.cfg`). ``hf-hub:ORG/REPO[@REV]`` and ``local-dir:PATH`` load a
    saved model folder (config.json + model.safetensors, :mod:`zoo.weights.load`). ``deploy=True``
    returns :func:`zoo.deploy.deploy`'s inference-only form, converted for one clip of the
    model's configured size."""
    if deploy:
        from .deploy import deploy_default

        return deploy_default(create_model(
            name, pretrained=pretrained, num_classes=num_classes, num_frames=num_frames, weights_dir=weights_dir,
            pretrained_backbone=pretrained_backbone, features_only=features_only, out_indices=out_indices,
            drop_rate=drop_rate, drop_path_rate=drop_path_rate, **kwargs))
    if not isinstance(name, str):
        raise TypeError(f"name must be a registered model name (a string such as 'tsm_r50_ssv1_8f'), "
                        f"got {type(name).__name__} {name!r}")
    for flag, value in (("pretrained", pretrained), ("pretrained_backbone", pretrained_backbone),
                        ("features_only", features_only)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be True or False, got {type(value).__name__} {value!r}")
    num_classes = _int(num_classes, "num_classes", 0, "0: no classifier, the model returns pooled features")
    num_frames = _int(num_frames, "num_frames", 1, "the frames (TDN: segments) the model is configured for")
    if pretrained and pretrained_backbone:
        raise ValueError("pretrained=True loads a trained network whose backbone pretrained_backbone=True would "
                         "overwrite with ImageNet weights: pass one of them (pretrained=True with num_classes=N "
                         "fine-tunes the trained backbone with a new head)")
    if out_indices is not None and not features_only:
        raise TypeError("out_indices selects the feature maps of features_only=True; pass both")
    if drop_rate is not None:
        drop_rate = _rate(drop_rate, "drop_rate")
        if "dropout" in kwargs and kwargs["dropout"] != drop_rate:
            raise TypeError(f"drop_rate={drop_rate} and dropout={kwargs['dropout']} name the same classifier "
                            "dropout: pass one")
        kwargs["dropout"] = drop_rate
    drop_path_rate = _rate(drop_path_rate, "drop_path_rate")
    if name.startswith(("hf-hub:", "local-dir:")):
        from .weights import create_from_source

        model = create_from_source(name, num_classes, num_frames, pretrained_backbone, **kwargs)
        return _finish(model, model.pretrained_cfg, drop_path_rate, features_only, out_indices)
    reg = registry()
    obj = reg.resolve(name)
    if isinstance(obj, Ensemble):
        if num_classes is not None or num_frames is not None or kwargs or features_only or drop_path_rate:
            raise TypeError(f"{name} is an ensemble of fixed members {list(obj.members)}; build the "
                            "members with create_model to change their classes, frames, kwargs or features")
        model = EnsembleModel({m: create_model(m, pretrained=pretrained, weights_dir=weights_dir,
                                               pretrained_backbone=pretrained_backbone)
                               for m in obj.members})
        model.pretrained_cfg = _model_cfg(name)
        return model
    if isinstance(obj, Variant):
        arch = reg.archs[obj.arch]
        cfg_kwargs = {**obj.kwargs, **kwargs}
        classes = obj.num_classes if num_classes is None else num_classes
        frames = obj.frames if num_frames is None else num_frames
        model = _build(arch, classes if not pretrained else obj.num_classes, frames, cfg_kwargs)
        changes = {}
        if pretrained:
            from .weights import load_pretrained

            load_pretrained(model, name, weights_dir=weights_dir)
            if classes != obj.num_classes:
                model.reset_classifier(classes)
            if frames != obj.frames:
                warnings.warn(f"{name} was trained with {obj.frames} frames; the claims in its entry "
                              f"hold for that count, not for num_frames={frames}", stacklevel=2)
        if kwargs or classes != obj.num_classes or frames != obj.frames:
            changes = {"kwargs": cfg_kwargs, "num_classes": classes, "num_frames": frames, "overridden": True}
        info = _model_cfg(name, **changes)
    else:
        if pretrained:
            variants = sorted(n for n, v in reg.variants.items() if v.arch == obj.name)
            raise ValueError(f"{name} is an architecture, not a trained variant: pretrained=True needs a "
                             f"variant name such as {', '.join(variants[:4]) or '(none registered)'}; use "
                             "pretrained_backbone=True for ImageNet initialisation")
        classes = DEFAULT_CLASSES if num_classes is None else num_classes
        frames = DEFAULT_FRAMES if num_frames is None else num_frames
        model = _build(obj, classes, frames, kwargs)
        info = _model_cfg(name, kwargs={**obj.defaults, **kwargs}, num_classes=classes, num_frames=frames)
    if pretrained_backbone:
        from .weights import load_imagenet_backbone

        load_imagenet_backbone(model)
    return _finish(model, info, drop_path_rate, features_only, out_indices)


def _finish(model: nn.Module, info: dict, drop_path_rate: float, features_only: bool,
            out_indices: Optional[Sequence[int]]) -> nn.Module:
    if drop_path_rate:
        model.set_drop_path(drop_path_rate)
    if features_only:
        model.to_features_only((0, 1, 2, 3, 4) if out_indices is None else out_indices)
        info["num_classes"] = 0
    model.pretrained_cfg = info
    return model
