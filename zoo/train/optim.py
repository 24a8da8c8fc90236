"""The optimiser side of a recipe: parameter groups (weight decay, lr multipliers), the optimiser,
the lr schedule, and partial/frozen BatchNorm."""
from __future__ import annotations

import fnmatch

import torch
import torch.nn as nn

from .recipes import Recipe

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module, recipe: Recipe, lr: float) -> list[dict]:
    """Parameter groups of the recipe: no weight decay on norm layers, biases and other 1-D
    parameters; biases at ``bias_lr_mult`` x lr; ``lr_mult`` patterns (fnmatch on the parameter
    name) multiply the lr. Frozen parameters are left out."""
    norm_params = {id(p) for m in model.modules() if isinstance(m, _NORMS) for p in m.parameters(recurse=False)}
    skip = set(getattr(model, "no_weight_decay", lambda: ())())
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        mult = 1.0
        for pat, m in recipe.lr_mult.items():
            if fnmatch.fnmatchcase(name, pat):
                mult *= m
        decay = recipe.weight_decay
        if id(p) in norm_params or p.ndim <= 1 or name in skip:
            decay = 0.0
        if name.endswith(".bias") and id(p) not in norm_params:
            mult *= recipe.bias_lr_mult
        key = (mult, decay)
        g = groups.setdefault(key, {"params": [], "names": [], "lr": lr * mult, "weight_decay": decay,
                                    "lr_mult": mult})
        g["params"].append(p)
        g["names"].append(name)
    return list(groups.values())


def _optimizer(groups: list[dict], recipe: Recipe, lr: float) -> torch.optim.Optimizer:
    clean = [{k: v for k, v in g.items() if k != "names"} for g in groups]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(clean, lr=lr, momentum=recipe.momentum)
    return torch.optim.AdamW(clean, lr=lr)


def lr_factor(step: int, steps_per_epoch: int, milestones, gamma: float, warmup_epochs: float) -> float:
    """Multiplier of the base lr at iteration ``step``: step decay at ``milestones`` (epochs,
    applied per iteration as TDN's scheduler does) and a linear warm-up from 1/100."""
    epoch = step / steps_per_epoch
    f = gamma ** sum(epoch >= m for m in milestones)
    if warmup_epochs and epoch < warmup_epochs:
        w = warmup_epochs * steps_per_epoch
        f *= 0.01 + 0.99 * step / w
    return f


def _bn_modes(model: nn.Module, partial: bool, freeze: bool) -> None:
    """After model.train(): partial BN (TSN) keeps the first BN training and freezes the others'
    statistics; ``freeze`` freezes them all."""
    if not (partial or freeze):
        return
    first = True
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if partial and first:
                first = False
                continue
            m.eval()


def _freeze_bn_params(model: nn.Module, partial: bool) -> None:
    """Partial BN also stops the frozen BNs' affine parameters (TSN's optimiser policy)."""
    if not partial:
        return
    first = True
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if first:
                first = False
                continue
            for p in m.parameters(recurse=False):
                p.requires_grad_(False)
