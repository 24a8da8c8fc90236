"""FrameConv3d (Conv3d on frame batches) and the C3D / P3D baselines."""
import pytest
import torch
import torch.nn.functional as F

from zoo.complexity import count_params
from zoo.factory import create_model
from zoo.models.conv3d import FrameConv3d, c3d_conv2


@pytest.mark.parametrize("kernel,stride,groups,T", [
    ((3, 3, 3), 1, 1, 4), ((3, 3, 3), 2, 2, 3), ((3, 1, 1), 2, 1, 5), ((3, 1, 1), 1, 1, 1),
    ((5, 3, 3), 1, 4, 6), ((1, 3, 3), 1, 1, 2), ((5, 1, 1), 1, 1, 2), ((5, 3, 3), 1, 1, 1),
])
def test_equals_conv3d(kernel, stride, groups, T):
    torch.manual_seed(0)
    m = FrameConv3d(8, 12, kernel, stride, groups)
    B = 2
    x5 = torch.randn(B, 8, T, 7, 7)
    out = m(x5.transpose(1, 2).reshape(B * T, 8, 7, 7), T)
    ref = F.conv3d(x5, m.weight, None, m.stride, m.padding, 1, groups)
    torch.testing.assert_close(out, ref.transpose(1, 2).reshape(out.shape), rtol=1e-4, atol=1e-5)


def test_baselines_build_and_run():
    for name, kw in (("c3d_r18", {"groups": 2}), ("p3d_r18", {})):
        model = create_model(name, num_classes=4, **kw).eval()
        with torch.no_grad():
            for T in (8, 3):
                assert model(torch.randn(2, 3, T, 64, 64)).shape == (2, 4)
    # C3D groups=2 has exactly GST-Large's parameter count (GST Table 1: 27/2 = 9 * (3/4 + 3/4))
    assert count_params(create_model("c3d_r50", num_classes=174, groups=2)) == 29_523_182
    with pytest.raises(ValueError, match="groups"):
        c3d_conv2(groups=0)
    with pytest.raises(ValueError, match="does not divide"):
        create_model("c3d_r18", groups=3)


def test_imagenet_init_lands_everywhere():
    """Every ImageNet ResNet tensor finds a place in the split-conv families (no download: a
    randomly initialised torchvision ResNet stands in for the checkpoint)."""
    import torchvision

    from zoo.weights import load_imagenet_backbone

    sd50 = torchvision.models.resnet50().state_dict()
    sd18 = torchvision.models.resnet18().state_dict()
    for name, kw, sd in (("gst_r50", {}, sd50), ("gst_large_r50", {}, sd50), ("gst_r18", {}, sd18),
                         ("stc_light_r50", {}, sd50), ("stc_r50", {"alpha": 0.0}, sd50),
                         ("c3d_r18", {"groups": 2}, sd18), ("p3d_r18", {}, sd18)):
        model = create_model(name, num_classes=3, **kw)
        load_imagenet_backbone(model, sd)
        w = sd["layer1.0.conv2.weight"] if sd is sd50 else sd["layer1.0.conv1.weight"]
        slot = model.layer1[0].conv2 if sd is sd50 else model.layer1[0].conv1
        spatial = getattr(slot, "spatial", None)
        if spatial is not None:
            torch.testing.assert_close(spatial.weight, w[:spatial.weight.shape[0], :spatial.weight.shape[1]])
        elif name == "c3d_r18":  # grouped I3D inflation: diagonal blocks / 3
            torch.testing.assert_close(slot.weight[:32, :, 1], w[:32, :32] / 3)
