"""TDN / GC-TDN against the authors' code (GC repository, ops_tdn), plus layout, options, errors."""
import pytest
import torch

import zoo
from tests.reference import check_reference_logits, fixture, original_state_dict
from tests.short import shorten
from zoo.models.tdn import ShiftConv, TDNResNet, tdn_fusion
from zoo.models.temporal import temporal_shift

CASES = [("gc_orgtdn_t8", "tdn_r50"), ("gc_tdn_t8", "gc_tdn_r50")]


def small(T, B=2, size=64):
    return torch.randn(B, 3, 5 * T, size, size, generator=torch.Generator().manual_seed(T))


@pytest.mark.parametrize("fx_name, arch", CASES)
def test_reference_logits_and_params(fx_name, arch):
    check_reference_logits(fx_name, arch, converter="tdn", frames_per_segment=5)


@pytest.mark.parametrize("fx_name, arch", CASES)
def test_flops_match_the_original_code(fx_name, arch):
    fx = fixture(fx_name)
    c = zoo.complexity(arch, num_classes=174, num_frames=8, input_size=224)
    assert c.input_shape == (1, 3, 40, 224, 224)  # 5 frames per segment enter the count
    assert c.flops == fx["flops_fvcore"]
    assert c.by_operator == fx["fvcore_by_operator"]
    # the kept-but-unused stem conv, and GC's ECal-S BN that the code never runs
    assert "stem.conv1_temp" in c.uncalled_modules
    assert all(u == "stem.conv1_temp" or u.endswith("calib.s.bn") for u in c.uncalled_modules)


@pytest.mark.parametrize("arch, Ts", [("tdn_r50", (8, 3, 1)), ("gc_tdn_r50", (8, 2))])
def test_input_T_is_free_and_traces(arch, Ts):
    m = shorten(zoo.create_model(arch, num_classes=10, num_frames=8)).eval()  # T meets the stem and every block kind
    for T in Ts:
        B = 2 if T == 8 else 1
        with torch.no_grad():
            feats = m.forward_features(small(T, B))
            out = m.forward_head(feats)
        assert feats.shape[:3] == (B, 2048, T) and out.shape == (B, 10) and torch.isfinite(out).all()
    x = small(Ts[-1], B=1)
    with torch.no_grad():
        assert torch.allclose(torch.jit.trace(m, x)(x), m(x), atol=1e-5)


def test_registered_names():
    # building and running every name is tests/test_all_models.py's job
    names = zoo.list_models(["tdn_*", "gc_tdn_*"])
    assert {"tdn_r50", "gc_tdn_r50", "tdn_r50_ssv1_8f", "gc_tdn_r50_ssv1_8f", "gc_tdn_r50_k400_8f16f"} <= set(names)
    ensembles = zoo.list_models(["tdn_*", "gc_tdn_*"], kind="ensemble")
    for name in ensembles:
        assert set(zoo.model_info(name)["members"]) <= set(names), name


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
    assert [b.calib_at for b in m.layer1] == [b.calib_at for b in m.stem.layer1] == ["bn2"] * 3
    assert {b.calib_at for layer in (m.layer2, m.layer3, m.layer4) for b in layer} == {"bn1"}
    assert all(b.mid is None for b in m.layer1) and all(b.mid is not None for b in m.layer2)
    # the difference stream's layer1 is its own copy, with the loop counter of a fresh ResNet
    assert [b.calib.group_offset for b in m.stem.layer1] == [b.calib.group_offset for b in m.layer1] == [0, 1, 2]
    assert m.stem.layer1[0].conv1.weight.data_ptr() != m.layer1[0].conv1.weight.data_ptr()
    assert m.layer2[0].conv1.bias is not None and m.layer2[0].mid.mse.conv1.bias is None


def test_unused_conv_never_runs_and_seeds_the_difference_stem():
    m = zoo.create_model("tdn_r50", num_classes=5).eval()
    calls = []
    m.stem.conv1_temp.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        m(small(1, B=1))
    assert not calls
    w = m.stem.conv1_temp.weight.mean(1, keepdim=True)
    assert torch.equal(m.stem.conv1.weight, w.expand(-1, 12, -1, -1))


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


def test_imagenet_init_fills_both_streams():
    import torchvision

    from zoo.weights import load_imagenet_backbone

    src = torchvision.models.resnet50().state_dict()
    m = zoo.create_model("gc_tdn_r50", num_classes=5)
    mapped = load_imagenet_backbone(m, src)
    assert torch.equal(m.stem.layer1[2].conv3.weight, src["layer1.2.conv3.weight"])
    assert torch.equal(m.layer4[2].bn3.running_var, src["layer4.2.bn3.running_var"])
    assert torch.allclose(m.stem.conv1.weight[:, 5], src["conv1.weight"].mean(1))
    assert mapped["stem.layer1.0.conv1.weight"] == "layer1.0.conv1.weight"
