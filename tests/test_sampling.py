"""The papers' frame-sampling protocols."""
import pytest
import torch

from zoo import sampling as S


def test_segment_middle_and_two_clips():
    assert S.segment_middle(80, 8).tolist() == [[5, 15, 25, 35, 45, 55, 65, 75]]
    two = S.segment_two_clips(80, 8)
    assert two.tolist() == [[0, 10, 20, 30, 40, 50, 60, 70], [5, 15, 25, 35, 45, 55, 65, 75]]


@pytest.mark.parametrize("n", [1, 5, 8, 9, 100, 1001])
def test_segment_train_one_frame_per_segment(n):
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        idx = S.segment_train(n, 8, generator=g)[0]
        assert idx.shape == (8,) and idx.min() >= 0 and idx.max() < n
        assert bool((idx[1:] >= idx[:-1]).all())                  # ordered in time
        if n >= 8:                                                 # one frame inside each segment
            lo = [x * n // 8 for x in range(8)]
            hi = [(x + 1) * n // 8 for x in range(8)]
            assert all(a <= int(i) < b for a, i, b in zip(lo, idx, hi))


def test_random_clips_reproducible_and_independent():
    a = S.segment_random_clips(300, 16, clips=10, generator=torch.Generator().manual_seed(3))
    b = S.segment_random_clips(300, 16, clips=10, generator=torch.Generator().manual_seed(3))
    assert a.shape == (10, 16) and torch.equal(a, b)
    assert len({tuple(r) for r in a.tolist()}) > 1


def test_tdn_takes_consecutive_frames():
    idx = S.sample("tdn", 200, 8, "1clip")
    assert idx.shape == (1, 40)
    per_seg = idx.view(8, 5)
    assert bool((per_seg[:, 1:] - per_seg[:, :-1] == 1).all())
    assert S.sample("tdn", 6, 8, "1clip").max() <= 5               # short video: clamped to the last frame


def test_tdn_protocol_follows_the_authors_loader():
    idx = S.sample("tdn", 100, 8, "1clip")[0].tolist()
    runs = [idx[5 * t:5 * t + 5] for t in range(8)]
    assert all(r == list(range(r[0], r[0] + 5)) for r in runs)
    # each run starts at the middle of its segment of the 96 possible starts
    assert [r[0] for r in runs] == [int(6 + 12 * t) for t in range(8)]
    # TDN's test loader: a video of at most T + 4 frames starts every run at frame 0
    assert S.sample("tdn", 19, 16, "1clip")[0].tolist() == [0, 1, 2, 3, 4] * 16
    assert S.sample("tdn", 20, 16, "1clip")[0].tolist() == [0, 1, 2, 3, 4] * 16
    assert S.sample("tdn", 21, 16, "1clip")[0, ::5].tolist() == [int(17 / 32 + 17 / 16 * t) for t in range(16)]
    assert S.sample("tdn", 6, 4, "1clip")[0].tolist() == [0, 1, 2, 3, 4] * 4
    assert S.sample("tdn", 3, 2, "1clip").max() == 2     # runs past the end repeat the last frame
    tr = S.sample("tdn", 100, 8, "train", generator=torch.Generator().manual_seed(0))[0]
    assert tr.shape == (40,) and all(12 * t <= tr[5 * t] < 12 * (t + 1) + 1 for t in range(8))
    with pytest.raises(ValueError):
        S.sample("tdn", 0, 8)


def test_short_video_middle_frames_as_the_test_loaders():
    assert S.segment_middle(8, 8).tolist() == [[0] * 8]       # n <= T: every segment at frame 0
    assert S.segment_middle(9, 8).tolist() == [[int(9 / 16 + 9 / 8 * t) for t in range(8)]]


def test_dense():
    d = S.dense_clips(300, 8, stride=8, clips=10)
    assert d.shape == (10, 8) and d[0, 0] == 0 and d[-1, 0] == 300 - 64     # evenly spaced over the video
    assert bool((d[:, 1:] - d[:, :-1] == 8).all())
    t = S.dense_train(30, 8, generator=torch.Generator().manual_seed(0))   # short video wraps around
    assert t.shape == (1, 8) and t.max() < 30
    assert S.sample("dense", 300, 8, "1clip").shape == (1, 8)


def test_sample_errors():
    with pytest.raises(ValueError, match="unknown sampling protocol"):
        S.sample("nope", 10, 8)
    with pytest.raises(ValueError, match="modes"):
        S.sample("dense", 10, 8, "2clips")
    with pytest.raises(ValueError, match="n >= 1"):
        S.segment_middle(0, 8)
