#!/usr/bin/env python
"""Operators (kernels, in eager PyTorch) per forward of every network of the main preset, plain
and deployed (``zoo.deploy``, library kernels): what a GPU launches one by one.

    PYTHONPATH=$PWD python benchmarks/op_count.py [--size 112] [--out benchmarks/results/op-count.json]

Counted with a TorchDispatchMode on the CPU (views are left out: they launch nothing); the count
does not depend on the input size. benchmarks/results/gpu-h200.md divides each network's extra
GPU time by its extra operators.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # overhead.py beside this file


def count(model, x) -> int:
    """Operators of one forward (the same counter as overhead.py's bytes and multiply-adds)."""
    from overhead import _ops

    return len(_ops(model, x, {"net": model}))


def main(argv=None) -> int:
    import torch

    from zoo.bench.spec import build, clip_shape, parse_spec
    from zoo.bench.targets import PRESETS
    from zoo.deploy import deploy
    from zoo.weights.files import atomic_write

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--out")
    a = p.parse_args(argv)
    out = {}
    for name in a.names or PRESETS["main"]:
        m = build(parse_spec(name))
        x = torch.randn(clip_shape(m, 1, 8, a.size))
        out[name] = {"plain": count(m, x), "deploy": count(deploy(m, x, autotune=False), x)}
        print(name, out[name], flush=True)
    if a.out:
        atomic_write(a.out, json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
