"""Checkpoints are written atomically and a damaged one is refused, never half-trusted."""
import os

import pytest
import torch

from zoo.train import checkpoint as C


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / C.LAST
    C.save_atomic({"epoch": 1, "w": torch.ones(3)}, path)
    real = torch.save

    def dying_save(obj, f, *a, **k):     # a crash in the middle of writing
        f.write(b"\x00" * 100)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        C.save_atomic({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real)
    state = C.load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert os.listdir(tmp_path) == [C.LAST]        # no temporary file left behind


def test_truncated_or_foreign_files_are_refused(tmp_path):
    path = tmp_path / C.LAST
    C.save_atomic({"epoch": 1, "w": torch.ones(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(C.CheckpointError, match="not a readable checkpoint"):
        C.load_checkpoint(path)
    torch.save({"epoch": 1}, path)                  # a torch file that zoo did not write
    with pytest.raises(C.CheckpointError, match="not a zoo train checkpoint"):
        C.load_checkpoint(path)


def test_clean_partial_removes_only_its_own_names(tmp_path):
    (tmp_path / ".last.pt.abc.tmp").write_bytes(b"x")
    (tmp_path / "notes.tmp").write_bytes(b"mine")
    C.clean_partial(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["notes.tmp"]


def test_rng_state_round_trip():
    s = C.rng_state()
    a = torch.rand(3)
    import random
    b = random.random()
    C.set_rng_state(s)
    assert torch.equal(torch.rand(3), a) and random.random() == b
