"""VideoDataset: decoded, sampled and transformed views; known answers through a DataLoader."""
import pytest
import torch
from torch.utils.data import DataLoader

from zoo.data import VideoDataset, read_samples, views_mode
from zoo.eval import evaluate
from zoo.transforms import VideoTransform

from .synth import NUM_CLASSES, BrightnessModel, classes, write_frame_dirs, write_list, write_video


def _tf(crops=1, frames=4, protocol="uniform"):
    return VideoTransform(size=32, resize=36, crops=crops, mean=(0, 0, 0), std=(1, 1, 1), frames=frames,
                          protocol=protocol)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    rows = write_frame_dirs(root, n_videos=5)
    return root, rows, read_samples(write_list(root / "val.txt", rows), labels=NUM_CLASSES)


@pytest.mark.parametrize("views, shape", [("1x1", (1, 3, 4, 32, 32)), ("3x2", (6, 3, 4, 36, 36)),
                                          ("1x3", (3, 3, 4, 32, 32))])
def test_items_views_layout(data, views, shape):
    crops, mode, clips = views_mode(views, "uniform")
    ds = VideoDataset(data[2], frames=4, mode=mode, clips=clips, transform=_tf(crops))
    item = ds[1]
    assert item["video"].shape == shape and item["id"] == "vid_1" and item["index"] == 1
    assert item["label"] == data[1][1][2]
    if mode == "clips":                           # random clips are a function of the sample index
        assert torch.equal(ds[1]["video"], item["video"])
    train = VideoDataset(data[2], frames=4, mode="train", transform=VideoTransform(size=32, train=True, frames=4))
    assert train[0]["video"].shape == (3, 4, 32, 32)


def test_frames_follow_the_protocol(data):
    ds = VideoDataset(data[2], frames=4, mode="2clips", transform=_tf())
    n = data[1][0][1]                              # 8 frames: segments of 2, first/middle = 0,2,4,6 / 1,3,5,7
    clips = ds.load(0)
    assert clips.shape == (2, 4, 3, 40, 48)
    bright = clips.float().mean(dim=(2, 3, 4))     # ramps down for video 0 (direction 0)
    assert n == 8 and bool((bright.flatten().sort(descending=True).values == bright.T.flatten()).all())


@pytest.mark.parametrize("views", ["1x1", "3x2"])
def test_known_answer_through_workers(data, views):
    crops, mode, clips = views_mode(views, "uniform")
    ds = VideoDataset(data[2], frames=4, mode=mode, clips=clips, transform=_tf(crops))
    res = evaluate(BrightnessModel(), DataLoader(ds, batch_size=2, num_workers=2))
    assert res["ids"] == [f"vid_{v}" for v in range(5)]
    assert res["labels"].tolist() == [r[2] for r in data[1]]
    assert res["metrics"]["top1"] == 100.0 and res["metrics"]["mean_class"] == 100.0
    assert res["scores"].argmax(1).tolist() == [2 * lev + d for lev, d in classes(5)]


def test_video_files_and_tdn_segments(tmp_path):
    for v, (lev, d) in enumerate(classes(3)):
        write_video(tmp_path / f"v{v}.mp4", lev, d, n=12)
    (tmp_path / "l.csv").write_text("".join(f"v{v}.mp4,{2 * lev + d}\n" for v, (lev, d) in enumerate(classes(3))))
    s = read_samples(tmp_path / "l.csv", labels=NUM_CLASSES)
    ds = VideoDataset(s, frames=2, protocol="tdn", mode="1clip", transform=_tf(frames=2, protocol="tdn"))
    assert ds[0]["video"].shape == (1, 3, 10, 32, 32)        # 2 segments x 5 frames
    res = evaluate(BrightnessModel(), DataLoader(ds, batch_size=3))
    assert res["metrics"]["top1"] == 100.0


def test_decode_error_names_the_video(data, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    (tmp_path / "l.csv").write_text("broken.mp4,0\n")
    ds = VideoDataset(read_samples(tmp_path / "l.csv"), frames=2, transform=_tf(frames=2))
    with pytest.raises(ValueError, match="broken.mp4"):
        ds[0]
