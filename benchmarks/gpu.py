#!/usr/bin/env python
"""GPU throughput of the main preset in four forms: plain (the family modules' one forward),
deployed (``zoo.deploy``), compiled (``torch.compile``) and deployed + compiled; every network
against its own backbone in the same form and the same run.

    python benchmarks/gpu.py --out DIR                 # measure (needs CUDA); writes gpu-<gpu>.json
    python benchmarks/gpu.py --render FILE.json [FILE2.json] [--notes NOTES.md]   # the Markdown again

The GPU protocol of the project's speed targets: batch 16 clips of 8 x 224 x 224, bf16 weights
and inputs, channels_last, eval, ``inference_mode``; CUDA-event timing, models alternated (order
rotated each round), medians of per-round ratios. Targets: every calibrated network's throughput
at least 0.9x its backbone's (AIA 0.75x). Compilation time is recorded per model; compiled forms
that would start after ``--budget`` seconds are skipped (the run stays inside a device lease).
The JSON is written after every form, so a run cut short keeps the forms it finished.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FORMS = ("plain", "deploy", "compile", "deploy+compile", "graph", "deploy+graph")
# throughput >= this fraction of the backbone's, as a latency ratio limit
LIMITS = {"aia": 1 / 0.75}
LIMIT = 1 / 0.9


def _limit(label: str, base) -> float | None:
    if not base:
        return None
    return LIMITS.get(label.split("_")[0], LIMIT)


def measure(names, forms, *, device, batch, frames, size, dtype, channels_last, repeats, warmup, budget, out, log):
    import torch

    from zoo.bench.machine import machine
    from zoo.bench.spec import DTYPES, baseline_of, build, clip_shape, parse_spec, prepare
    from zoo.bench.targets import target_of
    from zoo.bench.timing import time_models
    from zoo.deploy import deploy

    torch.backends.cudnn.benchmark = True
    # every zoo model shares VideoResNet.forward: without room for one graph per model, dynamo
    # falls back to eager after the 8th and the "compiled" numbers are not compiled
    torch._dynamo.config.cache_size_limit = 256
    if hasattr(torch._dynamo.config, "accumulated_cache_size_limit"):
        torch._dynamo.config.accumulated_cache_size_limit = 4096
    t_start = time.monotonic()
    specs = [parse_spec(n) for n in names]
    labels = [s.label for s in specs]
    bases = {}
    for s in specs:
        t = target_of(s.label)
        b = t.baseline if t else baseline_of(s.name)
        bases[s.label] = b if b in labels and b != s.label else None
    m = machine(bandwidth=False)
    if device.startswith("cuda"):
        m.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                 gpu_memory_gb=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    run = {"machine": m, "settings": {"batch": batch, "frames": frames, "size": size, "dtype": dtype,
                                      "channels_last": channels_last, "repeats": repeats, "warmup": warmup,
                                      "timing": "CUDA events, models alternated, order rotated each round"},
           "baselines": bases, "forms": {}}
    dev = device
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    for form in forms:
        fns, info = {}, {}
        for s in specs:
            rec = info[s.label] = {}
            if "compile" in form and time.monotonic() - t_start > budget:
                rec["error"] = f"skipped: past the {budget:.0f} s budget of this run"
                continue
            try:
                model = build(s, num_frames=frames)
                x = torch.randn(clip_shape(model, batch, frames, size)).to(dev, DTYPES[dtype])
                model = prepare(model, dev, dtype, channels_last)
                with torch.inference_mode():
                    ref = model(x).float()
                if "deploy" in form:
                    t0 = time.monotonic()
                    model = deploy(model, x)
                    rec["deploy_s"] = round(time.monotonic() - t0, 2)
                if "compile" in form:
                    model = torch.compile(model, dynamic=False)  # one graph per model, as zoo bench
                    t0 = time.monotonic()
                    with torch.inference_mode():
                        model(x)
                    sync()
                    rec["compile_s"] = round(time.monotonic() - t0, 1)
                if "graph" in form:
                    fn, graph_out = _graphed(model, x)
                    fn()
                    sync()
                    y = graph_out.float()
                else:
                    with torch.inference_mode():
                        y = model(x).float()

                    def fn(model=model, x=x):
                        with torch.inference_mode():
                            model(x)
                rec["rel_err"] = float((y - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
            except Exception as e:  # one model's failure is a row, not the end of the run
                rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                continue
            fns[s.label] = fn
            if log:
                log(f"{form}: {s.label} ready" + "".join(f", {k} {v}" for k, v in rec.items()))
        times = time_models(fns, repeats, warmup, dev)
        for label, t in times.items():
            info[label]["ms"] = t
        run["forms"][form] = info
        run["elapsed_s"] = round(time.monotonic() - t_start, 1)
        _write(run, out)
        del fns, times
        torch._dynamo.reset()
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()
        if log:
            log(f"{form}: done at {run['elapsed_s']} s")
    return run


def _graphed(model, x):
    """``model(x)`` captured once as a CUDA graph: (replay, the output it refills). Replaying
    launches the whole forward as one graph, so what is timed is the GPU's work without the
    host's per-kernel launch cost."""
    import torch

    static = x.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.inference_mode():
        for _ in range(3):  # allocator and cuDNN choices settle outside the capture
            model(static)
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(g):
        out = model(static)

    def replay(g=g, static=static, model=model):  # the graph reads their memory: keep them alive
        g.replay()
    return replay, out


def _write(run: dict, out: str) -> Path:
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    gpu = run["machine"].get("gpu", "gpu").lower().replace("nvidia ", "").replace(" ", "-")
    p = d / f"gpu-{gpu}.json"
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(run, indent=1))
    tmp.replace(p)
    return p


