"""Latency benchmark: ``zoo bench`` (also ``benchmarks/latency.py``).

Every network is timed in ONE process, the models alternated A B C A B C ... (the order rotated
each round) so that drift of the machine (turbo, other load, thermal) hits all of them alike.
After a warm-up, each model gets ``repeats`` timed forwards of one batch of clips; the table
shows the median and the spread (interquartile range) in ms per batch, clips/s, and each model's
ratio to its own backbone measured in the same run (GC-TSM -> TSM, AIA(TSN) -> TSN, GST -> TSN,
TSN -> torchvision ResNet-50 on the same frames, ...), beside its FLOP overhead over that
backbone from :func:`zoo.complexity`, so a row reads "FLOPs +1.3%, latency +2.1%".

Peak memory is measured in a fresh child process per model so that one model's allocations do
not hide another's: on CPU the resident-set high-water mark (``VmHWM``, reset after the model is
loaded) minus the resident set of the loaded model; on CUDA ``max_memory_allocated`` minus the
memory allocated after loading. The same child computes the FLOPs (fvcore), which needs no quiet
machine.

A model is named by a registered architecture, optionally with kwargs after a colon
(``aia_tsn_r50:attention=c``), or ``tv_resnetD`` for torchvision's ResNet-D run over the frames
of the clip and averaged (the floor every 2D-backbone net is compared with).
"""
from __future__ import annotations

import argparse
import ast
import csv
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

__all__ = ["Spec", "parse_spec", "build", "baseline_of", "TARGETS", "PRESETS", "BenchResult",
           "run_bench", "render_md", "render_csv", "add_commands", "main"]

TV = "tv_resnet"

# The issue's CPU targets: (model, baseline, max ratio of latencies, the authors' ratio on the
# same machine for the same comparison). The authors' ratios are their code's latency relative
# to torchvision ResNet-50 (TSN 1.02, TSM 1.05, ...) divided by their backbone's; "at least
# twice as well on every overhead" gives the limits not set explicitly.
TARGETS: dict[str, tuple[str, float, float]] = {
    "tsn_r50": ("tv_resnet50", 1.01, 1.02),
    "tsm_r50": ("tsn_r50", 1.01, 1.05 / 1.02),
    "gc_tsn_r50": ("tsn_r50", 1.05, 1.13 / 1.02),
    "gc_tsm_r50": ("tsm_r50", 1.05, 1.17 / 1.05),
    "sda_tsn_r50": ("tsn_r50", 1.10, 1.22 / 1.02),
    "sda_tsm_r50": ("tsm_r50", 1.10, 1.27 / 1.05),
    "aia_tsn_r50": ("tsn_r50", 1.40, 1.89 / 1.02),
    "aia_tsm_r50": ("tsm_r50", 1.40, 1.93 / 1.05),
    "aia_tsn_r50:attention=c": ("tsn_r50", 1.02, 1.05 / 1.02),
    "aia_tsn_r50:attention=st": ("tsn_r50", 1 + (1.41 / 1.02 - 1) / 2, 1.41 / 1.02),
    "gst_r50": ("tsn_r50", 1.00, 1.54 / 1.02),
    "gst_large_r50": ("tsn_r50", 1 + (1.24 / 1.02 - 1) / 2, 1.24 / 1.02),
    "gc_gst_r50": ("gst_r50", 1.05, 1.63 / 1.54),
    "stc_r50": ("tsn_r50", 0.90, float("nan")),
    "stc_light_r50": ("tsn_r50", 0.90, float("nan")),
    "tdn_r50": ("tv_resnet50", 1.30, 1.48),
    "gc_tdn_r50": ("tdn_r50", 1.05, 1.62 / 1.48),
}

# the authors' peak activation memory for one 8x224 clip on CPU, over the loaded model (MB)
AUTHORS_ACT_MB = (95, 165)

