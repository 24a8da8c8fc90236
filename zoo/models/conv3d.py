"""3D convolutions over frame batches, and the C3D / P3D baselines of the GST and STC ablations.

:class:`FrameConv3d` is a ``Conv3d`` (same parameters, same init, same state-dict layout) that
runs on the zoo's (B*T, C, H, W) activations without a transpose to (B, C, T, H, W): each of the
``kt`` temporal taps is a 2D conv (all taps in one ``conv2d`` call) and the taps are summed with
a shift along T. The result equals ``Conv3d`` with temporal padding ``kt // 2``, stride 1 in
time, and fvcore counts the same multiply-adds. On CPU it is about 9x faster than PyTorch's
``conv3d`` for GST's layer1 temporal path (2D convs hit the fast kernels, Conv3d does not).

Baselines (GST Table 2 and Fig. 2; STC Tables I-II), as ``conv2`` slots of the same video ResNet:

* ``c3d_r*`` - the middle 3x3 conv becomes 3x3x3 (``groups`` = 2 gives "C3D groups=2").
* ``p3d_r*`` - the middle conv becomes a 1x3x3 conv, BN, ReLU, then a 3x1x1 conv (bn2 follows).
  Neither paper says whether P3D has a BN+ReLU between its two convs; we follow the P3D
  paper's P3D-A / R(2+1)D, which do. It changes the parameter count by 2*width per block only.
The stem, conv1/conv3 and downsample stay 2D (1x1x1 / 1x7x7), as in the GST code.
ImageNet initialisation (``pretrained_backbone=True``): C3D inflates the 2D kernel I3D-style
(repeated over time, divided by 3; groups keep the diagonal blocks), P3D's spatial conv takes
it and its temporal conv starts random. Neither paper says; these are the usual choices.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registration import register_arch
from .resnet import BlockCtx, Slots, VideoResNet

__all__ = ["FrameConv3d", "slot_in", "c3d_conv2", "p3d_conv2", "P3DConv"]


def slot_in(ctx: BlockCtx) -> int:
    """Input channels of the ``conv2`` slot: the width in a bottleneck, the block input in a
    basic block (where the slot is the block's first conv)."""
    return ctx.in_channels if ctx.out_channels == ctx.width else ctx.width


class FrameConv3d(nn.Conv3d):
    """``Conv3d(in, out, (kt, kh, kw), stride=(1, s, s), padding=(kt//2, kh//2, kw//2))`` on
    frames: ``forward(x, T)`` with x of shape (B*T, C, H, W). Weight (out, in/groups, kt, kh, kw)."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(3, 3, 3), stride: int = 1,
                 groups: int = 1):
        kt, kh, kw = kernel
        if kt % 2 == 0:
            raise ValueError(f"temporal kernel size must be odd, got {kt}")
        super().__init__(in_channels, out_channels, kernel, (1, stride, stride), (kt // 2, kh // 2, kw // 2),
                         groups=groups, bias=False)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:  # type: ignore[override]
        """All taps in one 2D conv, then their shifted sums (plus the bias, if a BN was folded in)."""
        N, g, o = x.shape[0], self.groups, self.out_channels
        kt, kh, kw = self.kernel_size
        a = F.conv2d(x, self.frame_weight(), None, self.stride[1:], self.padding[1:], groups=g)
        if kt == 1:
            return a if self.bias is None else a + self.bias.view(1, o, 1, 1)
        h, wd = a.shape[-2:]
        a = a.view(N // T, T, g, kt, o // g, h, wd)
        p = kt // 2
        out = a[:, :, :, p]
        for k in range(kt):
            d = k - p  # output frame t reads tap k at input frame t + d
            if abs(d) >= T:
                continue  # every frame it would read is padding
            if d < 0:
                out = out + F.pad(a[:, :d, :, k], (0, 0, 0, 0, 0, 0, 0, 0, -d, 0))
            elif d > 0:
                out = out + F.pad(a[:, d:, :, k], (0, 0, 0, 0, 0, 0, 0, 0, 0, d))
        out = out.reshape(N, o, h, wd)
        return out if self.bias is None else out + self.bias.view(1, o, 1, 1)

    def frame_weight(self) -> torch.Tensor:
        """The kernel as the 2D conv's: (o, C/g, kt, kh, kw) -> (g, kt, o/g, C/g, kh, kw) ->
        (g*kt*o/g, C/g, kh, kw), outputs grouped by g, then tap."""
        # C from the module, not the input: the kernel's shape must be static for ONNX export
        g, o, C = self.groups, self.out_channels, self.in_channels
        kt, kh, kw = self.kernel_size
        w = self.weight.view(g, o // g, C // g, kt, kh, kw).transpose(1, 3).transpose(2, 3)
        return w.reshape(g * kt * (o // g), C // g, kh, kw)

    def load_imagenet(self, param: str, w2d: torch.Tensor) -> bool:
        """I3D inflation of a 2D (out, in, kh, kw) kernel: repeated over the kt taps and divided
        by kt (a static clip gives the 2D response); a grouped conv keeps its diagonal blocks."""
        if param != "weight" or w2d.shape[0] != self.out_channels or w2d.shape[2:] != self.weight.shape[3:]:
            return False
        g, o, i = self.groups, self.out_channels // self.groups, self.in_channels // self.groups
        blocks = [w2d[k * o:(k + 1) * o, k * i:(k + 1) * i] for k in range(g)]
        kt = self.kernel_size[0]
        with torch.no_grad():
            self.weight.copy_(torch.cat(blocks).unsqueeze(2).expand_as(self.weight) / kt)
        return True


class C3DConv(FrameConv3d):
    """The 3x3x3 middle conv of C3D (optionally grouped)."""


class P3DConv(nn.Module):
    """P3D's middle conv: 1x3x3 spatial conv (with the block's stride), BN, ReLU, 3x1x1 temporal conv."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.spatial = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.temporal = FrameConv3d(out_channels, out_channels, (3, 1, 1))

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        return self.temporal(self.relu(self.bn(self.spatial(x))), T)

    def load_imagenet(self, param: str, w2d: torch.Tensor) -> bool:
        """The 2D kernel initialises the spatial conv; the temporal conv keeps its random init."""
        if param != "weight" or w2d.shape != self.spatial.weight.shape:
            return False
        with torch.no_grad():
            self.spatial.weight.copy_(w2d)
        return True


