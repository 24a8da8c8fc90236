"""One benchmark run: probes (memory, FLOPs) in child processes, then every model timed in this
process against its backbone."""
from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Optional

from .machine import cpu_times, machine, steal_share
from .probe import MMAP_THRESHOLD, run_probes
from .spec import DTYPES, TV, baseline_of, build, clip_shape, parse_spec, prepare
from .targets import limit_of, target_for, target_of
from .timing import ALPHA, MIN_ROUNDS_FOR_IQR, BenchResult, keep_heap, paired, time_beside, verdict

# --until-decided: rounds added per look at the undecided models
MORE_ROUNDS = 10

__all__ = ["run_bench", "timed_form", "deploy_function", "read_probe_cache", "fill_probes"]


def deploy_function():
    """``zoo.deploy.deploy``, or a ValueError saying that this installation lacks it."""
    try:
        from ..deploy import deploy
    except ImportError as e:
        raise ValueError("--deploy needs zoo.deploy (deploy(model, example_input)), which this installation "
                         f"does not have ({e}); run without --deploy") from None
    return deploy


def read_probe_cache(path: str) -> Optional[dict]:
    """The probe cache at ``path`` ({"settings", "results"}), None when there is none yet; a file
    there that is not one is an error (it is neither read as one nor overwritten)."""
    p = Path(path)
    if not p.exists():
        return None
    try:
        saved = json.loads(p.read_text())
        if isinstance(saved, dict) and isinstance(saved.get("results"), dict) and "settings" in saved:
            return saved
    except (OSError, ValueError):
        pass
    raise ValueError(f"--probe-cache {p} is not a probe cache written by zoo bench; "
                     "give a new file name (that file is left as it is)")


def _probe_cfg(settings: dict) -> dict:
    # what a probe's memory and FLOPs depend on: not the timing, deploy or compile settings
    return {k: settings[k] for k in ("device", "threads", "batch", "frames", "size", "dtype", "channels_last")} \
        | {"mmap_threshold": MMAP_THRESHOLD}


def fill_probes(run: dict, path: str) -> int:
    """Memory, FLOPs and parameters of a saved run's models from the probe cache at ``path``
    where the run has none (a run timed with ``--no-probe``); -> how many models gained them.
    A cache of other settings is an error."""
    saved = read_probe_cache(path)
    if saved is None:
        raise ValueError(f"--probe-cache {path}: no such file; probe the models first (zoo bench ... --probe-cache {path})")
    if saved["settings"] != _probe_cfg(run["settings"]):
        raise ValueError(f"--probe-cache {path} was probed with other settings ({saved['settings']}) than this run's")
    n = 0
    for label, r in run["results"].items():
        p = saved["results"].get(label)
        if r.flops is None and p and "error" not in p:
            lacking = [k for k in ("params", "flops", "peak_mb", "model_mb", "memory_how") if k not in p]
            if lacking:
                raise ValueError(f"--probe-cache {path}: the entry of {label} lacks {', '.join(lacking)}; probe it "
                                 "again into a new cache file")
            r.params, r.flops, r.peak_mb, r.model_mb = p["params"], p["flops"], p["peak_mb"], p["model_mb"]
            run["settings"].setdefault("memory_how", p["memory_how"])
            n += 1
    return n


def undecided(results: dict, alpha: float, compiled: bool = False) -> list:
    """The models whose target these rounds can neither show met nor show missed."""
    out = []
    for label, r in results.items():
        b = results.get(r.baseline) if r.baseline else None
        if not (b and r.times_ms and b.times_ms):
            continue
        limit = limit_of(target_for(label, r.baseline), compiled, r.flops / b.flops if r.flops and b.flops else None)
        if limit is not None and verdict(paired(r, b), limit, alpha) is None:
            out.append(label)
    return out


def looks_of(repeats: int, until: int) -> int:
    """How often --until-decided looks at the data: after ``repeats`` rounds, then every MORE_ROUNDS up to ``until``."""
    return 1 + math.ceil(max(until - repeats, 0) / MORE_ROUNDS)


def _freezing(on: bool):
    import contextlib

    import torch._inductor.config as inductor

    return inductor.patch(freezing=True) if on else contextlib.nullcontext()


