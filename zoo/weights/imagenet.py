"""ImageNet initialisation: torchvision's 2D ResNets (as timm hosts them) inflated into a video ResNet."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from .fetch import ENV_DIR, hub_download, mirror_dirs
from .files import FILENAME, WeightsError, read_weights

__all__ = ["IMAGENET", "imagenet_path", "imagenet_state_dict", "load_imagenet_backbone", "inflate"]

# the 2D ResNets the papers initialise from: torchvision's original ImageNet weights, as timm hosts them
IMAGENET = {18: "timm/resnet18.tv_in1k", 34: "timm/resnet34.tv_in1k", 50: "timm/resnet50.tv_in1k",
            101: "timm/resnet101.tv_in1k"}


def imagenet_path(depth: int, mirrors: bool = True) -> str:
    """The local file of the ImageNet ResNet-``depth``: a ``$ZOO_WEIGHTS_DIR`` mirror, else the Hub cache
    (downloaded if needed)."""
    repo = IMAGENET.get(int(depth))
    if repo is None:
        raise WeightsError(f"no ImageNet ResNet-{depth} weights known; depths: {sorted(IMAGENET)}")
    if mirrors:
        for d in mirror_dirs(None):
            p = d / repo.split("/")[1] / FILENAME
            if p.is_file():
                return str(p)
    try:
        return hub_download(repo, FILENAME, None, f"the ImageNet ResNet-{depth} weights")
    except WeightsError as err:
        raise WeightsError(f"{err} On a machine with internet run `zoo download --imagenet {depth} --to DIR` "
                           f"and set {ENV_DIR}=DIR here.") from err


def imagenet_state_dict(depth: int) -> dict:
    return read_weights(imagenet_path(depth))[0]


def inflate(src: torch.Tensor, dst: torch.Tensor) -> Optional[torch.Tensor]:
    """A 2D tensor for a same-shaped or temporally inflated (kernel 1 in time) parameter."""
    if src.shape == dst.shape:
        return src
    if src.dim() == 4 and dst.dim() == 5 and dst.shape[2] == 1 and dst.shape[:2] + dst.shape[3:] == src.shape:
        return src.unsqueeze(2)
    return None


def load_imagenet_backbone(model: nn.Module, state_dict: Optional[dict] = None) -> dict:
    """Initialise the 2D ResNet of ``model`` from ImageNet (torchvision's ResNet, as the papers did).

    Every backbone tensor of the ImageNet checkpoint (all but ``fc``) must land: by the same
    name and shape, inflated to a (C, C', 1, k, k) Conv3d kernel, or through a hook, the
    ``load_imagenet(param_name, tensor) -> bool`` method of the module at that path (a slot that
    replaces a conv, e.g. GST's split conv2, takes its share of the 2D kernel). A model with an
    irregular layout may define ``load_imagenet_state_dict(sd) -> dict`` and take over. Layers
    the ImageNet ResNet does not have keep their own init. Returns {our key: source key}."""
    depth = getattr(model, "depth", None)
    if state_dict is None:
        if depth is None:
            raise WeightsError(f"{type(model).__name__} has no .depth: cannot tell which ImageNet ResNet applies")
        state_dict = imagenet_state_dict(depth)
    src = {k[7:] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    src = {k: v for k, v in src.items() if not k.startswith("fc.")}
    if hasattr(model, "load_imagenet_state_dict"):
        return model.load_imagenet_state_dict(src)
    own = model.state_dict()
    modules = dict(model.named_modules())
    new, mapped, left = {}, {}, []
    for k, t in src.items():
        if k in own:
            x = inflate(t, own[k])
            if x is not None:
                if own[k].is_floating_point() and not t.is_floating_point():
                    raise WeightsError(f"ImageNet tensor {k} is {t.dtype}, but the model's is {own[k].dtype}")
                new[k] = x.to(own[k].dtype)
                mapped[k] = k
                continue
        mod_name, _, param = k.rpartition(".")
        mod = modules.get(mod_name)
        hook = getattr(mod, "load_imagenet", None)
        if hook is not None and hook(param, t):
            mapped[f"{mod_name}.<load_imagenet>.{param}"] = k
            continue
        left.append(f"{k} {tuple(t.shape)}" + (f" (model has {tuple(own[k].shape)})" if k in own else ""))
    if left:
        raise WeightsError(f"{len(left)} ImageNet backbone tensor(s) have no place in {type(model).__name__}: "
                           f"{left[:8]}. The family must map them (a load_imagenet hook on the slot module)")
    with torch.no_grad():
        for k, x in new.items():
            own[k].copy_(x)
    return mapped
