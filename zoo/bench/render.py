"""The results of a run as rows, Markdown, CSV and JSON files."""
from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from .machine import describe
from .spec import TV
from .targets import AUTHORS_ACT_MB, COMPILED_MARGIN, limit_of, target_for
from .timing import ALPHA, MIN_ROUNDS_FOR_IQR, BenchResult, median_ci, paired, quartiles, verdict

__all__ = ["rows", "render_md", "render_csv", "load_run", "write_results", "result_paths", "check_out"]


def _pct(x: Optional[float]) -> str:
    return "" if x is None or x != x else f"{(x - 1) * 100:+.1f}%"


def _to_floor(r: BenchResult, floor: Optional[BenchResult]) -> Optional[float]:
    # over the rounds both ran in: with --until-decided a model may have run on after the floor
    # stopped, while the host's load changed
    if not (floor and floor.times_ms and r.times_ms):
        return None
    both = paired(r, floor)
    return statistics.median(both) if both else r.median / floor.median


def rows(run: dict) -> list[dict]:
    """One flat dict per model: what the CSV holds and the Markdown table shows."""
    res = run["results"]
    alpha = run["settings"].get("ci_alpha", ALPHA)
    compiled = bool(run["settings"].get("compile"))
    floor = next((r for k, r in res.items() if k.startswith(TV + "50")), None)
    out = []
    for label, r in res.items():
        b = res.get(r.baseline) if r.baseline else None
        ratio = rq1 = rq3 = None
        ci = (None, None)
        per_round = paired(r, b) if b and b.times_ms and r.times_ms else []
        if per_round:
            # the median of per-round ratios: model and backbone ran in the same round, close in
            # time, so a disturbed round (another job, a frequency change) cancels out; their
            # quartiles show how far one round's ratio strays, the confidence interval how well
            # the rounds pin the median down
            ratio = statistics.median(per_round)
            rq1, rq3 = quartiles(per_round)
            ci = median_ci(per_round, alpha) or ci
        elif b and b.times_ms and r.times_ms:
            ratio = r.median / b.median
        fl = r.flops / b.flops if b and r.flops and b.flops else None
        tgt = target_for(label, r.baseline)
        limit = limit_of(tgt, compiled, fl)
        met = shown = None
        if limit is not None and ratio is not None:
            met = ratio <= limit
            shown = verdict(per_round, limit, alpha) if per_round else None
        q1, q3 = r.iqr
        out.append({
            "model": label, "baseline": r.baseline or "", "ms_per_clip": r.ms_per_clip,
            "ms_q1": q1 / r.batch, "ms_q3": q3 / r.batch, "clips_per_s": r.clips_per_s,
            "n": len(r.times_ms), "latency_ratio": ratio, "latency_q1": rq1, "latency_q3": rq3,
            "latency_ci_lo": ci[0], "latency_ci_hi": ci[1], "pairs": len(per_round), "flops_ratio": fl,
            "ratio_to_r50": _to_floor(r, floor),
            "gflops": r.flops / 1e9 / r.batch if r.flops else None, "params_m": r.params / 1e6 if r.params else None,
            "peak_act_mb": r.peak_mb, "model_mb": r.model_mb,
            "target": limit,
            # where the limit comes from: the table, or compiled the FLOP share + the margin
            "limit_from": "" if tgt is None else "flops" if compiled and tgt.compiled else "table",
            "authors_ratio": tgt.authors if tgt else None,
            "met": met, "shown": shown, "compile_s": r.compile_s, "error": r.error,
        })
    return out


def render_csv(run: dict) -> str:
    """One row per model; the last columns name the machine and its math libraries, so a CSV
    read alone still says where it was measured."""
    m = run["machine"]
    where = {"cpu": m.get("cpu", ""), "family": m.get("family") or "", "vector": " ".join(m.get("vector") or []), "cores": m.get("cores") or "",
             "torch": m.get("torch", ""), "onednn": m.get("onednn_version") or "", "mkl": m.get("mkl_version") or "",
             "isa_caps": " ".join(f"{k}={v}" for k, v in (m.get("isa_caps") or {}).items()),
             "steal": "" if m.get("steal") is None else f"{m['steal']:.4f}"}
    rs = [{**r, **where} for r in rows(run)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rs[0]) if rs else ["model", *where])
    w.writeheader()
    for r in rs:
        w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _f(v, fmt):
    return "" if v is None or v != v else format(v, fmt)


def _spread(r: dict) -> str:
    if r.get("latency_q1") is None:
        return ""
    return f" [{_pct(r['latency_q1'])}, {_pct(r['latency_q3'])}]"


def _ci(r: dict) -> str:
    lo, hi = r.get("latency_ci_lo"), r.get("latency_ci_hi")
    return "" if lo is None else f"{_pct(lo)} .. {_pct(hi)}"


