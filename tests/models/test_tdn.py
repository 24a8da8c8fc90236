"""TDN / GC-TDN against the authors' code (GC repository, ops_tdn), plus layout, options, errors."""
import pytest
import torch

import zoo
from tests.reference import assert_logits_close, fixture, original_state_dict, reference_input
from zoo.models.resnet import BlockCtx
from zoo.models.tdn import ShiftConv, TDNResNet, tdn_fusion, tdn_indices
from zoo.models.temporal import temporal_shift

CASES = [("gc_orgtdn_t8", "tdn_r50"), ("gc_tdn_t8", "gc_tdn_r50")]


def small(T, B=2, size=64):
    return torch.randn(B, 3, 5 * T, size, size, generator=torch.Generator().manual_seed(T))


@pytest.mark.parametrize("fx_name, arch", CASES)
def test_reference_logits_and_params(fx_name, arch):
    fx = fixture(fx_name)
    m = zoo.create_model(arch, num_classes=fx["num_classes"], num_frames=fx["num_segments"])
    assert sum(p.numel() for p in m.parameters()) == fx["params"]
    zoo.load_original(m, original_state_dict(fx), converter="tdn")
    with torch.no_grad():
        out = m.eval()(reference_input(fx["num_segments"], 112, frames_per_segment=5))
    assert_logits_close(out, fx["reference"]["logits"])


@pytest.mark.parametrize("fx_name, arch", CASES)
def test_flops_match_the_original_code(fx_name, arch):
    fx = fixture(fx_name)
    c = zoo.complexity(arch, num_classes=174, num_frames=8, input_size=224)
    assert c.input_shape == (1, 3, 40, 224, 224)  # 5 frames per segment enter the count
    assert c.flops == fx["flops_fvcore"]
    assert c.by_operator == fx["fvcore_by_operator"]
    # the kept-but-unused stem conv, and GC's ECal-S BN that the code never runs
    assert "conv1_temp" in c.uncalled_modules
    assert all(u == "conv1_temp" or u.endswith("calib.s.bn") for u in c.uncalled_modules)


@pytest.mark.parametrize("arch", ["tdn_r50", "gc_tdn_r50"])
@pytest.mark.parametrize("T", [8, 3, 1])
def test_input_T_is_free(arch, T):
    m = zoo.create_model(arch, num_classes=10, num_frames=8).eval()
    with torch.no_grad():
        out = m(small(T))
        feats = m.forward_features(small(T))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert feats.shape == (2, T, 2048)


def test_every_registered_name_builds_and_runs():
    names = zoo.list_models(["tdn_*", "gc_tdn_*"])
    assert {"tdn_r50", "gc_tdn_r50", "tdn_r50_ssv1_8f", "gc_tdn_r50_ssv1_8f", "gc_tdn_r50_k400_8f16f"} <= set(names)
    for name in names:
        m = zoo.create_model(name).eval()
        with torch.no_grad():
            out = m(small(2, B=1, size=32))
        assert out.shape[0] == 1 and torch.isfinite(out).all(), name


def test_frame_count_must_be_a_multiple_of_5():
    m = zoo.create_model("tdn_r50", num_classes=5)
    with pytest.raises(ValueError, match=r"\(B, 3, 5\*T, H, W\).*5t\.\.5t\+4.*got 8 frames"):
        m(torch.randn(1, 3, 8, 32, 32))
    with pytest.raises(ValueError, match="colour channels"):
        m(torch.randn(1, 10, 3, 32, 32))


def test_bad_kwargs_are_refused():
    with pytest.raises(TypeError, match="unexpected kwarg.*shift_div"):
        zoo.create_model("tdn_r50", shift_div=4)
    with pytest.raises(ValueError, match="fusion"):
        zoo.create_model("tdn_r50", fusion=(0.5,))
    with pytest.raises(ValueError, match="calibrators"):
        zoo.create_model("gc_tdn_r50", calibrators="xyz")
    with pytest.raises(ValueError, match="depth must be 50 or 101"):
        TDNResNet(depth=18)


