"""The inference form of a zoo model: ``deploy(model, example_input)``.

The family modules have one forward, the one training, fvcore, tracing, export and
``torch.compile`` use. :func:`deploy` converts a copy of a model once (as timm's
``reparameterize_model`` and PyTorchVideo's ``convert_to_deployable_form``):

* every BatchNorm that follows a conv or linear is folded into it (the backbone's, the
  calibrators', the difference stem's) and replaced by ``nn.Identity``: the model holds one
  copy of the weights, the folded one. Whether folding pays is itself timed (whole model
  against whole model): it does on CPUs, it did not on an H200 in bf16 channels-last, where
  the BNs are then kept;
* modules that gate a block temporary (GC, AIA, SDA) become their in-place forms;
* where two implementations compete for the same result (TSM's shift copied, done in place
  around the next conv, or fused into a 1x1 conv as products; a 1x1 conv as the library conv
  or a batched product; a (k, 1, 1) temporal conv as the library conv or tap products; AIA's
  2-channel gate conv or its banded form; TDN's shift conv or three multiply-adds), each runs
  on this machine for the shapes the example input produces and the fastest is kept. Timings
  are cached per machine, torch version, thread count, dtype and shape (``~/.cache/zoo`` or
  ``$ZOO_CACHE``), as ``cudnn.benchmark`` does; ``autotune=False`` keeps the library kernels,
  deterministically, without timing anything.

The result is for inference only (``eval()``, no gradients); it traces and exports. Inputs of
other shapes still run (each choice checks its shapes and falls back to the library kernel).

Here: the conversion. ``choices``: the timed kernel-choice cache; ``fold``: BatchNorm folding;
``forms``: the deployed forms of the modules.
"""
from __future__ import annotations

import copy
import os
from typing import Callable, Optional

import torch
import torch.nn as nn

from ..models.aia import AxialGate
from ..models.conv3d import FrameConv3d
from ..models.ops import Conv1x1
from ..models.resnet import BasicBlock, Bottleneck
from ..models.tdn import ShiftConv
from ..models.temporal import TemporalShift
from .choices import Autotuner, _key, machine_id  # noqa: F401
from .fold import fold_batchnorms, fold_bn
from .forms import (_INPLACE, DeployedAxialGate, _dense, DeployedConv1x1, DeployedFrameConv3d, DeployedShift,
                    DeployedShiftConv, _banded, _plain_1x1, shift_, shift_conv1x1, temporal_conv, unshift_)
from .forms import InplaceAIACombo, InplaceAIAUnit, InplaceGC, InplaceSDA  # noqa: F401  (importable from here as before)

__all__ = ["deploy", "deploy_default", "fold_bn", "Autotuner", "DeployedShift", "shift_conv1x1", "shift_", "unshift_",
           "temporal_conv", "is_deployed"]


def _deploy_shift(block: nn.Module, x: torch.Tensor, T: int, tuner: Autotuner) -> None:
    shift = block.shift
    conv = block.conv1 if isinstance(block, Bottleneck) or not block._conv1_takes_t \
        else (lambda y: block.conv1(y, T))
    modes = ["copy"] + (["inplace"] if _dense(x) else []) \
        + (["fused"] if _plain_1x1(block.conv1) and x.stride(-1) == 1 else [])
    forms = {m: DeployedShift(shift.fold_div, m) for m in modes}
    work = x.clone()
    name = f"{type(block.conv1).__name__}{tuple(block.conv1.weight.shape)}"
    mode = tuner.choose("shift", _key(x, T, shift.fold_div, name),
                        {m: (lambda f=f: f.around(work, T, conv)) for m, f in forms.items()})
    block.shift = forms[mode]


def _record(model: nn.Module, example_input: torch.Tensor, types: tuple) -> dict:
    """The first inputs each module of ``types`` receives on ``example_input`` (clones)."""
    seen: dict = {}
    hooks = []
    for m in model.modules():
        if isinstance(m, types):
            def hook(mod, args, m=m):
                if m not in seen:
                    seen[m] = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
            hooks.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(*example_input) if isinstance(example_input, tuple) else model(example_input)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _time_module(m: nn.Module, args: tuple) -> Callable[[], object]:
    return lambda: m(*args)


