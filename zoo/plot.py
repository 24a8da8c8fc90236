"""Accuracy against measured GFLOPs, one panel per dataset: the papers' Figure-1 style chart drawn
from the registry's claims (``zoo report --plot OUT.svg``), with ``zoo eval`` results beside them.

x is the FLOPs of one video under the claim's view protocol: fvcore's count for one view of the
variant (measured here, not the paper's number) times crops x clips; claims whose views the paper
does not state are drawn at one view with a hollow marker. Colour = paper, marker = view protocol;
the names on the upper-left (Pareto) front are written beside their points. Measured accuracies
(summary JSON files of ``zoo eval``) are black crosses joined to the claim they check.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional, Sequence

__all__ = ["claim_points", "plot_claims", "measure_gflops", "cmd_plot"]

MARKERS = {"1x1": "o", "1x2": "s", "3x2": "D", "1x10": "^", "3x10": "v", "5x1": "P", "": "o"}


def _views(views: str) -> int:
    if not views:
        return 1
    c, k = views.lower().split("x")
    return int(c) * int(k)


def measure_gflops(names: Iterable[str], cache: Optional[Path] = None, progress=None) -> dict[str, float]:
    """fvcore GFLOPs of one view of each variant (ensembles: the sum of their members'), measured
    once per configuration; ``cache`` (JSON) keeps them between runs, keyed by configuration."""
    import torch

    from .complexity import complexity
    from .registry import registry

    reg = registry()
    store = json.loads(cache.read_text()) if cache and cache.is_file() else {}
    key_of = {}
    for n in names:
        for m in (reg.ensembles[n].members if n in reg.ensembles else (n,)):
            v = reg.variants[m]
            key_of[m] = json.dumps([v.arch, v.kwargs, v.frames, v.num_classes, v.input_size, torch.__version__],
                                   sort_keys=True)
    todo = sorted({k: m for m, k in key_of.items() if k not in store}.items())
    for i, (k, m) in enumerate(todo):
        if progress:
            progress(i, len(todo), m)
        store[k] = complexity(m).flops / 1e9
        if cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + ".tmp")
            tmp.write_text(json.dumps(store, indent=0, sort_keys=True))
            tmp.replace(cache)
    out = {}
    for n in names:
        members = reg.ensembles[n].members if n in reg.ensembles else (n,)
        out[n] = sum(store[key_of[m]] for m in members)
    return out


def claim_points(datasets: Optional[Sequence[str]] = None, metric: str = "top1") -> list[dict]:
    """One point per (variant or ensemble, claim) with ``metric``: name, dataset, paper, table,
    views, accuracy."""
    from .registry import registry

    reg = registry()
    pts = []
    for table in (reg.variants, reg.ensembles):
        for name, obj in sorted(table.items()):
            if datasets and obj.dataset not in datasets:
                continue
            for c in obj.claims:
                if metric in c.metrics and not any(q["name"] == name and q["views"] == c.views and
                                                   q["acc"] == c.metrics[metric] for q in pts):
                    pts.append({"name": name, "dataset": obj.dataset, "paper": c.paper, "table": c.table,
                                "views": c.views, "acc": c.metrics[metric]})
    return pts


def _pareto(pts: list[dict]) -> list[dict]:
    front, best = [], float("-inf")
    for p in sorted(pts, key=lambda p: (p["gflops"], -p["acc"])):
        if p["acc"] > best:
            front.append(p)
            best = p["acc"]
    return front


def plot_claims(out, datasets: Optional[Sequence[str]] = None, results: Sequence = (), metric: str = "top1",
                cache: Optional[Path] = None, progress=None) -> Path:
    """Draw the chart into ``out`` (.svg, .png or .pdf); returns the path. ``results``: summary
    JSON files written by ``zoo eval``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"      # SVG text stays text (searchable, small)
    from matplotlib.lines import Line2D

    from .registry import registry

    reg = registry()
    out = Path(out)
    if out.suffix.lower() not in (".svg", ".png", ".pdf"):
        raise ValueError(f"--plot {out}: the file must end in .svg, .png or .pdf")
    pts = claim_points(datasets, metric)
    measured = []
    for f in results:
        s = json.loads(Path(f).read_text())
        if s.get("model") and metric in s.get("metrics", {}):
            measured.append(s)
    if not pts and not measured:
        raise ValueError(f"no {metric} claims for dataset(s) {list(datasets or [])}; known: {sorted(reg.datasets)}")
    names = sorted({p["name"] for p in pts} | {s["model"] for s in measured if s["model"] in reg.variants
                                                or s["model"] in reg.ensembles})
    gf = measure_gflops(names, cache, progress)
    for p in pts:
        p["gflops"] = gf[p["name"]] * _views(p["views"])
    keys = [d for d in (datasets or sorted({p["dataset"] for p in pts}))]
    fig, axes = plt.subplots(1, len(keys), figsize=(9 * len(keys), 6.5), squeeze=False)
    papers = sorted({p["paper"] for p in pts})
    colours = {pid: plt.get_cmap("tab10")(i % 10) for i, pid in enumerate(papers)}
    for ax, ds in zip(axes[0], keys):
        sub = [p for p in pts if p["dataset"] == ds]
        for p in sub:
            hollow = not p["views"]
            ax.scatter(p["gflops"], p["acc"], marker=MARKERS.get(p["views"], "*"), s=36, zorder=3,
                       facecolors="none" if hollow else colours[p["paper"]], edgecolors=colours[p["paper"]],
                       linewidths=1.0, alpha=0.85)
        for views in {p["views"] for p in sub}:
            front = _pareto([p for p in sub if p["views"] == views])
            for p in front:
                ax.annotate(p["name"], (p["gflops"], p["acc"]), fontsize=6.5, xytext=(4, 3),
                            textcoords="offset points")
        for s in measured:
            if s.get("dataset") != ds or s["model"] not in gf:
                continue
            x = gf[s["model"]] * _views(s["views"])
            y = s["metrics"][metric]
            ax.scatter(x, y, marker="x", color="black", s=60, zorder=4)
            claim = [p for p in sub if p["name"] == s["model"] and p["views"] in (s["views"], "")]
            for p in claim:
                ax.plot([x, p["gflops"]], [y, p["acc"]], color="black", lw=0.8, ls=":", zorder=2)
            ax.annotate(f"{s['model']} (zoo eval)", (x, y), fontsize=6.5, xytext=(4, -9), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("GFLOPs per video (fvcore, measured; one view x crops x clips)")
        ax.set_ylabel(f"{metric} accuracy (%)")
        ax.set_title(f"{reg.datasets[ds].title}: claimed {metric} vs measured GFLOPs")
        ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], ls="", marker="o", color=colours[pid], label=reg.papers[pid].short or pid)
               for pid in papers]
    used = sorted({p["views"] for p in pts}, key=lambda v: (_views(v), v))
    handles += [Line2D([], [], ls="", marker=MARKERS.get(v, "*"), color="grey",
                       markerfacecolor="none" if not v else "grey",
                       label=f"views {v} (crops x clips)" if v else "views not stated (drawn at 1 view)")
                for v in used]
    if measured:
        handles.append(Line2D([], [], ls="", marker="x", color="black", label="measured by zoo eval"))
    axes[0][-1].legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    fig.savefig(tmp, dpi=130)
    plt.close(fig)
    tmp.replace(out)
    return out


def cmd_plot(a) -> int:
    """``zoo report --plot OUT [--dataset D] [--results JSON...] [--flops-cache FILE]``."""
    import sys

    def progress(i, n, name):
        if not a.quiet:
            print(f"\r[{i + 1}/{n}] GFLOPs of {name}"[:100].ljust(100), end="", file=sys.stderr, flush=True)

    out = plot_claims(a.plot, a.dataset or None, a.results or (), cache=Path(a.flops_cache) if a.flops_cache else None,
                      progress=progress)
    print(f"\nwrote {out}" if not a.quiet else f"wrote {out}", file=sys.stderr)
    return 0
