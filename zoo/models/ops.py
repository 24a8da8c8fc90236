"""Small modules shared by the families."""
from __future__ import annotations

import torch.nn as nn

__all__ = ["Conv1x1"]


class Conv1x1(nn.Conv2d):
    """``nn.Conv2d(in, out, 1, stride, bias=bias)`` (same parameters, state dict and forward):
    the 1x1 projections of the calibrators, a type of their own so that ``zoo.deploy`` can
    choose their kernel (the library conv or a batched product) by timing them."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, bias: bool = False):
        super().__init__(in_channels, out_channels, 1, stride, bias=bias)
