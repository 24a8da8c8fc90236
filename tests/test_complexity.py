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
