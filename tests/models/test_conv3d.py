"""FrameConv3d (Conv3d on frame batches) and the C3D / P3D baselines."""
import pytest
import torch
import torch.nn.functional as F

from zoo.complexity import count_params
from zoo.factory import create_model
from zoo.models.conv3d import FrameConv3d, c3d_conv2


@pytest.mark.parametrize("kernel,stride,groups,T", [
    ((3, 3, 3), 1, 1, 4), ((3, 3, 3), 2, 2, 3), ((3, 1, 1), 2, 1, 5), ((3, 1, 1), 1, 1, 1),
    ((5, 3, 3), 1, 4, 6), ((1, 3, 3), 1, 1, 2),
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
