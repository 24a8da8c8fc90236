import pytest
import torch

import zoo
from zoo.models.resnet import DEPTHS, Slots, VideoResNet


@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_depths_build_and_run(depth, clip):
    m = VideoResNet(depth, num_classes=7).eval()
    with torch.no_grad():
        assert m(clip).shape == (2, 7)


def test_keys_follow_torchvision_resnet():
    import torchvision

    ours = VideoResNet(50, num_classes=1000).state_dict()
    tv = torchvision.models.resnet50().state_dict()
    assert list(ours) == list(tv)
    assert all(ours[k].shape == tv[k].shape for k in tv)


def test_frames_come_from_the_input():
    m = zoo.create_model("tsm_r18", num_classes=5, num_frames=8).eval()
    with torch.no_grad():
        for T in (2, 4, 8, 16):
            assert m(torch.randn(1, 3, T, 32, 32)).shape == (1, 5)


def test_tsn_is_average_of_frames():
    m = zoo.create_model("tsn_r18", num_classes=5).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        whole = m(x)
        single = torch.stack([m(x[:, :, t:t + 1]) for t in range(4)]).mean(0)
    torch.testing.assert_close(whole, single, rtol=1e-4, atol=1e-5)


def test_forward_features_and_head(clip):
    m = zoo.create_model("tsm_r18", num_classes=5).eval()
    with torch.no_grad():
        f = m.forward_features(clip)
        assert f.shape == (2, 512, 8, 2, 2)                  # (B, C, T, H/32, W/32)
        torch.testing.assert_close(m.forward_head(f), m(clip))
        pooled = m.forward_head(f, pre_logits=True)
        assert pooled.shape == (2, 512)
        torch.testing.assert_close(pooled, f.mean((2, 3, 4)))
        torch.testing.assert_close(m.get_classifier()(pooled), m(clip))


def test_reset_classifier(clip):
    m = zoo.create_model("tsm_r18_ssv1_8f" if "tsm_r18_ssv1_8f" in zoo.list_models() else "tsm_r18", num_classes=5)
    m.reset_classifier(11)
    assert m.num_classes == 11 and m.get_classifier().out_features == 11
    with torch.no_grad():
        assert m.eval()(clip).shape == (2, 11)


def test_channels_last_same_output(clip):
    m = zoo.create_model("tsm_r18", num_classes=5).eval()
    with torch.no_grad():
        ref = m(clip)
        out = m.to(memory_format=torch.channels_last)(clip)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bad, msg", [
    (torch.randn(2, 8, 3, 32, 32), "permute"),
    (torch.randn(3, 8, 32, 32), "unsqueeze"),
    (torch.randn(2, 1, 8, 32, 32), r"\(B, 3, T, H, W\)"),
    (torch.zeros(2, 3, 8, 32, 32, dtype=torch.uint8), "floating"),
])
def test_bad_input_names_expected_layout(bad, msg):
    m = zoo.create_model("tsn_r18", num_classes=5)
    with pytest.raises(ValueError, match=msg):
        m(bad)


def test_slots_reject_unknown_position():
    with pytest.raises(ValueError, match="calib_at"):
        Slots(calib_at="somewhere")
