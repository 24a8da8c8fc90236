#!/usr/bin/env python
"""Where a network's time over its backbone goes, and how much of it the memory traffic alone
sets (CPU).

    PYTHONPATH=$PWD python benchmarks/overhead.py [MODEL:BACKBONE ...] [--plain] [--rounds 10]
        [--out benchmarks/results/overhead-cpu.md]

For each pair, in one process (both deployed with ``zoo.deploy`` unless ``--plain``): forward
hooks time, inside full forwards, every residual block, the slot modules it holds (the
calibrator, ``mid``, ``conv2``) and their parts (each ECal of GC, say), model and backbone
alternating, one forward each per round. One more forward of each, untimed, of the network
deployed with the library kernels (the zoo's compiled kernels run outside ATen, out of the
counter's sight), counts the bytes that the memory-bound operators inside the blocks (all
but convolutions and matrix products; views move nothing) read and write (a TorchDispatchMode);
the model's extra bytes over the machine's copy bandwidth (read + write) are the least time its extra work can take. The table
sets both against the latency the project's target allows over the backbone.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PAIRS = ["tsm_r50:tsn_r50", "gc_tsn_r50:tsn_r50", "gc_tsm_r50:tsm_r50", "sda_tsn_r50:tsn_r50",
         "sda_tsm_r50:tsm_r50", "aia_tsn_r50:attention=c:tsn_r50", "gst_large_r50:tsn_r50",
         "gc_gst_r50:gst_r50", "stc_r50:tsn_r50", "gc_tdn_r50:tdn_r50"]
SLOTS = ("calib", "mid", "conv2")


def _split(pair: str) -> tuple[str, str]:
    model, _, base = pair.rpartition(":")
    return model, base


def _blocks(model):
    from zoo.models.resnet import BasicBlock, Bottleneck

    return [(n, m) for n, m in model.named_modules() if isinstance(m, (Bottleneck, BasicBlock))]


def _slot_modules(model):
    """{name: module} of the slot modules the blocks hold (calibrators, mid, conv2: the
    backbone's plain conv2 too, so that a replaced conv2 is set against the one it replaces)."""
    import torch.nn as nn

    out = {}
    for n, b in _blocks(model):
        for s in SLOTS:
            m = getattr(b, s, None)
            if isinstance(m, nn.Module):
                out[f"{n}.{s}"] = m
    return out


class _Clock:
    """Accumulates the time spent inside hooked modules during one forward."""

    def __init__(self, modules: dict):
        self.ms = {k: 0.0 for k in modules}
        self._t0 = {}
        self.handles = []
        for k, m in modules.items():
            if callable(getattr(m, "gate", None)):  # the in-place forms call a part's gate, not its forward
                m.gate = self._timed(k, m.gate)
                continue
            self.handles.append(m.register_forward_pre_hook(lambda mod, a, k=k: self._start(k)))
            self.handles.append(m.register_forward_hook(lambda mod, a, o, k=k: self._stop(k)))

    def _timed(self, k, fn):
        def run(*a, **kw):
            self._start(k)
            try:
                return fn(*a, **kw)
            finally:
                self._stop(k)
        return run

    def _start(self, k):
        self._t0[k] = time.perf_counter()

    def _stop(self, k):
        self.ms[k] += (time.perf_counter() - self._t0.pop(k)) * 1000.0

    def reset(self):
        for k in self.ms:
            self.ms[k] = 0.0


_MM = {"mm": (0, 1), "addmm": (1, 2), "bmm": (0, 1), "baddbmm": (1, 2)}


def _macs(name: str, args, out) -> int:
    """Multiply-adds of a convolution or matrix product (0 for anything else)."""
    import math

    import torch

    name = name.rstrip("_")  # in-place forms (baddbmm_) count as their out-of-place op
    if name == "linear" and isinstance(out, torch.Tensor):
        return out.numel() * args[1].shape[1]
    if "conv" in name and len(args) > 1 and isinstance(args[1], torch.Tensor) and isinstance(out, torch.Tensor):
        w = args[1]
        return out.numel() * w.shape[1] * math.prod(w.shape[2:])
    if name in _MM:
        i, j = _MM[name]
        a, b = args[i], args[j]
        return (a.shape[0] if a.dim() == 3 else 1) * a.shape[-2] * a.shape[-1] * b.shape[-1]
    return 0


def _ops(model, x, modules: dict) -> list:
    """(bytes read and written, multiply-adds) of every operator run inside ``modules`` in one
    forward (views move nothing and are left out)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    ops: list = []
    active: list = []

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if active and not getattr(func, "is_view", False):
                seen, n = set(), 0
                for t in tree_flatten((args, kwargs or {}, out))[0]:
                    if isinstance(t, torch.Tensor) and id(t) not in seen:
                        seen.add(id(t))
                        n += t.numel() * t.element_size()
                ops.append((n, _macs(func.__name__.split(".")[0], args, out)))
            return out

    hs = []
    for k, m in modules.items():
        hs.append(m.register_forward_pre_hook(lambda mod, a, k=k: active.append(k)))
        hs.append(m.register_forward_hook(lambda mod, a, o: (active.pop(), None)[1]))  # a hook's return replaces the output
    try:
        with torch.inference_mode(), Count():
            model(x)
    finally:
        for h in hs:
            h.remove()
    return ops


def plain(name: str, frames: int = 8, size: int = 224) -> tuple:
    """(the network as built, a clip for it)."""
    import torch

    from zoo.bench.spec import build, clip_shape, parse_spec

    m = build(parse_spec(name), num_frames=frames)
    return m, torch.randn(clip_shape(m, 1, frames, size))


def counting_form(model, x, deploy_form: bool = True) -> tuple:
    """(model, clip, blocks) to count a network's operators on: ``model`` deployed with the
    library kernels (``autotune=False``; a copy, ``model`` stays plain). The zoo's own compiled
    kernels, which the timed form may have chosen, run outside ATen, where the dispatch mode
    cannot see them (a TSM whose shift was one counted 80 MB less than TSN); they fuse passes, so
    they move at most what the library forms count, and a roofline from these counts is an upper
    bound of the timed form's."""
    if deploy_form:
        from zoo.deploy import deploy
        model = deploy(model, x, autotune=False)
    return model, x, dict(_blocks(model))


def measure(pairs, deploy_form=True, rounds=10, warmup=2, frames=8, size=224, threads=2, log=print):
    import torch

    from zoo.bench.machine import copy_bandwidth, machine
    from zoo.bench.targets import target_for
    from zoo.bench.timing import keep_heap
    from zoo.complexity import complexity

    keep_heap()
    torch.set_num_threads(threads)
    gbps = copy_bandwidth()
    built, macs, counted = {}, {}, {}

    def get(name):
        if name not in built:
            m, x = plain(name, frames, size)
            if deploy_form:
                from zoo.deploy import deploy
                m = deploy(m, x)
            blocks = dict(_blocks(m))
            slots = _slot_modules(m)
            parts = {f"{k}.{c}": sub for k, v in slots.items() for c, sub in v.named_children()
                     if any(True for _ in sub.parameters()) or list(sub.children())}
            built[name] = (m, x, _Clock({**blocks, **slots, **parts}), blocks, slots, parts)
        return built[name]

    rows, pending = [], []
    for pair in pairs:
        mname, bname = _split(pair)
        (m, x, mc, mblocks, mslots, mparts), (b, xb, bc, bblocks, bslots, _) = get(mname), get(bname)
        tot = {mname: [], bname: []}
        per = {mname: [], bname: []}
        with torch.inference_mode():
            for r in range(warmup + rounds):
                for name, (net, inp, clock) in ((mname, (m, x, mc)), (bname, (b, xb, bc)))[::(1 if r % 2 else -1)]:
                    clock.reset()
                    t0 = time.perf_counter()
                    net(inp)
                    t = (time.perf_counter() - t0) * 1000.0
                    if r >= warmup:
                        tot[name].append(t)
                        per[name].append(dict(clock.ms))
        med = {k: statistics.median(v) for k, v in tot.items()}
        diff = statistics.median([a - c for a, c in zip(tot[mname], tot[bname])])

        def msum(name, keys):
            return statistics.median([sum(p[k] for k in keys) for p in per[name]])

        slots_ms = msum(mname, list(mslots)) - msum(bname, list(bslots))
        blocks_ms = msum(mname, list(mblocks)) - msum(bname, list(bblocks))
        by_part: dict = {}
        for k, sub in mparts.items():
            by_part.setdefault(type(sub).__name__, []).append(k)
        parts_ms = {n: round(msum(mname, ks), 2) for n, ks in by_part.items()}
        by_slot: dict = {}
        for k in bslots:
            by_slot.setdefault(f"{k.rsplit('.', 1)[1]} ({type(bslots[k]).__name__})", []).append(k)
        base_slots_ms = {n: round(msum(bname, ks), 2) for n, ks in by_slot.items()}
        pending.append((mname, bname, med))
        rows.append({"model": mname, "baseline": bname, "model_ms": med[mname], "baseline_ms": med[bname],
                     "overhead_ms": diff, "blocks_ms": blocks_ms, "slots_ms": slots_ms,
                     "slot_kinds": sorted({type(v).__name__ for v in mslots.values()}), "parts_ms": parts_ms,
                     "base_slots_ms": base_slots_ms})
        if log:
            log(f"{mname} vs {bname}: +{diff:.1f} ms, slots {slots_ms:.1f} ms")
    # counting last: fvcore's tracing, the dispatch mode and their allocations stay out of the timing
    for row, (mname, bname, med) in zip(rows, pending):
        for n in (mname, bname):  # a backbone shared by several pairs is built and counted once
            if n not in counted:
                net, clip = plain(n, frames, size)
                macs[n] = complexity(net, num_frames=frames, input_size=size).flops
                counted[n] = _ops(*counting_form(net, clip, deploy_form))
        ops, base_ops = counted[mname], counted[bname]
        # the extra multiply-adds at the rate the backbone's own forward reaches on this machine
        rate = macs[bname] / med[bname]
        compute_ms = (macs[mname] - macs[bname]) / rate

        def roof(o):  # each operator at the bandwidth or at the backbone's rate, whichever binds
            return sum(max(n / (gbps * 1e6), k / rate) for n, k in o)
        roof_ms = roof(ops) - roof(base_ops)
        tgt = target_for(mname, bname)
        extra = sum(n for n, k in ops if not k) - sum(n for n, k in base_ops if not k)
        row.update(allowed_ms=(tgt.limit - 1) * med[bname] if tgt else None,
                   extra_mb=extra / 1e6, memory_ms=max(extra, 0) / (gbps * 1e9) * 1000.0, macs=macs[mname],
                   base_macs=macs[bname], compute_ms=compute_ms, roofline_ms=roof_ms)
    return {"machine": machine(bandwidth=False), "copy_gbps": round(gbps, 1),
            "settings": {"deploy": deploy_form, "rounds": rounds, "warmup": warmup, "frames": frames, "size": size,
                         "threads": threads}, "rows": rows}


def ablate(name: str, base: str, rounds=12, warmup=2, frames=8, size=224, threads=2, log=print) -> dict:
    """What each kind of gate inside ``name``'s slot modules costs in context: the deployed model
    timed as it is, and with every gate of one kind replaced by a constant 1 (its multiply still
    runs), all variants and the backbone alternating. {"model": ms, "backbone": ms, "-Kind": ms}."""
    import torch

    from zoo.bench.timing import keep_heap, time_models
    from zoo.deploy import deploy

    keep_heap()
    torch.set_num_threads(threads)

    def make(n):
        m, x = plain(n, frames, size)
        return deploy(m, x), x

    model, x = make(name)
    kinds = sorted({type(p).__name__ for s in _slot_modules(model).values() for p in s.modules()
                    if callable(getattr(p, "gate", None)) and p is not s})
    nets = {"model": (model, x), "backbone": make(base)}
    for k in kinds:
        m, xm = make(name)
        for p in m.modules():
            if type(p).__name__ == k:
                p.gate = lambda g: g.new_ones(()).expand(g.shape)
        nets["-" + k] = (m, xm)

    def fn(m, inp):
        def go():
            with torch.inference_mode():
                m(inp)
        return go
    times = time_models({k: fn(*v) for k, v in nets.items()}, rounds, warmup)
    med = {k: statistics.median(v) for k, v in times.items()}
    if log:
        log(f"{name}: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()))
    return {"model": name, "baseline": base, "ms": med}


def render(run: dict) -> str:
    from zoo.bench.machine import describe

    s = run["settings"]
    lines = ["# Where the time over the backbone goes (CPU" + (", deployed" if s["deploy"] else ", plain") + ")", "",
             f"Machine: {describe(run['machine'])}; copy bandwidth {run['copy_gbps']} GB/s (read + write). "
             f"One clip of {s['frames']} frames at {s['size']}x{s['size']}, fp32, {s['threads']} threads, "
             f"{s['rounds']} rounds (model and backbone alternating) after {s['warmup']} warm-up; medians.", "",
             "`over`: model minus backbone per round; `allowed`: what the project's target allows over the "
             "backbone; `slot modules`: the time spent inside the blocks' calibrator / mid / conv2 modules "
             "in the same forwards (model minus backbone); `rest of blocks`: the blocks' time difference outside "
             "those modules (TSM's shift around conv1, BNs a calibrator keeps from folding); `extra moved`: bytes "
             "read and written by the blocks' memory-bound operators (all but convolutions and matrix products: "
             "shifts, pools, gates, their multiplies, unfolded BNs, ReLUs, adds), model minus backbone, and "
             "`memory`: that traffic at the copy bandwidth; `MACs`: the extra multiply-adds (fvcore) at the rate "
             "the backbone's forward reaches here; `roofline`: every operator of the blocks (convolutions "
             "included) at the copy bandwidth for the bytes it reads and writes or at the backbone's MAC rate, "
             "whichever takes longer, summed, model minus backbone: what the extra work costs when each kernel "
             "runs as well as the machine allows it at the backbone's efficiency; `roofline / allowed` above 1: "
             "the target is out of reach for this design on this machine.", "",
             "| model | vs | model ms | over ms | allowed ms | slot modules ms | rest of blocks ms | extra moved MB | memory ms | MACs ms | roofline ms | roofline / allowed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in run["rows"]:
        al = r["allowed_ms"]
        fa = f"{r['roofline_ms'] / al:.2f}" if al and al > 0 else "–"
        lines.append(f"| {r['model']} | {r['baseline']} | {r['model_ms']:.1f} | {r['overhead_ms']:+.1f} "
                     f"| {'–' if al is None else f'{al:+.1f}'} | {r['slots_ms']:+.1f} | {r['blocks_ms'] - r['slots_ms']:+.1f} "
                     f"| {r['extra_mb']:+.0f} | {r['memory_ms']:.1f} | {r['compute_ms']:+.1f} | {r['roofline_ms']:+.1f} | {fa} |")
    for ab in run.get("ablations", []):
        ms = ab["ms"]
        if not any(k.startswith("-") for k in ms):
            continue  # no gate parts to take out
        lines += ["", f"Ablation, {ab['model']} (deployed, every gate of one kind replaced by a constant 1, the "
                  f"variants and {ab['baseline']} alternating): model {ms['model']:.1f} ms, {ab['baseline']} "
                  f"{ms['backbone']:.1f} ms (+{ms['model'] - ms['backbone']:.1f}); removing the gates saves "
                  + ", ".join(f"{k[1:]} {ms['model'] - v:.1f} ms" for k, v in ms.items() if k.startswith("-")) + "."]
    lines += ["", "Time inside the slot modules' parts (model, ms per clip, summed over blocks):", ""]
    for r in run["rows"]:
        if r.get("parts_ms"):
            base = r.get("base_slots_ms") or {}
            lines.append(f"- {r['model']}: " + ", ".join(f"{k} {v:.1f}" for k, v in  # 0: called around its hooks
                                                      sorted(r["parts_ms"].items(), key=lambda kv: -kv[1]) if v > 0)
                         + (" (its backbone's slot modules: " + ", ".join(f"{k} {v:.1f}" for k, v in base.items())
                            + ")" if base else ""))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("pairs", nargs="*", help="MODEL:BACKBONE (default: the CPU misses)")
    p.add_argument("--plain", action="store_true", help="the plain forwards instead of the deployed forms")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="write this Markdown file and a .json beside it")
    p.add_argument("--ablate", nargs="*", default=[], metavar="MODEL:BACKBONE",
                   help="also time each kind of gate of these models by removing it (see ablate())")
    p.add_argument("--notes", help="a Markdown file appended to the table (the analysis)")
    p.add_argument("--from-json", help="render a saved run again (with new --notes); measures nothing")
    a = p.parse_args(argv)
    from zoo.weights import atomic_write

    try:
        if a.from_json:
            run = json.loads(Path(a.from_json).read_text())
        else:
            for p in a.pairs + a.ablate:
                if ":" not in p:
                    raise ValueError(f"{p!r}: give MODEL:BACKBONE, e.g. gc_tsn_r50:tsn_r50")
            log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
            run = measure(a.pairs or PAIRS, not a.plain, a.rounds, a.warmup, a.frames, a.size, a.threads, log=log)
            run["ablations"] = [ablate(*_split(p), frames=a.frames, size=a.size, threads=a.threads, log=log)
                                for p in a.ablate]
        md = render(run) + ("\n" + Path(a.notes).read_text() if a.notes else "")
    except (OSError, ValueError, KeyError) as e:  # a bad name or file: one line, no traceback
        print(f"overhead.py: {e}", file=sys.stderr)
        return 2
    if a.out:
        out = Path(a.out)
        atomic_write(out.with_suffix(".json"), json.dumps(run, indent=1))
        atomic_write(out, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
