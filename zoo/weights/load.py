"""Loading weights into a model, and folders of trained weights (``hf-hub:`` / ``local-dir:`` names).

A model folder is what ``zoo convert`` and :func:`save_pretrained` write and ``zoo publish``
uploads: ``model.safetensors``, ``config.json`` and ``README.md`` (a Hub model card).
``create_model("hf-hub:ORG/REPO[@REVISION]")`` and ``create_model("local-dir:PATH")`` read one
back the way timm does: the network is rebuilt from config.json (``arch``, ``kwargs``,
``num_classes``, ``frames``) and model.safetensors is loaded strictly, never unpickled. When
config.json records the file's sha256 and size (the zoo always writes them) the file is checked
against them first; the sha256 is logged and kept in ``model.pretrained_cfg["sha256"]``.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch.nn as nn

from .fetch import hub_download, resolve
from .files import FILENAME, WeightsError, atomic_write, read_weights, save_weights, sha256, verify_file
from .manifest import variant

__all__ = ["load_pretrained", "load_state_dict_strict", "SOURCE_PREFIXES", "is_source_name", "source_files",
           "create_from_source", "save_pretrained", "write_model_folder", "CONFIG", "CARD"]

log = logging.getLogger("zoo.weights")

CONFIG = "config.json"
CARD = "README.md"
SOURCE_PREFIXES = ("hf-hub:", "local-dir:")


def load_state_dict_strict(model: nn.Module, sd: dict, where: str) -> nn.Module:
    """``model.load_state_dict(sd, strict=True)`` after naming every missing, extra, misshaped or
    wrongly typed (integers for float parameters) tensor in one error."""
    from ..convert import fit_problems

    problems = fit_problems(model.state_dict(), sd)
    if problems:
        raise WeightsError("; ".join([f"{where} does not fit the model", *problems]))
    model.load_state_dict(sd, strict=True)
    return model


def load_pretrained(model: nn.Module, name: str, weights_dir: Union[str, os.PathLike, None] = None) -> nn.Module:
    """Resolve, verify and strictly load ``name``'s weights into ``model`` (built at the variant's
    own classes; the caller swaps the head for fine-tuning)."""
    v = variant(name)
    path = resolve(name, weights_dir)
    sd, meta = read_weights(path)
    if meta.get("arch") and meta["arch"] != v.arch:
        raise WeightsError(f"{path} holds {meta['arch']!r} weights, but {name!r} is a {v.arch!r}")
    return load_state_dict_strict(model, sd, f"{path} ({name!r})")


# -- model folders --------------------------------------------------------------------------------

def is_source_name(name) -> bool:
    return isinstance(name, str) and name.startswith(SOURCE_PREFIXES)


def source_files(name: str) -> tuple[str, str, dict]:
    """(config.json path, model.safetensors path, provenance) of an ``hf-hub:`` / ``local-dir:`` name."""
    if name.startswith("local-dir:"):
        folder = Path(name[len("local-dir:"):]).expanduser()
        if not folder.is_dir():
            raise WeightsError(f"{name}: {folder} is not a folder (expected {CONFIG} and {FILENAME} in it)")
        cfg, weights = folder / CONFIG, folder / FILENAME
        for p in (cfg, weights):
            if not p.is_file():
                raise WeightsError(f"{name}: no {p.name} in {folder} (a model folder as `zoo convert`, "
                                   "zoo.weights.save_pretrained or `zoo train` write it)")
        return str(cfg), str(weights), {"local_dir": str(folder.resolve())}
    ref = name[len("hf-hub:"):]
    repo, _, revision = ref.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise WeightsError(f"{name!r}: expected hf-hub:ORG/REPO or hf-hub:ORG/REPO@REVISION")
    revision = revision or None
    what = f"the model folder {name!r}"
    cfg = hub_download(repo, CONFIG, revision, what)
    weights = hub_download(repo, FILENAME, revision, what)
    commit = Path(cfg).parent.name  # the snapshot folder is named by the resolved commit
    return cfg, weights, {"hf_hub_id": repo, "revision": revision or "main", "commit": commit}


def _read_config(path: str, where: str) -> dict:
    from ..registry import registry

    try:
        cfg = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise WeightsError(f"{where}: {CONFIG} is not valid JSON ({e})") from e
    if not isinstance(cfg, dict):
        raise WeightsError(f"{where}: {CONFIG} must hold a JSON object")
    arch = cfg.get("arch", cfg.get("architecture"))
    if not isinstance(arch, str) or arch not in registry().archs:
        raise WeightsError(f"{where}: {CONFIG} field 'arch' is {arch!r}, not a registered architecture "
                           "(zoo.list_models(kind='arch'))")
    frames = cfg.get("frames", cfg.get("num_frames"))
    checks = [("num_classes", cfg.get("num_classes"), 0), ("frames", frames, 1)]
    for field, val, low in checks:
        if not isinstance(val, int) or isinstance(val, bool) or val < low:
            raise WeightsError(f"{where}: {CONFIG} field {field!r} must be an integer >= {low}, got {val!r}")
    kwargs = cfg.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise WeightsError(f"{where}: {CONFIG} field 'kwargs' must be an object, got {kwargs!r}")
    return {**cfg, "arch": arch, "frames": frames, "kwargs": kwargs}


def create_from_source(name: str, num_classes: Optional[int] = None, num_frames: Optional[int] = None,
                       pretrained_backbone: bool = False, **kwargs) -> nn.Module:
    """``create_model`` for ``hf-hub:ORG/REPO[@REVISION]`` and ``local-dir:PATH`` names."""
    import warnings

    from ..factory import _model_cfg, create_model
    from ..registry import registry

    if pretrained_backbone:
        raise ValueError(f"{name}: pretrained_backbone=True would overwrite the trained weights with ImageNet's")
    cfg_path, weights_path, where = source_files(name)
    cfg = _read_config(cfg_path, name)
    expected = cfg.get("weights") or {}
    if expected.get("sha256") or expected.get("bytes"):
        bad = verify_file(weights_path, expected)
        if bad:
            raise WeightsError(f"{name}: {FILENAME} does not match its {CONFIG}: {bad}; the folder was changed "
                               "after it was written, or the transfer broke")
    digest = sha256(weights_path)
    log.info("%s: %s sha256 %s", name, FILENAME, digest)
    classes = cfg["num_classes"] if num_classes is None else num_classes
    frames = cfg["frames"] if num_frames is None else num_frames
    if frames != cfg["frames"]:
        warnings.warn(f"{name} was trained with {cfg['frames']} frames; running it with {frames}", stacklevel=3)
    model = create_model(cfg["arch"], num_classes=cfg["num_classes"], num_frames=frames,
                         **{**cfg["kwargs"], **kwargs})
    sd, _ = read_weights(weights_path)
    load_state_dict_strict(model, sd, f"{name} ({FILENAME})")
    if classes != cfg["num_classes"]:
        model.reset_classifier(classes)
    reg = registry()
    vname = cfg.get("name")
    base = _model_cfg(vname) if vname in reg.variants and reg.variants[vname].arch == cfg["arch"] else model.pretrained_cfg
    info = {**base, "kwargs": {**cfg["kwargs"], **kwargs}, "num_classes": classes, "frames": frames,
            "source_name": name, "sha256": digest, **where}
    for k in ("label_names", "id2label"):
        if k in cfg:
            info[k] = cfg[k]
    model.pretrained_cfg = info
    return model


def write_model_folder(folder: Union[str, os.PathLike], model: Union[nn.Module, dict], metadata: dict,
                       config: dict, card: Union[str, Callable[[dict], str]], force: bool = False) -> dict:
    """Write model.safetensors, config.json (with the file's sha256 and size under ``weights``) and
    README.md (``card``, or ``card(info)`` given the file's {filename, sha256, bytes}) into ``folder``,
    each atomically. Existing files are replaced only with ``force``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise WeightsError(f"{folder} exists and is not a folder; give a folder for the model files")
    names = (FILENAME, CONFIG, CARD)
    existing = [n for n in names if (folder / n).exists()]
    if existing and not force:
        raise WeightsError(f"{folder} already holds {', '.join(existing)}; nothing was written. Pass --force "
                           "(force=True) to replace them, or choose another folder")
    for n in existing:
        if (folder / n).is_dir():
            raise WeightsError(f"{folder / n} is a directory; remove it or choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    info = save_weights(model, folder / FILENAME, metadata)
    atomic_write(folder / CONFIG, json.dumps({**config, "weights": info}, indent=1) + "\n")
    atomic_write(folder / CARD, card(info) if callable(card) else card)
    return info


def save_pretrained(model: nn.Module, folder: Union[str, os.PathLike], name: Optional[str] = None,
                    label_names: Optional[Sequence[str]] = None, force: bool = False) -> dict:
    """Write ``model`` (built by ``create_model``) as a model folder that ``create_model("local-dir:...")``
    reads back and ``zoo publish`` uploads. ``name``: the variant it is, if registered."""
    from ..version import __version__
    from ..registry import registry
    from .card import label_fields, model_card, model_config

    cfg = getattr(model, "pretrained_cfg", None) or {}
    arch = cfg.get("arch") if cfg.get("kind") == "variant" else cfg.get("name")
    if arch not in registry().archs:
        raise WeightsError(f"{type(model).__name__} has no pretrained_cfg naming its architecture; build it "
                           "with zoo.create_model")
    classes, frames, kwargs = cfg["num_classes"], cfg["frames"], dict(cfg.get("kwargs") or {})
    name = name or (cfg.get("name") if cfg.get("kind") == "variant" else None)
    reg = registry()
    if name in reg.variants and reg.variants[name].num_classes == classes and reg.variants[name].arch == arch:
        config = model_config(name, label_names)
        card = model_card(name, label_names=label_names)
    else:
        config = {"name": name or arch, "arch": arch, "architecture": arch, "num_classes": classes,
                  "frames": frames, "num_frames": frames, **label_fields(label_names, classes)}
        card = (f"---\nlibrary_name: zoo\npipeline_tag: video-classification\ntags:\n- video-classification\n"
                f"---\n# {name or arch}\n\n{arch} with {classes} classes and {frames} frames, saved with zoo "
                f"{__version__}.\n\n```python\nimport zoo\nmodel = zoo.create_model(\"hf-hub:ORG/REPO\")  "
                "# or \"local-dir:PATH\"\n```\n")
    config.update(kwargs=kwargs, num_classes=classes, frames=frames, num_frames=frames, zoo_version=__version__)
    meta = {"name": name or arch, "arch": arch, "num_classes": classes, "frames": frames,
            "kwargs": json.dumps(kwargs, sort_keys=True), "zoo_version": __version__, "format": "pt"}
    return write_model_folder(folder, model, meta, config, card, force=force)
