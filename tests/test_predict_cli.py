"""`zoo predict` end to end: a model whose weights make the class follow the clip's colour,
saved as model.safetensors in a weights dir and loaded through the normal pretrained path, so the
printed name proves decoding, sampling, transform, head and label order together."""
import json

import pytest
import torch

import zoo
import zoo.io
from zoo.cli import main

from .io.synth import make_frame_dir, make_video

pytest.importorskip("av")
NAME = "tsn_r50_k400_8f"          # Kinetics-400: torchvision's category list is an independent truth
COLOURS = {"red": ((230, 20, 20), 17), "green": ((20, 230, 20), 200), "blue": ((20, 20, 230), 399)}
SIZE = 32


def _flat(path, rgb, n=12, frames_dir=False):
    """A clip of n frames of one colour (as video file or JPEG frame directory)."""
    import av  # noqa: F401
    from PIL import Image

    if frames_dir:
        path.mkdir()
        for i in range(n):
            Image.new("RGB", (64, 48), rgb).save(path / f"img_{i + 1:05d}.jpg", quality=95)
        return path
    import numpy as np

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264" if path.suffix == ".mp4" else "libvpx-vp9", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for _ in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), rgb, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Weights dir with colour -> class weights, and one clip per colour."""
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    model = zoo.create_model(NAME).eval()
    mean, std = torch.tensor(model.pretrained_cfg["mean"]), torch.tensor(model.pretrained_cfg["std"])
    feats = []
    with torch.no_grad():
        for rgb, _ in COLOURS.values():
            x = ((torch.tensor(rgb) / 255 - mean) / std).view(1, 3, 1, 1, 1).expand(1, 3, 8, SIZE, SIZE)
            feats.append(model.forward_head(model.forward_features(x), pre_logits=True)[0])
    F = torch.stack(feats)
    centre = F.mean(0)
    fc = model.get_classifier()
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.fill_(-1e3)
        for f, (_, k) in zip(F, COLOURS.values()):
            w = (f - centre) / (f - centre).norm() * 50 / (F - centre).norm(dim=1).min()
            fc.weight[k] = w
            fc.bias[k] = -(w @ centre)
    wd = d / "weights"
    (wd / NAME).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(wd / NAME / "model.safetensors"),
              metadata={"name": NAME, "arch": "tsn_r50"})
    clips = {"red": _flat(d / "red.mp4", COLOURS["red"][0]),
             "green": _flat(d / "green", COLOURS["green"][0], frames_dir=True),
             "blue": _flat(d / "blue.webm", COLOURS["blue"][0])}
    return wd, clips, d


def _expected(colour):
    from torchvision.models._meta import _KINETICS400_CATEGORIES

    return _KINETICS400_CATEGORIES[COLOURS[colour][1]]


