"""atomic_write: the one way the zoo writes a file."""
import os
import stat

import pytest

from zoo import weights as W


def test_atomic_write_bytes_text_callback(tmp_path):
    p = tmp_path / "sub" / "f.json"
    W.atomic_write(p, "text")
    assert p.read_text() == "text"
    W.atomic_write(p, b"bytes")
    assert p.read_bytes() == b"bytes"
    W.atomic_write(p, lambda tmp: open(tmp, "w").write("from a callback"))
    assert p.read_text() == "from a callback" and os.listdir(p.parent) == ["f.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644 & ~umask   # not mkstemp's private 0600


def test_interrupted_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "model.safetensors"
    p.write_bytes(b"old, whole")

    def half(tmp):
        open(tmp, "wb").write(b"new but ha")
        raise KeyboardInterrupt   # killed mid-write

    with pytest.raises(KeyboardInterrupt):
        W.atomic_write(p, half)
    assert p.read_bytes() == b"old, whole" and os.listdir(tmp_path) == ["model.safetensors"]
    with pytest.raises(W.WeightsError, match="is a directory"):
        W.atomic_write(tmp_path, b"x")
