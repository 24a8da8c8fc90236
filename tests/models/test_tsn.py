"""TSN/TSM against the authors' code: reference logits, parameter and FLOP counts."""
import pytest
import torch

import zoo
from tests.reference import check_reference_logits, fixture, original_state_dict

CASES = [
    ("tsn_official_t8", "tsn_r50"),   # TSM authors' repo, is_shift False
    ("tsm_official_t8", "tsm_r50"),   # TSM authors' repo: conv1 wrapped, keys ...conv1.net.weight
    ("aia_c2d_plain_t8", "tsn_r50"),  # AIA authors' repo, plain keys
    ("aia_tsm_plain_t8", "tsm_r50"),
]


@pytest.mark.parametrize("fx_name, arch", CASES)
def test_reference_logits(fx_name, arch):
    check_reference_logits(fx_name, arch)


def test_load_original_without_module_prefix_and_wrapped_checkpoint():
    fx = fixture("tsm_official_t8")
    m = zoo.create_model("tsm_r50", num_classes=174)
    sd = original_state_dict(fx, prefix="")
    zoo.load_original(m, sd)
    assert torch.equal(m.layer1[0].conv1.weight, sd["base_model.layer1.0.conv1.net.weight"])
    assert torch.equal(m.fc.bias, sd["new_fc.bias"])


def test_load_original_names_what_does_not_fit():
    fx = fixture("tsn_official_t8")
    sd = original_state_dict(fx)
    m = zoo.create_model("tsn_r50", num_classes=10)
    with pytest.raises(ValueError, match=r"shape mismatch.*fc\.weight"):
        zoo.load_original(m, sd)
    sd["module.base_model.extra.weight"] = torch.zeros(1)
    del sd["module.base_model.layer4.2.bn3.bias"]
    with pytest.raises(ValueError, match=r"left over.*extra\.weight") as e:
        zoo.load_original(zoo.create_model("tsn_r50", num_classes=174), sd)
    assert "layer4.2.bn3.bias" in str(e.value)


def test_load_original_from_pickled_checkpoint(tmp_path):
    fx = fixture("tsm_official_t8")
    sd = original_state_dict(fx)
    path = tmp_path / "TSM_something.pth.tar"
    torch.save({"epoch": 45, "arch": "resnet50", "best_prec1": 45.6, "state_dict": sd}, path)
    m = zoo.load_original(zoo.create_model("tsm_r50_ssv1_8f"), path)
    assert torch.equal(m.fc.weight, sd["module.new_fc.weight"])


def test_pickle_needing_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": object()}, path)
    with pytest.raises(ValueError, match="trust_pickle"):
        zoo.load_original(zoo.create_model("tsn_r18", num_classes=5), path)
