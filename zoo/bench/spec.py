"""What is benchmarked: model specs (``name:key=value``), their backbones, building them.

A model is a registered architecture or variant, optionally with kwargs after a colon
(``aia_tsn_r50:attention=c``), or ``tv_resnetD`` for torchvision's ResNet-D run over the frames
of the clip and averaged (the floor every 2D-backbone net is compared with).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Optional

__all__ = ["TV", "Spec", "parse_spec", "arch_of", "baseline_of", "build", "clip_shape", "prepare", "DTYPES"]

TV = "tv_resnet"


@dataclass(frozen=True)
class Spec:
    """A model to benchmark: an architecture name and kwargs (``name:k=v,k=v``)."""

    name: str
    kwargs: tuple = ()

    @property
    def label(self) -> str:
        if not self.kwargs:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_fmt(v)}" for k, v in self.kwargs)


def _fmt(v) -> str:
    return v if isinstance(v, str) else repr(v)


def parse_spec(text: str) -> Spec:
    """``"aia_tsn_r50:attention=c"`` -> Spec("aia_tsn_r50", (("attention", "c"),)).

    Values are Python literals where they parse as one (``ratio=0.5``, ``loop=True``), strings
    otherwise."""
    name, _, rest = text.partition(":")
    kwargs = []
    for item in filter(None, rest.split(",")):
        k, eq, v = item.partition("=")
        if not eq:
            raise ValueError(f"bad model spec {text!r}: expected name:key=value[,key=value]")
        try:
            val = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            val = v
        kwargs.append((k.strip(), val))
    spec = Spec(name.strip(), tuple(kwargs))
    _check_name(spec.name)
    return spec


def _check_name(name: str) -> None:
    if re.fullmatch(TV + r"(18|34|50|101|152)", name):
        return
    from ..registry import registry

    reg = registry()
    if name in reg.ensembles:
        raise ValueError(f"{name} is an ensemble: benchmark its members ({', '.join(reg.ensembles[name].members)})")
    if name not in reg.archs and name not in reg.variants:
        import difflib

        close = difflib.get_close_matches(name, reg.names() + [TV + "50"], n=3)
        raise ValueError(f"unknown architecture or variant {name!r}"
                         + (f"; did you mean {', '.join(close)}?" if close else ""))


def arch_of(name: str) -> str:
    """The architecture of a registered name (a variant's ``arch``; an architecture itself)."""
    from ..registry import registry

    v = registry().variants.get(name)
    return v.arch if v is not None else name


def baseline_of(name: str) -> Optional[str]:
    """The backbone a variant is compared with.

    ``<prefix>_<arch>`` -> ``<arch>`` when that is registered (gc_tsm_r50 -> tsm_r50,
    aia_tsn_r50 -> tsn_r50, gc_gst_r50 -> gst_r50, gc_tdn_r50 -> tdn_r50); TSN and TDN ->
    torchvision ResNet of the same depth; everything else (TSM, GST, STC, C3D, ...) -> TSN of
    the same depth. torchvision's ResNet has none. A variant is compared as its architecture."""
    if name.startswith(TV):
        return None
    from ..registry import archs

    name = arch_of(name)
    reg = archs()
    head, _, rest = name.partition("_")
    if rest in reg:
        return rest
    m = re.search(r"_r(\d+)$", name)
    depth = m.group(1) if m else "50"
    family = reg[name].family if name in reg else head
    if family in ("tsn", "tdn"):
        return f"{TV}{depth}"
    return f"tsn_r{depth}"


def _torchvision_frames(depth: int, num_classes: int, num_frames: int):
    import torch.nn as nn
    import torchvision

    class FrameResNet(nn.Module):
        """torchvision's ResNet on every frame of (B, 3, T, H, W), scores averaged over T."""

        def __init__(self):
            super().__init__()
            self.net = getattr(torchvision.models, f"resnet{depth}")(num_classes=num_classes)
            self.num_frames = num_frames

        def forward(self, x):
            B, C, T, H, W = x.shape
            return self.net(x.transpose(1, 2).reshape(B * T, C, H, W)).view(B, T, -1).mean(1)

    return FrameResNet()


def build(spec: Spec, num_classes: Optional[int] = None, num_frames: int = 8):
    """The module for ``spec`` (eval mode, float32, on CPU): ``zoo.create_model`` with the spec's
    kwargs and ``num_frames``; ``num_classes`` defaults to the entry's (400 for an architecture)."""
    if spec.name.startswith(TV):
        if spec.kwargs:
            raise ValueError(f"{spec.name} takes no kwargs")
        model = _torchvision_frames(int(spec.name[len(TV):]), num_classes or 400, num_frames)
    else:
        from ..factory import create_model

        model = create_model(spec.name, num_classes=num_classes, num_frames=num_frames, **dict(spec.kwargs))
    return model.eval()


def clip_shape(model, batch: int, frames: int, size: int) -> tuple:
    """Input shape of ``batch`` clips of ``frames`` segments (TDN segments carry several frames)."""
    return (batch, 3, frames * getattr(model, "frames_per_segment", 1), size, size)


def prepare(model, device: str, dtype: str, channels_last: bool):
    """Move to device/dtype; channels_last for every 4-D (and channels_last_3d for 5-D) weight."""
    import torch

    model = model.to(device=device, dtype=DTYPES[dtype])
    if channels_last:
        for p in list(model.parameters()) + list(model.buffers()):
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
            elif p.dim() == 5:
                p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
    return model


def _dtypes():
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class _Lazy(dict):
    def __missing__(self, k):
        self.update(_dtypes())
        return dict.__getitem__(self, k)


DTYPES = _Lazy()  # "fp32" | "bf16" | "fp16" -> torch dtype, torch imported on first use