def deploy(model: nn.Module, example_input, *, autotune=True, cache_dir: Optional[os.PathLike] = None,
           inplace: bool = False) -> nn.Module:
    """The inference form of ``model`` (a copy unless ``inplace``), in eval mode, with kernel
    choices fixed for ``example_input``'s shapes: a clip batch the model takes (or a tuple of
    the arguments of a slot module, e.g. ``(frames, T)``), on the device and in the dtype it
    will run in. ``autotune=False``: library kernels, nothing timed; an :class:`Autotuner`
    instance: its choices."""
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tuner = autotune if isinstance(autotune, Autotuner) else Autotuner(bool(autotune), cache_dir)
    model = _fold_or_keep(model, example_input, tuner)
    for m in list(model.modules()):
        cls = _INPLACE.get(type(m))
        if cls is not None:
            m.__class__ = cls
    kinds = (Conv1x1, FrameConv3d, AxialGate, ShiftConv, Bottleneck, BasicBlock)
    seen = _record(model, example_input, kinds)
    with torch.no_grad():
        for m, args in seen.items():
            if isinstance(m, (Bottleneck, BasicBlock)):
                continue
            fn = _time_module(m, args)
            key = _key(*args, tuple((m.conv if isinstance(m, AxialGate) else m).weight.shape))
            if type(m) is Conv1x1:
                m.__class__ = DeployedConv1x1
                m.mode = tuner.choose("conv1x1", key, {"conv": _set(m, "conv", fn), "bmm": _set(m, "bmm", fn)})
            elif isinstance(m, FrameConv3d):
                m.__class__ = DeployedFrameConv3d
                modes = {"conv": _set(m, "conv", fn)}
                if m.kernel_size[1:] == (1, 1) and m.stride == (1, 1, 1) and m.groups == 1:
                    modes["taps"] = _set(m, "taps", fn)
                m.mode = tuner.choose("frameconv3d", key, modes)
            elif type(m) is AxialGate:
                m.__class__ = DeployedAxialGate
                D = args[0].shape[1]
                band = _banded(m.conv.weight, m.conv.bias, D)
                best = tuner.choose("aia_gate", key, {"conv": _set(m, None, fn, "band"),
                                                      "band": _set(m, band, fn, "band")})
                m.band = band if best == "band" else None
            elif type(m) is ShiftConv:
                m.__class__ = DeployedShiftConv
                m.mode = tuner.choose("shiftconv", key, {"conv": _set(m, "conv", fn), "madd": _set(m, "madd", fn)})
        for m, args in seen.items():
            if isinstance(m, (Bottleneck, BasicBlock)) and isinstance(m.shift, TemporalShift) \
                    and not isinstance(m.shift, DeployedShift):
                _deploy_shift(m, args[0], args[1], tuner)
    tuner.save()
    model.deployed = True
    return model


def _fold_or_keep(model: nn.Module, example_input, tuner: Autotuner) -> nn.Module:
    """The model with its BatchNorms folded, or with the ResNet's own BNs kept where that runs
    faster here (the slot modules' BNs are folded either way: their deployed forms expect it).

    Folding saves a pass over every conv output on a CPU (~3 % of a ResNet-50); on an H200 in
    bf16 channels-last the folded TSN ran 7 % slower than torchvision's ResNet-50 with its BNs
    (benchmarks/results/gpu-h200.md), so which form wins is timed, whole model against whole
    model, as every other choice; with timing off everything is folded."""
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if n_bn == 0:
        return model
    folded: dict = {}

    def fold_copy():
        if "m" not in folded:
            folded["m"] = copy.deepcopy(model)
            fold_batchnorms(folded["m"])
        return folded["m"]

    def run(get):
        return lambda: get()(*example_input) if isinstance(example_input, tuple) else get()(example_input)

    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__
    sig = f"{arch} params={sum(p.numel() for p in model.parameters())} bn={n_bn}"
    x = example_input[0] if isinstance(example_input, tuple) else example_input
    if tuner.choose("fold", _key(x, sig), {"fold": run(fold_copy), "keep": run(lambda: model)}) == "keep":
        fold_batchnorms(model, backbone=False)
        return model
    fold_batchnorms(model)  # this model, not the timed copy: deploy(..., inplace=True) converts in place
    return model


def deploy_default(model: nn.Module, **kw) -> nn.Module:
    """:func:`deploy` for one clip of the size the model was configured for (its
    ``pretrained_cfg``: frames and input size; 8 x 224 x 224 when it has none), on the device
    and in the dtype of its parameters (``create_model(..., deploy=True)``)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    T = (cfg.get("num_frames") or getattr(model, "num_frames", 8)) * (
        cfg.get("frames_per_segment") or getattr(model, "frames_per_segment", 1))
    H, W = (cfg.get("input_size") or (3, 224, 224))[-2:]
    p = next(model.parameters())
    return deploy(model, torch.randn(1, 3, T, H, W, dtype=p.dtype, device=p.device), **kw)


def _set(m: nn.Module, value, fn, attr: str = "mode"):
    """A timing candidate: ``m.<attr> = value``, then one call."""
    def go():
        setattr(m, attr, value)
        return fn()
    return go


def is_deployed(model: nn.Module) -> bool:
    return bool(getattr(model, "deployed", False))