def _own_frame(model):
    """``model`` behind a function whose code object is its own. Dynamo keeps compiled graphs per
    code object and checks their guards one by one at every call: compiled as they are, the
    zoo's models share ``VideoResNet.forward``, and with 8 deployed models in one process that
    lookup took 3.5 ms per call (0.5 ms alone), more for the models whose graphs came later. A
    user compiles one model; the benchmark must not charge it for the others."""
    def call(x):
        return model(x)
    call.__code__ = call.__code__.replace()  # a copy: a compiled-graph cache of its own
    return call


def timed_form(spec, device: str = "cpu", batch: int = 1, frames: int = 8, size: int = 224, dtype: str = "fp32",
               channels_last: bool = False, deploy: bool = False, compile: bool = False, freeze: bool = False):
    """The form of ``spec`` (a :class:`~zoo.bench.spec.Spec`) that a run with these settings
    times, and its input: built, moved, deployed (zoo models only) and compiled (the first call
    made, which compiles) -> (callable, input, parameters of the built model, compile seconds or
    None)."""
    import torch

    model = build(spec, num_frames=frames)
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(clip_shape(model, batch, frames, size)).to(device, DTYPES[dtype])
    model = prepare(model, device, dtype, channels_last)
    if deploy and not spec.name.startswith(TV):
        model = deploy_function()(model, x)
    compile_s = None
    if compile:
        # static shapes: the models share VideoResNet.forward, and a recompile for another
        # input size (TDN's 5 frames per segment) would otherwise make T dynamic, a graph
        # unlike the others', which inductor's freezing (torch 2.14) fails to run for TDN
        model = torch.compile(_own_frame(model), dynamic=False)
        t0 = time.perf_counter()
        with torch.inference_mode(), _freezing(freeze):  # inductor compiles at the first call
            model(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        compile_s = time.perf_counter() - t0
    return model, x, params, compile_s


def run_bench(names: list[str], baseline: Optional[str] = None, device: str = "cpu", threads: int = 2,
              batch: int = 1, frames: int = 8, size: int = 224, dtype: str = "fp32",
              channels_last: bool = False, compile: bool = False, deploy: bool = False, repeats: int = 10,
              warmup: int = 2, probes: bool = True, jobs: int = 1, add_baselines: bool = True,
              probe_cache: Optional[str] = None, log=None, malloc: str = "keep", freeze: bool = False,
              until_decided: Optional[int] = None) -> dict:
    """Benchmark ``names`` (and their backbones) in one process; returns the run as a dict
    (``machine``, ``settings``, ``results``: {label: BenchResult}).

    ``probe_cache``: a JSON file of earlier probe results (memory, FLOPs) for the same settings;
    models found there are not probed again (memory and FLOPs do not depend on machine load, so
    they can be measured while the machine is busy and the timing run kept short).

    ``malloc``: "keep" (CPU: :func:`keep_heap` before the models are built) or "default".
    ``freeze`` (with ``compile``): inductor's freezing while each model compiles (weights folded in
    as constants and prepacked for oneDNN; inference only: PyTorch's advice for CPU inference).
    ``deploy``: time each zoo model as ``zoo.deploy.deploy(model, example_input)`` returns it (before
    ``compile``, when both are set); torchvision's ResNet stays the reference as torchvision ships
    it (in the ``channels_last`` setting's layout), not converted.

    ``until_decided``: after ``repeats`` rounds, time the models whose target is undecided (see
    :func:`zoo.bench.timing.verdict`) and their backbones for MORE_ROUNDS more, and again, until
    every target is decided or ``until_decided`` rounds are done. Each look at the data is a
    chance to err, so every interval is at level ALPHA / looks (Bonferroni): a verdict stays wrong
    at most ALPHA of the time however many looks it took."""
    import torch

    if freeze and not compile:
        raise ValueError("freeze applies to compiled models: pass compile=True (--compile)")
    if until_decided is not None and until_decided <= repeats:
        raise ValueError(f"until_decided ({until_decided}) must be more rounds than repeats ({repeats})")
    if malloc not in ("keep", "default"):
        raise ValueError(f"malloc must be 'keep' or 'default', got {malloc!r}")
    if deploy:
        deploy_function()  # this installation has it, or one clear error before anything is built
    if repeats < MIN_ROUNDS_FOR_IQR:
        msg = (f"{repeats} timed round(s): the interquartile ranges of so few rounds are not a spread, and "
               "their intervals too wide to show a target met or missed "
               f"(use --repeats {MIN_ROUNDS_FOR_IQR} or more; the committed runs use 20)")
        if log:
            log("warning: " + msg)
        else:
            warnings.warn(msg, stacklevel=2)
    heap = "glibc default"
    if malloc == "keep" and not device.startswith("cuda"):
        heap = ("glibc heap kept (mmap threshold 32 MiB, no trimming)" if keep_heap()
                else "default (could not keep the heap: not glibc)")

    torch.set_num_threads(threads)
    if compile:
        # the zoo's models share VideoResNet.forward: past dynamo's 8 graphs per code object the
        # rest would silently run eager, so leave room for one graph per model of the run
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 4 * len(names) + 8)
        if hasattr(torch._dynamo.config, "accumulated_cache_size_limit"):
            torch._dynamo.config.accumulated_cache_size_limit = max(
                torch._dynamo.config.accumulated_cache_size_limit, 16 * len(names) + 64)
    specs = [parse_spec(n) for n in names]
    bases = {}
    for s in specs:
        tgt = target_of(s.label)
        b = baseline if baseline is not None else (tgt.baseline if tgt else baseline_of(s.name))
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
                "dtype": dtype, "channels_last": channels_last, "compile": compile, "freeze": freeze, "deploy": deploy,
                "repeats": repeats,
                "warmup": warmup, "malloc": heap}
    results = {s.label: BenchResult(s.label, bases.get(s.label), batch=batch) for s in specs}
    if probes:
        if log:
            log(f"memory and FLOPs: {len(specs)} child processes, {jobs} at a time")
        cfg = _probe_cfg(settings)
        saved = read_probe_cache(probe_cache) if probe_cache else None
        found = {k: v for k, v in saved["results"].items() if "error" not in v} \
            if saved and saved["settings"] == cfg else {}
        todo = [s for s in specs if s.label not in found]
        if log and found:
            log(f"  {len(specs) - len(todo)} probe(s) from {probe_cache}")
        found.update(run_probes(todo, cfg, jobs=jobs, log=log))
        if probe_cache:
            from ..weights.files import atomic_write

            atomic_write(probe_cache, json.dumps({"settings": cfg, "results": found}, indent=1))
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
            model, x, params, results[s.label].compile_s = timed_form(
                s, device=device, batch=batch, frames=frames, size=size, dtype=dtype, channels_last=channels_last,
                deploy=deploy, compile=compile, freeze=freeze)
            if results[s.label].params is None:
                results[s.label].params = params
        except Exception as e:
            results[s.label].error = f"{type(e).__name__}: {e}"
            continue

        def fn(model=model, x=x):
            with torch.inference_mode():
                model(x)
        fns[s.label] = fn
    if log:
        log(f"timing {len(fns)} models: {warmup} warm-up + {repeats} timed rounds, alternated, each beside its backbone")
    ticks = cpu_times()
    bases = {k: results[k].baseline for k in fns}
    settings["order"] = "beside"
    own, beside = time_beside(fns, bases, repeats, warmup, device, log=log)
    for label, t in own.items():
        results[label].times_ms = t
        results[label].base_ms = beside.get(label)
    if until_decided:
        looks = looks_of(repeats, until_decided)
        alpha = ALPHA / looks
        settings.update(until_decided=until_decided, more_rounds=MORE_ROUNDS, looks=looks, ci_alpha=alpha)
        for label in fns:
            results[label].rounds = list(range(repeats))
        done = repeats
        while done < until_decided:
            todo = undecided(results, alpha, compile)
            if not todo:
                break
            # a model leaves for good once decided (and no undecided model needs it as backbone), so
            # each model's rounds are one unbroken run from round 0, and the looks are the ones counted
            keep = set(todo) | {results[k].baseline for k in todo}
            n = min(MORE_ROUNDS, until_decided - done)
            if log:
                log(f"undecided after {done} rounds: {', '.join(todo)}; {n} more rounds")
            more, beside = time_beside({k: f for k, f in fns.items() if k in keep}, bases, n, 1, device,
                                       first_round=done)
            for label, t in more.items():
                r = results[label]
                r.times_ms += t
                r.rounds += list(range(done, done + n))
                if r.base_ms is not None:  # a backbone kept for others, its own backbone gone: no ratio
                    r.base_ms += beside.get(label) or [None] * n
            done += n
        settings["rounds_done"] = done
    return {"machine": {**machine(), "steal": steal_share(ticks, cpu_times())}, "settings": settings,
            "results": results}
