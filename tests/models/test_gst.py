"""GST / GST-Large: the authors' function (reference logits), sizes, and every registered name."""
import pytest
import torch

from tests.reference import assert_logits_close, fixture, original_state_dict, reference_input
from zoo.complexity import complexity, count_params
from zoo.convert import ConversionError, load_original
from zoo.factory import create_model
from zoo.models.gst import GSTConv, gst_conv2, gst_slots
from zoo.registry import list_models

FIXTURES = {"gst_r50": "gst_t8", "gst_large_r50": "gst_large_t8"}


def _loaded(name):
    fx = fixture(FIXTURES[name])
    model = create_model(name, num_classes=fx["num_classes"], num_frames=fx["num_segments"])
    load_original(model, original_state_dict(fx))  # converter from the family: "gst"
    return fx, model.eval()


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_reference_logits(name):
    fx, model = _loaded(name)
    assert count_params(model) == fx["params"]
    # the official model cannot run at 112 (AvgPool2d(7)); the fixture's 112 reference swaps
    # in AdaptiveAvgPool2d(1), which is what ours has
    for grad in (True, False):  # both grad modes, as tests/reference.py checks the other families
        with torch.set_grad_enabled(grad):
            out = model(reference_input(8, 112))
        assert_logits_close(out.detach(), fx["reference_112_adaptive_pool"]["logits"])
    with torch.no_grad():
        if name == "gst_r50":  # 224 once (a few seconds): there the authors' fixed 7x7 pool
            # and our adaptive pool are the same operation
            assert_logits_close(model(reference_input(8, 224)), fx["reference_224"]["logits"])


def test_flops_match_original():
    """Every conv / BN / linear multiply-add of the original is counted identically. The only
    difference is the final pool: theirs is avg_pool2d (not counted by fvcore), ours
    adaptive_avg_pool2d (counted, one per input element): 2048 * 7 * 7 * 8 = 802,816."""
    fx = fixture("gst_t8")
    c = complexity("gst_r50", num_classes=174, num_frames=8, input_size=224)
    for op, v in fx["fvcore_by_operator"].items():
        assert c.by_operator[op] == v, op
    assert c.by_operator["adaptive_avg_pool2d"] == 2048 * 7 * 7 * 8
    assert c.flops == fx["flops_fvcore"] + 802_816


def test_channel_layout():
    m = GSTConv(64, 64, 1, alpha=0.25, beta=0.5)
    assert m.spatial.weight.shape == (48, 32, 3, 3) and m.temporal.weight.shape == (16, 32, 3, 3, 3)
    m = GSTConv(64, 64, 2, alpha=0.125, beta=1.0)
    assert m.spatial.weight.shape == (56, 64, 3, 3) and m.temporal.weight.shape == (8, 64, 3, 3, 3)
    x = torch.randn(2 * 4, 64, 8, 8)
    y = m(x, 4)
    assert y.shape == (8, 64, 4, 4)
    # [spatial | temporal] order, as the GC calibrator at calib_at="conv2" expects
    torch.testing.assert_close(y[:, :56], m.spatial(x))
    slots = gst_slots(0.25, 0.5, calib_at="conv2")
    assert slots.calib_at == "conv2" and slots.conv2 is not None and callable(gst_conv2())


def test_every_name_builds_and_runs():
    names = list_models("gst_*")
    assert {"gst_r18", "gst_r34", "gst_r50", "gst_large_r50", "gst_r50_ssv1_8f",
            "gst_large_r50_ssv1_8f"} <= set(names)
    archs = [n for n in names if n in ("gst_r18", "gst_r34", "gst_r50", "gst_large_r50")]
    for name in archs:
        model = create_model(name, num_classes=5).eval()
        with torch.no_grad():
            for T in (8, 3):
                assert model(torch.randn(2, 3, T, 64, 64)).shape == (2, 5)


def test_bad_kwargs():
    with pytest.raises(ValueError, match="beta"):
        create_model("gst_r50", beta=0.25)
    with pytest.raises(ValueError, match="alpha"):
        create_model("gst_r50", alpha=1.0)
    with pytest.raises(TypeError, match="accepts"):
        create_model("gst_r50", groups=2)


def test_converter_refuses_wrong_layout():
    fx = fixture("gst_t8")
    sd = original_state_dict(fx)
    model = create_model("gst_large_r50", num_classes=174)  # beta=1 model, beta=0.5 weights
    with pytest.raises(ConversionError, match="shape"):
        load_original(model, sd, converter="gst")