def _met(r: dict) -> str:
    if r["met"] is None:
        return ""
    if r.get("shown") is None:
        return "~yes" if r["met"] else "~no"
    return "yes" if r["shown"] else "**no**"


def _level(s: dict) -> str:
    return f"{(1 - s.get('ci_alpha', ALPHA)) * 100:.4g}%"


def _looks(run: dict) -> str:
    s = run["settings"]
    looks = s.get("looks", 1)
    if looks <= 1:
        return ""
    done = s.get("rounds_done") or max((len(r.times_ms) for r in run["results"].values()), default=None)
    return (f" The rounds were to be extended while a target was undecided ({s['repeats']} rounds, then "
            f"{s.get('more_rounds', 10)} more at "
            f"a time for the undecided models and their backbones, up to {s['until_decided']}"
            + (f"; {done} were run" if done is not None else "") + f"): with up to {looks} looks at the data, "
            f"each interval is at {_level(s)} (Bonferroni: the 5 % chance of a wrong verdict split over the {looks} "
            "looks), so that a target's verdict is wrong at most 5 % of the time whichever look made it; the CSV's "
            "`n` and `pairs` give each model's rounds.")


def _margin() -> str:
    return f"FLOPs + {COMPILED_MARGIN * 100:.3g}"


def _tgt(r: dict) -> str:
    if r.get("limit_from") == "flops":
        return f"{_margin()}: not measured" if r["target"] is None else f"<= {_pct(r['target'])} ({_margin()})"
    return "" if r["target"] is None else "<= " + _pct(r["target"])


