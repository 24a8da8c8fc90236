"""``zoo bench`` and ``benchmarks/latency.py``: arguments, and what a run prints and writes."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .profiling import explain, profile
from .render import check_out, load_run, render_md, write_results
from .run import MORE_ROUNDS, fill_probes, read_probe_cache, run_bench
from .spec import TV
from .targets import PRESETS
from .timing import MIN_ROUNDS_FOR_IQR

__all__ = ["add_commands", "main"]


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", help="architectures or variants (name or name:key=value,...), or tv_resnet50")
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
    p.add_argument("--deploy", action="store_true",
                   help="time every model as zoo.deploy.deploy(model, example_input) converts it")
    p.add_argument("--compile", action="store_true", help="torch.compile every model (default backend; after --deploy)")
    p.add_argument("--freeze", action="store_true",
                   help="with --compile: inductor's freezing (weights folded in as constants and prepacked for "
                        "oneDNN; inference only), PyTorch's advice for CPU inference")
    p.add_argument("--repeats", type=int, default=10,
                   help=f"timed forwards per model (fewer than {MIN_ROUNDS_FOR_IQR}: no meaningful interquartile range)")
    p.add_argument("--until-decided", type=int, metavar="ROUNDS",
                   help="after --repeats rounds, keep timing the models whose target is undecided (95%% interval "
                        f"of the median holds the limit) and their backbones, {MORE_ROUNDS} rounds at a time, up to ROUNDS; "
                        "the intervals widen for the extra looks (Bonferroni)")
    p.add_argument("--warmup", type=int, default=2, help="untimed forwards per model first")
    p.add_argument("--no-probe", action="store_true", help="skip peak memory and FLOPs (child processes)")
    p.add_argument("--jobs", type=int, default=1, help="probe child processes at a time")
    p.add_argument("--probe-cache", help="JSON file of probe results to reuse and update (same settings only); with "
                   "--from-json, the memory and FLOPs a --no-probe run lacks (compiled limits need the FLOPs)")
    p.add_argument("--out", help="write latency-<device>-<torch>.{md,csv,json} into this directory")
    p.add_argument("--notes", help="a Markdown file appended to the results file")
    p.add_argument("--from-json", help="render a saved run (latency-*.json) again, e.g. with new --notes; measures nothing")
    p.add_argument("--explain", action="store_true",
                   help="profile every model that misses its target and its backbone (in the form timed: --deploy, "
                   "--compile, ...), and add the operators that make the difference")
    p.add_argument("--profile", action="store_true",
                   help="print the profiler's top ops of each model (in the form the other options give) and exit")
    p.add_argument("-q", "--quiet", action="store_true")


def _read_notes(path) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--notes {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None


def _run(a) -> int:
    # every file argument is checked before anything is measured: a run can take an hour
    notes = _read_notes(a.notes)
    if a.from_json:  # render a saved run again (new notes), no measurement
        run = load_run(a.from_json)
        if a.probe_cache:
            n = fill_probes(run, a.probe_cache)
            print(f"memory and FLOPs of {n} model(s) from {a.probe_cache}", file=sys.stderr)
        if run.get("explain"):
            notes = (notes.rstrip() + "\n\n" if notes else "") + "## Where the time goes (missed targets)\n\n" + run["explain"] + "\n"
        if a.out:
            for p in write_results(run, a.out, notes):
                print(f"wrote {p}", file=sys.stderr)
        print(render_md(run, notes))
        return 0
    names = list(a.names) + (PRESETS[a.preset] if a.preset else [])
    if a.freeze and not a.compile:
        raise ValueError("--freeze applies to compiled models: add --compile")
    if not names:
        raise ValueError("name at least one model (or --preset)")
    if a.until_decided is not None and a.until_decided <= a.repeats:
        raise ValueError(f"--until-decided {a.until_decided} must be more rounds than --repeats {a.repeats}")
    if a.out:
        check_out(a.out, a.device)
    if a.probe_cache and not a.no_probe:
        read_probe_cache(a.probe_cache)
    if a.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda but torch sees no CUDA device")
    if a.profile:
        for n in names:
            table = profile(n, a.threads, device=a.device, batch=a.batch, frames=a.frames, size=a.size, dtype=a.dtype,
                            channels_last=a.channels_last, deploy=a.deploy, compile=a.compile, freeze=a.freeze)
            print(f"## {n}\n{table}")
        return 0
    log = None if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    from ..registry import registry

    reg = registry()
    missing = [n for n in names if not n.startswith(TV) and n.split(":")[0] not in reg.archs
               and n.split(":")[0] not in reg.variants]
    if missing and a.preset:  # a preset lists families that may not be built yet
        if log:
            log(f"not registered, skipped: {', '.join(missing)}")
        names = [n for n in names if n not in missing]
    run = run_bench(names, baseline=a.baseline, device=a.device, threads=a.threads, batch=a.batch,
                    frames=a.frames, size=a.size, dtype=a.dtype, channels_last=a.channels_last,
                    compile=a.compile, freeze=a.freeze, deploy=a.deploy, repeats=a.repeats, warmup=a.warmup, probes=not a.no_probe,
                    jobs=a.jobs, probe_cache=a.probe_cache, log=log, malloc=a.malloc,
                    until_decided=a.until_decided)
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
    p = argparse.ArgumentParser(prog="latency", description="Latency, throughput, peak memory and FLOP overhead "
                                "of each network over its own backbone, measured in one process.")
    _add_args(p)
    return _run(p.parse_args(argv))
