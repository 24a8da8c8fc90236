"""Where the time goes: torch.profiler tables of one forward, and the operators that make a
missed target's difference over its backbone."""
from __future__ import annotations

from .render import _pct, _tgt, rows
from .spec import build, clip_shape, parse_spec

__all__ = ["profile", "op_times", "explain"]


def profile(name: str, frames: int = 8, size: int = 224, threads: int = 2, top: int = 12) -> str:
    """torch.profiler's table of the ops that dominate one forward of ``name`` (CPU)."""
    import torch
    from torch.profiler import ProfilerActivity, profile as tprofile

    torch.set_num_threads(threads)
    s = parse_spec(name)
    model = build(s, num_frames=frames)
    x = torch.randn(clip_shape(model, 1, frames, size))
    with torch.inference_mode():
        model(x)
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def op_times(name: str, frames: int = 8, size: int = 224, threads: int = 2, runs: int = 2) -> dict:
    """Self CPU ms per operator for one forward of ``name`` (mean of ``runs`` profiled forwards)."""
    import torch
    from torch.profiler import ProfilerActivity, profile as tprofile

    torch.set_num_threads(threads)
    model = build(parse_spec(name), num_frames=frames)
    x = torch.randn(clip_shape(model, 1, frames, size))
    with torch.inference_mode():
        model(x)
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                model(x)
    return {e.key: e.self_cpu_time_total / 1000 / runs for e in prof.key_averages()}


def explain(run: dict, only_misses: bool = True, top: int = 5, log=None) -> str:
    """Markdown: for every missed target, the operators whose time grows most over the backbone
    (torch.profiler, self CPU time of one forward, model minus backbone)."""
    s = run["settings"]
    cache: dict = {}

    def times(n):
        if n not in cache:
            if log:
                log(f"  profiling {n}")
            cache[n] = op_times(n, s["frames"], s["size"], s["threads"])
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
