"""Calibrator kinds by name, so any backbone builder can take ``calibrator="se3d"``.

A family registers a slot factory (``fn(ctx) -> nn.Module | None``) under a name together with
where it sits in the block (a ``Slots.calib_at`` value) with ``zoo.registration.register_calibrator``;
builders turn the name back into ``Slots`` fields with :func:`calibrator_slots`. Lookups happen at
build time, so the order in which the family modules are imported does not matter.
"""
from __future__ import annotations

from typing import Optional

from ..registration import Calibrator, calibrators, register_calibrator

__all__ = ["register_calibrator", "calibrator_slots", "calibrators", "Calibrator"]


def calibrator_slots(name: Optional[str]) -> dict:
    """``Slots`` keyword arguments for calibrator ``name`` ({} for None)."""
    if name is None:
        return {}
    table = calibrators()
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"unknown calibrator {name!r}; known: {', '.join(sorted(table))} (or None)")
    c = table[name]
    return {"calib": c.factory, "calib_at": c.at}
