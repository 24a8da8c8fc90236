"""Shared modules: the calibrators' 1x1 conv."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.models.ops import Conv1x1


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
