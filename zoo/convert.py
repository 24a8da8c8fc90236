"""Loading the authors' checkpoints: per-family key maps and a strict loader.

A converter turns an original state dict (already stripped of DataParallel's ``module.``)
into this zoo's layout: renamed keys, reshaped tensors, dead entries dropped on purpose.
Families register theirs with :func:`register_converter`; most are a list of regex rules on top
of the common one (``base_model.`` and ``new_fc`` of the TSN-style wrappers)."""
from __future__ import annotations

import os
import re
from typing import Iterable, Mapping, Optional, Union

import torch
import torch.nn as nn

from .registration import Converter, converters, register_converter

__all__ = ["register_converter", "converters", "load_original", "read_checkpoint", "rename", "fit_problems",
           "COMMON_RULES", "ConversionError"]


class ConversionError(ValueError):
    """An original state dict that does not fit the model."""


# base_model.* is the backbone of every TSN-style wrapper; new_fc is its classifier; the TSM
# authors' own repo wraps conv1 in the shift module, giving conv1.net.weight.
COMMON_RULES = [
    (r"^base_model\.", ""),
    (r"^new_fc\.", "fc."),
    (r"\.conv1\.net\.", ".conv1."),
]


def rename(sd: Mapping[str, torch.Tensor], rules: Iterable[tuple[str, str]]) -> dict:
    """Apply regex (pattern, replacement) rules in order to every key."""
    compiled = [(re.compile(p), r) for p, r in rules]
    out = {}
    for k, v in sd.items():
        for p, r in compiled:
            k = p.sub(r, k)
        if k in out:
            raise ConversionError(f"two original keys map to {k!r}")
        out[k] = v
    return out


@register_converter("tsn")
def convert_tsn(sd: dict) -> dict:
    """TSN/TSM from the TSM authors' repo (conv1.net.*) or the AIA/GC repos (plain conv1.*)."""
    return rename(sd, COMMON_RULES)


converters_alias = {"tsm": "tsn"}


def _needs_unpickling(err: Exception) -> bool:
    """torch.load(weights_only=True) refused a global: the file is a valid pickle that full
    unpickling would read (every other failure is a damaged or foreign file)."""
    import pickle

    return isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in str(err)


def read_checkpoint(path: Union[str, os.PathLike], trust_pickle: bool = False) -> dict:
    """Read an original checkpoint (.pth/.pth.tar, or .safetensors) into a flat state dict.

    Pickled files are read with ``torch.load(weights_only=True)``; one that needs full
    unpickling is refused unless ``trust_pickle=True`` (which executes code from the file).
    A missing, empty, truncated or foreign file is "no such file" / "not a checkpoint"."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ConversionError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise ConversionError(f"{path} is not a checkpoint file (a directory?)")
    if os.path.getsize(path) == 0:
        raise ConversionError(f"{path} is not a checkpoint: the file is empty")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as e:  # SafetensorError: a bad header, or a pickle under the wrong name
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConversionError(f"{path} is not a safetensors file ({first}); if it is a PyTorch .pth "
                                  "checkpoint, give it a .pth name") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError with varying wrappers
        if not _needs_unpickling(e):
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}" if str(e).strip() else type(e).__name__
            raise ConversionError(f"{path} is not a checkpoint torch.load can read (truncated, or not a PyTorch "
                                  f"file; {why})") from None
        if not trust_pickle:
            raise ConversionError(
                f"{path} holds objects torch.load(weights_only=True) refuses ({str(e).splitlines()[-1][:160]}). "
                "If you trust its origin, pass trust_pickle=True (zoo convert --trust-pickle); this runs "
                "code stored in the file.") from None
        import warnings

        warnings.warn(f"unpickling {path} with weights_only=False: this can run arbitrary code", stacklevel=2)
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f"{path} does not hold a state dict of tensors")
    return obj


def _strip_module(sd: Mapping[str, torch.Tensor]) -> dict:
    return {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}


def _converter_for(model: nn.Module, name: Optional[str]) -> tuple[str, Converter]:
    convs = converters()
    if name is None:
        cfg = getattr(model, "pretrained_cfg", None) or {}
        src = cfg.get("source") or {}
        name = src.get("converter") or cfg.get("family")
        if name is None:
            raise ConversionError("cannot tell which converter applies: build the model with "
                                  "zoo.create_model or pass converter=<name>")
    name = converters_alias.get(name, name)
    if name not in convs:
        raise ConversionError(f"no converter {name!r}; known: {sorted(convs)}")
    return name, convs[name]


def convert_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                       converter: Optional[str] = None) -> dict:
    """Original layout -> this model's layout, checked key by key and shape by shape."""
    name, fn = _converter_for(model, converter)
    mapped = fn(_strip_module(state_dict))
    own = model.state_dict()
    problems = fit_problems(own, mapped)
    if problems:
        raise ConversionError("; ".join([f"converter {name!r} did not fit the model", *problems]))
    return {k: mapped[k].to(own[k].dtype) for k in own}


def fit_problems(own: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor]) -> list[str]:
    """What keeps ``sd`` from loading strictly into a model whose state dict is ``own``."""
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and sd[k].shape != own[k].shape]
    # integers where the model has floats would load as truncated values: refuse them
    types = [f"{k}: checkpoint {sd[k].dtype} vs model {own[k].dtype}" for k in own
             if k in sd and own[k].is_floating_point() and not (sd[k].is_floating_point())]
    parts = []
    if missing:
        parts.append(f"{len(missing)} model key(s) not in the checkpoint: {missing[:8]}")
    if extra:
        parts.append(f"{len(extra)} checkpoint key(s) left over: {extra[:8]}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es): {shapes[:8]}")
    if types:
        parts.append(f"{len(types)} non-float tensor(s) for float parameters: {types[:8]}")
    return parts


def load_original(model: nn.Module, state_dict_or_path, converter: Optional[str] = None,
                  trust_pickle: bool = False) -> nn.Module:
    """Load an authors'-layout checkpoint (dict or path, with or without ``module.``) strictly."""
    sd = state_dict_or_path
    if not isinstance(sd, Mapping):
        sd = read_checkpoint(sd, trust_pickle=trust_pickle)
    model.load_state_dict(convert_state_dict(model, sd, converter), strict=True)
    return model
