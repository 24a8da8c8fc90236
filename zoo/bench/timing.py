"""Timing: every model in ONE process, alternated A B C A B C ... (the order rotated each round)
so that drift of the machine (turbo, other load, thermal) hits all of them alike, each model
timed right beside its backbone; per-model statistics; glibc heap settings that make a
forward's cost independent of what ran before.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Optional

from ..deploy.choices import sign_tail

__all__ = ["BenchResult", "quartiles", "median_ci", "verdict", "paired", "time_models", "time_beside", "units",
           "keep_heap", "MIN_ROUNDS_FOR_IQR", "ALPHA"]

# below this many rounds the quartiles are the extremes or two of four values: no spread to speak of
MIN_ROUNDS_FOR_IQR = 8
# a limit is called met or missed when the median's 95 % confidence interval lies on one side of it
ALPHA = 0.05


@dataclass
class BenchResult:
    label: str
    baseline: Optional[str]
    times_ms: list = field(default_factory=list)
    batch: int = 1
    params: Optional[int] = None
    flops: Optional[int] = None
    peak_mb: Optional[float] = None
    model_mb: Optional[float] = None
    compile_s: Optional[float] = None  # torch.compile: the first call's time (tracing and code generation)
    error: str = ""
    # the round each time was taken in (None: rounds 0, 1, ...); a model dropped from later rounds
    # (--until-decided) is still paired with its backbone round by round
    rounds: Optional[list] = None
    # per time: the backbone's forward timed right beside it in the same round (None where the
    # backbone was not in that round); None for runs that timed each model once per round only
    base_ms: Optional[list] = None

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms) if self.times_ms else float("nan")

    @property
    def iqr(self) -> tuple:
        return quartiles(self.times_ms) if self.times_ms else (float("nan"), float("nan"))

    @property
    def ms_per_clip(self) -> float:
        return self.median / self.batch

    @property
    def clips_per_s(self) -> float:
        return 1000.0 * self.batch / self.median if self.times_ms else float("nan")


def _timer(device: str):
    import torch

    if device.startswith("cuda"):
        def timed(fn):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            return a.elapsed_time(b)
    else:
        def timed(fn):
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) * 1000.0
    return timed


def units(labels: list, bases: dict) -> list:
    """The round's units: each backbone between two of the models compared with it
    (``[m1, b, m2]``, or ``[m, b]`` for an odd one out), every other label alone; a backbone
    with k models is timed ceil(k/2) times per round."""
    out, placed = [], set()
    for b in labels:
        mine = [m for m in labels if bases.get(m) == b and m != b]
        for i in range(0, len(mine), 2):
            out.append([mine[i], b] + mine[i + 1:i + 2])
            placed.update(out[-1])
    return out + [[k] for k in labels if k not in placed]


def time_beside(fns: dict, bases: dict, repeats: int, warmup: int, device: str = "cpu", log=None,
                first_round: int = 0) -> tuple:
    """``{label: zero-arg callable}`` and ``{label: its backbone's label}`` -> ``(own, beside)``:
    ``{label: [ms per round]}``, and for each label whose backbone is in ``fns`` the time of the
    backbone's forward run right next to it in the same round.

    Why beside: on the shared hosts the per-round ratio's spread grows with the time between a
    model's forward and its backbone's, the host's state drifting over seconds (the AVX2 EPYC's
    80-round runs that timed each model once a round: over each model's own rounds, those with
    the two closer together had 0.66-0.72 of the spread; benchmarks/results/spread-by-gap.md). A round runs the :func:`units`, their order rotated by r
    (A B C, B C A, ...) and every other round each unit backwards, so each model runs before its
    backbone as often as after it; ``first_round`` continues an earlier call's rotation. A label
    with a backbone takes its own time from its slot beside that backbone; any other from its
    first slot of the round."""
    timed = _timer(device)
    labels = list(fns)
    bases = {k: b for k, b in bases.items() if k in fns and b in fns}
    plan = units(labels, bases)
    for _ in range(warmup):
        for u in plan:
            for k in u:
                timed(fns[k])
    own = {k: [] for k in labels}
    beside = {k: [] for k in bases}
    rounds = range(first_round, first_round + repeats)
    if log:  # a bar on a terminal, a line now and then in a log
        from ..progress import progress

        rounds = progress(rounds, desc="timed rounds", unit="rounds",
                          describe=lambda r: ", ".join(f"{k} {own[k][-1]:.0f} ms" for k in labels[:3] if own[k])
                          + (" ..." if len(labels) > 3 else ""))
    for r in rounds:
        n = r % len(plan) if plan else 0
        done = set()
        for u in plan[n:] + plan[:n]:
            ts = {k: timed(fns[k]) for k in (u[::-1] if r % 2 else u)}
            for k, t in ts.items():
                if k in bases and bases[k] in ts:
                    own[k].append(t)
                    beside[k].append(ts[bases[k]])
                elif k not in bases and k not in done:
                    own[k].append(t)
                    done.add(k)
    return own, beside


def time_models(fns: dict, repeats: int, warmup: int, device: str = "cpu", log=None, first_round: int = 0) -> dict:
    """``{label: zero-arg callable}`` -> ``{label: [ms, ...]}``, alternating the callables with
    no backbones (:func:`time_beside`): round r runs the labels rotated by r (A B C, B C A, ...),
    so each follows each other equally often and drift spreads evenly."""
    return time_beside(fns, {}, repeats, warmup, device, log=log, first_round=first_round)[0]


HEAP_MMAP_THRESHOLD = 32 << 20  # glibc's largest


def keep_heap() -> bool:
    """Make glibc keep freed activations in its heap for reuse: serve every allocation up to
    32 MiB from the heap (no mmap) and never trim it.

    With the defaults, whether a forward's buffers come back from the heap or as fresh pages
    that the kernel must fault in and zero depends on what ran before in the process: the same
    ResNet-50 forward took 0 or 71,000 page faults (0 or ~290 MB) in one process, 500 or 610
    ms. Timing that measures heap luck, not the model; a kept heap (what jemalloc/tcmalloc or
    a caching allocator give) makes every model pay nothing. Returns False where it cannot
    (not glibc)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        return bool(libc.mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD)) and \
            bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False




