"""Pretrained weights: resolution, verification and loading (see weights_manifest.json)."""
from __future__ import annotations

from typing import Optional

import torch.nn as nn

from .registry import registry

__all__ = ["load_pretrained", "WeightsError"]


class WeightsError(RuntimeError):
    """Weights that cannot be had or cannot be trusted."""


def _not_hosted_message(name: str) -> str:
    reg = registry()
    v = reg.variants.get(name)
    entry = reg.weights(name) or {}
    src = (v.source if v else None) or entry.get("source") or {}
    msg = f"no hosted weights for {name!r} (weights_manifest.json status: {entry.get('status', 'absent')})."
    if src.get("url"):
        msg += (f" The authors published a checkpoint: {src['url']}"
                f"{' (' + src['note'] + ')' if src.get('note') else ''}. Convert it with: "
                f"zoo convert {name} <downloaded checkpoint> --out <dir>, then pass weights_dir=<dir>.")
    else:
        msg += " The authors did not publish a checkpoint for it."
    hosted = [n for n in reg.manifest if reg.hosted(n)]
    if hosted:
        msg += f" Names with hosted weights: zoo.list_models(pretrained=True) ({len(hosted)})."
    return msg


def load_pretrained(model: nn.Module, name: str, weights_dir: Optional[str] = None) -> nn.Module:
    reg = registry()
    if not reg.hosted(name) and weights_dir is None:
        raise WeightsError(_not_hosted_message(name))
    raise WeightsError(f"loading weights for {name!r} is not available in this version")
