#!/usr/bin/env python
"""How the per-round ratio's spread depends on the time between a model's forward and its
backbone's, in runs saved by ``zoo bench`` that timed each model once a round (rotated order).

    python benchmarks/spread_by_gap.py RUN.json [RUN.json ...] [--out FILE.md]

Each round's order is rebuilt from the run (the models of that round in the run's order,
rotated by the round's number, as ``zoo.bench.timing.time_models`` ran them); for every model
with its backbone in the round, the gap is the summed time of the forwards run between the two.
Each model's rounds are split at its median gap and the spreads (interquartile ranges) of its
ratios in the two halves compared. Runs that timed each model beside its backbone have no gaps
to compare and are skipped.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

def gaps(run: dict) -> list:
    """(model, ratio, ms between model and backbone) for every paired forward of the run."""
    res = {k: v for k, v in run["results"].items() if v["times_ms"]}
    times = {k: dict(zip(v["rounds"] or range(len(v["times_ms"])), v["times_ms"])) for k, v in res.items()}
    labels = list(res)
    last = max(max(t) for t in times.values()) + 1
    out = []
    for r in range(last):
        part = [k for k in labels if r in times[k]]
        order = part[r % len(part):] + part[:r % len(part)]
        at = {k: i for i, k in enumerate(order)}
        for k in part:
            b = res[k]["baseline"]
            if b not in at:
                continue
            lo, hi = sorted((at[k], at[b]))
            out.append((k, times[k][r] / times[b][r], sum(times[x][r] for x in order[lo + 1:hi])))
    return out


def spread(values: list) -> float:
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]


def table(paths: list) -> str:
    """Per run: for each model, its rounds split at its median gap; the spread of the nearer
    half over that of the farther half (each model against itself: which models sit beside
    their backbones in a rotated order is fixed by the run's order, so pooling models would
    compare models, not gaps)."""
    lines = ["| run | CPU | models | nearer half narrower | spread nearer / farther, median [range] | median gap, nearer / farther half (ms) |",
             "|---|---|---|---|---|---|"]
    for p in paths:
        run = json.loads(Path(p).read_text())
        if run["settings"].get("order") == "beside":
            print(f"{p}: timed beside the backbones, no gaps; skipped", file=sys.stderr)
            continue
        g = gaps(run)
        ratios, near_ms, far_ms = [], [], []
        for k in sorted({x[0] for x in g}):
            mine = [x for x in g if x[0] == k]
            cut = statistics.median(x[2] for x in mine)
            near = [x for x in mine if x[2] < cut]
            far = [x for x in mine if x[2] > cut]
            if len(near) >= 8 and len(far) >= 8:
                ratios.append(spread([x[1] for x in near]) / spread([x[1] for x in far]))
                near_ms.append(statistics.median(x[2] for x in near))
                far_ms.append(statistics.median(x[2] for x in far))
        if not ratios:
            continue
        m = run["machine"]
        cpu = f"family {m.get('family', '?')}, " + ", ".join(v.upper() for v in m.get("vector") or [])
        lines.append(f"| {p} | {cpu} | {len(ratios)} | {sum(r < 1 for r in ratios)} | "
                     f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}] | "
                     f"{statistics.median(near_ms):.0f} / {statistics.median(far_ms):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="latency-*.json files written by zoo bench")
    p.add_argument("--out", help="write the table here (markdown) as well")
    a = p.parse_args(argv)
    md = ("Spread (interquartile range) of each model's per-round ratios to its backbone, in the rounds "
          "where the time between the two forwards was under that model's median gap against those "
          "where it was over:\n\n" + table(a.runs))
    print(md)
    if a.out:
        from zoo.weights.files import atomic_write

        atomic_write(a.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
