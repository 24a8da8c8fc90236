"""Training checkpoints that a crash cannot corrupt.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then renamed
over ``last.pt`` (``os.replace`` is atomic on POSIX and Windows): at any moment ``last.pt`` is
either the previous complete checkpoint or the new complete one. The file carries a format tag
and is read with ``torch.load(weights_only=True)``; a file without the tag or that does not
load is refused, never half-trusted. Temporary files left by a killed run are removed on the
next start (only names this module creates: ``.last.pt.*.tmp``).
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Optional

import torch

__all__ = ["save_atomic", "load_checkpoint", "CheckpointError", "rng_state", "set_rng_state", "LAST", "FORMAT"]

LAST = "last.pt"
FORMAT = "zoo-train-checkpoint/1"
_TMP_PREFIX = ".last.pt."


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used for resuming."""


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # not supported (Windows): the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_atomic(state: dict, path) -> Path:
    """Write ``state`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def clean_partial(folder) -> list[Path]:
    """Remove temporary files a killed run left (only this module's own names)."""
    gone = []
    for p in Path(folder).glob(f"{_TMP_PREFIX}*.tmp"):
        p.unlink(missing_ok=True)
        gone.append(p)
    return gone


def load_checkpoint(path) -> dict:
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0]}); "
                              "it was not written by a completed save - start a new run with another --out") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a zoo train checkpoint (format tag missing or {state.get('format')!r})"
                              if isinstance(state, dict) else f"{path} is not a zoo train checkpoint")
    return state


def rng_state(device: Optional[torch.device] = None) -> dict:
    s = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device is not None and device.type == "cuda":
        s["cuda"] = torch.cuda.get_rng_state(device)
    return s


def set_rng_state(s: dict, device: Optional[torch.device] = None) -> None:
    torch.set_rng_state(s["torch"])
    py = s["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if device is not None and device.type == "cuda" and "cuda" in s:
        torch.cuda.set_rng_state(s["cuda"], device)
