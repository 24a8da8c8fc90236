"""zoo.deploy's compiled kernels against the PyTorch forms they replace, module by module.

For GC (deployed GC-TSN), AIA (C-only, ST-only and CinST -> STinC), SDA (SDA-TSN) and STC's
and GST's middle convs (STC, GST), the first module of each input shape runs alone on fresh frames of that
shape (8 frames, channels-last, fp32), hot: the PyTorch form and the compiled one alternate
round by round on their own copies of the same frames; medians. Then those modules' total time
inside full forwards of the deployed networks (forward hooks), beside the network's and TSN's
forward times in the same rounds.

    python benchmarks/kernels.py --out benchmarks/results/native
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import zoo  # noqa: E402
from zoo.bench.machine import describe, machine  # noqa: E402
from zoo.bench.timing import keep_heap  # noqa: E402
from zoo.deploy import deploy, native  # noqa: E402
from zoo.deploy.forms import (DeployedGSTConv, DeployedSTCConv, InplaceAIACombo,  # noqa: E402
                              InplaceAIAUnit, InplaceGC, InplaceSDA)
from zoo.weights.files import atomic_write  # noqa: E402

STAGES = {64: 56, 128: 28, 256: 14, 512: 7}  # a block's width -> its frames' size at 224 px


def alternate(fns: dict, rounds: int) -> dict:
    """Median ms of each callable, alternating A B, B A, ... after one untimed call each."""
    ts = {k: [] for k in fns}
    for f in fns.values():
        f()
    for r in range(rounds):
        for k in (list(fns) if r % 2 else list(fns)[::-1]):
            t0 = time.perf_counter()
            fns[k]()
            ts[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in ts.items()}


def per_stage(name: str, kind, rounds: int, **kw) -> list:
    """For the first ``kind`` module of each input shape in deployed ``name``: its PyTorch form
    against its compiled one, on fresh frames of the shape it receives in the network."""
    clip = torch.randn(1, 3, 8, 224, 224)
    model = deploy(zoo.create_model(name, **kw), clip)
    seen: dict = {}

    def record(m, args):
        seen.setdefault(m, tuple(args[0].shape))  # None returned: the arguments stay

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, kind)]
    model(clip)
    for h in hooks:
        h.remove()
    rows, shapes = [], set()
    for i, (m, shape) in enumerate(seen.items()):
        if shape in shapes or m.native is None:
            continue
        shapes.add(shape)
        frames = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        kernel = m.native
        m.native = None
        a, b = frames.clone(), frames.clone()
        t = alternate({"pytorch": lambda: m(a, 8), "kernel": lambda: kernel(b, 8)}, rounds)
        m.native = kernel
        label = type(m).__name__ + (f" ({m.kind})" if hasattr(m, "kind") else "")
        rows.append({"module": label, "network": name, "block": i, "frames": list(shape), **t})
    return rows


def in_model(name: str, kind, rounds: int) -> dict:
    """Forward times of deployed ``name`` and TSN alternated, and the time ``name``'s ``kind``
    modules take inside its forwards (hooks)."""
    clip = torch.randn(1, 3, 8, 224, 224)
    net = deploy(zoo.create_model(name), clip)
    tsn = deploy(zoo.create_model("tsn_r50"), clip)
    mods = [m for m in net.modules() if isinstance(m, kind)]
    spent, start = [0.0], [0.0]
    for m in mods:
        m.register_forward_pre_hook(lambda *a: start.__setitem__(0, time.perf_counter()))
        m.register_forward_hook(lambda *a: spent.__setitem__(0, spent[0] + time.perf_counter() - start[0]))
    for _ in range(2):
        net(clip)
        tsn(clip)
    rows = {"network": [], "modules_ms": [], "tsn_r50": []}
    for _ in range(rounds):
        spent[0] = 0.0
        t0 = time.perf_counter()
        net(clip)
        rows["network"].append((time.perf_counter() - t0) * 1e3)
        rows["modules_ms"].append(spent[0] * 1e3)
        t0 = time.perf_counter()
        tsn(clip)
        rows["tsn_r50"].append((time.perf_counter() - t0) * 1e3)
    out = {k: statistics.median(v) for k, v in rows.items()}
    out.update(name=name, module=kind.__name__, kernels_used=sum(_compiled(m) for m in mods), modules=len(mods))
    return out


def _compiled(m) -> bool:
    """Whether ``m`` (or, for AIA's combined units, each of its units) runs a compiled form."""
    units = [m] if hasattr(m, "native") else list(m.children())
    return bool(units) and all(getattr(u, "native", None) is not None for u in units)


def render(doc: dict) -> str:
    lines = ["# zoo.deploy's compiled kernels against the PyTorch forms", "",
             f"Machine: {describe(doc['machine'])}. {doc['threads']} threads; hot, alternated, medians of "
             f"{doc['rounds']} rounds; ms.", "",
             "| network | module | frames | PyTorch form | kernel | ratio |", "|---|---|---|---|---|---|"]
    for r in doc["stages"]:
        lines.append(f"| {r.get('network', '')} | {r['module']} | {'x'.join(map(str, r['frames']))} | "
                     f"{r['pytorch']:.3f} | {r['kernel']:.3f} | {r['pytorch'] / r['kernel']:.2f}x |")
    lines.append("")
    for m in doc["in_model"]:
        lines.append(f"* Inside deployed {m['name']} ({m['kernels_used']} of its {m['modules']} {m['module']} modules "
                     f"on the kernels): they take {m['modules_ms']:.1f} ms of a {m['network']:.1f} ms forward; "
                     f"deployed TSN {m['tsn_r50']:.1f} ms in the same rounds.")
    return "\n".join(lines) + "\n"


def prepare(argv, doc: str, rounds: int, out: str):
    """The arguments of a kernel benchmark (``--rounds``, ``--threads``, ``--out`` for ``out``),
    its threads set and the heap kept; None where the kernels cannot be built here (said why)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help=f"write {out}.{{json,md}} into this folder")
    a = p.parse_args(argv)
    if native.load() is None:
        print(f"no compiled kernels here: {native.why_not()}", file=sys.stderr)
        return None
    torch.set_num_threads(a.threads)
    keep_heap()
    return a


def finish(a, doc: dict, text: str, out: str) -> int:
    """Print the report; with ``--out``, write it and its data as ``out``.{md,json} there."""
    print(text)
    if a.out:
        atomic_write(Path(a.out) / f"{out}.json", json.dumps(doc, indent=1) + "\n")
        atomic_write(Path(a.out) / f"{out}.md", text)
    return 0


def over_networks(argv, doc: str, rounds: int, out: str, networks, network, render, extra=None) -> int:
    """A benchmark that measures each of ``networks`` (``network(name, rounds)``, a dict) in one
    process and reports them (``render(doc)``): the arguments, the run, the report and its files.
    ``extra(rounds)``: more entries of the run (a dict), measured after the networks."""
    a = prepare(argv, doc, rounds, out)
    if a is None:
        return 2
    with torch.inference_mode():
        run = {"machine": machine(), "threads": a.threads, "rounds": a.rounds,
               "networks": [network(name, a.rounds) for name in networks]}
        run.update(extra(a.rounds) if extra else {})
    return finish(a, run, render(run), out)


def main(argv=None) -> int:
    a = prepare(argv, __doc__, 40, "kernels-cpu")
    if a is None:
        return 2
    with torch.inference_mode():
        stages = per_stage("gc_tsn_r50", InplaceGC, a.rounds) \
            + per_stage("aia_tsn_r50", InplaceAIAUnit, a.rounds, attention="c") \
            + per_stage("aia_tsn_r50", InplaceAIAUnit, a.rounds, attention="st") \
            + per_stage("aia_tsn_r50", InplaceAIAUnit, a.rounds) \
            + per_stage("sda_tsn_r50", InplaceSDA, a.rounds) \
            + per_stage("stc_r50", DeployedSTCConv, a.rounds) \
            + per_stage("gst_r50", DeployedGSTConv, a.rounds)
        n = max(a.rounds // 3, 5)
        doc = {"machine": machine(), "threads": a.threads, "rounds": a.rounds, "stages": stages,
               "in_model": [in_model(name, kind, n) for name, kind in (
                   ("gc_tsn_r50", InplaceGC), ("sda_tsn_r50", InplaceSDA), ("aia_tsn_r50", InplaceAIACombo),
                   ("stc_r50", DeployedSTCConv), ("gst_r50", DeployedGSTConv))]}
    return finish(a, doc, render(doc), "kernels-cpu")


if __name__ == "__main__":
    sys.exit(main())
