import pytest
import torch

import zoo
from zoo.factory import EnsembleModel


def test_variant_has_its_dataset_head(clip):
    m = zoo.create_model("tsm_r50_ssv1_8f").eval()
    assert m.num_classes == 174
    assert m.pretrained_cfg["name"] == "tsm_r50_ssv1_8f"
    with torch.no_grad():
        assert m(clip).shape == (2, 174)


def test_arch_with_overrides():
    m = zoo.create_model("tsm_r50", num_classes=10, num_frames=16)
    assert m.num_classes == 10 and m.num_frames == 16
    assert m.pretrained_cfg["num_classes"] == 10 and m.pretrained_cfg["frames"] == 16


def test_model_info_is_the_full_entry():
    info = zoo.model_info("tsm_r50_ssv1_8f")
    for key in ("arch", "kwargs", "dataset", "num_classes", "frames", "input_size", "mean", "std",
                "sampling", "sampling_protocol", "views", "claims", "weights", "source", "paper"):
        assert key in info, key
    assert info["num_classes"] == 174 and info["frames"] == 8 and info["arch"] == "tsm_r50"
    assert info["claims"][0]["table"] and info["claims"][0]["metrics"]["top1"] == 45.6
    arch = zoo.model_info("tsm_r50")
    assert arch["kind"] == "arch" and "tsm_r50_ssv1_8f" in arch["variants"]


def test_unknown_kwarg_lists_accepted_ones():
    with pytest.raises(TypeError, match="shift_div=8"):
        zoo.create_model("tsm_r50", alpha=0.5)


def test_pretrained_without_hosted_weights_says_so():
    with pytest.raises(RuntimeError, match=r"no hosted weights.*hanlab18.*zoo convert tsm_r50_ssv1_8f"):
        zoo.create_model("tsm_r50_ssv1_8f", pretrained=True)
    with pytest.raises(ValueError, match="architecture, not a trained variant"):
        zoo.create_model("tsm_r50", pretrained=True)


def test_ensemble_averages_member_logits():
    a = zoo.create_model("tsn_r18", num_classes=3, num_frames=8).eval()
    b = zoo.create_model("tsm_r18", num_classes=3, num_frames=16).eval()
    ens = EnsembleModel({"a": a, "b": b}).eval()
    x8, x16 = torch.randn(1, 3, 8, 32, 32), torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ens([x8, x16]), (a(x8) + b(x16)) / 2)
    assert ens.member_frames == [8, 16]
    with pytest.raises(ValueError, match="one clip batch per member"):
        ens([x8])
    # one 8-frame tensor would reach the 16-frame member unchanged: refused (issue 19)
    with pytest.raises(ValueError, match=r"different frame counts \[8, 16\].*one clip batch per member"):
        ens(x8)


def test_every_registered_ensemble_resolves_and_one_per_family_builds():
    reg = zoo.registry()
    built = set()
    for name in zoo.list_models(kind="ensemble"):
        info = zoo.model_info(name)
        assert info["kind"] == "ensemble" and len(info["members"]) >= 2
        family = reg.archs[reg.variants[next(iter(info["members"]))].arch].family
        if family in built:
            continue
        built.add(family)
        m = zoo.create_model(name)
        assert isinstance(m, EnsembleModel) and len(m.members) >= 2
        assert m.pretrained_cfg["kind"] == "ensemble"
