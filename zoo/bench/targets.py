"""The project's latency targets and model presets, read from ``targets.toml`` beside this file."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import NamedTuple, Optional

__all__ = ["Target", "TARGETS", "PRESETS", "AUTHORS_ACT_MB", "COMPILED_MARGIN", "load_targets", "target_of",
           "target_for", "limit_of"]

FILE = Path(__file__).with_name("targets.toml")


class Target(NamedTuple):
    baseline: str
    limit: float      # largest accepted latency ratio model / baseline
    authors: float    # the authors' code's ratio for the same comparison (nan: no code)
    compiled: bool = False  # compiled, the limit is the FLOP share + COMPILED_MARGIN instead


def load_targets(path: Path = FILE) -> tuple[dict, dict, tuple, float]:
    """-> ({model label: Target}, {preset: [labels]}, (authors' activation MB low, high),
    compiled margin)."""
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: TOML syntax error: {e}") from None
    targets = {}
    for i, t in enumerate(doc.get("target", [])):
        where = f"{path.name} target #{i + 1}"
        extra = set(t) - {"model", "baseline", "limit", "authors", "authors_backbone", "compiled"}
        if extra or not {"model", "baseline", "limit"} <= set(t):
            raise ValueError(f"{where}: needs model, baseline, limit (and optional authors, authors_backbone, "
                             f"compiled); unknown: {sorted(extra)}")
        if not isinstance(t.get("compiled", False), bool):
            raise ValueError(f"{where}: compiled must be true or false, got {t['compiled']!r}")
        authors = t["authors"] / t.get("authors_backbone", 1.0) if "authors" in t else float("nan")
        limit = t["limit"]
        if limit == "half":  # half the authors' overhead
            if authors != authors:
                raise ValueError(f"{where}: limit = 'half' needs the authors' figure")
            limit = 1 + (authors - 1) / 2
        elif not isinstance(limit, (int, float)) or isinstance(limit, bool) or limit <= 0:
            raise ValueError(f"{where}: limit must be a positive ratio or 'half', got {limit!r}")
        targets[t["model"]] = Target(t["baseline"], float(limit), authors, t.get("compiled", False))
    margin = doc.get("compiled_margin", float("nan") if any(t.compiled for t in targets.values()) else 0.0)
    if not isinstance(margin, (int, float)) or isinstance(margin, bool) or not margin >= 0:
        raise ValueError(f"{path.name}: compiled_margin must be a ratio >= 0 (targets with compiled = true need "
                         f"it), got {margin!r}")
    return (targets, dict(doc.get("presets", {})), tuple(doc.get("authors_activation_mb", (float("nan"),) * 2)),
            float(margin))


TARGETS, PRESETS, AUTHORS_ACT_MB, COMPILED_MARGIN = load_targets()


def target_of(label: str):
    """The target of a model label; a variant name without kwargs takes its architecture's."""
    if label in TARGETS:
        return TARGETS[label]
    if ":" in label or label.startswith("tv_"):
        return None
    from .spec import arch_of

    try:
        from ..registry import registry

        v = registry().variants.get(label)
    except Exception:  # a saved run rendered where the registry is not at hand
        return None
    return TARGETS.get(arch_of(label)) if v is not None and not v.kwargs else None


def target_for(label: str, baseline):
    """The target of ``label`` when it is compared with ``baseline`` (its target's backbone),
    else None."""
    t = target_of(label)
    return t if t is not None and baseline is not None and t.baseline == baseline else None


def limit_of(t: Optional[Target], compiled: bool, flops_ratio: Optional[float]) -> Optional[float]:
    """The limit a run judges ``t`` by: its own, or compiled (``t.compiled``) its FLOP share over
    the backbone plus COMPILED_MARGIN; None when that share was not measured."""
    if t is None:
        return None
    if not (compiled and t.compiled):
        return t.limit
    if flops_ratio is None or flops_ratio != flops_ratio:
        return None
    return flops_ratio + COMPILED_MARGIN