def render_md(run: dict, notes: str = "") -> str:
    m, s = run["machine"], run["settings"]
    lines = [f"# Latency, {s['device']}, torch {m['torch']}", "",
             f"Machine: {describe(m)}; load average at the end "
             + "/".join(f"{v:.2f}" for v in m["load_avg"])
             + (f"; tensor copy bandwidth {m['copy_gbps']} GB/s (read + write)" if "copy_gbps" in m else "") + ".",
             f"Settings: {s['threads']} thread(s), batch {s['batch']} clip(s) of {s['frames']} frames at "
             f"{s['size']}x{s['size']}, {s['dtype']}, eval, inference_mode"
             + (", channels_last" if s["channels_last"] else "")
             + (", zoo.deploy (zoo models; torchvision's ResNet as shipped)" if s.get("deploy") else "")
             + (", torch.compile" if s["compile"] else "") + (" with freezing" if s.get("freeze") else "")
             + f"; {s['warmup']} warm-up + {s['repeats']} timed forwards per model"
             + (f" (up to {s['until_decided']} while its target or a model using it as backbone was undecided)"
                if s.get("until_decided") else "") + ", models alternated "
             + ("(order rotated each round), each timed right beside its backbone (a backbone between two of "
                "the models compared with it, the pair's order swapped every other round)"
                if s.get("order") == "beside" else "(order rotated each round)") + " in one process"
             + (f"; allocator: {s['malloc']}" if s.get("malloc") and s["device"] == "cpu" else "") + ".",
             "Latency: median ms per clip [interquartile range]; latency = the median over rounds of "
             "(this model's time / its backbone's time " + ("beside it" if s.get("order") == "beside" else "in the same round")
             + ") [their interquartile range]. FLOPs: fvcore (MACs) per clip, overhead over the backbone. Peak act.: "
             + s.get("memory_how", "not measured") + ", in a fresh process per model.", "",
             f"| model | vs | ms/clip [IQR] | clips/s | latency | {_level(s)} CI | FLOPs | x R50 | GFLOPs | params | peak act. MB "
             "| target | authors | met |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    rs = rows(run)
    for r in rs:
        if r["error"]:
            lines.append(f"| {r['model']} | {r['baseline']} | error: {r['error'][:120]} |" + " |" * 11)
            continue
        met = _met(r)
        lines.append(
            f"| {r['model']} | {r['baseline']} | {_f(r['ms_per_clip'], '.1f')} [{_f(r['ms_q1'], '.1f')}-{_f(r['ms_q3'], '.1f')}] "
            f"| {_f(r['clips_per_s'], '.2f')} | {_pct(r['latency_ratio'])}{_spread(r)} | {_ci(r)} | {_pct(r['flops_ratio'])} "
            f"| {_f(r['ratio_to_r50'], '.3f')} | {_f(r['gflops'], '.2f')} | {_f(r['params_m'], '.2f')}M "
            f"| {_f(r['peak_act_mb'], '.0f')} | {_tgt(r)} "
            f"| {_pct(r['authors_ratio'])} | {met} |")
    judged = [r for r in rs if r["met"] is not None]
    if judged:
        count = {v: sum(1 for r in judged if r["shown"] is v) for v in (True, False, None)}
        lines += ["", f"Of {len(judged)} target{'s' if len(judged) > 1 else ''}: {count[True]} shown met, {count[False]} shown missed, "
                  f"{count[None]} undecided ({sum(1 for r in judged if r['shown'] is None and r['met'])} with the median at or under "
                  "the limit)."]
    lines += ["", "`target`: the project's limit on the latency overhead over the backbone (at least twice as "
              "good as the authors' code on every overhead; zoo/bench/targets.toml); `authors`: the authors' code "
              "measured the same way (their ratios to torchvision ResNet-50 divided by their backbone's). Peak "
              f"activation memory of the authors' nets for one clip: about {AUTHORS_ACT_MB[0]}-{AUTHORS_ACT_MB[1]} MB."]
    if any(r.get("limit_from") == "flops" for r in rs):
        lines[-1] += (f" Compiled, a calibrator's limit is its FLOP share over the backbone plus {COMPILED_MARGIN * 100:.3g} "
                      f"points (`{_margin()}`), from this run's FLOPs"
                      + ("" if all(r["target"] is not None for r in rs if r.get("limit_from") == "flops") else
                         "; where they were not measured (`--no-probe` without a probe cache) it is not judged") + ".")
    if judged:
        lines += ["", f"`met`: `yes` / `**no**` when the {_level(s)} confidence interval of the latency (the median "
                  "per-round ratio; distribution-free: order statistics, as the sign test gives) lies wholly at or "
                  "under / over the target; `~yes` / `~no` when the interval holds the target: the median's side "
                  "of it, which these rounds cannot show (the machine's noise decides; more rounds, or `--until-decided`, may)."
                  + _looks(run)]
    comp = [(r["model"], r["compile_s"]) for r in rs if r.get("compile_s") is not None]
    if comp:
        lines += ["", "torch.compile, first call (tracing and code generation), s: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in comp) + "."]
    if 0 < s.get("repeats", 0) < MIN_ROUNDS_FOR_IQR:
        lines += ["", f"**{s['repeats']} timed round(s) only: the interquartile ranges above are not a spread.**"]
    if notes:
        lines += ["", notes.rstrip()]
    return "\n".join(lines) + "\n"


def load_run(path: str) -> dict:
    """A run saved by :func:`write_results` (the ``.json``), to render again."""
    not_a_run = ValueError(f"--from-json {path} is not a run saved by zoo bench (its latency-*.json)")
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as e:
        raise ValueError(f"--from-json {path}: cannot read it ({e.strerror or e})") from None
    except ValueError:
        raise not_a_run from None
    if not (isinstance(raw, dict) and {"machine", "settings", "results"} <= set(raw)):
        raise not_a_run
    try:
        raw["results"] = {k: BenchResult(**v) for k, v in raw["results"].items()}
    except (TypeError, AttributeError):
        raise not_a_run from None
    return raw


def result_paths(out_dir: str, device: str) -> list[Path]:
    """The files a run on ``device`` writes into ``out_dir``: latency-<device>-<torch>.{md,csv,json}."""
    import torch

    stem = Path(out_dir) / f"latency-{device.split(':')[0]}-{torch.__version__.split('+')[0]}"
    return [stem.with_suffix(".md"), stem.with_suffix(".csv"), stem.with_suffix(".json")]


def _ours(path: Path) -> bool:
    """Whether ``path`` is a results file zoo bench wrote (and may replace)."""
    try:
        if path.suffix == ".json":
            raw = json.loads(path.read_text())
            return isinstance(raw, dict) and {"machine", "settings", "results"} <= set(raw)
        with open(path, encoding="utf-8") as f:
            first = f.readline()
        return first.startswith("# Latency, " if path.suffix == ".md" else "model,baseline,")
    except (OSError, ValueError):
        return False


def check_out(out_dir: str, device: str) -> None:
    """Before anything is measured: ``out_dir`` can take this run's files, and the ones already
    there are earlier zoo bench results (replaced), not someone else's files (kept)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is not a folder; give a folder for the results")
    for p in result_paths(out_dir, device):
        if p.is_dir() or (p.exists() and not _ours(p)):
            raise FileExistsError(f"--out: {p} exists and was not written by zoo bench; "
                                  "choose another --out (it is left as it is)")


def write_results(run: dict, out_dir: str, notes: str = "") -> list[Path]:
    """The run's Markdown, CSV and JSON files in ``out_dir``, each written whole (a temporary
    name, then a rename): an interrupted write leaves the earlier file, never half of one."""
    from ..weights.files import atomic_write

    device = run["settings"]["device"]
    check_out(out_dir, device)
    md, csv_path, js = result_paths(out_dir, device)
    raw = {"machine": run["machine"], "settings": run["settings"], "explain": run.get("explain", ""),
           "results": {k: asdict(v) for k, v in run["results"].items()}}
    atomic_write(md, render_md(run, notes))
    atomic_write(csv_path, render_csv(run))
    atomic_write(js, json.dumps(raw, indent=1))
    return [md, csv_path, js]
