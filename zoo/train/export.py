"""The best epoch as a ``weights_dir`` folder: model.safetensors + config.json + README.md.

The folder has the layout ``zoo convert`` writes, so ``create_model(name, pretrained=True,
weights_dir=FOLDER)`` loads it (a variant trained with its own classes and frames) and ``zoo
publish FOLDER --repo-id ORG/NAME`` uploads it. The card states the accuracy measured by the
run's validation and the recipe it was trained with. The folder is built under a temporary
name and renamed into place, replacing the previous best only once the new one is complete.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import torch.nn as nn

from .recipes import Recipe, describe_recipe

__all__ = ["export_weights", "export_config"]


def export_config(name: str, model: nn.Module, info: Optional[dict] = None) -> dict:
    """config.json of a trained model: the registry's entry for ``name`` with the classes, frames
    and kwargs the model was actually built with (``info`` overrides, e.g. labels)."""
    from ..cfg import pretrained_cfg
    from ..version import __version__
    from ..registry import Variant, registry
    from ..weights import model_config

    reg = registry()
    obj = reg.resolve(name)
    if isinstance(obj, Variant):
        cfg = model_config(name)
    else:   # an architecture: its registered defaults (zoo.cfg), as create_model built it
        c = pretrained_cfg(name)
        cfg = {"name": name, "arch": obj.name, "family": obj.family, "num_classes": None, "frames": None,
               "kwargs": dict(obj.defaults), "input_size": c["input_size"][-1], "mean": list(c["mean"]),
               "std": list(c["std"]), "sampling": c["sampling"], "zoo_version": __version__}
    pc = getattr(model, "pretrained_cfg", None) or {}
    cfg["num_classes"] = getattr(model, "num_classes", cfg.get("num_classes"))
    cfg["frames"] = getattr(model, "num_frames", cfg.get("frames"))
    if pc.get("kwargs") is not None:
        cfg["kwargs"] = pc["kwargs"]
    cfg.update(info or {})
    return cfg


def _card(cfg: dict, recipe: Recipe, metrics: dict, epochs: int, sha: str) -> str:
    name = cfg["name"]
    dataset = cfg.get("trained_on") or cfg.get("dataset") or "user data"
    y = ["---", "library_name: zoo", "pipeline_tag: video-classification", "tags:", "- video-classification",
         "- action-recognition", f"- {json.dumps(cfg.get('family', ''))}", f"- {json.dumps(cfg['arch'])}",
         "model-index:", f"- name: {json.dumps(name)}", "  results:", "  - task:",
         "      type: video-classification", "    dataset:", f"      name: {json.dumps(dataset)}",
         f"      type: {json.dumps(dataset)}", "    metrics:"]
    for k in ("top1", "top5", "mean_class"):
        if f"val_{k}" in metrics:
            y += ["    - type: accuracy", f"      name: {json.dumps(f'{k} (validation, 1 view per video)')}",
                  f"      value: {round(metrics[f'val_{k}'], 2)}", "      verified: false"]
    y.append("---")
    acc = ", ".join(f"{k} {metrics[f'val_{k}']:.2f}%" for k in ("top1", "top5", "mean_class") if f"val_{k}" in metrics)
    lines = [f"# {name}", "",
             f"{cfg['arch']} ({cfg.get('family', '?')} family), {cfg['num_classes']} classes, {cfg['frames']} frames, "
             f"trained with `zoo train` on {dataset}.", "",
             f"Measured on the validation list at epoch {metrics.get('epoch')} of {epochs}: {acc} "
             f"({metrics.get('val_videos', '?')} videos).", "",
             "## Recipe", "", "```", describe_recipe(recipe), "```", "",
             "## Usage", "", "```python", "import zoo",
             f"model = zoo.create_model({name!r}, pretrained=True, weights_dir='<this folder>').eval()", "```", "",
             f"- `model.safetensors` sha256: `{sha}`", ""]
    return "\n".join(y) + "\n" + "\n".join(lines)


def export_weights(model: nn.Module, folder, *, name: str, recipe: Recipe, metrics: dict,
                   info: Optional[dict] = None, epochs: int = 0) -> Path:
    """Write the weights_dir folder ``folder`` for ``model`` (atomically replaced)."""
    from ..version import __version__
    from ..weights import FILENAME, save_weights

    folder = Path(folder)
    model = getattr(model, "module", model)
    cfg = export_config(name, model, info)
    cfg["training"] = {"recipe": recipe.id, "epochs": epochs, "metrics": metrics}
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        meta = {"name": name, "arch": cfg["arch"], "num_classes": cfg["num_classes"], "frames": cfg["frames"],
                "kwargs": json.dumps(cfg.get("kwargs") or {}, sort_keys=True), "zoo_version": __version__,
                "format": "pt", "trained_with": f"zoo train, recipe {recipe.id}"}
        w = save_weights(model, tmp / FILENAME, meta)
        cfg["weights"] = w   # sha256 and size: local-dir: / hf-hub: loading verifies the file against them
        (tmp / "config.json").write_text(json.dumps(cfg, indent=1, default=str) + "\n")
        (tmp / "README.md").write_text(_card(cfg, recipe, metrics, epochs, w["sha256"]))
        old = folder.with_name(f".{folder.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
