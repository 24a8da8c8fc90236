"""What each of the compiled forms' later parts saves inside deployed networks, within one run.

The conversion times these where they compete and keeps the faster; here each is switched
against the way the form ran before it, in the same process, on the same clip:

* GC's ECal-S conv and SDA's pooled-over-T conv in the kernels' ``conv3x3`` (``s_mode``,
  ``lt_mode``) against PyTorch's or oneDNN's call (the faster of the two here);
* SDA's down-projection in the kernels' ``conv1x1`` (``down_mode``) against oneDNN's;
* AIA's two units as one form (:class:`~zoo.deploy.forms.NativeAIAPair`) against the units one
  after the other.

For each network (deployed, one clip of 8x224, fp32): the time its calibrator modules take
inside full forwards (hooks), each setting once a round, the order alternating; medians of
the settings' module times and of their per-round ratio.

    python benchmarks/gate_forms.py --out benchmarks/results/epyc-avx2/compiled
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import zoo  # noqa: E402
from zoo.bench.machine import describe  # noqa: E402
from zoo.deploy import deploy  # noqa: E402
from zoo.deploy.forms import InplaceAIACombo, InplaceGC, InplaceSDA  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernels import over_networks  # noqa: E402

NETWORKS = ("gc_tsn_r50", "gc_gst_r50", "sda_tsn_r50", "aia_tsn_r50")


def _former(gc_or_sda, attr: str, run, p) -> str:
    """The faster of PyTorch's and oneDNN's way for a small conv on ``p``, as the form chose
    before the kernels' conv3x3 was offered (timed here, 20 calls each, medians)."""
    best, kept = None, getattr(gc_or_sda, attr)
    for mode in ("library", "onednn"):
        setattr(gc_or_sda, attr, mode)
        run(p)
        ts = []
        for _ in range(20):
            t0 = time.perf_counter()
            run(p)
            ts.append(time.perf_counter() - t0)
        t = statistics.median(ts)
        if best is None or t < best[1]:
            best = (mode, t)
    setattr(gc_or_sda, attr, kept)
    return best[0]


def _setter(obj, values: dict):
    return lambda: [setattr(obj, k, v) for k, v in values.items()]


def settings(shapes: dict) -> dict:
    """Two settings of a deployed network's calibrator modules (the keys of ``shapes``, their
    input shapes), each a list of calls that apply it: as converted, and the former way."""
    now, former = [], []
    for m, shape in shapes.items():
        f = m.native
        if f is None:
            continue
        if isinstance(m, InplaceAIACombo):
            now.append(_setter(m, {"native": f}))
            former.append(_setter(m, {"native": None}))
            continue
        sda = isinstance(m, InplaceSDA)
        conv, attr, run = (f.lt, "lt_mode", f.lt_conv) if sda else (f.s, "s_mode", f.s_conv)
        N, C, H, W = shape
        p = torch.zeros(N // 8, H, W, conv.in_channels)
        now.append(_setter(f, {attr: getattr(f, attr), **({"down_mode": f.down_mode} if sda else {})}))
        former.append(_setter(f, {attr: _former(f, attr, run, p), **({"down_mode": "library"} if sda else {})}))
    return {"as converted": now, "former": former}


def network(name: str, rounds: int) -> dict:
    clip = torch.randn(1, 3, 8, 224, 224)
    net = deploy(zoo.create_model(name), clip)
    mods = [m for m in net.modules() if isinstance(m, (InplaceGC, InplaceSDA, InplaceAIACombo))]
    shapes: dict = {}

    def record(m, args) -> None:  # None: the arguments stay as they are
        shapes.setdefault(m, tuple(args[0].shape))
    hooks = [m.register_forward_pre_hook(record) for m in mods]
    net(clip)
    for h in hooks:
        h.remove()
    ways = settings(shapes)
    spent, start = [0.0], [0.0]
    for m in mods:
        m.register_forward_pre_hook(lambda *a: start.__setitem__(0, time.perf_counter()))
        m.register_forward_hook(lambda *a: spent.__setitem__(0, spent[0] + time.perf_counter() - start[0]))
    times: dict = {k: [] for k in ways}
    for r in range(rounds + 2):
        for k in (list(ways) if r % 2 else list(ways)[::-1]):
            for apply in ways[k]:
                apply()
            spent[0] = 0.0
            net(clip)
            if r >= 2:  # two untimed rounds first
                times[k].append(spent[0] * 1e3)
    for apply in ways["as converted"]:
        apply()
    ratios = [a / b for a, b in zip(times["as converted"], times["former"])]
    q = statistics.quantiles(ratios, n=4)
    return {"name": name, "module": type(mods[0]).__name__, "modules": len(mods), "compiled": len(ways["former"]),
            "converted_ms": statistics.median(times["as converted"]), "former_ms": statistics.median(times["former"]),
            "ratio": statistics.median(ratios), "ratio_iqr": [q[0], q[2]]}


def render(doc: dict) -> str:
    lines = ["# The compiled forms' later parts inside deployed networks", "",
             f"Machine: {describe(doc['machine'])}. {doc['threads']} threads; one clip of 8x224, fp32; each "
             f"setting once a round, alternated, {doc['rounds']} rounds; medians.", "",
             "| network | modules | former way, ms | as converted, ms | ratio [IQR] |", "|---|---|---|---|---|"]
    for r in doc["networks"]:
        lo, hi = r["ratio_iqr"]
        lines.append(f"| {r['name']} | {r['modules']} {r['module']} ({r['compiled']} compiled) | {r['former_ms']:.2f} | "
                     f"{r['converted_ms']:.2f} | "
                     f"{r['ratio']:.3f} [{lo:.3f}-{hi:.3f}] |")
    lines += ["", "Former way: GC's and SDA's small convs PyTorch's or oneDNN's (the faster here), SDA's "
              "down-projection oneDNN's, AIA's units one after the other. The module times include the "
              "hooks' own cost (a few microseconds per module)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    return over_networks(argv, __doc__, 16, "gate-forms-cpu", NETWORKS, network, render)


if __name__ == "__main__":
    sys.exit(main())
