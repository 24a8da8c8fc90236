"""Small operators shared by the families: fast 1x1 convs, and when activations may be overwritten."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["pointwise", "pointwise_bn", "fold_bn", "cached", "Conv1x1", "may_overwrite", "eager", "inference",
           "temporal_conv", "series_conv", "taps_of", "block_mean"]


def eager() -> bool:
    """Not being traced, exported or compiled: eager-only shortcuts (in-place writes, BN folded
    into a conv) are allowed. Traced graphs keep the plain ops, which is also what fvcore counts."""
    return not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())


def inference() -> bool:
    """Eager and autograd off (``no_grad`` or ``inference_mode``): nothing this forward computes
    can be saved for a backward, so inputs may be modified for a while and derived weights reused."""
    return eager() and not torch.is_grad_enabled()


def may_overwrite(*tensors: torch.Tensor) -> bool:
    """True when a module may write its result into a block-internal activation: no autograd
    graph needs the old values (inference, or nothing requires grad), and the forward is not
    being traced, exported or compiled (those capture a functional graph; the ONNX exporter in
    particular can turn writes into slices into constants)."""
    return eager() and (not torch.is_grad_enabled() or not any(t.requires_grad for t in tensors))


def pointwise(x: torch.Tensor, weight: torch.Tensor, bias=None, stride: int = 1) -> torch.Tensor:
    """A 1x1 convolution (``weight`` (O, C, 1, 1)) of frames (N, C, H, W), as ``F.conv2d``.

    On NCHW frames it runs as one batched matrix product, which reads a channel slice of a
    larger tensor where it lies and allocates nothing but its output. On 2 EPYC cores it takes
    0.24-0.44 ms where oneDNN's NCHW 1x1 conv takes 0.33-0.57 ms for the calibrators' shapes
    (16->48 at 56x56 ... 128->384 at 7x7, 8 frames), and with glibc's default allocator the
    conv's fresh scratch buffers can cost it 10x that (16->48: 4.4 ms). fvcore counts the same
    multiply-adds (bmm: N*O*C*H*W), which ``zoo.complexity`` reports under ``conv`` for
    ``Conv1x1`` and ``FrameConv3d``. Channels-last frames keep ``conv2d``, whose kernel is fast.
    """
    if x.dim() != 4 or x.stride(-1) != 1:
        return F.conv2d(x, weight, bias, stride)
    if stride > 1:
        x = x[:, :, ::stride, ::stride]
    N, C, H, W = x.shape
    O = weight.shape[0]
    y = torch.bmm(weight.reshape(O, C).expand(N, O, C), x.reshape(N, C, H * W)).view(N, O, H, W)
    return y if bias is None else y + bias.view(1, O, 1, 1)


class Conv1x1(nn.Conv2d):
    """``nn.Conv2d(in, out, 1, stride, bias=bias)`` (same parameters and state dict) whose
    forward is :func:`pointwise`."""

    bmm_is_conv = True  # zoo.complexity: the batched product it may run counts as this conv

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, bias: bool = False):
        super().__init__(in_channels, out_channels, 1, stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pointwise(x, self.weight, self.bias, self.stride[0])


def cached(owner: nn.Module, slot: str, make, *tensors: torch.Tensor):
    """``make()``, kept on ``owner`` until one of ``tensors`` changes (in place: version
    counter; replaced or moved: storage address). For weights derived at inference (a BN folded
    into a conv): a dozen small ops per block, a few percent of a batch-1 CPU forward."""
    key = tuple((t._version, t.data_ptr()) for t in tensors)
    hit = owner.__dict__.get(slot)
    if hit is not None and hit[0] == key:
        return hit[1]
    value = make()
    owner.__dict__[slot] = (key, value)
    return value


def fold_bn(weight: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm):
    """(weight, bias) of a bias-free conv followed by ``bn`` in eval mode, as one conv."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return weight * scale.view(-1, *[1] * (weight.dim() - 1)), bn.bias - bn.running_mean * scale


