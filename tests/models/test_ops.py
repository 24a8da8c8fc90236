"""Shared operators: the 1x1 conv as a product, the eval BN fold, the cache and the in-place rule."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.models.ops import Conv1x1, cached, eager, may_overwrite, pointwise, pointwise_bn, series_conv, taps_of, temporal_conv


@pytest.mark.parametrize("stride", [1, 2])
def test_pointwise_equals_conv2d(stride):
    x = torch.randn(4, 24, 9, 9)
    w, b = torch.randn(40, 16, 1, 1), torch.randn(40)
    part = x[:, 4:20]  # a channel slice, read where it lies
    torch.testing.assert_close(pointwise(part, w, b, stride), F.conv2d(part, w, b, stride), rtol=1e-5, atol=1e-5)
    cl = part.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(pointwise(cl, w, None, stride), F.conv2d(cl, w, None, stride), rtol=1e-5, atol=1e-5)


def test_conv1x1_is_a_conv2d_with_the_same_state():
    m = Conv1x1(8, 4, bias=True)
    assert isinstance(m, nn.Conv2d) and set(m.state_dict()) == {"weight", "bias"}
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    ref = F.conv2d(x, m.weight, m.bias)
    torch.testing.assert_close(m(x), ref, rtol=1e-5, atol=1e-6)
    g1 = torch.autograd.grad(m(x).sum(), (x, m.weight))
    g2 = torch.autograd.grad(ref.sum(), (x, m.weight))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _bn(c):
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    return bn


def test_pointwise_bn_folds_at_eval_and_follows_new_weights():
    conv, bn = nn.Conv2d(16, 32, 1, bias=False), _bn(32).eval()
    x = torch.randn(3, 16, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(pointwise_bn(x, conv, bn), bn(conv(x)), rtol=1e-4, atol=1e-5)
        # the folded weights are cached; loading new values must invalidate them
        conv.load_state_dict({"weight": torch.randn(32, 16, 1, 1)})
        bn.running_var.mul_(3)
        torch.testing.assert_close(pointwise_bn(x, conv, bn), bn(conv(x)), rtol=1e-4, atol=1e-5)
    bn.train()  # training: the plain ops (batch statistics)
    torch.testing.assert_close(pointwise_bn(x, conv, bn), bn(conv(x)))


def test_cached_recomputes_only_on_change():
    owner, t = nn.Module(), torch.zeros(3)
    calls = []

    def make():
        calls.append(1)
        return t.sum()

    cached(owner, "_x", make, t)
    cached(owner, "_x", make, t)
    assert len(calls) == 1
    t.add_(1)
    assert cached(owner, "_x", make, t) == 3 and len(calls) == 2


def test_may_overwrite_rules():
    p = torch.zeros(2, requires_grad=True)
    assert not may_overwrite(p)
    assert may_overwrite(torch.zeros(2))
    with torch.no_grad():
        assert may_overwrite(p)
    seen = []

    def f(x):
        seen.append((eager(), may_overwrite(x)))
        return x * 2

    with torch.no_grad():
        torch.jit.trace(f, (torch.zeros(2),), check_trace=False)
    assert seen == [(False, False)]


def test_folded_bn_is_not_reused_with_autograd():
    # eval model, first under inference_mode (fills the cache), then gradients in eval mode
    conv, bn = nn.Conv2d(8, 16, 1, bias=False), _bn(16).eval()
    x = torch.randn(2, 8, 4, 4)
    with torch.inference_mode():
        pointwise_bn(x, conv, bn)
    out = pointwise_bn(x, conv, bn)
    (g,) = torch.autograd.grad(out.sum(), conv.weight)
    (ref,) = torch.autograd.grad(bn(conv(x)).sum(), conv.weight)
    torch.testing.assert_close(g, ref)


@pytest.mark.parametrize("B, T, C, O, k, L", [
    (1, 8, 16, 16, 3, 96),    # one clip, wide maps: products per frame accumulated in place
    (1, 8, 24, 12, 3, 9),     # one clip, small maps: frames side by side as columns
    (1, 5, 8, 8, 5, 70), (1, 2, 8, 8, 5, 9), (1, 1, 8, 4, 3, 80),
    (3, 4, 8, 6, 3, 20), (2, 1, 8, 6, 3, 9),  # several clips: one product, shifted sums
])
@pytest.mark.parametrize("bias", [False, True])
def test_temporal_conv_equals_conv3d(B, T, C, O, k, L, bias):
    torch.manual_seed(0)
    w, b = torch.randn(O, C, k, 1, 1), (torch.randn(O) if bias else None)
    frames = torch.randn(B, T, C + 4, L)[:, :, 2:C + 2]  # a channel slice, as the calibrators read it
    ref = F.conv3d(frames.permute(0, 2, 1, 3).unsqueeze(-1), w, b, padding=(k // 2, 0, 0))
    ref = ref.squeeze(-1).permute(0, 2, 1, 3)  # (B, T, O, L)
    out = temporal_conv(frames, taps_of(w), b)
    assert out.shape == (B, T, O, L) and out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert torch.equal(taps_of(w.view(O, C, k))[1], w[:, :, 1, 0, 0])


@pytest.mark.parametrize("B, T, C, O, k", [(1, 8, 16, 16, 3), (2, 5, 12, 8, 5), (3, 1, 8, 4, 3)])
def test_series_conv_equals_conv1d(B, T, C, O, k):
    p = torch.randn(B, T, C + 2)[..., 1:C + 1]
    w, b = torch.randn(O, C, k), torch.randn(O)
    for bias in (None, b):
        ref = F.conv1d(p.transpose(1, 2), w, bias, padding=k // 2).transpose(1, 2)
        torch.testing.assert_close(series_conv(p, w, bias), ref, rtol=1e-5, atol=1e-5)
