"""Calibrator kinds by name, so any backbone builder can take ``calibrator="se3d"``.

A family registers a slot factory (``fn(ctx) -> nn.Module | None``) under a name together with
where it sits in the block (a ``Slots.calib_at`` value); builders turn the name back into
``Slots`` fields with :func:`calibrator_slots`. Lookups happen at build time, so the order in
which the family modules are imported does not matter.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .resnet import CALIB_AT, Factory

__all__ = ["register_calibrator", "calibrator_slots", "calibrators", "Calibrator"]


@dataclass(frozen=True)
class Calibrator:
    name: str
    factory: Factory
    at: str
    doc: str


_CALIBRATORS: dict[str, Calibrator] = {}


def register_calibrator(name: str, factory: Factory, at: str = "bn2", doc: str = "") -> None:
    """Make ``factory`` available to builders as ``calibrator=name``, placed at ``at``."""
    if name in _CALIBRATORS:
        raise ValueError(f"calibrator {name!r} registered twice")
    if at not in CALIB_AT:
        raise ValueError(f"calibrator {name!r}: at must be one of {CALIB_AT}, got {at!r}")
    _CALIBRATORS[name] = Calibrator(name, factory, at, doc)


def calibrators() -> dict[str, Calibrator]:
    # importing any zoo.models submodule runs the package __init__, which imports every family,
    # so the table is complete by the time a builder asks
    return _CALIBRATORS


def calibrator_slots(name: Optional[str]) -> dict:
    """``Slots`` keyword arguments for calibrator ``name`` ({} for None)."""
    if name is None:
        return {}
    table = calibrators()
    if name not in table:
        raise ValueError(f"unknown calibrator {name!r}; known: {', '.join(sorted(table))} (or None)")
    c = table[name]
    return {"calibrator": c.factory, "calib_at": c.at}
