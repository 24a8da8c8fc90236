"""Plain vs deployed (``zoo.deploy``) latency against torchvision's ResNet-50, in one process.

Every model runs once per round, in an order that rotates each round; a model's ratio in a
round is its time over torchvision ResNet-50's (plain, eval, the clip's T frames as a batch) in
that round, and the table gives the median and interquartile range of those per-round ratios.

    PYTHONPATH=$PWD python benchmarks/deploy_cpu.py --threads 2 --rounds 9 --out benchmarks/results
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import time

import torch

import zoo
from zoo.deploy import DeployedShift, deploy

MODELS = ["tsn_r50", "tsm_r50", "gc_tsm_r50", "sda_tsm_r50"]


def cpu_info() -> dict:
    out = {"model": platform.processor(), "flags": "", "cores": os.cpu_count()}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return out
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k.strip() == "Model name":
            out["model"] = v.strip()
        elif k.strip() == "Flags":
            flags = v.split()
            keep = r"avx2$|avx512\w*|amx\w*|fma$"
            out["flags"] = " ".join(f for f in flags if re.match(keep, f))
    return out


def onednn_version() -> str:
    m = re.search(r"(?:oneDNN|MKL-DNN) (v[\d.]+)", torch.__config__.show())
    return f"oneDNN {m.group(1)}" if m else "oneDNN version unknown"


def quartiles(xs):
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return q[0], statistics.median(xs), q[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", default=None, help="folder for deploy-cpu-<torch>.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import torchvision

    x = torch.randn(1, 3, args.frames, args.size, args.size)
    frames = x[0].transpose(0, 1).contiguous()
    runs = {"torchvision_r50": (torchvision.models.resnet50().eval(), frames)}
    deploy_s, modes = {}, {}
    for name in args.models.split(","):
        m = zoo.create_model(name, num_classes=400, num_frames=args.frames).eval()
        t0 = time.perf_counter()
        d = deploy(m, x)
        deploy_s[name] = time.perf_counter() - t0
        modes[name] = sorted({s.mode for s in d.modules() if isinstance(s, DeployedShift)})
        runs[name] = (m, x)
        runs[name + " deployed"] = (d, x)
    names = list(runs)
    times = {n: [] for n in names}
    with torch.inference_mode():
        for n in names:  # warm-up
            runs[n][0](runs[n][1])
        for r in range(args.rounds):
            k = r % len(names)
            for n in names[k:] + names[:k]:
                model, inp = runs[n]
                t0 = time.perf_counter()
                model(inp)
                times[n].append(time.perf_counter() - t0)
    base = times["torchvision_r50"]
    cpu = cpu_info()
    load = os.getloadavg()
    lines = [
        f"# Plain vs deployed latency, CPU ({cpu['model']})",
        "",
        f"CPU: {cpu['model']}, {cpu['cores']} logical CPUs visible, "
        f"flags: {cpu['flags'] or 'none of avx2/avx512/amx'}; "
        f"torch {torch.__version__}, {onednn_version()}, {args.threads} threads; one clip "
        f"{args.frames}x3x{args.size}x{args.size}, fp32, eval, inference_mode; {args.rounds} rounds, the order "
        f"rotating each round. Load average when the run ended: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        "(a 2-core VM shared with other jobs: the absolute times are noisy, the per-round ratios less so).",
        "",
        "Ratio = the model's time over torchvision ResNet-50's (plain) in the same round: median "
        "[interquartile range] of the per-round ratios. `deploy` = zoo.deploy(model, clip) with "
        "kernel choices timed on this machine.",
        "",
        "| model | median ms | vs torchvision R50 | vs its plain form | deploy s | TSM shift modes |",
        "|---|---|---|---|---|---|",
    ]
    for n in names:
        ratios = [a / b for a, b in zip(times[n], base)]
        lo, med, hi = quartiles(ratios)
        plain = n.replace(" deployed", "")
        vs_plain = ""
        if n.endswith("deployed"):
            q = quartiles([a / b for a, b in zip(times[n], times[plain])])
            vs_plain = f"{q[1]:.3f} [{q[0]:.3f}, {q[2]:.3f}]"
        dep = n.endswith("deployed")
        lines.append(f"| {n} | {statistics.median(times[n]) * 1000:.0f} | {med:.3f} [{lo:.3f}, {hi:.3f}] | "
                     f"{vs_plain} | {f'{deploy_s[plain]:.1f}' if dep else ''} | "
                     f"{', '.join(modes[plain]) if dep else ''} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, f"deploy-cpu-{'.'.join(torch.__version__.split('.')[:2])}.md")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        print("wrote", path)


if __name__ == "__main__":
    main()
