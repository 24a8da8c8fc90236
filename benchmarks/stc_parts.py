"""Where a deployed STC middle conv's time goes, per clip, against the 3x3 convs it replaces.

For deployed STC and STC-Light (one clip, 8 x 224 x 224), each block's compiled middle conv runs
alone, hot, on the frames it receives in the network, with its calls timed one by one inside the
real call (the compiled kernels, the two library convs; the rest is the Python around them).
Per clip: each shape's median times the number of blocks of that shape. Beside it: deployed
TSN's middle convs (conv2 with bn2 folded in, then the ReLU) on the frames they receive, timed
the same way. Then the same parts inside full forwards, where the memory they pass over is no
longer in cache, beside TSN's conv2 calls inside its forwards. The STC networks' -10 % limit asks for about 17 ms less per clip than TSN (10 % of
a deployed TSN's forward on a 2-vCPU EPYC).

    python benchmarks/stc_parts.py --out benchmarks/results/native
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import zoo  # noqa: E402
from zoo.bench.machine import describe, machine  # noqa: E402
from zoo.deploy import deploy, forms, native  # noqa: E402
from zoo.deploy.forms import DeployedSTCConv  # noqa: E402
from zoo.models.resnet import Bottleneck  # noqa: E402
from kernels import finish, prepare  # noqa: E402  (this folder's: the same arguments and set-up)


NAMES = {"stc_shift": "S_T's shifted copy", "stc_temporal": "T_S's temporal conv (SR's pool on the way)",
         "stc_pools": "TR's pool", "stc_tr_gate": "TR's gate", "stc_sr_reduce": "SR's reduction (STC-Light)",
         "stc_join": "gates, concatenation, BN, ReLU"}


class _Timed:
    """Calls of ``target`` timed by name into ``acc`` (ms)."""

    def __init__(self, target, acc: dict, name=None):
        self.target, self.acc, self.name = target, acc, name

    def __getattr__(self, k):
        fn = getattr(self.target, k)
        return self._wrap(fn, k)

    def __call__(self, *a, **kw):
        return self._wrap(self.target, self.name)(*a, **kw)

    def _wrap(self, fn, k):
        def timed(*a, **kw):
            t0 = time.perf_counter()
            r = fn(*a, **kw)
            self.acc[k] = self.acc.get(k, 0.0) + (time.perf_counter() - t0) * 1e3
            return r
        return timed


def inputs(model, kind, clip) -> dict:
    """The first input of each shape that ``kind`` modules receive: {key: (module, frames, T, count)}."""
    seen: dict = {}

    def record(m, args):
        key = (tuple(args[0].shape), tuple((m.conv2 if kind is Bottleneck else m.spatial).stride))
        if key in seen:
            seen[key][3] += 1
        else:
            seen[key] = [m, args[0].clone(memory_format=torch.channels_last), args[1], 1]

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, kind)]
    model(clip)
    for h in hooks:
        h.remove()
    return seen


def stc_parts(name: str, clip, rounds: int) -> dict:
    model = deploy(zoo.create_model(name), clip)
    per_clip: dict = {}
    shapes = []
    lib, conv2d = native.load(), F.conv2d
    for (shape, stride), (m, x, T, count) in inputs(model, DeployedSTCConv, clip).items():
        assert m.native is not None, f"{name}: a middle conv without its compiled form"
        acc: dict = {}
        form = m.native
        # the form's own calls, timed where it makes them (SR's conv calls F.conv2d or oneDNN's conv)
        forms.native.load, forms.F.conv2d = lambda: _Timed(lib, acc), _Timed(conv2d, acc, "S_T's 3x3 conv")
        form.sr_conv = _Timed(type(form).sr_conv.__get__(form), acc, "SR's conv")
        try:
            m.native(x, T)
            acc.clear()
            ts = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                m.native(x, T)
                ts.append((time.perf_counter() - t0) * 1e3)
        finally:
            forms.native.load, forms.F.conv2d = native.load, conv2d
            del form.sr_conv
        if "SR's conv" in acc and not form.sr_onednn:  # counted in both
            acc["S_T's 3x3 conv"] -= acc["SR's conv"]
        parts = {NAMES.get(k, k): v / rounds for k, v in acc.items()}
        whole = statistics.median(ts)
        parts["the rest (SR's sigmoid, allocations, Python)"] = max(whole - sum(parts.values()), 0.0)
        shapes.append({"frames": list(shape), "stride": list(stride), "blocks": count, "whole": whole, "parts": parts})
        for k, v in parts.items():
            per_clip[k] = per_clip.get(k, 0.0) + count * v
        per_clip["whole"] = per_clip.get("whole", 0.0) + count * whole
    return {"network": name, "shapes": shapes, "per_clip": per_clip}


def in_network(name: str, clip, rounds: int) -> dict:
    """The same parts inside full forwards of deployed ``name`` (its middle convs' calls timed as
    they run there), per forward; and the forward's time."""
    model = deploy(zoo.create_model(name), clip)
    lib, conv2d = native.load(), F.conv2d
    acc: dict = {}
    inside, start, spent = [False], [0.0], [0.0]
    timed_conv = _Timed(conv2d, acc, "S_T's 3x3 conv")

    def pre(*_):
        inside[0], start[0] = True, time.perf_counter()

    def post(*_):
        inside[0] = False
        spent[0] += (time.perf_counter() - start[0]) * 1e3

    def sr_conv(form):
        timed = _Timed(type(form).sr_conv.__get__(form), acc, "SR's conv")

        def run(p):  # its F.conv2d, if any, counted here only
            inside[0] = False
            try:
                return timed(p)
            finally:
                inside[0] = True
        return run

    mods = [m for m in model.modules() if isinstance(m, DeployedSTCConv) and m.native is not None]
    hooks = [h for m in mods for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
    forms.native.load = lambda: _Timed(lib, acc)
    forms.F.conv2d = lambda *a, **kw: timed_conv(*a, **kw) if inside[0] else conv2d(*a, **kw)
    for m in mods:
        m.native.sr_conv = sr_conv(m.native)
    try:
        for _ in range(2):
            model(clip)
        acc.clear()
        spent[0], ts = 0.0, []
        for _ in range(rounds):
            t0 = time.perf_counter()
            model(clip)
            ts.append((time.perf_counter() - t0) * 1e3)
    finally:
        forms.native.load, forms.F.conv2d = native.load, conv2d
        for m in mods:
            del m.native.sr_conv
        for h in hooks:
            h.remove()
    parts = {NAMES.get(k, k): v / rounds for k, v in acc.items()}
    whole = spent[0] / rounds
    parts["the rest (SR's sigmoid, allocations, Python)"] = max(whole - sum(parts.values()), 0.0)
    return {"network": name, "modules": len(mods), "per_forward": {**parts, "whole": whole},
            "forward": statistics.median(ts)}


def tsn_in_network(clip, rounds: int) -> dict:
    """Deployed TSN's conv2 calls (bn2 folded; the ReLU after them not included) inside its forwards."""
    model = deploy(zoo.create_model("tsn_r50"), clip)
    start, spent = [0.0], [0.0]
    convs = [b.conv2 for b in model.modules() if isinstance(b, Bottleneck)]
    hooks = [h for c in convs for h in (
        c.register_forward_pre_hook(lambda *_: start.__setitem__(0, time.perf_counter())),
        c.register_forward_hook(lambda *_: spent.__setitem__(0, spent[0] + (time.perf_counter() - start[0]) * 1e3)))]
    for _ in range(2):
        model(clip)
    spent[0], ts = 0.0, []
    for _ in range(rounds):
        t0 = time.perf_counter()
        model(clip)
        ts.append((time.perf_counter() - t0) * 1e3)
    for h in hooks:
        h.remove()
    return {"conv2": spent[0] / rounds, "forward": statistics.median(ts)}


def tsn_convs(clip, rounds: int) -> dict:
    model = deploy(zoo.create_model("tsn_r50"), clip)
    total, shapes = 0.0, []
    for (shape, stride), (b, x, T, count) in inputs(model, Bottleneck, clip).items():
        y = b.conv1(x)  # the frames conv2 receives
        ts = []
        for _ in range(rounds + 1):
            t0 = time.perf_counter()
            torch.relu_(b.bn2(b.conv2(y)))
            ts.append((time.perf_counter() - t0) * 1e3)
        ms = statistics.median(ts[1:])
        shapes.append({"frames": list(y.shape), "blocks": count, "ms": ms})
        total += count * ms
    return {"shapes": shapes, "per_clip": total}


def render(doc: dict) -> str:
    tsn = doc["tsn"]["per_clip"]
    lines = ["# Where deployed STC's middle conv spends its time", "",
             f"Machine: {describe(doc['machine'])}. {doc['threads']} threads; one clip 8x224x224; each middle conv "
             f"alone, hot, on the frames it receives in the network, medians of {doc['rounds']} calls; ms per clip "
             "(each shape's time times its blocks).", "",
             f"Deployed TSN's middle convs (conv2 with bn2 folded, ReLU), timed the same way: **{tsn:.1f} ms** per "
             "clip.", ""]
    keys = list(dict.fromkeys(k for n in doc["networks"] for k in n["per_clip"] if k != "whole"))
    lines += ["| part | " + " | ".join(n["network"] for n in doc["networks"]) + " |",
              "|---|" + "---|" * len(doc["networks"])]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(f"{n['per_clip'].get(k, 0.0):.2f}" for n in doc["networks"]) + " |")
    lines.append("| **whole** | " + " | ".join(f"**{n['per_clip']['whole']:.2f}**" for n in doc["networks"]) + " |")
    lines.append("| saved against TSN's | " + " | ".join(f"{tsn - n['per_clip']['whole']:.2f}"
                                                       for n in doc["networks"]) + " |")
    lines.append("")
    if doc.get("in_network"):
        nets, t = doc["in_network"], doc["tsn_in_network"]
        lines += [f"Inside full forwards, per forward (mean of {doc['rounds']} forwards; each call timed where it "
                  f"runs, with the hooks' own cost in the whole): deployed TSN's conv2 calls take **{t['conv2']:.1f} ms** "
                  f"(the ReLU after them not included) of a {t['forward']:.1f} ms forward.", "",
                  "| part | " + " | ".join(n["network"] for n in nets) + " |", "|---|" + "---|" * len(nets)]
        keys = list(dict.fromkeys(k for n in nets for k in n["per_forward"] if k != "whole"))
        for k in keys:
            lines.append(f"| {k} | " + " | ".join(f"{n['per_forward'].get(k, 0.0):.2f}" for n in nets) + " |")
        lines.append("| **whole** | " + " | ".join(f"**{n['per_forward']['whole']:.2f}**" for n in nets) + " |")
        lines.append("| forward | " + " | ".join(f"{n['forward']:.1f}" for n in nets) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    a = prepare(argv, __doc__, 30, "stc-parts-cpu")
    if a is None:
        return 2
    clip = torch.randn(1, 3, 8, 224, 224)
    with torch.inference_mode():
        names = ("stc_r50", "stc_light_r50")
        doc = {"machine": machine(), "threads": a.threads, "rounds": a.rounds, "tsn": tsn_convs(clip, a.rounds),
               "networks": [stc_parts(n, clip, a.rounds) for n in names],
               "tsn_in_network": tsn_in_network(clip, a.rounds),
               "in_network": [in_network(n, clip, a.rounds) for n in names]}
    return finish(a, doc, render(doc), "stc-parts-cpu")


if __name__ == "__main__":
    sys.exit(main())