PRESETS = {
    "main": ["tv_resnet50", "tsn_r50", "tsm_r50", "gc_tsn_r50", "gc_tsm_r50", "sda_tsn_r50",
             "sda_tsm_r50", "aia_tsn_r50", "aia_tsm_r50", "aia_tsn_r50:attention=c",
             "aia_tsn_r50:attention=st", "gst_r50", "gst_large_r50", "gc_gst_r50", "stc_r50",
             "stc_light_r50", "tdn_r50", "gc_tdn_r50"],
    "core": ["tv_resnet50", "tsn_r50", "tsm_r50", "gc_tsn_r50", "gc_tsm_r50", "sda_tsn_r50",
             "aia_tsn_r50", "aia_tsn_r50:attention=c", "gst_r50", "stc_r50", "tdn_r50", "gc_tdn_r50"],
}


# -- naming ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    """A model to benchmark: an architecture name and kwargs (``name:k=v,k=v``)."""

    name: str
    kwargs: tuple = ()

    @property
    def label(self) -> str:
        if not self.kwargs:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_fmt(v)}" for k, v in self.kwargs)


def _fmt(v) -> str:
    return v if isinstance(v, str) else repr(v)


def parse_spec(text: str) -> Spec:
    """``"aia_tsn_r50:attention=c"`` -> Spec("aia_tsn_r50", (("attention", "c"),)).

    Values are Python literals where they parse as one (``ratio=0.5``, ``loop=True``), strings
    otherwise."""
    name, _, rest = text.partition(":")
    kwargs = []
    for item in filter(None, rest.split(",")):
        k, eq, v = item.partition("=")
        if not eq:
            raise ValueError(f"bad model spec {text!r}: expected name:key=value[,key=value]")
        try:
            val = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            val = v
        kwargs.append((k.strip(), val))
    spec = Spec(name.strip(), tuple(kwargs))
    _check_name(spec.name)
    return spec


def _check_name(name: str) -> None:
    if re.fullmatch(TV + r"(18|34|50|101|152)", name):
        return
    from .registry import archs

    if name not in archs():
        import difflib

        close = difflib.get_close_matches(name, list(archs()) + [TV + "50"], n=3)
        raise ValueError(f"unknown architecture {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))


def baseline_of(name: str) -> Optional[str]:
    """The backbone a variant is compared with.

    ``<prefix>_<arch>`` -> ``<arch>`` when that is registered (gc_tsm_r50 -> tsm_r50,
    aia_tsn_r50 -> tsn_r50, gc_gst_r50 -> gst_r50, gc_tdn_r50 -> tdn_r50); TSN and TDN ->
    torchvision ResNet of the same depth; everything else (TSM, GST, STC, C3D, ...) -> TSN of
    the same depth. torchvision's ResNet has none."""
    if name.startswith(TV):
        return None
    from .registry import archs

    reg = archs()
    head, _, rest = name.partition("_")
    if rest in reg:
        return rest
    m = re.search(r"_r(\d+)$", name)
    depth = m.group(1) if m else "50"
    family = reg[name].family if name in reg else head
    if family in ("tsn", "tdn"):
        return f"{TV}{depth}"
    return f"tsn_r{depth}"


# -- models ---------------------------------------------------------------------------------------

def _torchvision_frames(depth: int, num_classes: int, num_frames: int):
    import torch.nn as nn
    import torchvision

    class FrameResNet(nn.Module):
        """torchvision's ResNet on every frame of (B, 3, T, H, W), scores averaged over T."""

        def __init__(self):
            super().__init__()
            self.net = getattr(torchvision.models, f"resnet{depth}")(num_classes=num_classes)
            self.num_frames = num_frames

        def forward(self, x):
            B, C, T, H, W = x.shape
            return self.net(x.transpose(1, 2).reshape(B * T, C, H, W)).view(B, T, -1).mean(1)

    return FrameResNet()


def build(spec: Spec, num_classes: int = 400, num_frames: int = 8):
    """The module for ``spec`` (eval mode, float32, on CPU)."""
    if spec.name.startswith(TV):
        if spec.kwargs:
            raise ValueError(f"{spec.name} takes no kwargs")
        model = _torchvision_frames(int(spec.name[len(TV):]), num_classes, num_frames)
    else:
        # an architecture needs only its builder (not the registry tables); kwargs are checked
        from .factory import _build
        from .registry import archs

        model = _build(archs()[spec.name], num_classes, num_frames, dict(spec.kwargs))
    return model.eval()


def clip_shape(model, batch: int, frames: int, size: int) -> tuple:
    """Input shape of ``batch`` clips of ``frames`` segments (TDN segments carry several frames)."""
    return (batch, 3, frames * getattr(model, "frames_per_segment", 1), size, size)


def prepare(model, device: str, dtype: str, channels_last: bool):
    """Move to device/dtype; channels_last for every 4-D (and channels_last_3d for 5-D) weight."""
    import torch

    model = model.to(device=device, dtype=_DTYPES[dtype])
    if channels_last:
        for p in list(model.parameters()) + list(model.buffers()):
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
            elif p.dim() == 5:
                p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
    return model


def _dtypes():
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class _Lazy(dict):
    def __missing__(self, k):
        self.update(_dtypes())
        return dict.__getitem__(self, k)


_DTYPES = _Lazy()


# -- the child process: memory and FLOPs -----------------------------------------------------------

def _status_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field_name} in /proc/self/status")


