"""Training-step speed and memory on CPU: each family against its backbone.

For every pair (network, backbone) one process times, round by round and alternating the
models, one SGD step (forward + cross-entropy + backward + optimizer step, train mode) and one
inference forward (eval, autograd off) on the same clip batch; a family's overhead is the
median of its per-round time ratios minus 1. The project's target: each calibrator's
training-step overhead at most 1.5x its inference overhead. fp32, and bf16 autocast with
``--bf16``.

Memory: activation memory of one training step = peak resident memory during the step minus
the resident memory before it (parameters, gradients and momentum already allocated), with
glibc told to return freed blocks at once (large blocks mmap'ed, heap trimmed) so that resident
memory follows the live tensors; measured without and with ``model.set_grad_checkpointing()``
(target: checkpointing at least halves activation memory for at most +40 % step time).

    python benchmarks/train_step.py --out benchmarks/results
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# resident memory must follow the live tensors: set before the allocator starts
_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
if any(os.environ.get(k) != v for k, v in _MALLOC.items()) and __name__ == "__main__":
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_MALLOC})

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import zoo  # noqa: E402
from zoo.bench.probe import reset_hwm, status_kb  # noqa: E402  (the resident-set high-water mark, Linux)
from zoo.weights.files import atomic_write  # noqa: E402

PAIRS = [("tsm_r50", "tsn_r50"), ("gc_tsn_r50", "tsn_r50"), ("gc_tsm_r50", "tsm_r50"), ("aia_tsn_r50", "tsn_r50"),
         ("sda_tsn_r50", "tsn_r50"), ("stc_r50", "tsn_r50"), ("gst_r50", "tsn_r50"), ("gc_gst_r50", "gst_r50"),
         ("gc_tdn_r50", "tdn_r50")]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Runner:
    def __init__(self, arch: str, x: torch.Tensor, y: torch.Tensor, amp: bool):
        self.model = zoo.create_model(arch, num_classes=int(y.max()) + 1, num_frames=x.shape[2] // self.seg(arch))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.x, self.y, self.amp = x, y, amp
        self.step()  # allocate gradients and momentum before anything is measured

    @staticmethod
    def seg(arch: str) -> int:
        return 5 if zoo.registry().archs[arch].family == "tdn" else 1

    def _ctx(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.amp)

    def step(self) -> float:
        self.model.train()
        t0 = time.perf_counter()
        with self._ctx():
            loss = F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=False)
        return time.perf_counter() - t0

    def infer(self) -> float:
        self.model.eval()
        t0 = time.perf_counter()
        with torch.no_grad(), self._ctx():
            self.model(self.x)
        return time.perf_counter() - t0

    def activation_bytes(self) -> int:
        gc.collect()
        before = _rss()
        reset_hwm()
        self.step()
        return status_kb("VmHWM") * 1024 - before


def clip(arch: str, args) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(args.batch, 3, args.frames * Runner.seg(arch), args.size, args.size, generator=g)


def time_pair(net: str, base: str, args, amp: bool) -> dict:
    y = torch.arange(args.batch) % 10
    runners = {a: Runner(a, clip(a, args), y, amp) for a in (net, base)}
    ratios = {"train": [], "infer": []}
    times = {a: {"train": [], "infer": []} for a in runners}
    for _ in range(args.rounds):
        for kind in ("train", "infer"):
            t = {}
            for a, r in runners.items():
                t[a] = r.step() if kind == "train" else r.infer()
                times[a][kind].append(t[a])
            ratios[kind].append(t[net] / t[base])
    tr, inf = statistics.median(ratios["train"]) - 1, statistics.median(ratios["infer"]) - 1
    return {"net": net, "base": base, "train_overhead": tr, "infer_overhead": inf,
            "train_s": statistics.median(times[net]["train"]), "base_train_s": statistics.median(times[base]["train"]),
            "infer_s": statistics.median(times[net]["infer"]),
            "clips_per_s_train": args.batch / statistics.median(times[net]["train"]),
            "base_clips_per_s_train": args.batch / statistics.median(times[base]["train"]),
            "ratio_of_overheads": (tr / inf) if inf > 0.005 else None,
            "target_met": tr <= 1.5 * max(inf, 0.0) if inf > 0.005 else tr <= 0.015}


def memory(arch: str, args) -> dict:
    y = torch.arange(args.batch) % 10
    r = Runner(arch, clip(arch, args), y, amp=False)
    plain = statistics.median(r.activation_bytes() for _ in range(2))
    t_plain = statistics.median(r.step() for _ in range(args.rounds))
    if not hasattr(r.model, "set_grad_checkpointing"):
        return {"arch": arch, "activation_mb": plain / 2**20, "checkpointed_mb": None, "step_s": t_plain,
                "note": "the model has no set_grad_checkpointing() in this tree"}
    r.model.set_grad_checkpointing(True)
    r.step()
    ckpt = statistics.median(r.activation_bytes() for _ in range(2))
    ratios, t_ckpt = [], []
    for _ in range(args.rounds):   # alternate plain and checkpointed steps: drift hits both alike
        r.model.set_grad_checkpointing(False)
        t0 = r.step()
        r.model.set_grad_checkpointing(True)
        t1 = r.step()
        ratios.append(t1 / t0)
        t_ckpt.append(t1)
    over = statistics.median(ratios) - 1
    return {"arch": arch, "activation_mb": plain / 2**20, "checkpointed_mb": ckpt / 2**20, "step_s": t_plain,
            "checkpointed_step_s": statistics.median(t_ckpt), "memory_ratio": ckpt / plain, "time_overhead": over,
            "target_met": ckpt / plain <= 0.5 and over <= 0.4}


def render(doc: dict) -> str:
    c, m = doc["config"], doc["machine"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:+.1f}%"  # noqa: E731
    out = ["# Training step on CPU: each family against its backbone", "",
           f"One SGD step (forward, loss, backward, optimizer step) and one inference forward (eval, autograd off) "
           f"on {c['batch']} clips of {c['frames']} segments at {c['size']}x{c['size']} (TDN: 5 frames per segment), "
           f"{c['rounds']} alternating rounds, medians of per-round ratios; {c['threads']} thread(s).", "",
           f"Machine: {m['cpu']['model']} ({m['cpu']['cpus']} CPUs; {', '.join(m['cpu']['flags']) or 'no AVX2/AVX-512/AMX'}), "
           f"torch {m['torch']}, {m['date']}. The machine is shared with other jobs and was busy (load average "
           f"{m['load_avg']}): ratios within a round are comparable, absolute times are not.", ""]
    for dtype, rows in doc["speed"].items():
        out += [f"## Speed, {dtype}", "",
                "| network | vs | train clips/s | backbone clips/s | training overhead | inference overhead | "
                "train / inference overhead | target (<= 1.5x) |", "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if "error" in r:
                out.append(f"| {r['net']} | {r['base']} | fails: `{r['error'][:90]}` | | | | | |")
                continue
            ratio = "n/a" if r["ratio_of_overheads"] is None else f"{r['ratio_of_overheads']:.2f}x"
            out.append(f"| {r['net']} | {r['base']} | {r['clips_per_s_train']:.2f} | {r['base_clips_per_s_train']:.2f} | "
                       f"{pct(r['train_overhead'])} | {pct(r['infer_overhead'])} | {ratio} | "
                       f"{'met' if r['target_met'] else 'missed'} |")
        out.append("")
    out += ["## Activation memory of one training step (fp32)", "",
            "| network | plain | with set_grad_checkpointing() | memory | step time | target (<= 0.5x, <= +40%) |",
            "|---|---|---|---|---|---|"]
    for r in doc["memory"]:
        if r.get("checkpointed_mb") is None:
            out.append(f"| {r['arch']} | {r['activation_mb']:.0f} MB | n/a | n/a | n/a | {r.get('note', '')} |")
        else:
            out.append(f"| {r['arch']} | {r['activation_mb']:.0f} MB | {r['checkpointed_mb']:.0f} MB | "
                       f"{r['memory_ratio']:.2f}x | {pct(r['time_overhead'])} | {'met' if r['target_met'] else 'missed'} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    from eval_speed import cpu_info

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=2, help="clips per step (>= 2: GC's ECal-G BatchNorm1d needs 2 in train mode)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bf16", action="store_true", help="also time bf16 autocast")
    p.add_argument("--only-bf16", action="store_true", help="time bf16 autocast only")
    p.add_argument("--no-memory", action="store_true", help="skip the memory table")
    p.add_argument("--no-speed", action="store_true", help="only the memory table")
    p.add_argument("--pair", action="append", help="NET:BASE (repeatable; default: every family)")
    p.add_argument("--memory", action="append", help="architectures for the memory table (default: tsn_r50, gc_tsm_r50)")
    p.add_argument("--out", help="folder for train-step-cpu.{json,md}")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    pairs = [tuple(s.split(":")) for s in a.pair] if a.pair else PAIRS
    doc = {"config": {k: getattr(a, k) for k in ("batch", "frames", "size", "rounds", "threads")}, "speed": {}}
    dtypes = ["bf16"] if a.only_bf16 else ["fp32"] + (["bf16"] if a.bf16 else [])
    for dtype in [] if a.no_speed else dtypes:
        rows = doc["speed"][dtype] = []
        for net, base in pairs:
            try:
                r = time_pair(net, base, a, dtype == "bf16")
            except RuntimeError as e:   # a model that cannot run this way: recorded, not hidden
                rows.append({"net": net, "base": base, "error": str(e).splitlines()[0]})
                print(f"{dtype} {net:12s} vs {base:8s} FAILED: {rows[-1]['error']}", flush=True)
                continue
            rows.append(r)
            print(f"{dtype} {net:12s} vs {base:8s} train {100 * r['train_overhead']:+6.1f}%  "
                  f"infer {100 * r['infer_overhead']:+6.1f}%", flush=True)
    doc["memory"] = []
    for arch in [] if a.no_memory else a.memory or ["tsn_r50", "gc_tsm_r50"]:
        r = memory(arch, a)
        doc["memory"].append(r)
        print(f"memory {arch}: {r['activation_mb']:.0f} MB -> {r['checkpointed_mb']} MB", flush=True)
    doc["machine"] = {"cpu": cpu_info(), "torch": torch.__version__, "load_avg": [round(x, 1) for x in os.getloadavg()],
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "malloc": _MALLOC}
    text = render(doc)
    if a.out:
        path = Path(a.out) / "train-step-cpu.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(doc, indent=1) + "\n")
        atomic_write(path.with_suffix(".md"), text)
        print(f"wrote {path} and {path.with_suffix('.md')}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
