"""Parts of the video ResNet that are not the ResNet itself: stochastic depth on a residual
branch, timm's ``feature_info`` list, and the BatchNorm statistics kept still while gradient
checkpointing recomputes a stage."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn

__all__ = ["DropPath", "FeatureInfo", "FrozenNormStats"]


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016) on a block's residual branch: in training the branch
    of a whole clip is dropped with probability ``p`` (all its frames together) and kept ones are
    scaled by 1/(1-p); identity in eval mode and for ``p`` = 0."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0] // T, 1, 1, 1)).bernoulli_(keep).div_(keep)
        return x * mask.repeat_interleave(T, 0)

    def extra_repr(self) -> str:
        return f"p={self.p:.4g}"


class FeatureInfo(list):
    """timm's ``feature_info``: one dict per feature map (``num_chs``, ``reduction``, ``module``,
    ``index``) with timm's accessors; ``channels()`` lists them all, ``channels(i)`` the i-th."""

    def _get(self, key: str, idx: Optional[int]):
        return [d[key] for d in self] if idx is None else self[idx][key]

    def channels(self, idx: Optional[int] = None):
        return self._get("num_chs", idx)

    def reduction(self, idx: Optional[int] = None):
        return self._get("reduction", idx)

    def module_name(self, idx: Optional[int] = None):
        return self._get("module", idx)

    def get_dicts(self, keys: Optional[Sequence[str]] = None, idx: Optional[int] = None):
        pick = (lambda d: dict(d)) if keys is None else (lambda d: {k: d[k] for k in keys})
        return [pick(d) for d in self] if idx is None else pick(self[idx])

    @property
    def out_indices(self) -> tuple:
        return tuple(d["index"] for d in self)


class FrozenNormStats:
    """Checkpointed stages run their forward twice; during the recomputation the BN layers
    update their running statistics with momentum 0 (the same values, written in place by the
    op itself, so autograd's saved tensors stay valid) and the batch counter is put back: the
    statistics end as the plain model leaves them."""

    def __init__(self, model: nn.Module):
        self.norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                      and m.training and m.running_mean is not None]

    def __enter__(self):
        self.saved = [(m.momentum, m.num_batches_tracked.clone()) for m in self.norms]
        for m in self.norms:
            m.momentum = 0.0

    def __exit__(self, *exc):
        for m, (momentum, n) in zip(self.norms, self.saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(n)
        return False
