"""GST: Grouped Spatial-Temporal aggregation (Luo & Yuille, ICCV 2019).

Every block's middle 3x3 conv becomes two parallel convs whose outputs are concatenated as
``[spatial | temporal]`` (then bn2, as in the authors' code):

* spatial: a 2D 3x3 conv producing (1 - alpha) of the output channels,
* temporal: a 3x3x3 conv producing alpha of them (alpha = 1/4 by default; the paper tries 1/2,
  1/4, 1/8).

With ``beta = 0.5`` (GST) the spatial conv sees the first half of the input channels and the
temporal conv the second half; with ``beta = 1`` (GST-Large) both see all of them.
R18/R34 put the split conv in place of a basic block's first 3x3 conv (the one with the stride).

Differences from the authors' code (chenxuluo/GST-video), none of which changes the function:

* The original is all-Conv3d with (1, k, k) kernels on (B, C, T, H, W); ours is the shared 2D
  backbone on (B*T, C, H, W) frames. Their ``alpha``/``beta`` are integers (alpha=4 means a
  quarter of the output channels are temporal, beta=2 means half the input); ours are the
  paper's fractions (``alpha=0.25``, ``beta=0.5``).
* Their head keeps ``AvgPool2d(7)``, so it only runs on 224x224 input; ours uses adaptive
  average pooling (identical at 224, and it runs at any size). fvcore does not count
  ``avg_pool2d`` but counts ``adaptive_avg_pool2d``, one FLOP per input element: ours therefore
  measures 2048*7*7*T = 802,816 FLOPs more at 8 frames (29,179,191,296 vs their 29,178,388,480).
* The temporal conv runs as :class:`~zoo.models.conv3d.FrameConv3d` (one 2D conv per temporal
  tap, taps summed with a shift along T): same weights, same multiply-adds, no slow Conv3d path.
* Dropout defaults to the authors' 0.3 (their opts.py; the paper says 0.3 too).

ImageNet initialisation (``pretrained_backbone=True``) follows theirs: the spatial conv takes the
torchvision conv2 weight sliced to ``[:out*(1-alpha), :in*beta]``; the temporal conv starts random.
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn

from ..convert import COMMON_RULES, ConversionError, rename
from ..registration import register_arch, register_converter
from .conv3d import FrameConv3d, slot_in
from .resnet import BlockCtx, Slots, VideoResNet

__all__ = ["GSTConv", "gst_conv2", "gst_slots", "split_channels"]


def split_channels(channels: int, fraction: float, what: str) -> int:
    """round(channels * fraction), refusing a split that leaves a side empty."""
    n = round(channels * fraction)
    if not 0 < n < channels:
        raise ValueError(f"{what}={fraction} leaves an empty group of {channels} channels")
    return n


class GSTConv(nn.Module):
    """GST's split middle conv: ``cat([spatial 3x3 conv, temporal 3x3x3 conv])`` on (B*T, C, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, alpha: float = 0.25,
                 beta: float = 0.5):
        super().__init__()
        if not 0 < alpha < 1:
            raise ValueError(f"alpha (temporal share of the output channels) must be in (0, 1), got {alpha}")
        if beta not in (0.5, 1.0):
            raise ValueError(f"beta must be 0.5 (GST: split input) or 1.0 (GST-Large: shared input), got {beta}")
        t_out = split_channels(out_channels, alpha, "alpha")
        self.alpha, self.beta = alpha, beta
        # beta = 0.5: spatial reads channels [0, s_in), temporal reads [s_in, C)
        self.s_in = in_channels if beta == 1.0 else in_channels // 2
        t_in = in_channels if beta == 1.0 else in_channels - self.s_in
        self.spatial = nn.Conv2d(self.s_in, out_channels - t_out, 3, stride, 1, bias=False)
        self.temporal = FrameConv3d(t_in, t_out, (3, 3, 3), stride)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if self.beta == 1.0:
            xs = xt = x
        else:
            xs, xt = x[:, :self.s_in], x[:, self.s_in:]
        return torch.cat((self.spatial(xs), self.temporal(xt, T)), 1)

    def load_imagenet(self, param: str, w2d: torch.Tensor) -> bool:
        """The authors' inflation: the spatial conv takes ``w2d[:spatial outputs, :spatial inputs]``
        of the ImageNet 3x3 kernel; the temporal conv keeps its random init."""
        sw = self.spatial.weight
        if param != "weight" or w2d.dim() != 4 or w2d.shape[0] < sw.shape[0] or w2d.shape[1] < sw.shape[1]:
            return False
        with torch.no_grad():
            sw.copy_(w2d[:sw.shape[0], :sw.shape[1]])
        return True

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}"


def gst_conv2(alpha: float = 0.25, beta: float = 0.5):
    """Slot factory: a :class:`GSTConv` in every block (output order [spatial, temporal])."""
    GSTConv(64, 64, 1, alpha, beta)  # validate now, not at the first block

    def make(ctx: BlockCtx):
        return GSTConv(slot_in(ctx), ctx.width, ctx.stride, alpha, beta)
    return make


def gst_slots(alpha: float = 0.25, beta: float = 0.5, **slots) -> Slots:
    """GST's slots; extra keywords (``calib``, ``calib_at``, ...) are passed to :class:`Slots`."""
    return Slots(conv2=gst_conv2(alpha, beta), **slots)


def _gst(depth, large):
    def build(num_classes, num_frames, alpha=0.25, beta=1.0 if large else 0.5, dropout=0.3):
        return VideoResNet(depth, num_classes, gst_slots(alpha, beta), dropout=dropout, num_frames=num_frames)
    name = "GST-Large" if large else "GST"
    build.__doc__ = f"""{name} on ResNet-{depth}: every block's middle conv split into a 2D 3x3 path and
    a 3D 3x3x3 path (``alpha`` = temporal share of the outputs, default 1/4; ``beta`` = input
    share of each path, {'1.0: both see all channels' if large else '0.5: each sees half'}),
    concatenated [spatial, temporal]; dropout 0.3 as the authors; average consensus."""
    return build


for _d in (18, 34, 50):
    register_arch(f"gst_r{_d}", family="gst")(_gst(_d, False))
register_arch("gst_large_r50", family="gst")(_gst(50, True))


# -- the authors' checkpoints ------------------------------------------------------------------

_GST_RULES = [
    (r"\.Tconv\.", ".conv2.temporal."),
    (r"^(layer\d+\.\d+)\.conv2\.weight$", r"\1.conv2.spatial.weight"),
]
_SQUEEZE = re.compile(r"^(conv1|layer\d+\.\d+\.(conv1|conv2\.spatial|conv3|downsample\.0))\.weight$")


@register_converter("gst")
def convert_gst(sd: dict) -> dict:
    """GST / GST-Large (ResNet-50) from chenxuluo/GST-video: ``base_model.`` / ``new_fc``, ``Tconv``
    -> ``conv2.temporal`` (a Conv3d weight kept as is), and the length-1 temporal axis of every
    (out, in, 1, k, k) weight (stem, conv1, spatial conv2, conv3, downsample) squeezed."""
    out = rename(sd, COMMON_RULES + _GST_RULES)
    for k, v in out.items():
        if _SQUEEZE.match(k) and v.dim() == 5:
            if v.shape[2] != 1:
                raise ConversionError(f"{k}: expected a (out, in, 1, k, k) weight, got {tuple(v.shape)}")
            out[k] = v.squeeze(2)
    return out