def _reset_hwm() -> bool:
    """Reset the resident-set high-water mark (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def probe(cfg: dict) -> dict:
    """Build one model and measure its peak memory for one forward, then its FLOPs.

    Meant for a fresh process (:func:`_probe_main`): the high-water mark is process-wide."""
    import resource

    import torch

    torch.set_num_threads(cfg["threads"])
    spec = parse_spec(cfg["spec"])
    out: dict = {"spec": spec.label}
    dev = cfg["device"]
    cuda = dev.startswith("cuda")
    rss0 = _status_kb("VmRSS") if not cuda else 0
    model = build(spec, num_frames=cfg["frames"])
    shape = clip_shape(model, cfg["batch"], cfg["frames"], cfg["size"])
    out["params"] = sum(p.numel() for p in model.parameters())
    model = prepare(model, dev, cfg["dtype"], cfg["channels_last"])
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dev, _DTYPES[cfg["dtype"]])
    with torch.inference_mode():
        if cuda:
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            for _ in range(2):
                model(x)
            torch.cuda.synchronize()
            out["peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
            out["model_mb"] = base / 2**20
            out["memory_how"] = "cuda max_memory_allocated - allocated after load"
        else:
            base = _status_kb("VmRSS")
            exact = _reset_hwm()
            for _ in range(2):  # the first forward also allocates oneDNN's caches
                model(x)
            hwm = _status_kb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            out["peak_mb"] = (hwm - base) / 1024
            out["model_mb"] = (base - rss0) / 1024
            out["memory_how"] = ("RSS high-water mark (reset after load) - RSS after load" if exact
                                 else "ru_maxrss - RSS after load (clear_refs unavailable)")
            if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
                out["memory_how"] += f", glibc mmap threshold {os.environ['MALLOC_MMAP_THRESHOLD_']} B"
    del model, x
    if cfg.get("flops", True):
        from .complexity import complexity

        m = build(spec, num_frames=cfg["frames"])
        c = complexity(m, num_frames=cfg["frames"], input_size=cfg["size"])
        out["flops"] = c.flops * cfg["batch"]
        out["flops_uncounted"] = c.uncounted_estimate * cfg["batch"]
    return out


def _probe_main() -> None:
    cfg = json.loads(sys.argv[1])
    try:
        res = probe(cfg)
    except Exception as e:  # reported in the table, the benchmark goes on
        res = {"spec": cfg["spec"], "error": f"{type(e).__name__}: {e}"}
    print("\n@@PROBE " + json.dumps(res))


MMAP_THRESHOLD = 131072


def run_probes(specs: list[Spec], cfg: dict, jobs: int = 1, log=None) -> dict:
    """Run :func:`probe` for every spec in its own Python process, ``jobs`` at a time."""
    root = str(Path(__file__).resolve().parent.parent)
    # glibc: allocations from 128 KiB up are mmapped and go back to the OS when freed, so the
    # resident set follows live memory and its high-water mark is the peak, not whatever the
    # heap happened to retain (which made the measure vary by +-40% between like models)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": str(cfg["threads"]), "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    code = "from zoo.bench import _probe_main; _probe_main()"
    results, pending, running = {}, list(specs), []
    while pending or running:
        while pending and len(running) < max(1, jobs):
            s = pending.pop(0)
            arg = json.dumps({**cfg, "spec": s.label})
            p = subprocess.Popen([sys.executable, "-c", code, arg], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env, cwd=root)
            running.append((s, p))
        s, p = running.pop(0)
        so, se = p.communicate()
        line = next((ln for ln in so.splitlines() if ln.startswith("@@PROBE ")), None)
        results[s.label] = (json.loads(line[8:]) if line else
                            {"spec": s.label, "error": f"probe failed (rc {p.returncode}): {se.strip()[-500:]}"})
        if log:
            r = results[s.label]
            log(f"  probe {s.label}: " + (r["error"] if "error" in r else
                                          f"peak {r['peak_mb']:.0f} MB, {r['flops'] / 1e9:.2f} GFLOPs"))
    return results


# -- timing ---------------------------------------------------------------------------------------

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
    error: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms) if self.times_ms else float("nan")

    @property
    def iqr(self) -> tuple:
        return _quartiles(self.times_ms) if self.times_ms else (float("nan"), float("nan"))

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


def time_models(fns: dict, repeats: int, warmup: int, device: str = "cpu", log=None) -> dict:
    """``{label: zero-arg callable}`` -> ``{label: [ms, ...]}``, alternating the callables.

    Round r runs the labels rotated by r (A B C, B C A, C A B, ...), so each model follows each
    other equally often and drift spreads evenly."""
    timed = _timer(device)
    labels = list(fns)
    for _ in range(warmup):
        for k in labels:
            timed(fns[k])
    out = {k: [] for k in labels}
    for r in range(repeats):
        order = labels[r % len(labels):] + labels[:r % len(labels)] if labels else []
        for k in order:
            out[k].append(timed(fns[k]))
        if log:
            log(f"  round {r + 1}/{repeats}: " + ", ".join(f"{k} {out[k][-1]:.0f}" for k in labels[:4])
                + (" ..." if len(labels) > 4 else ""))
    return out


def copy_bandwidth(mb: int = 64, repeats: int = 7) -> float:
    """GB/s of a large tensor copy (bytes read + bytes written), with the current threads: the
    bound for memory-bound ops such as gates, pools and the TSM shift."""
    import torch

    x = torch.empty(mb * 2**18)
    y = torch.empty_like(x)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        y.copy_(x)
        ts.append(time.perf_counter() - t0)
    return 2 * x.numel() * 4 / statistics.median(ts) / 1e9


def machine() -> dict:
    """The machine, in words and numbers, for the results file."""
    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    d = {"cpu": cpu, "logical_cpus": os.cpu_count(), "python": platform.python_version(),
         "torch": torch.__version__, "platform": platform.platform(),
         "mkldnn": torch.backends.mkldnn.is_available(), "load_avg": os.getloadavg(),
         "copy_gbps": round(copy_bandwidth(), 1)}
    try:
        with open("/proc/meminfo") as f:
            d["mem_gb"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    if torch.cuda.is_available():
        d["gpu"] = torch.cuda.get_device_name(0)
    return d


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


def run_bench(names: list[str], baseline: Optional[str] = None, device: str = "cpu", threads: int = 2,
              batch: int = 1, frames: int = 8, size: int = 224, dtype: str = "fp32",
              channels_last: bool = False, compile: bool = False, repeats: int = 10, warmup: int = 2,
              probes: bool = True, jobs: int = 1, add_baselines: bool = True, probe_cache: Optional[str] = None,
              log=None, malloc: str = "keep") -> dict:
    """Benchmark ``names`` (and their backbones) in one process; returns the run as a dict
    (``machine``, ``settings``, ``results``: {label: BenchResult}).

    ``probe_cache``: a JSON file of earlier probe results (memory, FLOPs) for the same settings;
    models found there are not probed again (memory and FLOPs do not depend on machine load, so
    they can be measured while the machine is busy and the timing run kept short).

    ``malloc``: "keep" (CPU: :func:`keep_heap` before the models are built) or "default"."""
    import torch

    if malloc not in ("keep", "default"):
        raise ValueError(f"malloc must be 'keep' or 'default', got {malloc!r}")
    heap = "glibc default"
    if malloc == "keep" and not device.startswith("cuda"):
        heap = ("glibc heap kept (mmap threshold 32 MiB, no trimming)" if keep_heap()
                else "default (could not keep the heap: not glibc)")

    torch.set_num_threads(threads)
    specs = [parse_spec(n) for n in names]
    bases = {}
    for s in specs:
        b = baseline if baseline is not None else (TARGETS.get(s.label, (None,))[0] or baseline_of(s.name))
        if b == s.label:
            b = None
        bases[s.label] = b
    if add_baselines:
        have = {s.label for s in specs}
        for b in list(bases.values()):
            if b and b not in have:
                s = parse_spec(b)
                specs.append(s)
                have.add(s.label)
                bases[s.label] = None if baseline is not None else baseline_of(s.name)
                if bases[s.label] and bases[s.label] not in have:
                    bases[s.label] = None  # compare only with what is in the run
    settings = {"device": device, "threads": threads, "batch": batch, "frames": frames, "size": size,
                "dtype": dtype, "channels_last": channels_last, "compile": compile, "repeats": repeats,
                "warmup": warmup, "malloc": heap}
    results = {s.label: BenchResult(s.label, bases.get(s.label), batch=batch) for s in specs}
    if probes:
        if log:
            log(f"memory and FLOPs: {len(specs)} child processes, {jobs} at a time")
        cfg = {"device": device, "threads": threads, "batch": batch, "frames": frames, "size": size,
               "dtype": dtype, "channels_last": channels_last, "mmap_threshold": MMAP_THRESHOLD}
        found = {}
        if probe_cache and Path(probe_cache).is_file():
            saved = json.loads(Path(probe_cache).read_text())
            if saved.get("settings") == cfg:
                found = {k: v for k, v in saved["results"].items() if "error" not in v}
        todo = [s for s in specs if s.label not in found]
        if log and found:
            log(f"  {len(specs) - len(todo)} probe(s) from {probe_cache}")
        found.update(run_probes(todo, cfg, jobs=jobs, log=log))
        if probe_cache:
            Path(probe_cache).write_text(json.dumps({"settings": cfg, "results": found}, indent=1))
        for label, r in ((s.label, found[s.label]) for s in specs):
            res = results[label]
            if "error" in r:
                res.error = r["error"]
                continue
            res.params, res.flops, res.peak_mb, res.model_mb = r["params"], r["flops"], r["peak_mb"], r["model_mb"]
            settings["memory_how"] = r["memory_how"]
    fns = {}
    for s in specs:
        if results[s.label].error:
            continue
        try:
            model = build(s, num_frames=frames)
            if results[s.label].params is None:
                results[s.label].params = sum(p.numel() for p in model.parameters())
            x = torch.randn(clip_shape(model, batch, frames, size)).to(device, _DTYPES[dtype])
            model = prepare(model, device, dtype, channels_last)
            if compile:
                model = torch.compile(model)
        except Exception as e:
            results[s.label].error = f"{type(e).__name__}: {e}"
            continue

        def fn(model=model, x=x):
            with torch.inference_mode():
                model(x)
        fns[s.label] = fn
    if log:
        log(f"timing {len(fns)} models: {warmup} warm-up + {repeats} timed rounds, alternated")
    for label, t in time_models(fns, repeats, warmup, device, log=log).items():
        results[label].times_ms = t
    return {"machine": machine(), "settings": settings, "results": results}


# -- output ---------------------------------------------------------------------------------------

def _pct(x: Optional[float]) -> str:
    return "" if x is None or x != x else f"{(x - 1) * 100:+.1f}%"


def rows(run: dict) -> list[dict]:
    """One flat dict per model: what the CSV holds and the Markdown table shows."""
    res = run["results"]
    floor = next((r for k, r in res.items() if k.startswith(TV + "50")), None)
    out = []
    for label, r in res.items():
        b = res.get(r.baseline) if r.baseline else None
        ratio = rq1 = rq3 = None
        if b and b.times_ms and r.times_ms:
            # the median of per-round ratios: model and backbone ran in the same round, close in
            # time, so a disturbed round (another job, a frequency change) cancels out; their
            # quartiles show how far one round's ratio strays
            if len(b.times_ms) == len(r.times_ms):
                per_round = [x / y for x, y in zip(r.times_ms, b.times_ms)]
                ratio = statistics.median(per_round)
                rq1, rq3 = _quartiles(per_round)
            else:
                ratio = r.median / b.median
        fl = r.flops / b.flops if b and r.flops and b.flops else None
        tgt = TARGETS.get(label)
        met = None
        if tgt and ratio is not None and tgt[0] == r.baseline:
            met = ratio <= tgt[1]
        q1, q3 = r.iqr
        out.append({
            "model": label, "baseline": r.baseline or "", "ms_per_clip": r.ms_per_clip,
            "ms_q1": q1 / r.batch, "ms_q3": q3 / r.batch, "clips_per_s": r.clips_per_s,
            "n": len(r.times_ms), "latency_ratio": ratio, "latency_q1": rq1, "latency_q3": rq3, "flops_ratio": fl,
            "ratio_to_r50": r.median / floor.median if floor and floor.times_ms and r.times_ms else None,
            "gflops": r.flops / 1e9 / r.batch if r.flops else None, "params_m": r.params / 1e6 if r.params else None,
            "peak_act_mb": r.peak_mb, "model_mb": r.model_mb,
            "target": tgt[1] if tgt and tgt[0] == r.baseline else None,
            "authors_ratio": tgt[2] if tgt and tgt[0] == r.baseline else None,
            "met": met, "error": r.error,
        })
    return out


def _quartiles(values: list) -> tuple:
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def render_csv(run: dict) -> str:
    rs = rows(run)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rs[0]) if rs else ["model"])
    w.writeheader()
    for r in rs:
        w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _f(v, fmt):
    return "" if v is None or v != v else format(v, fmt)


def _spread(r: dict) -> str:
    if r.get("latency_q1") is None:
        return ""
    return f" [{_pct(r['latency_q1'])}, {_pct(r['latency_q3'])}]"


def _tgt(t) -> str:
    return "" if t is None else "<= " + _pct(t)


def render_md(run: dict, notes: str = "") -> str:
    m, s = run["machine"], run["settings"]
    lines = [f"# Latency, {s['device']}, torch {m['torch']}", "",
             f"Machine: {m['cpu']} ({m['logical_cpus']} logical CPUs"
             + (f", {m['mem_gb']} GB" if "mem_gb" in m else "") + f"), {m['platform']}, Python {m['python']}"
             + (f", GPU {m['gpu']}" if "gpu" in m else "") + "; load average at the end "
             + "/".join(f"{v:.2f}" for v in m["load_avg"])
             + (f"; tensor copy bandwidth {m['copy_gbps']} GB/s (read + write)" if "copy_gbps" in m else "") + ".",
             f"Settings: {s['threads']} thread(s), batch {s['batch']} clip(s) of {s['frames']} frames at "
             f"{s['size']}x{s['size']}, {s['dtype']}, eval, inference_mode"
             + (", channels_last" if s["channels_last"] else "") + (", torch.compile" if s["compile"] else "")
             + f"; {s['warmup']} warm-up + {s['repeats']} timed forwards per model, models alternated "
             "(order rotated each round) in one process"
             + (f"; allocator: {s['malloc']}" if s.get("malloc") and s["device"] == "cpu" else "") + ".",
             "Latency: median ms per clip [interquartile range]; latency = the median over rounds of "
             "(this model's time / its backbone's time in the same round) [their interquartile range]. FLOPs: fvcore (MACs) per clip, overhead over the backbone. Peak act.: "
             + s.get("memory_how", "not measured") + ", in a fresh process per model.", "",
             "| model | vs | ms/clip [IQR] | clips/s | latency | FLOPs | x R50 | GFLOPs | params | peak act. MB | target | authors | met |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows(run):
        if r["error"]:
            lines.append(f"| {r['model']} | {r['baseline']} | error: {r['error'][:120]} |" + " |" * 10)
            continue
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        lines.append(
            f"| {r['model']} | {r['baseline']} | {_f(r['ms_per_clip'], '.1f')} [{_f(r['ms_q1'], '.1f')}-{_f(r['ms_q3'], '.1f')}] "
            f"| {_f(r['clips_per_s'], '.2f')} | {_pct(r['latency_ratio'])}{_spread(r)} | {_pct(r['flops_ratio'])} "
            f"| {_f(r['ratio_to_r50'], '.3f')} | {_f(r['gflops'], '.2f')} | {_f(r['params_m'], '.2f')}M "
            f"| {_f(r['peak_act_mb'], '.0f')} | {_tgt(r['target'])} "
            f"| {_pct(r['authors_ratio'])} | {met} |")
    lines += ["", "`target`: the issue's limit on the latency overhead over the backbone (\"at least twice as "
              "well as the authors' code on every overhead\"); `authors`: the authors' code measured the same "
              "way (their ratios to torchvision ResNet-50 divided by their backbone's). Peak activation memory "
              f"of the authors' nets for one clip: about {AUTHORS_ACT_MB[0]}-{AUTHORS_ACT_MB[1]} MB."]
    if notes:
        lines += ["", notes.rstrip()]
    return "\n".join(lines) + "\n"


def load_run(path: str) -> dict:
    """A run saved by :func:`write_results` (the ``.json``), to render again."""
    raw = json.loads(Path(path).read_text())
    raw["results"] = {k: BenchResult(**v) for k, v in raw["results"].items()}
    return raw


def write_results(run: dict, out_dir: str, notes: str = "") -> list[Path]:
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = run["settings"]["device"].split(":")[0]
    stem = out / f"latency-{dev}-{torch.__version__.split('+')[0]}"
    paths = [stem.with_suffix(".md"), stem.with_suffix(".csv")]
    paths[0].write_text(render_md(run, notes))
    paths[1].write_text(render_csv(run))
    raw = {"machine": run["machine"], "settings": run["settings"], "explain": run.get("explain", ""),
           "results": {k: asdict(v) for k, v in run["results"].items()}}
    stem.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    return paths + [stem.with_suffix(".json")]


# -- profiler -------------------------------------------------------------------------------------

def profile(name: str, frames: int = 8, size: int = 224, threads: int = 2, top: int = 12) -> str:
    """torch.profiler's table of the ops that dominate one forward of ``name`` (CPU)."""
    import torch
    from torch.profiler import ProfilerActivity, profile as tprofile

    torch.set_num_threads(threads)
    s = parse_spec(name)
    model = build(s, num_frames=frames)
    x = torch.randn(clip_shape(model, 1, frames, size))
    with torch.inference_mode():
        model(x)
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def op_times(name: str, frames: int = 8, size: int = 224, threads: int = 2, runs: int = 2) -> dict:
    """Self CPU ms per operator for one forward of ``name`` (mean of ``runs`` profiled forwards)."""
    import torch
    from torch.profiler import ProfilerActivity, profile as tprofile

    torch.set_num_threads(threads)
    model = build(parse_spec(name), num_frames=frames)
    x = torch.randn(clip_shape(model, 1, frames, size))
    with torch.inference_mode():
        model(x)
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                model(x)
    return {e.key: e.self_cpu_time_total / 1000 / runs for e in prof.key_averages()}


