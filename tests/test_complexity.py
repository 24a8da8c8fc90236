import pytest

import zoo
from tests.reference import fixture
from zoo.complexity import CONVENTION


@pytest.fixture(scope="module")
def tsm8():
    return zoo.complexity("tsm_r50", num_classes=174, num_frames=8, input_size=224, views=6)


def test_tsn_tsm_match_the_original_code_exactly(tsm8):
    fx = fixture("tsm_official_t8")
    assert tsm8.params == fx["params"] == 23_864_558
    assert tsm8.flops == fx["flops_fvcore"] == 32_878_567_424
    # TSN and TSM have the same op counts: the shift is a copy
    fx_aia = fixture("aia_c2d_plain_t8")
    assert tsm8.by_operator == fx_aia["fvcore_by_operator"]


def test_views_multiply(tsm8):
    assert tsm8.views == 6 and tsm8.flops_total == 6 * tsm8.flops


def test_uncounted_ops_are_listed_and_estimated(tsm8):
    assert {"add_", "max_pool2d", "mean"} <= set(tsm8.uncounted)  # residual adds, stem pool, consensus
    assert tsm8.uncounted["add_"]["calls"] == 16
    assert tsm8.uncounted["max_pool2d"]["calls"] == 1
    assert 0 < tsm8.uncounted_share < 0.01
    assert "MACs" in CONVENTION and "MACs" in str(tsm8)


def test_breakdown_by_module(tsm8):
    assert set(tsm8.by_module) >= {"(total)", "layer1", "layer4", "fc", "conv1"}
    assert tsm8.by_module["(total)"] == tsm8.flops


def test_frames_scale_flops():
    c4 = zoo.complexity("tsn_r18", num_classes=10, num_frames=4, input_size=64)
    c8 = zoo.complexity("tsn_r18", num_classes=10, num_frames=8, input_size=64)
    assert c8.flops == 2 * c4.flops and c8.params == c4.params


def test_named_variant_uses_its_frames():
    c = zoo.complexity("tsn_r50_ssv1_16f", input_size=64)
    assert c.input_shape == (1, 3, 16, 64, 64)


def test_ensemble_is_the_sum_of_its_members_at_their_own_frames(tsm8):
    # at 64 px to stay cheap; TSM is linear in T, so at 224 px the sum is 3 x 32.88G = the papers' 98.6G
    c = zoo.complexity("tsm_r50_ssv1_8f16f", input_size=64)
    c8 = zoo.complexity("tsm_r50_ssv1_8f", input_size=64)
    assert c.flops == 3 * c8.flops and f"{3 * tsm8.flops / 1e9:.1f}G" == "98.6G"
    assert c.params == 2 * c8.params == 2 * tsm8.params
    assert c.input_shape == ((1, 3, 8, 64, 64), (1, 3, 16, 64, 64))
    assert c.by_module["(total)"] == c.flops and c.by_module["tsm_r50_ssv1_16f"] == 2 * c8.flops


def test_tdn_ensemble_and_ensemble_modules():
    c = zoo.complexity("tdn_r50_ssv1_8f16f", input_size=48)
    assert c.input_shape == ((1, 3, 40, 48, 48), (1, 3, 80, 48, 48))   # 5 frames per segment, own T each
    assert c.flops == 3 * c.by_module["tdn_r50_ssv1_8f"] == c.by_module["tdn_r50_ssv1_8f"] + c.by_module["tdn_r50_ssv1_16f"]
    m = zoo.EnsembleModel({"a": zoo.create_model("tsn_r18", num_frames=2), "b": zoo.create_model("tsn_r18", num_frames=4)})
    e = zoo.complexity(m, input_size=32)
    assert e.flops == 3 * zoo.complexity("tsn_r18", num_frames=2, input_size=32).flops
    with pytest.raises(TypeError, match="fixed frames"):
        zoo.complexity("tdn_r50_ssv1_8f16f", num_frames=8)