def test_fusion_weights_follow_the_code_unless_given():
    assert tdn_fusion(8) == (0.5, 0.5)
    assert tdn_fusion(16) == tdn_fusion(4) == (0.75, 0.25)
    assert tdn_fusion(16, [0.5, 0.5]) == (0.5, 0.5)
    assert zoo.create_model("tdn_r50_ssv1_16f").fusion == (0.75, 0.25)
    assert zoo.create_model("tdn_r50_ssv1_8f").fusion == (0.5, 0.5)


def test_gc_position_per_block_and_diff_stream():
    m = zoo.create_model("gc_tdn_r50", num_classes=5, loop=True)
    assert [b.calib_at for b in m.layer1] == [b.calib_at for b in m.diff_layer1] == ["bn2"] * 3
    assert {b.calib_at for layer in (m.layer2, m.layer3, m.layer4) for b in layer} == {"bn1"}
    assert all(b.mid is None for b in m.layer1) and all(b.mid is not None for b in m.layer2)
    # the difference stream's layer1 is its own copy, with the loop counter of a fresh ResNet
    assert [b.calib.shift for b in m.diff_layer1] == [b.calib.shift for b in m.layer1] == [0, 1, 2]
    assert m.diff_layer1[0].conv1.weight.data_ptr() != m.layer1[0].conv1.weight.data_ptr()
    assert m.layer2[0].conv1.bias is not None and m.layer2[0].mid.mse.conv1.bias is None


def test_unused_conv_never_runs_and_seeds_the_difference_stem():
    m = zoo.create_model("tdn_r50", num_classes=5).eval()
    calls = []
    m.conv1_temp.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        m(small(2, B=1, size=32))
    assert not calls
    w = m.conv1_temp.weight.mean(1, keepdim=True)
    assert torch.equal(m.diff_conv1.weight, w.expand(-1, 12, -1, -1))


def test_shift_conv_starts_as_the_tsm_shift():
    x = torch.randn(2 * 4, 16, 3, 3)
    assert torch.allclose(ShiftConv(16)(x, 4), temporal_shift(x, 4), atol=0)


def test_converter_drops_the_duplicate_stem_conv_of_early_tdn_code():
    fx = fixture("gc_orgtdn_t8")
    sd = original_state_dict(fx)
    sd["module.base_model.conv1_temp1.weight"] = sd["module.base_model.conv1_temp.weight"]
    sd["module.base_model.conv1_temp1.bias"] = sd["module.base_model.conv1_temp.bias"]
    m = zoo.load_original(zoo.create_model("tdn_r50", num_classes=174), sd)
    assert torch.equal(m.layer2[0].mid.shift.weight, sd["module.base_model.layer2_bak.0.shift.conv.weight"])


def test_traces():
    m = zoo.create_model("gc_tdn_r50", num_classes=5).eval()
    x = small(2, B=1, size=32)
    with torch.no_grad():
        traced = torch.jit.trace(m, x)
        assert torch.allclose(traced(x), m(x), atol=1e-5)


def test_tdn_indices():
    idx = tdn_indices(100, 8)
    assert len(idx) == 40
    runs = [idx[5 * t:5 * t + 5] for t in range(8)]
    assert all(r == list(range(r[0], r[0] + 5)) for r in runs)
    # test: each run starts at the middle of its segment of the 96 possible starts
    assert [r[0] for r in runs] == [int(6 + 12 * t) for t in range(8)]
    g = __import__("numpy").random.default_rng(0)
    tr = tdn_indices(100, 8, train=True, rng=g)
    assert all(12 * t <= tr[5 * t] < 12 * (t + 1) for t in range(8))
    short = tdn_indices(6, 4)
    assert short == [0, 1, 2, 3, 4] * 4
    assert max(tdn_indices(3, 2)) == 2  # runs past the end repeat the last frame
    with pytest.raises(ValueError):
        tdn_indices(0, 8)
