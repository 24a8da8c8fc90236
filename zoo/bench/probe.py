"""Peak memory and FLOPs of one model, measured in a fresh child process per model so that one
model's allocations do not hide another's: on CPU the resident-set high-water mark (``VmHWM``,
reset after the model is loaded) minus the resident set of the loaded model; on CUDA
``max_memory_allocated`` minus the memory allocated after loading. The same child computes the
FLOPs (fvcore), which needs no quiet machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .spec import DTYPES, Spec, build, clip_shape, parse_spec, prepare

__all__ = ["probe", "run_probes", "MMAP_THRESHOLD"]


def status_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field_name} in /proc/self/status")


def reset_hwm() -> bool:
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
    rss0 = status_kb("VmRSS") if not cuda else 0
    model = build(spec, num_frames=cfg["frames"])
    shape = clip_shape(model, cfg["batch"], cfg["frames"], cfg["size"])
    out["params"] = sum(p.numel() for p in model.parameters())
    model = prepare(model, dev, cfg["dtype"], cfg["channels_last"])
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dev, DTYPES[cfg["dtype"]])
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
            base = status_kb("VmRSS")
            exact = reset_hwm()
            for _ in range(2):  # the first forward also allocates oneDNN's caches
                model(x)
            hwm = status_kb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            out["peak_mb"] = (hwm - base) / 1024
            out["model_mb"] = (base - rss0) / 1024
            out["memory_how"] = ("RSS high-water mark (reset after load) - RSS after load" if exact
                                 else "ru_maxrss - RSS after load (clear_refs unavailable)")
            if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
                out["memory_how"] += f", glibc mmap threshold {os.environ['MALLOC_MMAP_THRESHOLD_']} B"
    del model, x
    if cfg.get("flops", True):
        from ..complexity import complexity

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
    root = str(Path(__file__).resolve().parents[2])
    # glibc: allocations from 128 KiB up are mmapped and go back to the OS when freed, so the
    # resident set follows live memory and its high-water mark is the peak, not whatever the
    # heap happened to retain (which made the measure vary by +-40% between like models)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": str(cfg["threads"]), "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    code = "from zoo.bench.probe import _probe_main; _probe_main()"
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
