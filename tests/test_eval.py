"""zoo eval: metrics, known answers through the command, shards under torchrun, ensembles from
saved score files, claims beside the measurement."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import zoo
from zoo.cli import main
from zoo.data import VideoDataset, read_samples
from zoo.eval import (combine_scores, compare_claims, evaluate, load_scores, mean_class_accuracy, save_scores,
                      shard_range, topk_accuracy)
from zoo.registry import registry

from .data.synth import NUM_CLASSES, write_frame_dirs, write_list

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--random-weights", "--num-classes", str(NUM_CLASSES), "--frames", "2", "--size", "32", "--workers", "0",
        "--threads", "1", "-q"]


def test_topk_and_mean_class():
    scores = torch.tensor([[3., 2, 1], [1, 3, 2], [3, 1, 2], [1, 2, 3]])
    labels = torch.tensor([0, 2, 0, 1])
    m = topk_accuracy(scores, labels, (1, 2, 5))
    assert m == {"top1": 50.0, "top2": 100.0, "top5": 100.0}
    # class 0: 2/2, class 1: 0/1, class 2: 0/1 -> mean 33.3 (no class without videos counted)
    assert mean_class_accuracy(scores, labels) == pytest.approx(100 / 3)


@pytest.mark.parametrize("n, world", [(5, 2), (7, 3), (2, 4), (0, 2), (100, 8)])
def test_shards_cover_every_video_once(n, world):
    parts = [list(shard_range(n, r, world)) for r in range(world)]
    assert sum(parts, []) == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalset")
    rows = write_frame_dirs(root, n_videos=5, size=(36, 40))        # odd: shards of 3 and 2
    return root, rows


def _run(root, rows, out, labels=None, extra=()):
    lst = write_list(out.parent / f"{out.name}.txt", rows, labels)
    rc = main(["eval", "tsn_r18", "--data", str(root), "--list", str(lst), "--out", str(out), *ARGS, *extra])
    assert rc == 0
    return json.loads((out / "tsn_r18-1x1.json").read_text()), load_scores(out / "tsn_r18-1x1.scores.safetensors")


def test_known_answer_own_predictions_and_shifted_labels(dataset, tmp_path, capsys):
    root, rows = dataset
    _, first = _run(root, rows, tmp_path / "first")
    pred = first["scores"].argmax(1).tolist()
    summary, again = _run(root, rows, tmp_path / "own", labels=pred)
    assert summary["metrics"]["top1"] == 100.0 and summary["num_videos"] == 5
    assert again["ids"] == [r[0] for r in rows] and torch.equal(again["scores"], first["scores"])
    summary, _ = _run(root, rows, tmp_path / "shifted", labels=[(p + 1) % NUM_CLASSES for p in pred])
    assert summary["metrics"]["top1"] == 0.0 and summary["weights"] == "random (seed 0)"
    assert "top1 0.00" in capsys.readouterr().out


def test_two_processes_under_torchrun_match_one(dataset, tmp_path):
    root, rows = dataset
    one_summary, one = _run(root, rows, tmp_path / "one", extra=["--batch", "2"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "zoo", "eval", "tsn_r18", "--data", str(root),
           "--list", str(tmp_path / "one.txt"), "--out", str(tmp_path / "two"), "--batch", "2", "--device", "cpu", *ARGS]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    two = load_scores(tmp_path / "two" / "tsn_r18-1x1.scores.safetensors")
    two_summary = json.loads((tmp_path / "two" / "tsn_r18-1x1.json").read_text())
    assert two_summary["processes"] == 2 and one_summary["processes"] == 1
    assert two["ids"] == one["ids"] and torch.equal(two["labels"], one["labels"])
    for i in one["ids"]:                      # batches differ ([2,1] + [2] vs [2,2,1]): equal to float rounding
        torch.testing.assert_close(two["by_id"][i], one["by_id"][i], rtol=0, atol=1e-6)
    assert two_summary["metrics"] == one_summary["metrics"]


def test_ensemble_from_saved_scores_equals_ensemble_forward(dataset, tmp_path):
    root, rows = dataset
    samples = read_samples(write_list(tmp_path / "l.txt", rows), root=root, labels=NUM_CLASSES)
    torch.manual_seed(0)
    members = {"a": zoo.create_model("tsn_r18", num_classes=NUM_CLASSES, num_frames=2),
               "b": zoo.create_model("tsm_r18", num_classes=NUM_CLASSES, num_frames=4)}
    datasets, files = [], []
    for key, m in members.items():
        tf = zoo.create_transform("tsn_r18", size=32, frames=m.num_frames)
        ds = VideoDataset(samples, frames=m.num_frames, mode="1clip", transform=tf)
        datasets.append(ds)
        files.append(save_scores(tmp_path / f"{key}.safetensors", evaluate(m, DataLoader(ds, batch_size=2)),
                                 {"model": key, "views": "1x1"}))
    combined = combine_scores([load_scores(f) for f in files])
    ens = zoo.EnsembleModel(members).eval()
    with torch.no_grad():
        for i, vid in enumerate(combined["ids"]):
            want = ens([ds[i]["video"] for ds in datasets])[0]
            torch.testing.assert_close(combined["by_id"][vid], want, rtol=0, atol=1e-5)


def test_ensemble_command_combines_member_files(tmp_path, capsys):
    name = "gc_tdn_r50_ssv1_8f16f"
    ens = registry().ensembles[name]
    g = torch.Generator().manual_seed(0)
    results = []
    for m in ens.members:
        r = {"ids": ["x", "y", "z"], "index": torch.arange(3), "labels": torch.tensor([1, 2, 3]),
             "scores": torch.randn(3, 174, generator=g)}
        save_scores(tmp_path / f"{m}-1x1.scores.safetensors", r, {"model": m, "views": "1x1", "average": "logits"})
        results.append(load_scores(tmp_path / f"{m}-1x1.scores.safetensors"))
    assert main(["eval", name, "--views", "1x1", "--out", str(tmp_path)]) == 0
    out = load_scores(tmp_path / f"{name}-1x1.scores.safetensors")
    torch.testing.assert_close(out["scores"], (results[0]["scores"] + results[1]["scores"]) / 2)
    summary = json.loads((tmp_path / f"{name}-1x1.json").read_text())
    assert summary["members"] == list(ens.members)
    claimed = [c for c in ens.claims if c.views in ("1x1", "")]
    assert claimed and summary["claims"][0]["claimed"] == claimed[0].metrics[summary["claims"][0]["metric"]]
    assert "claimed" in capsys.readouterr().out
    # a member evaluated with other views is refused
    assert main(["eval", name, "--views", "3x2", "--out", str(tmp_path),
                 "--scores", *(str(tmp_path / f"{m}-1x1.scores.safetensors") for m in ens.members)]) == 2
    assert "evaluated with views 1x1, not 3x2" in capsys.readouterr().err


def test_claims_beside_measurement():
    reg = registry()
    name, v = next((n, v) for n, v in sorted(reg.variants.items()) if any(c.views == "1x1" and "top1" in c.metrics
                                                                          for c in v.claims))
    claim = next(c for c in v.claims if c.views == "1x1" and "top1" in c.metrics)
    rows = compare_claims(name, "1x1", {"top1": claim.metrics["top1"] + 1.25, "top5": float("nan")})
    row = next(r for r in rows if r["table"] == claim.table and r["metric"] == "top1")
    assert row["diff"] == 1.25 and row["claimed"] == claim.metrics["top1"]
    assert not [r for r in compare_claims(name, "9x9", {"top1": 1.0}) if r["views"] == "9x9"]


def test_command_errors_are_one_line(dataset, tmp_path, capsys):
    root, rows = dataset
    lst = tmp_path / "bad.txt"
    lst.write_text(f"vid_0 {rows[0][1]} 0\nvid_1 {rows[1][1]} 99\n")
    assert main(["eval", "tsn_r18", "--data", str(root), "--list", str(lst), "--out", str(tmp_path / "o"), *ARGS]) == 2
    err = capsys.readouterr().err
    assert "bad.txt:2: label 99 is out of range for 8 classes" in err and "--skip-bad" in err and len(err.splitlines()) == 1
    assert main(["eval", "tsn_r18", "--data", str(root), "--list", str(lst), "--out", str(tmp_path / "o"),
                 "--skip-bad", *ARGS]) == 0
    summary = json.loads((tmp_path / "o" / "tsn_r18-1x1.json").read_text())
    assert summary["num_videos"] == 1 and summary["skipped"][0].endswith("bad.txt:2: label 99 is out of range for 8 classes")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "tsn_r18-1x1.json").write_text("{}")      # not ours: never overwritten
    assert main(["eval", "tsn_r18", "--data", str(root), "--list", str(lst), "--out", str(tmp_path / "mine"),
                 "--skip-bad", *ARGS]) == 2
    assert "was not written by zoo eval" in capsys.readouterr().err
    assert (tmp_path / "mine" / "tsn_r18-1x1.json").read_text() == "{}"