def explain(run: dict, only_misses: bool = True, top: int = 5, log=None) -> str:
    """Markdown: for every missed target, the operators whose time grows most over the backbone
    (torch.profiler, self CPU time of one forward, model minus backbone)."""
    s = run["settings"]
    cache: dict = {}

    def times(n):
        if n not in cache:
            if log:
                log(f"  profiling {n}")
            cache[n] = op_times(n, s["frames"], s["size"], s["threads"])
        return cache[n]

    out = []
    for r in rows(run):
        if r["error"] or not r["baseline"] or (only_misses and r["met"] is not False):
            continue
        a, b = times(r["model"]), times(r["baseline"])
        diff = sorted(((a.get(k, 0) - b.get(k, 0), k) for k in set(a) | set(b)), reverse=True)
        total = sum(a.values()) - sum(b.values())
        ops = ", ".join(f"`{k}` {d:+.1f} ms" for d, k in diff[:top] if d > 0)
        out.append(f"- **{r['model']}** vs {r['baseline']}: latency {_pct(r['latency_ratio'])} (target "
                   f"{_tgt(r['target'])}), FLOPs {_pct(r['flops_ratio'])}; profiler, self CPU time "
                   f"{total:+.1f} ms per clip, by operator: {ops}")
    return "\n".join(out)


