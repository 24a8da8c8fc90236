"""Temporal operators for the ``temporal`` slot.

TSM's shift costs no arithmetic, only data movement, so at inference it moves as little as it
can: fused into a bottleneck's 1x1 conv1 it moves nothing (:func:`shift_conv1x1`); before
any other conv it shifts the block input in place and back (:func:`shift_`). Training, traced,
exported and compiled graphs use the plain shifted copy (:func:`temporal_shift`)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ops import Conv1x1, eager, inference

__all__ = ["temporal_shift", "shift_conv1x1", "shift_", "unshift_", "TemporalShift", "shift_slot"]



def temporal_shift(x: torch.Tensor, T: int, fold_div: int = 8, memory_format=None) -> torch.Tensor:
    """TSM's bidirectional shift on (B*T, C, H, W).

    Channels [0, C/fold_div) take frame t+1, [C/fold_div, 2C/fold_div) take frame t-1, the
    rest stay; the missing ends are zero. Built from padded slices joined by one ``torch.cat``
    (no zero-filled output plus slice assignment, which traces to a constant in ONNX).
    At inference, one copy into a new tensor, laid out as ``memory_format`` if given.
    """
    N, C, H, W = x.shape
    fold = C // fold_div
    v = x.view(N // T, T, C, H, W)
    if inference() and (memory_format is not None
                        or (x.stride(-1) == 1 and not x.is_contiguous(memory_format=torch.channels_last))):
        # one copy of every element (the padded parts below are copied twice)
        out = torch.empty((N, C, H, W), dtype=x.dtype, device=x.device,
                          memory_format=memory_format or torch.contiguous_format)
        out = out.view(N // T, T, C, H, W)
        out[:, :-1, :fold] = v[:, 1:, :fold]
        out[:, -1, :fold] = 0
        out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]
        out[:, 0, fold:2 * fold] = 0
        out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
        return out.view(N, C, H, W)
    # F.pad pads from the last dim backwards: (W, W, H, H, C, C, T_front, T_back)
    fwd = F.pad(v[:, 1:, :fold], (0, 0, 0, 0, 0, 0, 0, 1))
    bwd = F.pad(v[:, :-1, fold:2 * fold], (0, 0, 0, 0, 0, 0, 1, 0))
    out = torch.cat((fwd, bwd, v[:, :, 2 * fold:]), dim=2).view(N, C, H, W)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def _plain_1x1(conv) -> bool:
    return type(conv) in (nn.Conv2d, Conv1x1) and conv.kernel_size == (1, 1) \
        and conv.stride == (1, 1) and conv.padding == (0, 0) and conv.groups == 1


def shift_conv1x1(x: torch.Tensor, T: int, conv: nn.Conv2d, fold_div: int = 8) -> torch.Tensor:
    """``conv(temporal_shift(x, T))`` for a 1x1 ``conv`` without moving any data: a 1x1 conv is a
    product over channels, so it splits into the unshifted channels' product with every frame,
    plus the shifted channels' products added into the neighbouring frames' outputs (GEMMs
    accumulating in place, reading ``x`` where it lies). Same multiply-adds as the conv; x is
    (B*T, C, H, W) with a unit W stride."""
    N, C, H, W = x.shape
    f = C // fold_div
    w = conv.weight.view(conv.out_channels, C)
    O, B = w.shape[0], N // T
    xv = x.reshape(N, C, H * W)
    y = torch.bmm(w[:, 2 * f:].expand(N, O, C - 2 * f), xv[:, 2 * f:])
    if f and T > 1:
        wf, wb = w[:, :f].expand(T - 1, O, f), w[:, f:2 * f].expand(T - 1, O, f)
        for b in range(B):  # clips: no product crosses a clip border
            xb, yb = xv[b * T:(b + 1) * T], y[b * T:(b + 1) * T]
            yb[:-1].baddbmm_(wf, xb[1:, :f])          # frame t takes channels [0, f) of t + 1
            yb[1:].baddbmm_(wb, xb[:-1, f:2 * f])     # and channels [f, 2f) of t - 1
    y = y.view(N, O, H, W)
    return y if conv.bias is None else y + conv.bias.view(1, O, 1, 1)


def shift_(x: torch.Tensor, T: int, fold_div: int = 8) -> torch.Tensor:
    """:func:`temporal_shift` in place on contiguous (B*T, C, H, W) frames; returns the
    original shifted channels, which :func:`unshift_` puts back.

    Only the 2/fold_div shifted channels are copied (out, shifted in, and back): about 3.5x
    less time than the shifted copy of the whole tensor (3.6 ms against 12.9 ms over the 16
    blocks of a ResNet-50 at 8x224x224 on 2 EPYC cores)."""
    N, C, H, W = x.shape
    f = C // fold_div
    v = x.view(N // T, T, C, H, W)
    kept = v[:, :, :2 * f].clone()
    v[:, :-1, :f].copy_(kept[:, 1:, :f])
    v[:, -1, :f].zero_()
    v[:, 1:, f:2 * f].copy_(kept[:, :-1, f:])
    v[:, 0, f:2 * f].zero_()
    return kept


def unshift_(x: torch.Tensor, T: int, kept: torch.Tensor, fold_div: int = 8) -> None:
    """Undo :func:`shift_` in place."""
    N, C, H, W = x.shape
    x.view(N // T, T, C, H, W)[:, :, :2 * (C // fold_div)].copy_(kept)


class TemporalShift(nn.Module):
    """Residual temporal shift (TSM "blockres"), 1/fold_div of the channels each way.

    ``forward`` returns a shifted copy. ``around(x, T, fn)`` = ``fn(forward(x, T))`` without the
    copy where it can (eager mode; traced, exported and compiled graphs keep the copy):

    * ``fn`` a plain 1x1 conv (a bottleneck's conv1) on NCHW frames of at least 128 pixels (or
      whenever the in-place shift below is not allowed): :func:`shift_conv1x1`, no data moves;
    * otherwise, with ``inplace=True`` (what the slot builds: the block owns its input while
      conv1 runs) and autograd off (``zoo.models.ops.inference``): ``x`` is shifted in
      place for the call and shifted back (:func:`shift_`), moving a fraction of the copy."""

    def __init__(self, fold_div: int = 8, inplace: bool = False):
        super().__init__()
        self.fold_div = fold_div
        self.inplace = inplace

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        return temporal_shift(x, T, self.fold_div)

    def around(self, x: torch.Tensor, T: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        # fused where its per-frame products are wide enough: on 7x7 maps (49 columns each)
        # oneDNN's conv of the in-place shifted input is faster (5.1 vs 6.3 ms at 2048->512)
        if _plain_1x1(fn) and x.dim() == 4 and x.stride(-1) == 1 and eager() \
                and (x.shape[-2] * x.shape[-1] >= 128 or not (self.inplace and inference())):
            return shift_conv1x1(x, T, fn, self.fold_div)
        # autograd off: with it on, fn might save the shifted x for its backward
        if not (self.inplace and x.is_contiguous() and inference()):
            return fn(temporal_shift(x, T, self.fold_div))
        kept = shift_(x, T, self.fold_div)
        try:
            return fn(x)
        finally:
            unshift_(x, T, kept, self.fold_div)

    def extra_repr(self) -> str:
        return f"fold_div={self.fold_div}" + (", inplace=True" if self.inplace else "")


def shift_slot(fold_div: int = 8):
    """Slot factory: a shift in every block (in place around conv1 at inference)."""
    return lambda ctx: TemporalShift(fold_div, inplace=True)
