"""``zoo train`` end to end on frame directories: list files -> zoo.data -> engine -> best/."""
import json

import pytest
import torch

import zoo
from tests.data.synth import write_frame_dirs, write_list
from zoo.cli import main


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    rows = write_frame_dirs(root, n_videos=6, frames=(4, 5, 6), size=(40, 48))
    # two classes: each video's label is its class modulo 2
    rows = [(p, n, lab % 2) for p, n, lab in rows]
    return root, write_list(tmp_path / "train.txt", rows), write_list(tmp_path / "val.txt", rows[:4])


def _args(root, train, val, out, *extra):
    return ["train", "tsn_r18", "--data", str(root), "--train-list", str(train), "--val-list", str(val),
            "--init", "none", "--frames", "2", "--size", "32", "--epochs", "2", "--batch", "2", "--workers", "0",
            "--threads", "1", "--out", str(out), "-q", *extra]


def test_train_command_writes_a_run_and_a_loadable_best(data, tmp_path, capsys):
    root, train, val = data
    out = tmp_path / "run"
    assert main(_args(root, train, val, out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["best", "last.pt", "metrics.csv", "metrics.json"]
    hist = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2] and all(h["val_videos"] == 4 for h in hist)
    cfg = json.loads((out / "best" / "config.json").read_text())
    assert cfg["num_classes"] == 2 and cfg["frames"] == 2 and cfg["training"]["recipe"] == "tsm"
    from safetensors.torch import load_file

    model = zoo.create_model("tsn_r18", num_classes=2, num_frames=2)
    model.load_state_dict(load_file(out / "best" / "model.safetensors"), strict=True)
    # a finished run: running again without --resume is refused; with --resume nothing is left to do
    assert main(_args(root, train, val, out)) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert main(_args(root, train, val, out, "--resume")) == 0


def test_refuses_a_folder_it_did_not_create(data, tmp_path, capsys):
    root, train, val = data
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(_args(root, train, val, out)) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_show_recipe(capsys):
    assert main(["train", "gc_tdn_r50_ssv1_8f", "--show-recipe"]) == 0
    assert "TDN's protocol" in capsys.readouterr().out


def test_finetune_starts_from_the_variants_weights_with_a_new_head(tmp_path):
    from zoo.train.cli import build_model
    from zoo.train.export import export_weights
    from zoo.train.recipes import recipe_for

    name = "gst_r18_diving48v1_16f"
    src = zoo.create_model(name)
    export_weights(src, tmp_path / "w", name=name, recipe=recipe_for(name), metrics={"epoch": 1})
    ft = recipe_for(name, "finetune")
    with pytest.warns(UserWarning, match="unverified"):
        model, start = build_model(name, ft, num_classes=3, weights_dir=str(tmp_path / "w"))
    assert start == "pretrained" and model.num_classes == 3
    own, ref = model.state_dict(), src.state_dict()
    assert all(torch.equal(own[k], ref[k]) for k in ref if not k.startswith("fc."))
    with pytest.raises(ValueError, match="architecture"):
        build_model("gst_r18", ft, num_classes=3)
