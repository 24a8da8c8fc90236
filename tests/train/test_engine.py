"""The engine under torchrun and SIGKILL: a 2-process gloo run equals a 1-process run with the
same global batch, and a run killed mid-epoch resumes to the weights of an uninterrupted run."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.train.checkpoint import LAST, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("tiny_run.py")
# 2 epochs x 4 global batches of 4 clips; BN statistics frozen (per-process BN batches differ
# otherwise, as in the authors' DDP runs), dropout 0, flips on (seeded per sample)
COMMON = ["--epochs", "2", "--samples", "16", "--freeze-bn", "--flip", "--save-every", "1"]


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _run(args, check=True):
    r = subprocess.run([sys.executable, str(SCRIPT), *args], env=_env(), capture_output=True, text=True, timeout=240)
    if check and r.returncode != 0:
        raise AssertionError(r.stderr[-3000:])
    return r


def _weights(out):
    return load_checkpoint(Path(out) / LAST)["model"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    _run([str(out), "--batch", "4", *COMMON])
    return out


# the kill test also has dropout: its masks come from the global RNG that a resume restores
KILL = [*COMMON, "--dropout", "0.5"]


def _close(a, b, atol):
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())
    assert worst <= atol, f"max weight difference {worst}"
    return worst


def test_kill_mid_epoch_and_resume_gives_the_uninterrupted_weights(tmp_path):
    whole = tmp_path / "whole"
    _run([str(whole), "--batch", "4", *KILL])
    out = tmp_path / "run"
    r = _run([str(out), "--batch", "4", *KILL, "--die-at", "1:2"], check=False)
    assert r.returncode == -9, r.stderr[-2000:]       # SIGKILLed, after step 2 of epoch 2, before its save
    state = load_checkpoint(out / LAST)
    assert (state["epoch"], state["step"]) == (1, 1)   # the last completed save
    (out / ".last.pt.crash.tmp").write_bytes(b"half a checkpoint")   # what a kill during a save leaves
    _run([str(out), "--batch", "4", *KILL, "--resume"])
    assert not list(out.glob(".last.pt.*.tmp"))
    final = load_checkpoint(out / LAST)
    assert (final["epoch"], final["step"]) == (2, 0) and len(final["history"]) == 2
    # same seeds, same data order and flips, same RNG: the same weights (bit for bit on one machine)
    _close(final["model"], _weights(whole), 0.0)
    # the interrupted epoch's loss is over all its steps, before and after the kill
    same = ("train_loss", "lr", "val_top1")
    assert [{k: h[k] for k in same} for h in final["history"]] == [
        {k: h[k] for k in same} for h in load_checkpoint(whole / LAST)["history"]]
    assert (out / "best" / "model.safetensors").is_file()


def test_ddp_two_processes_match_one_process(reference, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", str(SCRIPT), str(out), "--batch", "2", *COMMON]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    state = load_checkpoint(out / LAST)
    assert state["world"] == 2 and len(state["rng"]) == 2
    # gradients are averaged over ranks in a different order than one process sums them:
    # float32 rounding only (8 SGD steps)
    _close(state["model"], _weights(reference), 1e-5)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "best", "last.pt", "metrics.csv", "metrics.json"]   # rank 0 alone wrote


def test_resume_refuses_another_batch(reference, tmp_path):
    import dataclasses
    import shutil

    import zoo
    from zoo.train.checkpoint import CheckpointError
    from zoo.train.data import TemporalOrderDataset
    from zoo.train.engine import TrainConfig, fit
    from zoo.train.recipes import recipe_for

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    cfg = TrainConfig(out=str(out), recipe=dataclasses.replace(recipe_for("tsn_r18"), batch=4), batch=2, epochs=2,
                      resume=True, quiet=True)
    with pytest.raises(CheckpointError, match="batch=4 but this run has batch=2"):
        fit(zoo.create_model("tsn_r18", num_classes=2), TemporalOrderDataset(16, frames=2, size=32), None, cfg)
