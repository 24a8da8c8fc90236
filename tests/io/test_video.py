"""zoo.io: frames by index from synthetic videos (H.264/MP4, VP9/WebM, MPEG-4/AVI) and frame
directories, with every backend installed here; frame colours encode their index."""
import shutil

import pytest
import torch

import zoo.io
from zoo.io import VideoError, open_video, read_frames
from zoo.sampling import sample

from .synth import frame_rgb, index_of, make_frame_dir, make_video

pytest.importorskip("av")
BACKENDS = zoo.io.available_backends()
CODECS = {"h264": ("libx264", "mp4"), "vp9": ("libvpx-vp9", "webm"), "mpeg4": ("mpeg4", "avi")}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    out = {k: make_video(d / f"v.{ext}", 40, codec) for k, (codec, ext) in CODECS.items()}
    out["short"] = make_video(d / "short.mp4", 3)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("codec", list(CODECS))
def test_frames_at_indices(videos, backend, codec):
    with open_video(videos[codec], backend=backend) as v:
        assert len(v) == 40 and v.fps == pytest.approx(25)
        idx = [39, 0, 13, 13, 14, 30, 2]            # unordered, repeated, dense and far apart
        x = v.get(idx)
        assert x.dtype == torch.uint8 and x.shape == (len(idx), 3, 48, 64)
        assert index_of(x) == idx
        ref = torch.from_numpy(frame_rgb(13, 48, 64)).permute(2, 0, 1)
        assert (x[2].float() - ref.float()).abs().mean() < 4      # codec tolerance


def test_backends_agree(videos):
    if len(BACKENDS) < 2:
        pytest.skip("only one backend installed")
    idx = [0, 7, 25]
    a, b = (read_frames(videos["h264"], idx, backend=k) for k in BACKENDS)
    assert (a.int() - b.int()).abs().max() <= 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_video_repeats_frames(videos, backend):
    with open_video(videos["short"], backend=backend) as v:
        assert len(v) == 3
        idx = sample("uniform", len(v), 8, "1clip")[0]
        assert index_of(v.get(idx)) == idx.tolist() and set(idx.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("backend", BACKENDS)
def test_variable_frame_rate(tmp_path, backend):
    pts = [0, 40, 60, 200, 210, 400, 420, 430, 800, 1000]
    p = make_video(tmp_path / "vfr.mkv", len(pts), pts=pts, gop=4)
    with open_video(p, backend=backend) as v:
        assert len(v) == len(pts)
        assert index_of(v.get(range(len(pts)))) == list(range(len(pts)))
        assert index_of(v.get([8, 3])) == [8, 3]


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotation_metadata_is_applied(tmp_path, backend):
    p = make_video(tmp_path / "rot.mp4", 4, rotation=90, marker=True)
    x = read_frames(p, [1], backend=backend)[0]
    assert x.shape == (3, 64, 48)                   # 64x48 stored, shown upright as 48 wide, 64 high
    # a 90-degree counter-clockwise display rotation moves the top-left marker to bottom-left
    assert x[:, -8:, :6].float().mean() > 240 and x[:, :8, :6].float().mean() < 200


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_and_garbage_files_name_the_file(videos, tmp_path, backend):
    cut = tmp_path / "cut.mp4"
    data = videos["h264"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n" * 100)
    for p in (cut, bad):
        with pytest.raises(VideoError, match=str(p)):
            with open_video(p, backend=backend) as v:
                v.get(range(len(v)))
    with pytest.raises(VideoError, match="no such file"):
        open_video(tmp_path / "missing.mp4", backend=backend)


def test_truncated_webm_fails_or_keeps_only_whole_frames(videos, tmp_path):
    cut = tmp_path / "cut.webm"
    data = videos["vp9"].read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    for backend in BACKENDS:
        try:
            with open_video(cut, backend=backend) as v:
                n = len(v)
                got = index_of(v.get(range(n)))
        except VideoError as e:
            assert str(cut) in str(e)
        else:
            assert 0 < n < 40 and got == list(range(n))


def test_seeks_instead_of_decoding_everything(tmp_path):
    pytest.importorskip("av")
    from zoo.io.pyav import AVVideo

    p = make_video(tmp_path / "long.mp4", 120, gop=10)
    calls = []
    with AVVideo(p) as v:
        nxt = v._next
        v._next = lambda i: calls.append(i) or nxt(i)
        assert index_of(v.get([115])) == [115]
        assert len(calls) <= 12                    # from the keyframe at 110, not from 0
        calls.clear()
        assert index_of(v.get([3, 4, 5, 6])) == [3, 4, 5, 6]
        assert len(calls) <= 8                      # one forward pass 0..6 (+1: the seek's probe), no seek between
    assert v._c is None


@pytest.mark.parametrize("template", ["img_{:05d}.jpg", "{:05d}.jpg"])
def test_frame_directory(tmp_path, template):
    d = make_frame_dir(tmp_path / "vid", 12, template)
    (d / "notes.txt").write_text("x")
    with open_video(d) as v:
        assert len(v) == 12 and v.fps is None and v.template == template
        assert index_of(v.get([11, 0, 5, 5])) == [11, 0, 5, 5]


def test_frame_directory_template_option_and_errors(tmp_path):
    d = make_frame_dir(tmp_path / "vid", 5, "frame{:04d}.png", start=0)
    make_frame_dir(d, 2, "thumb_{:02d}.jpg")
    assert index_of(read_frames(d, [4, 0], template="frame{:04d}.png")) == [4, 0]
    with pytest.raises(VideoError, match="no file matches"):
        open_video(d, template="img_{:05d}.jpg")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoError, match="template"):
        open_video(empty)
    (d / "frame0002.png").write_bytes(b"broken")
    with pytest.raises(VideoError, match="frame0002.png"):
        read_frames(d, [2], template="frame{:04d}.png")


def test_index_out_of_range(videos):
    with open_video(videos["short"]) as v:
        with pytest.raises(VideoError, match="outside the video's 3 frames"):
            v.get([3])


def test_missing_decoder_names_the_pip_command(videos, monkeypatch):
    monkeypatch.setattr(zoo.io, "_probe", lambda name: "ModuleNotFoundError: No module named 'x'")
    with pytest.raises(VideoError, match=r"pip install av"):
        open_video(videos["h264"])
    monkeypatch.setenv("ZOO_VIDEO_BACKEND", "torchcodec")
    with pytest.raises(VideoError, match=r"pip install torchcodec"):
        open_video(videos["h264"])
    monkeypatch.setenv("ZOO_VIDEO_BACKEND", "opencv")
    with pytest.raises(VideoError, match="unknown video backend 'opencv'"):
        open_video(videos["h264"])


def test_env_forces_backend(videos, monkeypatch):
    for b in BACKENDS:
        monkeypatch.setenv("ZOO_VIDEO_BACKEND", b)
        with open_video(videos["short"]) as v:
            assert v.backend == b
