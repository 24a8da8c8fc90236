"""Kernels compiled on the running machine (``kernels.c``), for :mod:`zoo.deploy` to time against
the PyTorch forms. Built once per machine, compiler and source with the C compiler PyTorch's
inductor uses too (``$CC`` or ``cc``, ``-O3 -march=native -fopenmp``), cached beside the kernel
choices (``~/.cache/zoo/native`` or ``$ZOO_CACHE/native``), written to a temporary name and
renamed. Without a compiler, or with ``ZOO_NATIVE=0``, :func:`load` returns None and the
conversion keeps the PyTorch forms; :func:`why_not` says why."""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import torch

from .choices import _cache_dir

__all__ = ["load", "why_not", "SOURCE", "vector_width"]

SOURCE = Path(__file__).with_name("kernels.c")
# fast-math for the vectorised exp only at compile time: linked with it, gcc adds a start-up
# routine that flushes denormals to zero for the whole process, PyTorch included
COMPILE = ("-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC", "-c")
LINK = ("-shared", "-fopenmp")

_state: dict = {}


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return platform.processor() or platform.machine()
    # -march=native follows the model and the flags: both in the key of the built library
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "")
    flags = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("flags")), "")
    return f"{model} {flags}"


def _run(cmd: list) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode:
        raise OSError(f"{' '.join(map(str, cmd[:2]))} failed: {(r.stderr or r.stdout).strip()[:300]}")
    return r.stdout


def _build() -> Path:
    if os.environ.get("ZOO_NATIVE", "1").strip().lower() in ("0", "off", "no", "false"):
        raise OSError("turned off by ZOO_NATIVE=0")
    if platform.system() != "Linux":
        raise OSError(f"built on Linux only (this is {platform.system()})")
    cc = os.environ.get("CC") or "cc"
    src = SOURCE.read_bytes()
    try:
        version = _run([cc, "--version"])
    except FileNotFoundError:
        raise OSError(f"no C compiler ({cc!r} not found; set CC)") from None
    key = hashlib.sha256(b"\0".join([src, version.encode(), _cpu().encode(), " ".join(COMPILE + LINK).encode()]))
    out = _cache_dir() / "native" / f"kernels-{key.hexdigest()[:16]}.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".build-") as tmp:
        obj, lib = Path(tmp) / "kernels.o", Path(tmp) / "kernels.so"
        _run([cc, *COMPILE, str(SOURCE), "-o", str(obj)])
        _run([cc, *LINK, str(obj), "-o", str(lib), "-lm"])
        os.replace(lib, out)
    return out


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    P, L = ctypes.c_void_p, ctypes.c_long
    lib.gc_pool.argtypes = [P, L, L, L, L, L, L, L, L, P, P, P]
    lib.gc_pool.restype = None
    lib.gc_gates.argtypes = [L, L, L, L, P, P, P, P, P, P, P, P, P]
    lib.gc_gates.restype = None
    lib.conv3x3.argtypes = [P, L, L, L, L, L, P, P, P]
    lib.conv3x3.restype = ctypes.c_int
    lib.conv1x1.argtypes = [P, L, L, L, P, P, P]
    lib.conv1x1.restype = ctypes.c_int
    lib.gc_apply.argtypes = [P, L, L, L, L, L, L, L, L, L, P, P, P, P, P, P, P, ctypes.c_int]
    lib.gc_apply.restype = ctypes.c_int
    lib.sda_branches.argtypes = [P, L, L, L, L, L, L, L, P, P, P, P, P, P, P, P, P, P, P, P, P]
    lib.sda_branches.restype = None
    lib.sda_gate.argtypes = [P, L, L, L, L, L, L, L, L, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, ctypes.c_int]
    lib.sda_gate.restype = None
    lib.aia_c_ctx.argtypes = [P, L, L, L, L, L, P, P, P, P]
    lib.aia_c_ctx.restype = None
    lib.aia_c_gate.argtypes = [P, L, L, L, L, P, ctypes.c_float, P]
    lib.aia_c_gate.restype = None
    lib.aia_c_apply.argtypes = [P, L, L, P, ctypes.c_int]
    lib.aia_c_apply.restype = None
    lib.aia_st_ctx.argtypes = [P, P, P, P, P, L, L, L, L, L, P, P, P, P, P, P]
    lib.aia_st_ctx.restype = ctypes.c_int
    lib.aia_axial.argtypes = [P, P, L, L, L, L, P, ctypes.c_float, P]
    lib.aia_axial.restype = None
    lib.aia_st_apply.argtypes = [P, L, L, L, L, L, P, P, P, ctypes.c_int]
    lib.aia_st_apply.restype = None
    lib.stc_shift.argtypes = [P, L, L, L, L, L, L, P]
    lib.stc_shift.restype = None
    lib.stc_temporal.argtypes = [P, L, L, L, L, L, L, L, L, P, P, P, P]
    lib.stc_temporal.restype = None
    lib.stc_tr_gate.argtypes = [P, L, L, L, L, P, P, P, P, P, P]
    lib.stc_tr_gate.restype = None
    lib.stc_sr_reduce.argtypes = [P, L, L, L, L, P, P, P]
    lib.stc_sr_reduce.restype = None
    lib.stc_pools.argtypes = [P, P, L, L, L, L, L, P, P]
    lib.stc_pools.restype = None
    lib.stc_join.argtypes = [P, P, L, L, L, L, L, P, P, P, P, P]
    lib.stc_join.restype = None
    lib.gst_join.argtypes = [P, P, L, L, L, L, L, P, ctypes.c_int, P]
    lib.gst_join.restype = None
    lib.tsm_join_shift.argtypes = [P, P, L, L, L, L, L, P, L, P]
    lib.tsm_join_shift.restype = ctypes.c_int
    lib.tsm_shift.argtypes = [P, L, L, L, L, L, P]
    lib.tsm_shift.restype = None
    lib.tsm_join.argtypes = [P, P, L, L, L, L, L, P]
    lib.tsm_join.restype = None
    return lib


def load() -> Optional[ctypes.CDLL]:
    """The compiled kernels (built on first use), or None where they cannot be had."""
    if "lib" not in _state:
        try:
            torch.get_num_threads()  # PyTorch's libgomp is loaded before the kernels' (shared)
            _state["lib"] = _bind(ctypes.CDLL(str(_build())))
        except (OSError, subprocess.SubprocessError) as e:
            _state["lib"], _state["why"] = None, str(e)
    return _state["lib"]


def why_not() -> Optional[str]:
    """Why :func:`load` gave None (None when it did not)."""
    load()
    return _state.get("why")


def vector_width() -> int:
    """Floats per vector in the built kernels (16 with AVX-512, 8 otherwise); 0 without them.
    Kept after the first call: a plain value that ``torch.compile`` reads while tracing (it
    cannot trace a call into the library)."""
    if "vw" not in _state:
        lib = load()
        _state["vw"] = lib.zoo_vector_width() if lib is not None else 0
    return _state["vw"]
