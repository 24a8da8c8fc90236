"""STC / STC-Light: the paper's module, written out naively on (B, C, T, H, W), Table I's counts,
the ablation switches, and every registered name."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.complexity import count_params
from zoo.factory import create_model
from zoo.models.conv3d import C3DConv, P3DConv
from zoo.models.gst import GSTConv
from zoo.models.stc import STCConv, stc_conv2
from zoo.registry import list_models


def _shift5(x, fold_div=8):
    """TSM's shift on (B, C, T, H, W), written with index assignment (test-only reference)."""
    out = torch.zeros_like(x)
    f = x.shape[1] // fold_div
    out[:, :f, :-1] = x[:, :f, 1:]
    out[:, f:2 * f, 1:] = x[:, f:2 * f, :-1]
    out[:, 2 * f:] = x[:, 2 * f:]
    return out


def _reference(m: STCConv, x5, stride):
    """The paper's S_T / T_S on (B, C, T, H, W) with 3D convs, using the module's weights."""
    parts = []
    xs, xt = x5[:, :m.s_in], x5[:, m.s_in:]
    if m.spatial is not None:
        y = F.conv3d(_shift5(xs) if m.shift else xs, m.spatial.weight.unsqueeze(2), None, (1, stride, stride),
                     (0, 1, 1))
        if m.tr is not None:
            p = y.mean((3, 4))
            if m.tr.reduce is not None:
                p = F.relu(m.tr.reduce(p))
            y = y * torch.sigmoid(m.tr.conv(p))[..., None, None]
        parts.append(y)
    if m.temporal is not None:
        y = F.conv3d(xt, m.temporal.weight, None, (1, stride, stride), (1, 0, 0))
        if m.sr is not None:
            p = y.mean(2)
            if m.sr.reduce is not None:
                p = F.relu(m.sr.reduce(p))
            y = y * torch.sigmoid(m.sr.conv(p)).unsqueeze(2)
        parts.append(y)
    return torch.cat(parts, 1)


@pytest.mark.parametrize("kwargs,stride", [
    ({}, 1), ({}, 2), ({"reduction": 4}, 1), ({"reduction": 2}, 2), ({"equal": True}, 1),
    ({"alpha": 0.0}, 1), ({"alpha": 1.0}, 2), ({"shift": False, "tr": False, "sr": False}, 1),
    ({"alpha": 0.25, "tr": False}, 1),
])
def test_matches_paper_module(kwargs, stride):
    torch.manual_seed(0)
    m = STCConv(64, 64, stride, **kwargs)
    for mod in m.modules():  # random weights everywhere, so every path is exercised
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.normal_(mod.weight, 0, 0.1)
    B, T = 2, 5
    x5 = torch.randn(B, 64, T, 9, 9)
    frames = x5.transpose(1, 2).reshape(B * T, 64, 9, 9)
    out = m(frames, T)
    ref = _reference(m, x5, stride)
    torch.testing.assert_close(out, ref.transpose(1, 2).reshape(out.shape), rtol=1e-4, atol=1e-5)
    # eval mode without autograd: one clip and two
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(m(frames, T), out, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(m(frames[:T], T), out[:T], rtol=1e-4, atol=1e-5)


def test_table1_module_params():
    """Table I at C = 64 (alpha = 3/4, r = 4): every module's middle-layer parameters."""
    n = lambda m: sum(p.numel() for n_, p in m.named_parameters() if n_.endswith("weight") and p.dim() > 1)
    assert n(nn.Conv2d(64, 64, 3)) == 36_864                    # C2D
    assert n(C3DConv(64, 64)) == 110_592                         # C3D
    assert n(P3DConv(64, 64)) == 49_152                          # P3D (its BN: 128 more)
    assert n(GSTConv(64, 64, alpha=0.25)) == 27_648              # GST (STC's alpha = 3/4 spatial)
    assert count_params(STCConv(64, 64)) == 30_720               # STC: no BN, no bias
    # STC-Light: Table I's formula ignores the paper's own max(8, C/r) rule; T_S-Light's 16
    # channels reduce to 8, not 4, so ours has 640 more at C = 64 ...
    assert count_params(STCConv(64, 64, reduction=4)) == 24_448 + 640
    # ... and exactly the formula wherever the minimum does not bite
    c, a, r = 256, 0.75, 4
    assert count_params(STCConv(c, c, reduction=r)) == ((9 + 4 / r) * a * a + (3 + 10 / r) * (1 - a) ** 2) * c * c


def test_ablation_switches():
    m = STCConv(64, 64, shift=False, tr=False, sr=False)  # Sim-STC
    assert m.tr is None and m.sr is None and not m.shift
    assert STCConv(64, 64, alpha=0.0).spatial is None
    assert STCConv(64, 64, alpha=1.0).temporal is None
    eq = STCConv(64, 64, equal=True)
    assert eq.spatial.weight.shape == (48, 32, 3, 3) and eq.temporal.weight.shape == (16, 32, 3, 1, 1)
    light = STCConv(64, 64, reduction=4)
    assert light.tr.reduce.out_channels == 12 and light.sr.reduce.out_channels == 8  # max(8, 16 // 4)
    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = light

        def forward(self, x):
            return self.m(x, 4)

    traced = torch.jit.trace(Wrap(), (torch.randn(8, 64, 6, 6),))
    x = torch.randn(8, 64, 6, 6)
    torch.testing.assert_close(traced(x), light(x, 4))


def test_every_name_builds_and_runs():
    names = list_models(["stc_*", "c3d_*", "p3d_*"])
    assert {"stc_r50", "stc_light_r50", "stc_r50_ssv1_8f", "stc_light_r50_ssv2_16f", "stc_r50_ssv1_8f16f",
            "c3d_r50", "p3d_r50"} <= set(names)
    for name in ("stc_r50", "stc_light_r50"):
        model = create_model(name, num_classes=5).eval()
        with torch.no_grad():
            for T in (8, 5):
                assert model(torch.randn(2, 3, T, 64, 64)).shape == (2, 5)
    for kw in ({"alpha": 0.0}, {"alpha": 1.0}, {"equal": True}, {"shift": False}, {"tr": False, "sr": False}):
        stc_conv2(**kw)  # every switch builds


def test_bad_kwargs():
    with pytest.raises(ValueError, match="alpha"):
        create_model("stc_r50", alpha=1.5)
    with pytest.raises(ValueError, match="reduction"):
        create_model("stc_light_r50", reduction=0)
    with pytest.raises(ValueError, match="STC-Equal"):
        create_model("stc_r50", alpha=1.0, equal=True)
    with pytest.raises(TypeError, match="accepts"):
        create_model("stc_r50", reduction=4)
