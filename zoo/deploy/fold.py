"""BatchNorm folding: every eval BatchNorm that follows a conv or linear (the backbone's, the
calibrators', the difference stem's) folded into it and replaced by ``nn.Identity``."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ..models.aia import AxialGate
from ..models.conv3d import P3DConv
from ..models.gc import ECalG, ECalL, ECalS, ECalT
from ..models.gst import GSTConv
from ..models.resnet import BasicBlock, Bottleneck, VideoResNet
from ..models.sda import SDA, _Branch
from ..models.tdn import MotionExcitation

_BN = nn.modules.batchnorm._BatchNorm


def fold_bn(weight: torch.Tensor, bn: _BN, bias: Optional[torch.Tensor] = None):
    """(weight, bias) of a conv or linear (``bias`` or none) followed by ``bn`` in eval mode,
    as one layer. Computed in float32 at least, returned in ``weight``'s dtype."""
    dt = torch.promote_types(weight.dtype, torch.float32)
    scale = bn.weight.to(dt) * torch.rsqrt(bn.running_var.to(dt) + bn.eps)
    b = bn.bias.to(dt) - bn.running_mean.to(dt) * scale
    if bias is not None:
        b = b + bias.to(dt) * scale
    w = weight.to(dt) * scale.view(-1, *[1] * (weight.dim() - 1))
    return w.to(weight.dtype), b.to(weight.dtype)


def _foldable(layer: nn.Module) -> bool:
    if isinstance(layer, GSTConv):
        return True
    if isinstance(layer, P3DConv):
        return _foldable(layer.temporal)
    return isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and layer.weight is not None


def _fold_into(layer: nn.Module, bn: _BN) -> None:
    """Fold ``bn`` into ``layer`` (a conv, a linear, or a slot conv whose output channels are
    those of convs it holds)."""
    if isinstance(layer, P3DConv):
        return _fold_into(layer.temporal, bn)
    if isinstance(layer, GSTConv):
        s = layer.spatial.out_channels
        for part, sl in ((layer.spatial, slice(0, s)), (layer.temporal, slice(s, None))):
            sub = nn.BatchNorm1d(part.out_channels, eps=bn.eps).to(bn.running_mean)
            with torch.no_grad():
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(sub, name).copy_(getattr(bn, name)[sl])
            _fold_into(part, sub.eval())
        return
    with torch.no_grad():
        w, b = fold_bn(layer.weight, bn, layer.bias)
        layer.weight = nn.Parameter(w, requires_grad=False)
        layer.bias = nn.Parameter(b, requires_grad=False)


def _pairs(m: nn.Module) -> list:
    """(layer name, BN name) pairs of ``m`` whose BN directly follows the layer."""
    if isinstance(m, Bottleneck):
        p = [("conv1", "bn1"), ("conv3", "bn3")]
        if m.calib is None or m.calib_at != "conv2":
            p.append(("conv2", "bn2"))
    elif isinstance(m, BasicBlock):
        p = [("conv2", "bn2")]
        if m.calib is None or m.calib_at != "conv2":
            p.append(("conv1", "bn1"))
    elif isinstance(m, VideoResNet):
        p = [("conv1", "bn1")]
    elif isinstance(m, (ECalL, ECalT, _Branch, AxialGate, P3DConv)):
        p = [("spatial" if isinstance(m, P3DConv) else "conv", "bn")]
    elif isinstance(m, ECalG):
        p = [("fc", "bn")]
    elif isinstance(m, SDA):
        p = [("down", "bn1"), ("up", "bn2")]
    elif isinstance(m, MotionExcitation):
        p = [("conv1", "bn1"), ("conv_half", "bn_half"), ("conv_full", "bn_full"), ("conv3", "bn3")]
    elif isinstance(m, nn.Sequential):
        kids = list(m.named_children())
        p = [(a, b) for (a, la), (b, lb) in zip(kids, kids[1:]) if isinstance(lb, _BN)]
    else:
        # a calibrator ending in conv + BN (CBAM's gate conv, the non-local block's W), or a
        # stem module applying bn1 to conv1's output (TDN's difference stem)
        p = [(a, b) for a, b in (("conv", "bn"), ("W", "bn"), ("conv1", "bn1"))
             if isinstance(getattr(m, b, None), _BN) and isinstance(getattr(m, a, None), nn.Module)]
    return [(a, b) for a, b in p if isinstance(getattr(m, b, None), _BN) and _foldable(getattr(m, a))]


def _backbone(model: nn.Module) -> set:
    """The modules whose conv/BN pairs are the ResNet's own: the network, its blocks, their
    downsample branches."""
    out = set()
    for m in model.modules():
        if isinstance(m, (VideoResNet, Bottleneck, BasicBlock)):
            out.add(m)
            if isinstance(getattr(m, "downsample", None), nn.Sequential):
                out.add(m.downsample)
    return out


def fold_batchnorms(model: nn.Module, backbone: bool = True) -> int:
    """Fold, in place, every eval BatchNorm that follows a conv or linear into it and put an
    ``nn.Identity`` in its place (``backbone=False``: only those of the slot modules, the
    ResNet's own BNs kept). Returns how many were folded."""
    n = 0
    skip = set() if backbone else _backbone(model)
    for m in list(model.modules()):
        if isinstance(m, ECalS):
            m.bn = None  # the authors' ECal-S never applies its BN
        if m in skip:
            continue
        for a, b in _pairs(m):
            bn = getattr(m, b)
            if bn.running_mean is None or not bn.affine:
                continue
            _fold_into(getattr(m, a), bn)
            setattr(m, b, nn.Identity())
            n += 1
    return n
