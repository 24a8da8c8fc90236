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


# -- timm's construction options ---------------------------------------------------------------

def test_features_only_returns_the_stage_maps():
    full = zoo.create_model("tsm_r18", num_classes=3).eval()
    x = torch.randn(2, 3, 4, 64, 64)
    torch.manual_seed(0)
    feats = zoo.create_model("tsm_r18", features_only=True, out_indices=(1, 2, 3, 4)).eval()
    assert feats.feature_info.channels() == [64, 128, 256, 512]
    assert feats.feature_info.reduction() == [4, 8, 16, 32]
    assert feats.feature_info.module_name() == ["layer1", "layer2", "layer3", "layer4"]
    assert not any(k.startswith("fc.") for k in feats.state_dict())
    feats.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("fc.")})
    with torch.no_grad():
        maps = feats(x)
        ref = full.forward_intermediates(x, (1, 2, 3, 4), intermediates_only=True)
    assert [tuple(t.shape) for t in maps] == [(2, 64, 4, 16, 16), (2, 128, 4, 8, 8), (2, 256, 4, 4, 4),
                                              (2, 512, 4, 2, 2)]
    for a, b in zip(maps, ref):
        assert torch.equal(a, b)
    early = zoo.create_model("tsm_r18", features_only=True, out_indices=(0, 2))
    assert early.feature_info.channels() == [64, 128] and early.layer3 is None and early.layer4 is None
    assert not any(k.startswith(("layer3.", "layer4.")) for k in early.state_dict())
    with torch.no_grad():
        assert [t.shape[1] for t in early.eval()(x)] == [64, 128]


def test_features_only_tdn_is_per_segment():
    m = zoo.create_model("tdn_r50", num_frames=2, features_only=True, out_indices=(1, 4)).eval()
    with torch.no_grad():
        maps = m(torch.randn(1, 3, 10, 64, 64))
    assert [tuple(t.shape) for t in maps] == [(1, 256, 2, 16, 16), (1, 2048, 2, 2, 2)]


def test_num_classes_zero_builds_no_classifier():
    m = zoo.create_model("tsn_r18", num_classes=0).eval()
    assert m.num_classes == 0 and m.pretrained_cfg["num_classes"] == 0
    assert not any(k.startswith("fc.") for k in m.state_dict())
    with torch.no_grad():
        assert m(torch.randn(2, 3, 2, 32, 32)).shape == (2, m.num_features)


@pytest.mark.parametrize("kwargs, error, msg", [
    (dict(name=None), TypeError, "name must be a registered model name"),
    (dict(num_classes=-1), ValueError, "num_classes must be an int >= 0"),
    (dict(num_classes=2.5), TypeError, "num_classes must be an int >= 0.*float"),
    (dict(num_classes=True), TypeError, "num_classes must be an int"),
    (dict(num_frames=0), ValueError, "num_frames must be an int >= 1"),
    (dict(num_frames="8"), TypeError, "num_frames must be an int >= 1.*str"),
    (dict(shift_div="8"), TypeError, "shift_div must be an int.*default 8.*str"),
    (dict(shift_div=8.0), TypeError, "shift_div must be an int"),
    (dict(dropout=1.5), ValueError, r"dropout must be in \[0, 1\)"),
    (dict(drop_rate="0.1"), TypeError, "drop_rate must be a number"),
    (dict(drop_path_rate=1.0), ValueError, r"drop_path_rate must be in \[0, 1\)"),
    (dict(pretrained="yes"), TypeError, "pretrained must be True or False"),
    (dict(out_indices=(1, 2)), TypeError, "features_only=True"),
    (dict(features_only=True, out_indices=(1, 5)), ValueError, "0..4"),
    (dict(drop_rate=0.2, dropout=0.3), TypeError, "pass one"),
])
def test_create_model_validates_its_arguments(kwargs, error, msg):
    name = kwargs.pop("name", "tsm_r18")
    with pytest.raises(error, match=msg):
        zoo.create_model(name, **kwargs)


def test_pretrained_with_pretrained_backbone_is_refused():
    with pytest.raises(ValueError, match="would overwrite"):
        zoo.create_model("tsm_r50_ssv1_8f", pretrained=True, pretrained_backbone=True)


def test_ensemble_attributes_are_meaningful_or_errors():
    a = zoo.create_model("tsn_r18", num_classes=3, num_frames=8).eval()
    b = zoo.create_model("tsm_r18", num_classes=3, num_frames=16).eval()
    ens = EnsembleModel({"a": a, "b": b})
    assert ens.num_classes == 3 and ens.num_features == 512
    with pytest.raises(ValueError, match=r"differ in num_frames: \[8, 16\]"):
        ens.num_frames
    assert [c.out_features for c in ens.get_classifier()] == [3, 3]
    ens.reset_classifier(7)
    assert a.num_classes == b.num_classes == ens.num_classes == 7
    with pytest.raises(NotImplementedError, match="members"):
        ens.reset_classifier(0)
    with pytest.raises(NotImplementedError, match=r"members\[i\]"):
        ens.forward_features(torch.randn(1, 3, 8, 32, 32))
    same = EnsembleModel({"a": a, "c": zoo.create_model("tsm_r18", num_classes=7, num_frames=8).eval()})
    assert same.num_frames == 8
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():   # members of one frame count may share a tensor
        torch.testing.assert_close(same(x), same([x, x]))