# -- CLI ------------------------------------------------------------------------------------------

def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help="architectures (name or name:key=value,...), or tv_resnet50")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a predefined list: " +
                   "; ".join(f"{k}: {' '.join(v)}" for k, v in PRESETS.items()))
    p.add_argument("--baseline", help="compare every model with this one (default: each with its backbone)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1, help="clips per forward")
    p.add_argument("--frames", type=int, default=8, help="segments per clip")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--malloc", default="keep", choices=["keep", "default"],
                   help="CPU timing: keep freed memory in glibc's heap (default; no page faults that depend "
                        "on what ran before) or glibc's defaults")
    p.add_argument("--compile", action="store_true", help="torch.compile every model (default backend)")
    p.add_argument("--repeats", type=int, default=10, help="timed forwards per model")
    p.add_argument("--warmup", type=int, default=2, help="untimed forwards per model first")
    p.add_argument("--no-probe", action="store_true", help="skip peak memory and FLOPs (child processes)")
    p.add_argument("--jobs", type=int, default=1, help="probe child processes at a time")
    p.add_argument("--probe-cache", help="JSON file of probe results to reuse and update (same settings only)")
    p.add_argument("--out", help="write latency-<device>-<torch>.{md,csv,json} into this directory")
    p.add_argument("--notes", help="a Markdown file appended to the results file")
    p.add_argument("--from-json", help="render a saved run (latency-*.json) again, e.g. with new --notes; measures nothing")
    p.add_argument("--explain", action="store_true",
                   help="profile every model that misses its target and its backbone, and add the operators that make the difference")
    p.add_argument("--profile", action="store_true", help="print the profiler's top ops of each model and exit")
    p.add_argument("-q", "--quiet", action="store_true")


