"""Kernel choices timed on this machine: which of several callables computing the same thing is
fastest, per machine, instruction set, torch version, thread count, code version, dtype and
shape, remembered in ``<cache_dir>/deploy-choices.json`` (``~/.cache/zoo`` or ``$ZOO_CACHE``) as
``cudnn.benchmark`` remembers its algorithms."""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import torch


@functools.lru_cache(maxsize=None)
def code_id() -> str:
    """A digest of the modules whose code the candidates run (the family modules and their
    deployed forms): a choice timed for other code is timed again, not reused."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for d in ("models", "deploy"):
        for f in sorted([*(root / d).glob("*.py"), *(root / d).glob("*.c")]):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


# environment variables that cap the instruction set of oneDNN's and MKL's kernels (ATen's own
# cap, ATEN_CPU_CAPABILITY, shows in torch.backends.cpu.get_cpu_capability())
ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def isa() -> str:
    """The instruction set the CPU kernels run with: ATen's dispatch level, and any cap set on
    oneDNN or MKL (a cap changes which implementation is fastest as a different CPU would)."""
    caps = [f"{k}={os.environ[k]}" for k in ISA_CAPS if os.environ.get(k)]
    return " ".join([torch.backends.cpu.get_cpu_capability()] + caps)


def machine_id() -> str:
    """What a timing depends on besides the shapes: the processor and the instruction set its
    kernels use, torch, the thread count and the zoo's code."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "-"
    return (f"{cpu} | isa {isa()} | gpu {gpu} | torch {torch.__version__} | threads {torch.get_num_threads()}"
            f" | code {code_id()}")


