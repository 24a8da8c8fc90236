"""STC: Spatio-Temporal Collaborative module (Hao et al., IEEE TIP 2022).

Every block's middle 3x3 conv becomes two parallel blocks over split channels, concatenated as
``[S_T | T_S]`` and followed by the block's bn2:

* ``S_T`` on the first ``alpha`` of the input channels: TSM's temporal shift (1/8 of its
  channels towards t+1, 1/8 towards t-1), a 2D 3x3 conv, and temporal refinement (TR): average
  over H, W -> 3x1x1 conv over T -> sigmoid, a (T, C) gate broadcast over H, W.
* ``T_S`` on the other ``1 - alpha``: a 3x1x1 temporal conv, and spatial refinement (SR):
  average over T -> 1x3x3 conv -> sigmoid, an (H, W, C) gate broadcast over T.

STC-Light (``reduction = r``) puts a 1x1(x1) conv down to ``max(8, channels // r)`` channels and
a ReLU before each refinement conv. STC-Equal (``equal=True``) splits the *input* channels in
half, as GST does, and uses ``alpha`` for the output split only. The paper's ablations are
switches: Sim-STC = ``shift=False, tr=False, sr=False``; NonShift-STC = ``shift=False``;
Table III's TR/SR rows = ``tr`` / ``sr``. ``alpha`` = 0 or 1 keeps one block only.

No code or checkpoints were published; the paper is the spec. Where it is silent we chose:

* No BN and no bias inside S_T / T_S or their refinement convs: the module replaces the 3x3
  conv and the block's bn2 follows the concatenation (as in GST, which STC builds on). This is
  what reproduces the paper's parameter formulas (Table I: 12[a^2 + (1-a)^2]C^2 and
  [(9 + 4/r)a^2 + (3 + 10/r)(1-a)^2]C^2, every conv full, no extra terms) and every network
  count of Tables II and IV.
* Output channels split like the input: S_T gives round(alpha * width), T_S the rest (Table I's
  formulas have square terms a^2, (1-a)^2, so each block maps its share to the same share).
* The refinement convs run on the pooled tensors (so they cost almost nothing, which is what
  the paper's FLOPs imply), and their input is the block's own conv output. SR's conv runs once
  per clip on the temporal mean, so FLOPs are not exactly linear in T (8f + 16f != 24f).
* The block's stride (first block of a stage) is on S_T's 3x3 conv and on T_S's temporal
  conv (a 3x1x1 conv with spatial stride 2 reads every other pixel).
* Refinement convs are initialised like the backbone's convs (Kaiming normal, fan-out): the
  paper only says new layers are "randomly initialized". Dropout 0.5 as the paper.
* ImageNet initialisation: S_T's 3x3 conv takes the slice ``[:its outputs, :its inputs]`` of the
  ResNet's conv2 kernel (as GST does); T_S's temporal conv and the refinement convs are new.
* FLOPs: the paper counts with thop; we report fvcore (multiply-adds of convs, BN and the
  linear layer). Average pools, sigmoids and the gating products are not counted by either.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registration import register_arch
from .conv3d import FrameConv3d, slot_in
from .resnet import BlockCtx, Slots, VideoResNet
from .temporal import temporal_shift

__all__ = ["STCConv", "TemporalRefine", "SpatialRefine", "stc_conv2", "stc_slots"]


def _reduced(channels: int, reduction: Optional[int]) -> Optional[int]:
    return None if reduction is None else max(8, channels // reduction)


class TemporalRefine(nn.Module):
    """TR: mean over H, W -> [1x1 reduce + ReLU] -> 3-tap conv over T -> sigmoid -> x * gate."""

    def __init__(self, channels: int, reduction: Optional[int] = None):
        super().__init__()
        mid = _reduced(channels, reduction)
        self.reduce = None if mid is None else nn.Conv1d(channels, mid, 1, bias=False)
        self.conv = nn.Conv1d(mid or channels, channels, 3, padding=1, bias=False)

    def init_weights(self) -> None:
        for m in (self.reduce, self.conv):
            if m is not None:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        N, C = x.shape[:2]
        p = x.mean((2, 3)).view(N // T, T, C).transpose(1, 2)  # (B, C, T)
        if self.reduce is not None:
            p = F.relu(self.reduce(p))
        g = torch.sigmoid(self.conv(p)).transpose(1, 2).reshape(N, C, 1, 1)
        return x * g


class SpatialRefine(nn.Module):
    """SR: mean over T -> [1x1 reduce + ReLU] -> 3x3 conv -> sigmoid -> x * gate (broadcast over T)."""

    def __init__(self, channels: int, reduction: Optional[int] = None):
        super().__init__()
        mid = _reduced(channels, reduction)
        self.reduce = None if mid is None else nn.Conv2d(channels, mid, 1, bias=False)
        self.conv = nn.Conv2d(mid or channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        N, C, H, W = x.shape
        v = x.view(N // T, T, C, H, W)
        p = v.mean(1)
        if self.reduce is not None:
            p = F.relu(self.reduce(p))
        g = torch.sigmoid(self.conv(p)).unsqueeze(1)
        return (v * g).view(N, C, H, W)


class STCConv(nn.Module):
    """STC's middle conv: ``cat([S_T(x[:, :a]), T_S(x[:, a:])])`` on (B*T, C, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, alpha: float = 0.75,
                 reduction: Optional[int] = None, shift: bool = True, tr: bool = True, sr: bool = True,
                 equal: bool = False, shift_div: int = 8):
        super().__init__()
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha (S_T share of the channels) must be in [0, 1], got {alpha}")
        if reduction is not None and (not isinstance(reduction, int) or isinstance(reduction, bool)
                                      or reduction < 1):
            raise ValueError(f"reduction must be a positive int (STC-Light's r), got {reduction!r}")
        if equal and not 0 < alpha < 1:
            raise ValueError(f"STC-Equal needs both blocks: alpha must be in (0, 1), got {alpha}")
        self.alpha, self.equal, self.shift_div = alpha, equal, shift_div
        self.shift = shift
        s_out = round(out_channels * alpha)
        self.s_in = in_channels // 2 if equal else round(in_channels * alpha)
        t_out, t_in = out_channels - s_out, in_channels - self.s_in
        if (s_out == 0) != (self.s_in == 0) or (t_out == 0) != (t_in == 0):
            raise ValueError(f"alpha={alpha} leaves a block with inputs but no outputs")
        self.spatial = nn.Conv2d(self.s_in, s_out, 3, stride, 1, bias=False) if s_out else None
        self.tr = TemporalRefine(s_out, reduction) if s_out and tr else None
        self.temporal = FrameConv3d(t_in, t_out, (3, 1, 1), stride) if t_out else None
        self.sr = SpatialRefine(t_out, reduction) if t_out and sr else None

    def s_t(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if self.shift:
            x = temporal_shift(x, T, self.shift_div)
        y = self.spatial(x)
        return y if self.tr is None else self.tr(y, T)

    def t_s(self, x: torch.Tensor, T: int) -> torch.Tensor:
        y = self.temporal(x, T)
        return y if self.sr is None else self.sr(y, T)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if self.temporal is None:
            return self.s_t(x, T)
        if self.spatial is None:
            return self.t_s(x, T)
        return torch.cat((self.s_t(x[:, :self.s_in], T), self.t_s(x[:, self.s_in:], T)), 1)

    def load_imagenet(self, param: str, w2d: torch.Tensor) -> bool:
        """S_T's 3x3 conv takes ``w2d[:its outputs, :its inputs]`` of the ImageNet kernel (GST's
        slicing); T_S and the refinement convs are new layers and keep their random init."""
        if param != "weight" or w2d.dim() != 4:
            return False
        if self.spatial is not None:
            sw = self.spatial.weight
            with torch.no_grad():
                sw.copy_(w2d[:sw.shape[0], :sw.shape[1]])
        return True

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, equal={self.equal}, shift={self.shift}"


def stc_conv2(alpha: float = 0.75, reduction: Optional[int] = None, shift: bool = True, tr: bool = True,
              sr: bool = True, equal: bool = False):
    """Slot factory: an :class:`STCConv` in every block (output order [S_T, T_S])."""
    STCConv(64, 64, 1, alpha, reduction, shift, tr, sr, equal)  # validate now

    def make(ctx: BlockCtx):
        return STCConv(slot_in(ctx), ctx.width, ctx.stride, alpha, reduction, shift, tr, sr, equal)
    return make


def stc_slots(alpha: float = 0.75, reduction: Optional[int] = None, shift: bool = True, tr: bool = True,
              sr: bool = True, equal: bool = False, **slots) -> Slots:
    return Slots(conv2=stc_conv2(alpha, reduction, shift, tr, sr, equal), **slots)


@register_arch("stc_r50", family="stc")
def stc_r50(num_classes, num_frames, alpha=0.75, shift=True, tr=True, sr=True, equal=False, dropout=0.5):
    """STC on ResNet-50: every block's middle conv split into S_T (``alpha`` of the channels:
    temporal shift, 3x3 conv, temporal refinement) and T_S (the rest: 3x1x1 conv, spatial
    refinement), concatenated. Ablations: ``equal`` (STC-Equal: input split in half),
    ``shift=False`` (NonShift-STC), ``tr`` / ``sr`` off (Table III; all three off = Sim-STC)."""
    return VideoResNet(50, num_classes, stc_slots(alpha, None, shift, tr, sr, equal), dropout=dropout,
                       num_frames=num_frames)


@register_arch("stc_light_r50", family="stc")
def stc_light_r50(num_classes, num_frames, alpha=0.75, reduction=4, shift=True, tr=True, sr=True, equal=False,
                  dropout=0.5):
    """STC-Light on ResNet-50: STC whose refinement blocks first reduce the channels to
    max(8, C / ``reduction``) with a 1x1 conv and a ReLU (default r = 4)."""
    return VideoResNet(50, num_classes, stc_slots(alpha, reduction, shift, tr, sr, equal), dropout=dropout,
                       num_frames=num_frames)
