"""Preprocessing from the registry entry: torchvision.transforms.v2, output (3, T, H, W)."""
import pytest
import torch

import zoo
from zoo.registry import registry
from zoo.transforms import VideoTransform


def _video(T=8, H=40, W=60):
    return torch.randint(0, 256, (T, H, W, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_centre_crop_layout_and_normalisation():
    tf = VideoTransform(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert tf.resize == round(32 * 256 / 224)
    v = _video()
    out = tf(v)
    assert out.shape == (3, 8, 32, 32) and out.dtype == torch.float32
    same = tf(v.permute(0, 3, 1, 2))                                   # (T, 3, H, W) input too
    assert torch.equal(out, same)
    flat = torch.full((4, 3, 36, 36), 255, dtype=torch.uint8)         # white -> (1 - 0.5) / 0.5 = 1
    assert torch.allclose(VideoTransform(size=32, resize=36, mean=(0.5,) * 3, std=(0.5,) * 3)(flat), torch.ones(1))


def test_three_crops_cover_the_long_side():
    v = torch.arange(60, dtype=torch.uint8).view(1, 1, 1, 60).expand(2, 3, 40, 60).contiguous()
    tf = VideoTransform(size=32, resize=40, crops=3, mean=(0, 0, 0), std=(1, 1, 1))
    out = tf(v)
    assert out.shape == (3, 3, 2, 40, 40)                              # full-resolution crops by default
    left, mid, right = (out[:, 0, 0, 0] * 255).round()
    assert left[0] == 0 and right[-1] == 59 and mid[0] == 10
    assert VideoTransform(size=32, resize=40, crops=3, crop=32)(v).shape == (3, 3, 2, 32, 32)


def test_from_registry_entry_and_views():
    name = sorted(registry().variants)[0]
    v = registry().variants[name]
    tf = zoo.create_transform(name, size=32)
    assert tf.mean == tuple(v.mean) and tf.std == tuple(v.std) and tf.frames == v.frames
    assert tf.protocol == v.sampling
    video = _video(T=50)
    assert tf.views(video).shape == (1, 3, v.frames, 32, 32)
    if v.sampling != "dense":
        assert tf.views(video, mode="2clips").shape == (2, 3, v.frames, 32, 32)
    tf3 = zoo.create_transform(name, crops=3, size=32, resize=40)
    assert tf3.views(video, mode="clips", clips=2).shape == (6, 3, v.frames, 40, 40)


def test_train_mode_and_flip_policy():
    ssv = next(n for n, v in registry().variants.items() if v.dataset in ("ssv1", "ssv2"))
    tf = zoo.create_transform(ssv, train=True, size=32)
    assert not any("Flip" in type(t).__name__ for t in tf.spatial.transforms)
    assert tf(_video()).shape == (3, 8, 32, 32)
    assert zoo.create_transform("tsm_r18", train=True, size=32).views(_video(T=30)).shape == (1, 3, 8, 32, 32)


def test_views_default_to_the_entrys_test_protocol():
    reg = registry()
    two = next(n for n, v in reg.variants.items() if v.views == "1x2")
    ten = next(n for n, v in reg.variants.items() if v.views == "3x10")
    video = _video(T=120)
    tf = zoo.create_transform(two, size=32)
    assert tf.clips == 2 and tf.views(video).shape == (2, 3, reg.variants[two].frames, 32, 32)
    assert torch.equal(tf.views(video), tf.views(video, mode="2clips"))
    tf = zoo.create_transform(ten, size=32, resize=40)
    v = reg.variants[ten]
    assert (tf.crops, tf.clips) == (3, 10)
    g = torch.Generator().manual_seed(0)
    assert tf.views(video, generator=g).shape == (30, 3, v.frames * 5, 40, 40)   # TDN: 5 frames per segment
    assert zoo.create_transform("tdn_r50", size=32).protocol == "tdn"


def test_float_frames_must_be_in_unit_range():
    tf = VideoTransform(size=32, resize=36, mean=(0, 0, 0), std=(1, 1, 1))
    u8 = torch.full((2, 3, 36, 36), 255, dtype=torch.uint8)
    assert torch.allclose(tf(u8), tf(u8.float() / 255))
    with pytest.raises(ValueError, match=r"float frames must be in \[0, 1\].*255"):
        tf(u8.float())


def test_bad_input():
    with pytest.raises(ValueError, match="colour channels"):
        VideoTransform(size=32)(torch.zeros(8, 4, 40, 40, dtype=torch.uint8))
    with pytest.raises(ValueError, match="crops"):
        VideoTransform(crops=5)
