"""Where the time goes: torch.profiler tables of one forward, and the operators that make a
missed target's difference over its backbone."""
from __future__ import annotations

from .render import _pct, _tgt, rows
from .run import timed_form
from .spec import parse_spec

__all__ = ["profile", "op_times", "explain", "FORM_KEYS"]

# the run settings that decide the form profiled: the one the run timed, not the plain eager model
FORM_KEYS = ("device", "batch", "frames", "size", "dtype", "channels_last", "deploy", "compile", "freeze")


def _profiled(name: str, threads: int, runs: int, form: dict):
    import torch
    from torch.profiler import ProfilerActivity, profile as tprofile

    torch.set_num_threads(threads)
    model, x, _, _ = timed_form(parse_spec(name), **form)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if str(form.get("device", "cpu")).startswith("cuda") else [])
    with torch.inference_mode():
        model(x)
        with tprofile(activities=activities) as prof:
            for _ in range(runs):
                model(x)
    return prof


def profile(name: str, threads: int = 2, top: int = 12, **form) -> str:
    """torch.profiler's table of the ops that dominate one forward of ``name`` in the form the
    settings ``form`` (:data:`FORM_KEYS`: frames, size, deploy, compile, ...) give."""
    return _profiled(name, threads, 1, form).key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def op_times(name: str, threads: int = 2, runs: int = 2, **form) -> dict:
    """Self CPU ms per operator for one forward of ``name`` in the form ``form`` gives (mean of
    ``runs`` profiled forwards)."""
    prof = _profiled(name, threads, runs, form)
    return {e.key: e.self_cpu_time_total / 1000 / runs for e in prof.key_averages()}


def explain(run: dict, only_misses: bool = True, top: int = 5, log=None) -> str:
    """Markdown: for every missed target, the operators whose time grows most over the backbone
    (torch.profiler, self CPU time of one forward of each in the form the run timed, model minus
    backbone)."""
    s = run["settings"]
    cache: dict = {}

    def times(n):
        if n not in cache:
            if log:
                log(f"  profiling {n}")
            cache[n] = op_times(n, s["threads"], **{k: s[k] for k in FORM_KEYS if k in s})
        return cache[n]

    out = []
    for r in rows(run):
        if r["error"] or not r["baseline"] or (only_misses and r["met"] is not False):
            continue
        a, b = times(r["model"]), times(r["baseline"])
        diff = sorted(((a.get(k, 0) - b.get(k, 0), k) for k in set(a) | set(b)), reverse=True)
        total = sum(a.values()) - sum(b.values())
        ops = ", ".join(f"`{k}` {d:+.1f} ms" for d, k in diff[:top] if d > 0)
        out.append(f"- **{r['model']}** vs {r['baseline']}: latency {_pct(r['latency_ratio'])} (target "
                   f"{_tgt(r)}), FLOPs {_pct(r['flops_ratio'])}; profiler, self CPU time "
                   f"{total:+.1f} ms per clip, by operator: {ops}")
    return "\n".join(out)