def _cache_dir() -> Path:
    if os.environ.get("ZOO_CACHE"):
        return Path(os.environ["ZOO_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zoo"


# a choice without a margin whose two fastest candidates are closer than this share is timed again
CLOSE = 0.03
# a choice with a margin: a sign test at this level, over at least and at most this many rounds
ALPHA = 0.01
PAIRS = (7, 40)


def sign_tail(k: int, n: int) -> float:
    """P(at least k heads in n tosses of a fair coin)."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n


class Autotuner:
    """Picks the fastest of several callables computing the same thing, once per
    (kind, shapes) on this machine; remembered in ``<cache_dir>/deploy-choices.json``.

    ``enabled=False``: the first candidate (the library kernel) every time, nothing timed."""

    def __init__(self, enabled: bool = True, cache_dir: Optional[os.PathLike] = None, rounds: int = 5):
        self.enabled, self.rounds = enabled, rounds
        self.path = Path(cache_dir or _cache_dir()) / "deploy-choices.json"
        self.machine = machine_id()
        self.choices: dict[str, str] = {}
        self._dirty = False
        if enabled:
            try:
                self.choices = json.loads(self.path.read_text()).get(self.machine, {})
            except (OSError, ValueError, AttributeError):
                self.choices = {}

    def choose(self, kind: str, key, candidates: dict[str, Callable[[], object]], margin: float = 0.0) -> str:
        """The fastest candidate's name. ``margin``: the first candidate (the default) is kept
        unless another is faster by more than this share of its time in significantly more
        rounds than not (:meth:`_gains`; whole-model choices). Without a margin, a close call
        (the two fastest within ``CLOSE`` of each other) is timed again, the two alone, for three
        times the rounds: TSM's block-level choices (a block's forward, its shift lent or copied)
        differ by 2-4 % and flipped between conversions on a busy host."""
        names = list(candidates)
        if not self.enabled or len(names) == 1:
            return names[0]
        k = f"{kind} {key}"
        if self.choices.get(k) in candidates:
            return self.choices[k]
        if margin:
            # the challenger: the other candidate, or the fastest other in a first timing
            other = names[1] if len(names) == 2 else min(names[1:], key=self._times(candidates).get)
            best = other if self._gains(candidates, names[0], other, margin) else names[0]
        else:
            times = self._times(candidates)
            best = min(names, key=times.get)
            runner = min((n for n in names if n != best), key=times.get)
            if times[runner] < times[best] * (1 + CLOSE):
                pair = (best, runner) if names.index(best) < names.index(runner) else (runner, best)
                again = self._times({n: candidates[n] for n in pair}, 3 * self.rounds)
                best = min(pair, key=again.get)
        self.choices[k] = best
        self._dirty = True
        return best

    def _gains(self, candidates: dict, default: str, other: str, margin: float) -> bool:
        """Whether candidate ``other`` runs faster than ``default`` by more than ``margin``: the
        two timed in pairs, round by round, until a one-sided sign test at level ``ALPHA`` decides either
        way (at least ``PAIRS[0]`` rounds, at most ``PAIRS[1]``, fewer once the gain could no
        longer be shown in the rounds left; undecided: no). A burst on the
        host spoils one round, not the decision, and a noisy host is timed longer instead of
        decided by chance: on a shared 2-vCPU EPYC (AVX2) whose forwards varied by +-10 % from
        round to round, the former rule (medians of 5 rounds, confirmed in two of three timings)
        kept a deployed TDN in contiguous frames, 10 % slower than channels-last there (faster
        in 16 of 16 paired rounds)."""
        n = wins = 0
        for ratio in self._paired(candidates[default], candidates[other]):
            n += 1
            wins += ratio < 1 - margin
            if n >= PAIRS[0] and sign_tail(wins, n) < ALPHA:
                return True
            if n >= PAIRS[1] or (n >= PAIRS[0] and sign_tail(n - wins, n) < ALPHA) \
                    or sign_tail(wins + PAIRS[1] - n, PAIRS[1]) >= ALPHA:  # not shown even if it won every round left
                return False
        return False

    @staticmethod
    def _paired(default: Callable, other: Callable):
        """``other``'s time over ``default``'s, round after round (each warmed up once first; the
        order alternating), without end."""
        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
        with torch.no_grad():
            default(), other()
            sync()
        r = 0
        while True:
            t = [0.0, 0.0]
            with torch.no_grad():
                for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                    t0 = time.perf_counter()
                    (default, other)[i]()
                    sync()
                    t[i] = time.perf_counter() - t0
            r += 1
            yield t[1] / t[0]

    def _times(self, candidates: dict, rounds: Optional[int] = None) -> dict:
        """Median seconds of each candidate over ``rounds`` (default ``self.rounds``), the
        candidates alternating round by round (A B, B A, ...) so that drift of the machine hits
        them alike."""
        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
        names = list(candidates)
        ts: dict = {n: [] for n in names}
        with torch.no_grad():
            for fn in candidates.values():
                fn()  # warm-up: allocator, lazy init
            sync()
            for r in range(rounds or self.rounds):
                for n in (names if r % 2 == 0 else names[::-1]):
                    t0 = time.perf_counter()
                    candidates[n]()
                    sync()
                    ts[n].append(time.perf_counter() - t0)
        return {n: statistics.median(v) for n, v in ts.items()}

    def save(self) -> None:
        """Merge this run's choices into the cache file (written to a temporary name, then renamed)."""
        if not (self.enabled and self._dirty):
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                table = json.loads(self.path.read_text())
                if not isinstance(table, dict):
                    table = {}
            except (OSError, ValueError):
                table = {}
            # choices timed for earlier code on this machine are stale: dropped, not kept beside
            same = self.machine.rsplit(" | code ", 1)[0]
            table = {k: v for k, v in table.items() if k == self.machine or k.rsplit(" | code ", 1)[0] != same}
            table.setdefault(self.machine, {}).update(self.choices)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".deploy-choices.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(table, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only home: the choices hold for this model, and are timed again next time
        self._dirty = False


def _key(*tensors_or_shapes) -> str:
    parts = []
    for t in tensors_or_shapes:
        if isinstance(t, torch.Tensor):
            cl = t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)
            parts.append(f"{tuple(t.shape)}:{str(t.dtype)[6:]}:{t.device.type}" + (":cl" if cl else ""))
        else:
            parts.append(str(t))
    return " ".join(parts)