def test_known_answer_json(setup, capsys):
    wd, clips, _ = setup
    rc = main(["predict", *map(str, clips.values()), "--model", NAME, "--weights-dir", str(wd), "--size", str(SIZE),
               "--format", "json", "--workers", "0", "--topk", "3"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and len(out) == 3
    for line, colour in zip(out, clips):
        r = json.loads(line)
        top = r["topk"][0]
        assert r["video"] == str(clips[colour]) and top["index"] == COLOURS[colour][1]
        assert top["label"] == _expected(colour) and top["prob"] > 0.9 and len(r["topk"]) == 3


def test_table_out_file_and_a_failing_file(setup, capsys):
    wd, clips, d = setup
    bad = d / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    out = d / "results.txt"
    rc = main(["predict", str(clips["red"]), str(bad), str(clips["blue"]), "--model", NAME, "--weights-dir", str(wd),
               "--size", str(SIZE), "--out", str(out), "--workers", "1", "--batch", "2"])
    err = capsys.readouterr().err
    assert rc == 1                                       # the number of failed videos
    assert [ln for ln in err.splitlines() if "failed:" in ln] == [next(ln for ln in err.splitlines() if str(bad) in ln)]
    assert "Traceback" not in err and "1 of 3 video(s) failed" in err
    text = out.read_text()
    assert f"1. 100.0%  [ 17]  {_expected('red')}" in text and _expected("blue") in text and str(bad) not in text
    assert not (d / "results.txt.partial").exists()
    assert main(["predict", str(clips["red"]), "--model", NAME, "--out", str(out), "--random-weights"]) == 2
    assert "exists" in capsys.readouterr().err and out.read_text() == text     # never overwritten


def test_csv(setup, capsys):
    wd, clips, _ = setup
    assert main(["predict", str(clips["green"]), "--model", NAME, "--weights-dir", str(wd), "--size", str(SIZE),
                 "--format", "csv", "--topk", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "video,rank,index,label,prob"
    assert lines[1].startswith(f"{clips['green']},1,200,{_expected('green')},1.0")
    assert len(lines) == 3


def test_labels_file_with_the_wrong_number_of_lines(setup, tmp_path, capsys):
    _, clips, _ = setup
    lab = tmp_path / "names.txt"
    lab.write_text("a\nb\nc\n")
    assert main(["predict", str(clips["red"]), "--model", NAME, "--random-weights", "--labels", str(lab)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "3 names for a model with 400 classes" in err and str(lab) in err


def test_user_labels_for_a_dataset_without_a_public_list(setup, tmp_path, capsys):
    _, clips, _ = setup
    name = "tsn_r50_egtea1_8f"
    lab = tmp_path / "egtea.txt"
    lab.write_text("".join(f"action {i}\n" for i in range(106)))
    assert main(["predict", str(clips["red"]), "--model", name, "--random-weights", "--size", "32",
                 "--format", "json", "--labels", str(lab)]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["topk"][0]["label"] == f"action {r['topk'][0]['index']}"

    from zoo.inference import Recognizer

    rec = Recognizer(name, model=zoo.create_model("tsn_r18", num_classes=106), input_size=32)
    assert rec.labels is None and "action_idx.txt" in rec.why_no_labels() and "--labels" in rec.why_no_labels()
    assert rec(clips["red"])["topk"][0]["label"] is None


def test_missing_decoder_names_the_pip_command(setup, monkeypatch, capsys):
    _, clips, _ = setup
    monkeypatch.setattr(zoo.io, "_probe", lambda name: "ModuleNotFoundError: No module named 'av'")
    assert main(["predict", str(clips["red"]), "--model", NAME, "--random-weights"]) == 2
    assert "pip install av" in capsys.readouterr().err


def test_folder_of_videos_and_frame_dirs(setup, tmp_path):
    from zoo.inference import expand_inputs

    _, clips, d = setup
    make_video(tmp_path / "a.mp4", 3)
    make_frame_dir(tmp_path / "b", 3)
    (tmp_path / "notes.txt").write_text("x")
    assert expand_inputs([tmp_path, clips["green"]]) == [str(tmp_path / "a.mp4"), str(tmp_path / "b"),
                                                         str(clips["green"])]
    with pytest.raises(ValueError, match="neither"):
        expand_inputs([d / "weights"])


def test_interrupted_run_keeps_finished_results(setup, tmp_path, monkeypatch, capsys):
    import zoo.inference

    _, clips, _ = setup

    class Interrupted:
        labels = ["x"]

        def __init__(self, *a, **k):
            pass

        def predict(self, paths, **k):
            yield {"video": paths[0], "model": NAME, "views": "1x1", "error": None,
                   "topk": [{"rank": 1, "index": 0, "label": "x", "prob": 1.0}]}
            raise KeyboardInterrupt

    monkeypatch.setattr(zoo.inference, "Recognizer", Interrupted)
    out = tmp_path / "r.jsonl"
    assert main(["predict", str(clips["red"]), str(clips["blue"]), "--model", NAME, "--random-weights",
                 "--format", "json", "--out", str(out), "--workers", "0"]) == 130
    assert not out.exists() and "r.jsonl.partial" in capsys.readouterr().err
    (line,) = (tmp_path / "r.jsonl.partial").read_text().splitlines()
    assert json.loads(line)["video"] == str(clips["red"])
