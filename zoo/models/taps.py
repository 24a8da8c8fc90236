"""3D convolutions run as 2D ones: the fast path for the small Conv3d layers of calibrators.

PyTorch's CPU ``conv3d`` falls back to ``slow_conv3d`` (im2col + GEMM, with zero fills) for
small inputs and batch 1 - the case of every gate conv in GC and AIA, which see one pooled or
sliced map per clip. :func:`tap_conv` computes the same convolution (kernel (kd, kh, kw),
padding (kd//2, ph, pw), stride 1) with ONE ``conv2d`` whose output channels are the kd taps,
then sums the taps shifted along the first axis. Same weights, same multiply-adds (fvcore counts
the same FLOPs), no im2col; exported by jit.trace, torch.export and ONNX as plain ops.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["tap_conv"]


def tap_conv(x: torch.Tensor, weight: torch.Tensor, depth: int, padding=(0, 0)) -> torch.Tensor:
    """``conv3d`` over (B, C, D, H, W) computed on the layout (B*D, C, H, W).

    ``x``: (B*D, C, H, W), slice d of sample b at row b*D + d. ``weight``: a Conv3d weight
    (O, C, kd, kh, kw), kd odd, temporal padding kd//2. Returns (B*D, O, H', W')."""
    N, C, H, W = x.shape
    O, _, kd, kh, kw = weight.shape
    # taps as output channels: (kd*O, C, kh, kw), tap-major
    a = F.conv2d(x, weight.permute(2, 0, 1, 3, 4).reshape(kd * O, C, kh, kw), None, 1, padding)
    if kd == 1:
        return a
    h, w = a.shape[-2:]
    a = a.view(N // depth, depth, kd, O, h, w)
    p = kd // 2
    out = a[:, :, p]
    for k in range(kd):
        d = k - p  # output slice i reads tap k at input slice i + d
        if d < 0:
            out = out + F.pad(a[:, :d, k], (0, 0, 0, 0, 0, 0, -d, 0))
        elif d > 0:
            out = out + F.pad(a[:, d:, k], (0, 0, 0, 0, 0, 0, 0, d))
    return out.reshape(N, O, h, w)
