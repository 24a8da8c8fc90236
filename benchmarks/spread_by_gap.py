#!/usr/bin/env python
"""How the per-round ratio's spread depends on the time between a model's forward and its
backbone's, in runs saved by ``zoo bench`` that timed each model once a round (rotated order).

    python benchmarks/spread_by_gap.py RUN.json [RUN.json ...] [--out FILE.md [--notes NOTES.md]]

Each round's order is rebuilt from the run (the models of that round in the run's order,
rotated by the round's number, as ``zoo.bench.timing.time_models`` ran them); for every model
with its backbone in the round, the gap is the summed time of the forwards run between the two.
Each model's rounds are split at its median gap and the spreads (interquartile ranges) of its
ratios in the two halves compared. Runs that timed each model beside its backbone have no gaps
to compare and are skipped.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoo.bench import load_run  # noqa: E402
from zoo.weights.files import atomic_write  # noqa: E402


def gaps(run: dict) -> list:
    """(model, ratio, ms between model and backbone) for every paired forward of ``run`` (as
    :func:`zoo.bench.load_run` reads it)."""
    res = {k: v for k, v in run["results"].items() if v.times_ms}
    times = {k: dict(zip(v.rounds or range(len(v.times_ms)), v.times_ms)) for k, v in res.items()}
    labels = list(res)
    last = max(max(t) for t in times.values()) + 1
    out = []
    for r in range(last):
        part = [k for k in labels if r in times[k]]
        order = part[r % len(part):] + part[:r % len(part)]
        at = {k: i for i, k in enumerate(order)}
        for k in part:
            b = res[k].baseline
            if b not in at:
                continue
            lo, hi = sorted((at[k], at[b]))
            out.append((k, times[k][r] / times[b][r], sum(times[x][r] for x in order[lo + 1:hi])))
    return out


def spread(values: list) -> float:
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]


def table(paths: list, relative_to: str = ".") -> str:
    """Per run: for each model, its rounds split at its median gap; the spread of the nearer
    half over that of the farther half (each model against itself: which models sit beside
    their backbones in a rotated order is fixed by the run's order, so pooling models would
    compare models, not gaps)."""
    lines = ["| run | CPU | models | nearer half narrower | spread nearer / farther, median [range] | median gap, nearer / farther half (ms) |",
             "|---|---|---|---|---|---|"]
    for p in paths:
        run = load_run(p)
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
        lines.append(f"| {os.path.relpath(p, relative_to)} | {cpu} | {len(ratios)} | {sum(r < 1 for r in ratios)} | "
                     f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}] | "
                     f"{statistics.median(near_ms):.0f} / {statistics.median(far_ms):.0f} |")
    return "\n".join(lines) + "\n"


HEAD = "# Does the time between a model's forward and its backbone's widen the ratio's spread?"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="latency-*.json files written by zoo bench")
    p.add_argument("--out", help="write the table here (markdown) as well")
    p.add_argument("--notes", help="a Markdown file appended to the table (the analysis)")
    a = p.parse_args(argv)
    try:
        out = Path(a.out) if a.out else None
        if out and out.exists() and (out.is_dir() or not out.read_text().startswith(HEAD)):
            raise ValueError(f"--out {out} exists and was not written by this script; choose another "
                             "(it is left as it is)")
        md = (HEAD + "\n\nSpread (interquartile range) of each model's per-round ratios to its backbone, in the "
              "rounds where the time between the two forwards was under that model's median gap against those "
              "where it was over:\n\n" + table(a.runs, str(out.parent) if out else ".")
              + ("\n" + Path(a.notes).read_text() if a.notes else ""))
    except (OSError, ValueError) as e:  # a file that is not a saved run, an --out not ours: one line
        print(f"spread_by_gap.py: {e}", file=sys.stderr)
        return 2
    print(md)
    if out:
        atomic_write(out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
