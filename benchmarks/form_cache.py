"""The compiled forms inside deployed, compiled networks against the same forms called alone:
how much of a calibrator's time is the state of the caches its frames arrive in.

For each network (deployed, ``torch.compile``d, one clip of 8x224, fp32), every form that a
``zoo::gate_`` call runs is wrapped with a timer (the graph looks its form up at each call, so
the wrapper is what the compiled graph calls). One forward records the forms' inputs; then, each
round: one compiled forward (the forms' summed time inside it), the same forms called one after
another on copies of their recorded inputs, each copied in just before its call ("alone, copied
in": the frames in the caches the copy left them in), the same with a 96 MB buffer
written between the copy and the call ("alone, caches flushed": the frames from memory), and,
where a form gates its block's conv2 output, that conv (the deployed block's, eager) run on its
own recorded input just before the form's call ("alone, after its conv": the frames as the
conv hands them over, nothing else of the network in between). Then, for deployed TSN-R50, a
plain read (ATen's sum) of a block's conv2 output right after the conv, after a copy, after a copy
and then the same conv (its output written elsewhere: what the conv's own traffic leaves of data
it did not write), and after the 96 MB write: where the conv leaves its output, whatever reads it.

    python benchmarks/form_cache.py --out benchmarks/results/epyc-avx2/compiled
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
from zoo.bench.run import timed_form  # noqa: E402
from zoo.bench.spec import parse_spec  # noqa: E402
from zoo.deploy import deploy, library  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernels import over_networks  # noqa: E402

NETWORKS = ("gc_tsn_r50", "sda_tsn_r50", "aia_tsn_r50")
WAYS = ("in the network", "alone, copied in", "alone, caches flushed", "alone, after its conv")


def _convs(model) -> dict:
    """Form key -> the conv whose output the form gates (the block's conv2, its BN folded)."""
    out = {}
    for m in model.modules():
        native = getattr(getattr(m, "calib", None), "native", None)
        if native is not None and getattr(m, "calib_at", None) == "bn2" and isinstance(m.bn2, torch.nn.Identity):
            out[native.key] = m.conv2
    return out


def network(name: str, rounds: int) -> dict:
    model, x, _, _ = timed_form(parse_spec(name), deploy=True)
    compiled = torch.compile(model, dynamic=False)
    compiled(x)  # inductor compiles at the first call
    forms = dict(library._forms)  # strong references: the registry holds its forms weakly
    spent, seen = [0.0], []

    def timer(key, form):
        def call(frames, T):
            if seen is not None:
                seen.append((key, frames.clone(), T))
            t0 = time.perf_counter()
            out = form(frames, T)
            spent[0] += time.perf_counter() - t0
            return out
        return call

    timers = {key: timer(key, form) for key, form in forms.items()}  # held here: the registry's hold is weak
    for key, t in timers.items():
        library._forms[key] = t
    convs, conv_in = _convs(model), {}
    hooks = [c.register_forward_pre_hook(lambda c, args, k=k: conv_in.setdefault(k, args[0].clone()))
             for k, c in convs.items()]
    try:
        compiled(x)
        inputs, seen = seen, None
        model(x)  # eager (it calls the forms directly, not through the timers), for the convs' hooks
        for h in hooks:
            h.remove()
        # the conv's output must be the form's input, as recorded
        after = {k: conv_in[k] for k, f, _ in inputs
                 if k in conv_in and torch.allclose(convs[k](conv_in[k]), f, rtol=1e-4, atol=1e-5)}
        flush = torch.empty(96 * 2 ** 20 // 4)
        times: dict = {k: [] for k in (*WAYS, "forward")}
        for _ in range(rounds):
            spent[0] = 0.0
            t0 = time.perf_counter()
            compiled(x)
            times["forward"].append((time.perf_counter() - t0) * 1e3)
            times["in the network"].append(spent[0] * 1e3)
            for way, flushed in (("alone, copied in", False), ("alone, caches flushed", True)):
                total = 0.0
                for key, frames, T in inputs:
                    y = frames.clone()
                    if flushed:
                        flush.fill_(1.0)
                    t0 = time.perf_counter()
                    forms[key](y, T)
                    total += time.perf_counter() - t0
                times[way].append(total * 1e3)
            if len(after) == len(inputs):
                total = 0.0
                for key, _, T in inputs:
                    y = convs[key](after[key])
                    t0 = time.perf_counter()
                    forms[key](y, T)
                    total += time.perf_counter() - t0
                times["alone, after its conv"].append(total * 1e3)
    finally:
        for key, form in forms.items():
            library._forms[key] = form
    mb = sum(f.numel() * f.element_size() for _, f, _ in inputs) / 2 ** 20
    return {"name": name, "form": sorted({type(forms[k]).__name__ for k, _, _ in inputs}), "calls": len(inputs),
            "frames_mb": mb, **{k: statistics.median(v) if v else None for k, v in times.items()},
            "ratio_in_network_vs_copied": statistics.median(
                a / b for a, b in zip(times["in the network"], times["alone, copied in"])),
            "ratio_in_network_vs_flushed": statistics.median(
                a / b for a, b in zip(times["in the network"], times["alone, caches flushed"]))}


def reads(rounds: int) -> list:
    """A plain read (ATen's sum) of a block's conv2 output in deployed TSN-R50, one identity block
    a stage: right after the conv made it, after a copy of it, after a copy then the conv (its
    output elsewhere), and after a copy then the 96 MB write; medians (ms). Where the conv leaves
    its output, not what the forms do with it."""
    clip = torch.randn(1, 3, 8, 224, 224)
    net = deploy(zoo.create_model("tsn_r50"), clip)
    found = {}
    blocks = {f"layer{i}.1" for i in range(1, 5)}
    for n, m in net.named_modules():
        if n in blocks:
            m.conv2.register_forward_pre_hook(lambda c, args, n=n: found.setdefault(n, (c, args[0].clone())) and None)
    net(clip)
    flush = torch.empty(96 * 2 ** 20 // 4)
    out = []
    for n, (conv, a) in sorted(found.items()):
        y0 = conv(a)
        ts: dict = {"after its conv": [], "after a copy": [], "a copy, then the conv": [], "caches flushed": []}
        for _ in range(rounds):
            y = conv(a)
            t0 = time.perf_counter()
            y.sum()
            ts["after its conv"].append(time.perf_counter() - t0)
            for way in ("after a copy", "a copy, then the conv", "caches flushed"):
                y = y0.clone()
                if way == "caches flushed":
                    flush.fill_(1.0)
                elif way == "a copy, then the conv":  # its output goes elsewhere: what its own traffic leaves
                    conv(a)
                t0 = time.perf_counter()
                y.sum()
                ts[way].append(time.perf_counter() - t0)
        out.append({"block": n, "shape": list(y0.shape), "mb": y0.numel() * y0.element_size() / 2 ** 20,
                    "channels_last": y0.is_contiguous(memory_format=torch.channels_last),
                    **{k: statistics.median(v) * 1e3 for k, v in ts.items()}})
    return out


def _ms(v) -> str:
    return "-" if v is None else f"{v:.3f}"  # -: a way the script's earlier versions did not time


def render(doc: dict) -> str:
    lines = ["# The compiled forms: inside compiled networks and alone", "",
             f"Machine: {describe(doc['machine'])}. {doc['threads']} threads; one clip of 8x224, fp32, deployed "
             f"and compiled; {doc['rounds']} rounds; medians (ms a clip, the forms' calls summed).", "",
             "| network | calls a clip | their frames, MB | in the network | alone, copied in | alone, caches flushed "
             "| alone, after its conv | in the network / copied in | in the network / flushed | whole forward |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["networks"]:
        conv = r["alone, after its conv"]
        lines.append(f"| {r['name']} | {r['calls']} {', '.join(r['form'])} | {r['frames_mb']:.1f} | "
                     f"{r['in the network']:.1f} | {r['alone, copied in']:.1f} | {r['alone, caches flushed']:.1f} | "
                     f"{'-' if conv is None else f'{conv:.1f}'} | "
                     f"{r['ratio_in_network_vs_copied']:.2f} | {r['ratio_in_network_vs_flushed']:.2f} | "
                     f"{r['forward']:.0f} |")
    lines += ["", "Copied in: each form's recorded input copied (ATen's copy, the run's threads) just before "
              "its call. Flushed: a 96 MB buffer written between that copy and the call. After its conv: "
              "the block's conv2 (deployed, eager; its BN folded) run on its recorded input just before the "
              "call (-: a form not right after such a conv). The forms' times include their Python and the "
              "calls into the kernels, the same in every way."]
    if doc.get("reads"):
        lines += ["", "A plain read (ATen's sum, ms) of a block's conv2 output in deployed TSN-R50, right after the "
                  "conv made it, after a copy, after a copy and then the same conv (its output written elsewhere), "
                  "and after a copy and the 96 MB write:", "",
                  "| block | map | MB | channels-last | after its conv | after a copy | a copy, then the conv "
                  "| caches flushed |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in doc["reads"]:
            lines.append(f"| {r['block']} | {'x'.join(map(str, r['shape']))} | {r['mb']:.1f} | "
                         f"{'yes' if r['channels_last'] else 'no'} | {r['after its conv']:.3f} | "
                         f"{r['after a copy']:.3f} | {_ms(r.get('a copy, then the conv'))} | "
                         f"{r['caches flushed']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    return over_networks(argv, __doc__, 12, "form-cache-cpu", NETWORKS, network, render,
                         extra=lambda rounds: {"reads": reads(3 * rounds)})


if __name__ == "__main__":
    sys.exit(main())
