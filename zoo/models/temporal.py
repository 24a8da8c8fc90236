"""Temporal operators for the ``temporal`` slot: TSM's residual shift.

The shift is written once, as the plain op every mode runs (training, tracing, export,
``torch.compile``); the inference forms (the shift fused into the next 1x1 conv, or done in
place around it) live in :mod:`zoo.deploy`, which times them on the running machine."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["temporal_shift", "TemporalShift", "shift_slot"]


def temporal_shift(x: torch.Tensor, T: int, fold_div: int = 8) -> torch.Tensor:
    """TSM's bidirectional shift on (B*T, C, H, W).

    Channels [0, C/fold_div) take frame t+1, [C/fold_div, 2C/fold_div) take frame t-1, the
    rest stay; the missing ends are zero. Built from padded slices joined by one ``torch.cat``
    (no zero-filled output plus slice assignment, which traces to a constant in ONNX). The
    output keeps the input's memory format (channels-last in, channels-last out)."""
    N, C, H, W = x.shape
    fold = C // fold_div
    v = x.view(N // T, T, C, H, W)
    # F.pad pads from the last dim backwards: (W, W, H, H, C, C, T_front, T_back)
    fwd = F.pad(v[:, 1:, :fold], (0, 0, 0, 0, 0, 0, 0, 1))
    bwd = F.pad(v[:, :-1, fold:2 * fold], (0, 0, 0, 0, 0, 0, 1, 0))
    out = torch.cat((fwd, bwd, v[:, :, 2 * fold:]), dim=2).flatten(0, 1)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out


class TemporalShift(nn.Module):
    """Residual temporal shift (TSM "blockres"), 1/fold_div of the channels each way."""

    def __init__(self, fold_div: int = 8):
        super().__init__()
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        return temporal_shift(x, T, self.fold_div)

    def extra_repr(self) -> str:
        return f"fold_div={self.fold_div}"


def shift_slot(fold_div: int = 8):
    """Slot factory: a shift in every block."""
    return lambda ctx: TemporalShift(fold_div)