def _ratio(info: dict, label: str, base: str):
    """Median over rounds of (model time / backbone time in the same round), and its quartiles."""
    a, b = info.get(label, {}).get("ms"), info.get(base, {}).get("ms")
    if not a or not b:
        return None
    r = [x / y for x, y in zip(a, b)]
    q = statistics.quantiles(r, n=4) if len(r) >= 4 else (min(r), 0, max(r))
    return statistics.median(r), q[0], q[2]


def render(run: dict) -> str:
    m, s = run["machine"], run["settings"]
    forms = list(run["forms"])
    labels = list(next(iter(run["forms"].values()))) if forms else []
    clip = s["batch"]
    lines = [f"# GPU throughput: {m.get('gpu', '?')}", "",
             f"Machine: {m.get('gpu')} ({m.get('gpu_memory_gb')} GB), CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')}, "
             f"torch {m.get('torch')}; host: {m.get('cpu', '?')} ("
             + (", ".join(v.upper() for v in m["vector"]) if m.get("vector") else "vector extensions not recorded")
             + f"), {m.get('logical_cpus')} logical CPUs.",
             f"Settings: batch {clip} clips of {s['frames']} frames at {s['size']}x{s['size']}, {s['dtype']}, "
             + ("channels_last, " if s["channels_last"] else "") + f"eval, inference_mode; {s['warmup']} warm-up + "
             f"{s['repeats']} timed batches per model and form, {s['timing']}.",
             "Each cell: clips/s, and the throughput ratio to the backbone in the same form (the backbone's "
             "time over the model's, median over rounds [interquartile range]). Target: >= 0.90x "
             "(AIA >= 0.75x).", "",
             "| model | vs | " + " | ".join(forms) + " | met (all forms) |",
             "|---|---|" + "---|" * len(forms) + "---|"]
    for label in labels:
        base = run["baselines"].get(label)
        cells, ok = [], []
        for f in forms:
            rec = run["forms"][f].get(label, {})
            if rec.get("error"):
                cells.append(f"{rec['error'][:60]}")
                continue
            if not rec.get("ms"):
                cells.append("–")
                continue
            cps = 1000.0 * clip / statistics.median(rec["ms"])
            r = _ratio(run["forms"][f], label, base) if base else None
            if r:
                ok.append(r[0] <= _limit(label, base))
                cells.append(f"{cps:.0f}, {1 / r[0]:.3f}x [{1 / r[2]:.2f}-{1 / r[1]:.2f}]")
            else:
                cells.append(f"{cps:.0f}")
        met = "" if not ok else ("yes" if all(ok) else "**no**")
        lines.append(f"| {label} | {base or ''} | " + " | ".join(cells) + f" | {met} |")
    comp = {f: {k: v["compile_s"] for k, v in run["forms"][f].items() if "compile_s" in v} for f in forms}
    comp = {f: v for f, v in comp.items() if v}
    if comp:
        lines += ["", "Compilation (first call, s): " + "; ".join(
            f"{f}: median {statistics.median(v.values()):.0f}, max {max(v.values()):.0f}" for f, v in comp.items()) + "."]
    errs = [(f, k, v["rel_err"]) for f in forms for k, v in run["forms"][f].items() if "rel_err" in v and f != "plain"]
    if errs:
        f, k, e = max(errs, key=lambda t: t[2])
        lines += ["", f"Outputs of the converted forms against the plain model on the timed batch: largest "
                  f"max|difference| / max|plain| {e:.2e} ({k}, {f}; {s['dtype']})."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="models (default: the main preset)")
    p.add_argument("--forms", default=",".join(FORMS), help=f"comma-separated, of {', '.join(FORMS)}")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--dtype", default="bf16", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--budget", type=float, default=420.0, help="seconds after which no further model is compiled")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--device", default="cuda", help="cuda[:i]; cpu only to try the script itself")
    p.add_argument("--render", nargs="+", metavar="JSON",
                   help="saved gpu-*.json runs: print their tables (one after the other), measure nothing")
    p.add_argument("--notes", help="with --render: a Markdown file appended (the analysis)")
    a = p.parse_args(argv)
    if a.render:
        parts = []
        for i, f in enumerate(a.render):
            md = render(json.loads(Path(f).read_text()))
            if i:  # later runs: their table and what follows it, under a heading naming their forms
                forms = " / ".join(json.loads(Path(f).read_text())["forms"])
                md = f"## Run {i + 1}: {forms}\n\n" + md[md.index("| model"):]
            parts.append(md)
        print("\n".join(parts) + ("\n" + Path(a.notes).read_text() if a.notes else ""))
        return 0
    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu.py: torch sees no CUDA device; run it on a machine with one", file=sys.stderr)
        return 2
    from zoo.bench.targets import PRESETS

    forms = [f for f in a.forms.split(",") if f]
    bad = [f for f in forms if f not in FORMS]
    if bad:
        print(f"gpu.py: unknown form(s) {bad}; choose from {', '.join(FORMS)}", file=sys.stderr)
        return 2
    run = measure(a.names or PRESETS["main"], forms, device=a.device, batch=a.batch, frames=a.frames, size=a.size, dtype=a.dtype,
                  channels_last=not a.no_channels_last, repeats=a.repeats, warmup=a.warmup, budget=a.budget,
                  out=a.out, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    md = render(run)
    from zoo.weights import atomic_write

    atomic_write(Path(a.out) / (_write(run, a.out).stem + ".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
