"""Paper-vs-measured complexity report: every [[complexity]] row of the registry, rebuilt and
measured with fvcore, with a verdict per number."""
from __future__ import annotations

import csv
import io
import json
import platform
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Optional

import torch

from .complexity import CONVENTION, complexity
from .registry import ComplexityRow, parse_quantity, registry

__all__ = ["RowResult", "build_report", "verdict", "render"]


def verdict(printed: str, measured: float, unit: str) -> str:
    """'match' if ``measured`` rounds to the printed number at its printed precision, 'near' if it
    is one unit off in the last printed digit (truncation), else 'MISMATCH'."""
    if not printed:
        return "-"
    value, dec = parse_quantity(printed, unit)
    step = 10.0 ** -dec
    off = abs(round(measured, dec) - value)
    if off < step / 2:
        return "match"
    if off < step * 1.5:
        return "near"
    return "MISMATCH"


@dataclass
class RowResult:
    """A registry row (``spec``; its fields read through) with our measurement and verdicts."""

    spec: ComplexityRow
    measured_params: Optional[int]
    measured_flops: Optional[int]
    params_verdict: str
    flops_verdict: str
    cause: str

    def __getattr__(self, name):
        if name == "spec":  # not set yet (copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.spec, name)

    @property
    def verdict(self) -> str:
        v = {self.params_verdict, self.flops_verdict} - {"-"}
        if "not built" in v:
            return "not built"
        if "MISMATCH" in v:
            return "MISMATCH"
        if "near" in v:
            return "near"
        return "match" if v else "-"

    def as_dict(self) -> dict:
        d = asdict(self.spec)
        d.update(measured_params=self.measured_params, measured_flops=self.measured_flops,
                 params_verdict=self.params_verdict, flops_verdict=self.flops_verdict, cause=self.cause,
                 verdict=self.verdict)
        return d


def _key(r: ComplexityRow):
    return (r.arch, json.dumps(r.kwargs, sort_keys=True), r.frames, r.num_classes, r.input_size)


_MEASURED: dict = {}  # configuration -> Complexity, shared by every report of this process


def build_report(papers: Optional[Iterable[str]] = None, progress=None,
                 archs: Optional[Iterable[str]] = None, frames: Optional[int] = None,
                 where: Optional[Callable[[ComplexityRow], bool]] = None) -> list[RowResult]:
    """Measure every complexity row of the given papers (default: all), optionally only rows
    whose architecture matches one of the fnmatch patterns ``archs``, with ``frames`` frames and
    for which ``where(row)`` is true (rows left out are not built).
    Identical configurations are built and traced once per process. ``progress``: True shows
    it on stderr (:func:`zoo.progress.progress`), or a callback ``fn(i, n, row)``."""
    reg = registry()
    wanted = set(papers) if papers else None
    if wanted:
        unknown = wanted - set(reg.papers)
        if unknown:
            raise ValueError(f"unknown paper(s) {sorted(unknown)}; known: {sorted(reg.papers)}")
    rows = [r for r in reg.complexity if wanted is None or r.paper in wanted]
    if archs:
        import fnmatch

        pats = list(archs)
        rows = [r for r in rows if any(fnmatch.fnmatchcase(r.arch, p) for p in pats)]
    if frames is not None:
        rows = [r for r in rows if r.frames == frames]
    if where is not None:
        rows = [r for r in rows if where(r)]
    cache = _MEASURED
    out = []
    if progress is True:  # the command line: a bar on a terminal, plain lines in a log
        from .progress import progress as show

        rows = show(rows, total=len(rows), desc="complexity rows", unit="rows",
                    describe=lambda r: f"{r.paper} {r.table} {r.row}")
    elif progress:
        rows = _call_back(rows, progress)
    for r in rows:
        if r.pending or r.arch not in reg.archs:
            out.append(RowResult(r, None, None, "not built" if r.params else "-", "not built" if r.flops else "-",
                                 r.cause or f"architecture not in the zoo yet ({r.pending})"))
            continue
        k = _key(r)
        if k not in cache:
            from .factory import create_model

            model = create_model(r.arch, num_classes=r.num_classes, num_frames=r.frames, **r.kwargs)
            cache[k] = complexity(model, num_frames=r.frames, input_size=r.input_size)
            del model
        c = cache[k]
        pv = verdict(r.params, c.params / 1e6, "M")
        fv = verdict(r.flops, c.flops / 1e9, "G")
        cause = r.cause
        if "MISMATCH" in (pv, fv) and not cause:
            cause = "cause unknown"
        out.append(RowResult(r, c.params, c.flops, pv, fv, cause))
    return out


def _call_back(rows: list, fn):
    for i, r in enumerate(rows):
        fn(i, len(rows), r)
        yield r


def _config(r: RowResult) -> str:
    kw = ",".join(f"{k}={v}" for k, v in r.kwargs.items())
    return f"{r.arch}{'(' + kw + ')' if kw else ''} {r.frames}f {r.num_classes}c" + (
        f" {r.input_size}px" if r.input_size != 224 else "")


def _m(v: Optional[int], scale: float, dec: int) -> str:
    return "-" if v is None else f"{v / scale:.{dec}f}"


def render(results: list[RowResult], fmt: str = "md") -> str:
    if fmt == "json":
        return json.dumps([r.as_dict() for r in results], indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        fields = list(results[0].as_dict()) if results else ["paper"]
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        for r in results:
            d = r.as_dict()
            d["kwargs"] = json.dumps(d["kwargs"], sort_keys=True)
            w.writerow(d)
        return buf.getvalue()
    if fmt != "md":
        raise ValueError(f"format must be md, csv or json, got {fmt!r}")
    reg = registry()
    lines = ["# Complexity: paper claims vs fvcore measurements", "",
             f"{CONVENTION} Params are trainable parameters. One view = one clip (batch 1) at the row's "
             "frames and input size; FLOPs are per view (a table's 'xN views' is recorded in the Views column).",
             f"Measured with torch {torch.__version__} on {platform.machine()} / Python {platform.python_version()}.",
             "Verdicts: match = rounds to the printed number; near = one unit off in the last printed digit; "
             "MISMATCH = anything else (cause given); not built = architecture pending.", ""]
    by_paper: dict = {}
    for r in results:
        by_paper.setdefault(r.paper, []).append(r)
    for pid, rows in by_paper.items():
        p = reg.papers[pid]
        lines += [f"## {p.short or pid.upper()}: {p.title} ({p.venue} {p.year})", "",
                  "| table | row | configuration | params (paper) | params (ours) | FLOPs (paper) | FLOPs (ours) | views | verdict | cause / note |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            pdec = parse_quantity(r.params, "M")[1] if r.params else 2
            fdec = parse_quantity(r.flops, "G")[1] if r.flops else 2
            why = "; ".join(x for x in (r.cause, r.note) if x)
            lines.append(
                f"| {r.table} | {r.row} | {_config(r)} | {r.params or '-'} | {_m(r.measured_params, 1e6, max(pdec, 2))}M"
                f" ({r.params_verdict}) | {r.flops or '-'} | {_m(r.measured_flops, 1e9, max(fdec, 2))}G ({r.flops_verdict})"
                f" | {r.views} | **{r.verdict}** | {why} |")
        lines.append("")
    counts: dict = {}
    for r in results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    lines.append("Summary: " + ", ".join(f"{v} {n}" for v, n in sorted(counts.items())) + f" (of {len(results)} rows)")
    return "\n".join(lines)
