"""Weight files on disk: safetensors I/O, sha256, and writes that never leave half a file.

Every file the zoo writes (converted weights, config.json, model cards, the manifest, reports,
mirror copies) goes through :func:`atomic_write`: the bytes land in a unique temporary name in
the destination's folder (``.<name>.<random>.incomplete``), are flushed to disk, and are renamed
over the destination in one step. An interrupted write leaves the old file intact and, at worst,
an ``.incomplete`` file that ``zoo verify`` reports and ``zoo verify --purge`` removes.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Union

import torch
import torch.nn as nn

__all__ = ["WeightsError", "FILENAME", "INCOMPLETE", "sha256", "verify_file", "atomic_write", "copy_file",
           "read_weights", "save_weights", "file_meta", "is_incomplete"]

FILENAME = "model.safetensors"
INCOMPLETE = ".incomplete"     # the suffix of half-written files (huggingface_hub's own too)

PathLike = Union[str, os.PathLike]


class WeightsError(RuntimeError):
    """Weights that cannot be had or cannot be trusted."""


def sha256(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: PathLike, entry: dict) -> Optional[str]:
    """None when ``path`` has the entry's size and sha256, else what is wrong."""
    size = os.path.getsize(path)
    if entry.get("bytes") is not None and size != entry["bytes"]:
        return f"size {size} bytes, expected {entry['bytes']}"
    if entry.get("sha256"):
        digest = sha256(path)
        if digest != entry["sha256"]:
            return f"sha256 {digest}, expected {entry['sha256']}"
    return None


def is_incomplete(path: PathLike) -> bool:
    return os.fspath(path).endswith(INCOMPLETE)


def atomic_write(path: PathLike, data: Union[bytes, str, Callable[[str], None]]) -> Path:
    """Write ``path`` all at once: ``data`` (bytes or text) or ``data(tmp_path)``, a callback that
    writes the file at the temporary path it is given. Concurrent writers of the same path each
    use their own temporary name; the last rename wins and every reader sees a whole file."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path} is a directory; give a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=INCOMPLETE, dir=path.parent)
    try:
        if callable(data):
            os.close(fd)
            fd = None
            data(tmp)
        else:
            with os.fdopen(fd, "wb") as f:
                fd = None
                f.write(data.encode() if isinstance(data, str) else data)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def copy_file(src: PathLike, dst: PathLike) -> Path:
    """Copy ``src`` to ``dst`` through a temporary name (see :func:`atomic_write`)."""
    import shutil

    return atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def file_meta(path: PathLike) -> dict:
    """The metadata of a safetensors file's header; a WeightsError names the file otherwise."""
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such file" if not os.path.exists(path) else f"{path} is not a file")
    try:
        with safe_open(path, "pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # a broken header: say which file
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsError(f"{path} is not a readable safetensors file ({first})") from e


def read_weights(path: PathLike) -> tuple[dict, dict]:
    """(state dict, metadata) of a safetensors file."""
    from safetensors.torch import load_file

    meta = file_meta(path)
    try:
        return load_file(os.fspath(path)), meta
    except Exception as e:
        raise WeightsError(f"{path} is not a readable safetensors file ({str(e).splitlines()[0]})") from e


def save_weights(model: Union[nn.Module, dict], path: PathLike, metadata: dict) -> dict:
    """Write ``model``'s state dict (or a state dict) as safetensors, atomically; returns
    {filename, sha256, bytes}."""
    from safetensors.torch import save_file

    state = model.state_dict() if isinstance(model, nn.Module) else model
    sd = {k: v.detach().cpu().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    meta = {k: str(v) for k, v in metadata.items()}
    atomic_write(path, lambda tmp: save_file(sd, tmp, metadata=meta))
    return {"filename": Path(path).name, "sha256": sha256(path), "bytes": os.path.getsize(path)}