def pointwise_bn(x: torch.Tensor, conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """``bn(conv(x))`` for a bias-free 1x1 ``conv``. In eager eval on NCHW frames the BN is folded
    into the product (one GEMM writing the output once, instead of a GEMM output and a BN
    output: two full-size buffers and passes less). Only with autograd off (the folded weights
    are cached); training, gradients in eval, traced graphs and fvcore keep the two ops, so
    counts and exported graphs are the network's own."""
    if bn.training or not bn.track_running_stats or not bn.affine or x.dim() != 4 or x.stride(-1) != 1 \
            or not inference():
        return bn(conv(x))
    w, b = cached(bn, "_folded", lambda: fold_bn(conv.weight, bn), conv.weight, bn.weight, bn.bias,
                  bn.running_mean, bn.running_var)
    N, C, H, W = x.shape
    O = w.shape[0]
    y = torch.baddbmm(b.view(1, O, 1).expand(N, O, H * W), w.reshape(O, C).expand(N, O, C), x.reshape(N, C, H * W))
    return y.view(N, O, H, W)


def temporal_conv(x: torch.Tensor, taps: torch.Tensor, bias=None) -> torch.Tensor:
    """A temporal convolution (kernel k, zero padding k // 2) of per-frame channel vectors, for
    inference: x (B, T, C, L) with each frame's (C, L) block contiguous, ``taps`` (k, O, C),
    ``bias`` (O,) or None -> a new (B, T, O, L). Same multiply-adds as the Conv3d (k, 1, 1).

    For one clip, each tap's product is accumulated straight into the output frames it feeds
    (k products into one buffer: no k*O-channel intermediate, no shifted sums). Several clips:
    one product for all taps, then shifted sums."""
    B, T, C, L = x.shape
    k, O = taps.shape[:2]
    p = k // 2
    f = x.reshape(B * T, C, L)
    if B == 1 and L <= 64:
        # small maps (layer4, pooled branches): one frame's product is too narrow for a fast
        # GEMM, so the frames sit side by side as (C, T*L) columns and each tap is one product
        # on a column range (a small transposed copy in and out)
        X = f.transpose(0, 1).reshape(C, T * L)
        Y = torch.mm(taps[p], X) if bias is None else torch.addmm(bias.view(O, 1), taps[p], X)
        for i in range(k):
            d = i - p
            if 0 < -d < T:
                Y[:, -d * L:].addmm_(taps[i], X[:, :(T + d) * L])
            elif 0 < d < T:
                Y[:, :(T - d) * L].addmm_(taps[i], X[:, d * L:])
        return Y.view(O, T, L).transpose(0, 1).contiguous().view(1, T, O, L)
    if B == 1:
        mid = taps[p].expand(T, O, C)
        y = torch.bmm(mid, f) if bias is None else torch.baddbmm(bias.view(1, O, 1).expand(T, O, L), mid, f)
        for i in range(k):
            d = i - p  # output frame t reads input frame t + d
            if 0 < -d < T:
                y[-d:].baddbmm_(taps[i].expand(T + d, O, C), f[:d])
            elif 0 < d < T:
                y[:-d].baddbmm_(taps[i].expand(T - d, O, C), f[d:])
        return y.view(1, T, O, L)
    a = torch.bmm(taps.reshape(k * O, C).expand(B * T, k * O, C), f).view(B, T, k, O, L)
    y = a[:, :, p]
    if bias is not None:
        y = y + bias.view(O, 1)
    else:
        y = y.clone()
    for i in range(k):
        d = i - p
        if 0 < -d < T:
            y[:, -d:] += a[:, :d, i]
        elif 0 < d < T:
            y[:, :-d] += a[:, d:, i]
    return y


def series_conv(p: torch.Tensor, weight: torch.Tensor, bias=None) -> torch.Tensor:
    """``conv1d`` over time (zero padding k // 2) of pooled series p (B, T, C) with ``weight``
    (O, C, k) -> (B, T, O), as one product with the unfolded series. For inference: PyTorch's
    conv1d on 8 steps is slower at every width here (0.32 ms against 0.14 ms at 384 channels)."""
    B, T, C = p.shape
    O, _, k = weight.shape
    x = F.pad(p, (0, 0, k // 2, k // 2)).unfold(1, k, 1).reshape(B * T, C * k)  # [t, c*k + i] = p[t + i - k//2, c]
    w = weight.reshape(O, C * k).t()
    return (torch.mm(x, w) if bias is None else torch.addmm(bias, x, w)).view(B, T, O)


def taps_of(weight: torch.Tensor) -> torch.Tensor:
    """A temporal conv's weight (O, C, k) or (O, C, k, 1, 1) as the (k, O, C) taps of
    :func:`temporal_conv`."""
    return weight.reshape(weight.shape[0], weight.shape[1], weight.shape[2]).permute(2, 0, 1).contiguous()


def block_mean(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """``F.avg_pool2d(x, (kh, kw))`` (remainder rows and columns dropped, as its floor) as sums
    of strided views: PyTorch's NCHW avg_pool2d (and adaptive_avg_pool2d) take about 4x as long
    for 2x2 windows on 2 cores. For inference paths (fvcore counts neither)."""
    *lead, H, W = x.shape
    h, w = H // kh, W // kw
    if (h * kh, w * kw) != (H, W):
        x, W = x[..., :h * kh, :w * kw], w * kw
    rows = x.reshape(-1, h, kh, W)
    s = rows[:, :, 0]
    for i in range(1, kh):
        s = s + rows[:, :, i]
    cols = s.reshape(-1, h, w, kw)
    out = cols[..., 0]
    for j in range(1, kw):
        out = out + cols[..., j]
    return out.mul_(1.0 / (kh * kw)).view(*lead, h, w)