def _run(a) -> int:
    if a.from_json:  # render a saved run again (new notes), no measurement
        run = load_run(a.from_json)
        notes = Path(a.notes).read_text() if a.notes else ""
        if run.get("explain"):
            notes = (notes.rstrip() + "\n\n" if notes else "") + "## Where the time goes (missed targets)\n\n" + run["explain"] + "\n"
        if a.out:
            for p in write_results(run, a.out, notes):
                print(f"wrote {p}", file=sys.stderr)
        print(render_md(run, notes))
        return 0
    names = list(a.names) + (PRESETS[a.preset] if a.preset else [])
    if not names:
        raise ValueError("name at least one model (or --preset)")
    if a.profile:
        for n in names:
            print(f"## {n}\n{profile(n, a.frames, a.size, a.threads)}")
        return 0
    if a.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda but torch sees no CUDA device")
    log = None if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    from .registry import archs

    missing = [n for n in names if not n.startswith(TV) and n.split(":")[0] not in archs()]
    if missing and a.preset:  # a preset lists families that may not be built yet
        if log:
            log(f"not registered, skipped: {', '.join(missing)}")
        names = [n for n in names if n not in missing]
    run = run_bench(names, baseline=a.baseline, device=a.device, threads=a.threads, batch=a.batch,
                    frames=a.frames, size=a.size, dtype=a.dtype, channels_last=a.channels_last,
                    compile=a.compile, repeats=a.repeats, warmup=a.warmup, probes=not a.no_probe,
                    jobs=a.jobs, probe_cache=a.probe_cache, log=log, malloc=a.malloc)
    notes = Path(a.notes).read_text() if a.notes else ""
    if a.explain:
        ex = run["explain"] = explain(run, log=log)
        if ex:
            notes = (notes.rstrip() + "\n\n" if notes else "") + "## Where the time goes (missed targets)\n\n" + ex + "\n"
    if a.out:
        for p in write_results(run, a.out, notes):
            print(f"wrote {p}", file=sys.stderr)
    print(render_md(run, notes))
    return 0


def add_commands(subparsers) -> None:
    """Add ``zoo bench`` to the ``zoo`` command's subparsers."""
    s = subparsers.add_parser("bench", help="latency, throughput, peak memory and FLOP overhead vs backbone")
    _add_args(s)
    s.set_defaults(fn=_run)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="latency", description=__doc__.split("\n\n")[0])
    _add_args(p)
    return _run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
