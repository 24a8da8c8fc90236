"""torch.hub entry points built from the registry (hubconf.py calls :func:`entrypoints`)."""
from __future__ import annotations

from .factory import create_model, model_info
from .registry import list_models

__all__ = ["entrypoints", "describe"]


def _claims_text(claims) -> list[str]:
    out = []
    for c in claims:
        metrics = ", ".join(f"{k} {v}" for k, v in c["metrics"].items())
        views = f" ({c['views']} crops x clips)" if c.get("views") else ""
        out.append(f"  {c['paper']} {c['table']}: {metrics}{views}{' - ' + c['note'] if c.get('note') else ''}")
    return out


def describe(name: str) -> str:
    """A docstring for one registered name: what it is, data, frames, claims, weights."""
    info = model_info(name)
    kind = info["kind"]
    if kind == "arch":
        kw = ", ".join(f"{k}={v!r}" for k, v in info["kwargs"].items())
        return (f"{name}: architecture ({info['family']} family).\n\n{info['doc']}\n\n"
                f"kwargs: {kw or 'none'}; also num_classes (default {info['num_classes']}) and num_frames.\n"
                f"Trained variants: {', '.join(info['variants']) or 'none'}.")
    if kind == "ensemble":
        lines = [f"{name}: score-averaging ensemble of {', '.join(info['members'])} ({info['dataset']}).",
                 "forward() takes one clip batch (B, 3, T, H, W) per member, in that order."]
        lines += ["Paper claims:"] + _claims_text(info["claims"]) if info["claims"] else []
        return "\n".join(lines)
    w = info["weights"] or {}
    status = w.get("status", "unreleased")
    lines = [f"{name}: {info['arch']} ({info['family']}) trained on {info['dataset_title']}, "
             f"{info['num_classes']} classes, {info['frames']} frames at {info['input_size']}x{info['input_size']}.",
             f"Paper: {info['paper_title']}.",
             f"Input: (B, 3, T, H, W) clips normalised with mean {list(info['mean'])}, std {list(info['std'])}; "
             f"sampling '{info['sampling']}'.",
             f"Weights: {status}" + (f" (authors' checkpoint: {info['source']['url']})"
                                     if info.get("source") and info["source"].get("url") else "") + "."]
    if info["claims"]:
        lines += ["Paper claims:"] + _claims_text(info["claims"])
    for r in info["complexity_rows"]:
        lines.append(f"  complexity {r['paper']} {r['table']} '{r['row']}': {r['params'] or '-'} params, "
                     f"{r['flops'] or '-'} FLOPs")
    lines.append("Arguments: pretrained=False, num_classes=None, num_frames=None, **kwargs (see zoo.create_model).")
    return "\n".join(lines)


def _entry(name: str):
    def fn(pretrained: bool = False, **kwargs):
        return create_model(name, pretrained=pretrained, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = describe(name)
    return fn


def entrypoints() -> dict:
    return {n: _entry(n) for n in list_models()}