def quartiles(values: list) -> tuple:
    """(first, third) quartile; the extremes when there are fewer than 4 values."""
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def paired(model: "BenchResult", base: "BenchResult") -> list:
    """The per-round ratios model / backbone over the rounds both were timed in: with the
    backbone's forward timed beside the model's where the run kept it (``base_ms``), else with
    the backbone's own time of the same round."""
    if model.base_ms is not None and base.label == model.baseline:
        return [x / y for x, y in zip(model.times_ms, model.base_ms) if y is not None]
    if model.rounds is None and base.rounds is None:
        return [x / y for x, y in zip(model.times_ms, base.times_ms)] \
            if len(model.times_ms) == len(base.times_ms) else []
    at = dict(zip(base.rounds if base.rounds is not None else range(len(base.times_ms)), base.times_ms))
    mine = model.rounds if model.rounds is not None else range(len(model.times_ms))
    return [x / at[r] for r, x in zip(mine, model.times_ms) if r in at]


def median_ci(values: list, alpha: float = ALPHA) -> Optional[tuple]:
    """A distribution-free ``1 - alpha`` confidence interval of the median: the k-th smallest and
    k-th largest values, k the largest with P(Binomial(n, 1/2) < k) <= alpha / 2 (the interval
    the sign test gives; no assumption on the rounds' distribution, which disturbed rounds make
    skewed). None when there are too few values for any interval at that level (n < 6 at 95 %)."""
    n = len(values)
    k = 0
    while k + 1 <= n // 2 and sign_tail(n - k, n) <= alpha / 2:  # P(at most k heads)
        k += 1
    if k == 0:
        return None
    v = sorted(values)
    return v[k - 1], v[n - k]


def verdict(per_round: list, limit: float, alpha: float = ALPHA) -> Optional[bool]:
    """True when the median per-round ratio is shown at or under ``limit`` (its interval lies
    wholly at or under it), False when shown over it, None when the rounds cannot tell."""
    ci = median_ci(per_round, alpha)
    if ci is None:
        return None
    if ci[1] <= limit:
        return True
    if ci[0] > limit:
        return False
    return None