def c3d_conv2(groups: int = 1):
    """Slot factory: 3x3x3 middle conv in every block."""
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")

    def make(ctx: BlockCtx):
        cin = slot_in(ctx)
        if cin % groups or ctx.width % groups:
            raise ValueError(f"groups={groups} does not divide {cin} input / {ctx.width} output channels")
        return C3DConv(cin, ctx.width, (3, 3, 3), ctx.stride, groups)
    return make


def p3d_conv2():
    """Slot factory: P3D's 1x3x3 + 3x1x1 middle conv in every block."""
    return lambda ctx: P3DConv(slot_in(ctx), ctx.width, ctx.stride)


def _c3d(depth):
    def build(num_classes, num_frames, groups=1, dropout=0.5):
        return VideoResNet(depth, num_classes, Slots(conv2=c3d_conv2(groups)), dropout=dropout,
                           num_frames=num_frames)
    build.__doc__ = f"""C3D baseline on ResNet-{depth} (GST Fig. 2(b), Table 2): every block's middle
    3x3 conv is a 3x3x3 conv (``groups=2``: "C3D groups=2"); the rest stays 2D, average consensus."""
    return build


def _p3d(depth):
    def build(num_classes, num_frames, dropout=0.5):
        return VideoResNet(depth, num_classes, Slots(conv2=p3d_conv2()), dropout=dropout, num_frames=num_frames)
    build.__doc__ = f"""P3D baseline on ResNet-{depth} (GST Fig. 2(c), Table 2): every block's middle
    conv is a 1x3x3 conv, BN, ReLU and a 3x1x1 conv; average consensus."""
    return build


for _d in (18, 34, 50):
    register_arch(f"c3d_r{_d}", family="c3d")(_c3d(_d))
    register_arch(f"p3d_r{_d}", family="p3d")(_p3d(_d))
