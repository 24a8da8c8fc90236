"""What the engine feeds on: a resumable distributed sampler, per-sample seeded augmentation,
the recipes' train transform and flip, and a synthetic temporal-order dataset.

Reproducibility does not depend on workers or on where a run was resumed: the order of an
epoch is a function of (seed, epoch), the random draws of sample ``i`` in epoch ``e`` come
from a generator seeded with (seed, e, i), and its flip from (seed, e, i, 3).
"""
from __future__ import annotations

import math
import random
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

__all__ = ["EpochSampler", "Seeded", "TrainTransform", "flip_batch", "TemporalOrderDataset", "mix_seed"]

_MASK = (1 << 63) - 1


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (a splitmix-style hash: nearby inputs give unrelated seeds)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        h ^= h >> 31
    return h


class EpochSampler(Sampler):
    """This rank's indices of one epoch, from batch ``start`` on.

    The epoch's permutation depends on (seed, epoch) only. It is cut to a whole number of global
    batches (``batch`` per rank x ``world``, the tail dropped as the authors' loaders do) and rank
    ``r`` takes every ``world``-th index from ``r``: global batch ``k`` is then the same set of
    samples whatever the number of ranks, so a 2-process run sees the batches of a 1-process run."""

    def __init__(self, n: int, batch: int, *, seed: int = 0, rank: int = 0, world: int = 1,
                 shuffle: bool = True, drop_last: bool = True):
        self.n, self.batch, self.seed, self.rank, self.world = n, batch, seed, rank, world
        self.shuffle, self.drop_last = shuffle, drop_last
        self.epoch, self.start = 0, 0
        if drop_last and n < batch * world:
            raise ValueError(f"{n} training samples are fewer than one global batch ({batch} x {world} ranks); "
                             "lower --batch or add data")

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def batches(self) -> int:
        per = self.batch * self.world
        return self.n // per if self.drop_last else math.ceil(self.n / per)

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.batches() * self.batch * self.world
        if total > len(order):  # pad (evaluation without drop_last) by repeating from the start
            order += order[:total - len(order)]
        return order[:total]

    def __iter__(self):
        mine = self._order()[self.rank::self.world]
        return iter(mine[self.start * self.batch:])

    def __len__(self) -> int:
        return (self.batches() - self.start) * self.batch


class Seeded(Dataset):
    """Wraps a dataset so that item ``i`` of epoch ``e`` draws its randomness (torch's and
    python's global generators) from a seed of (seed, e, i), restoring the caller's state after."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        s = mix_seed(self.seed, self.epoch, i)
        state, pstate = torch.get_rng_state(), random.getstate()
        try:
            torch.manual_seed(s)
            random.seed(s)
            return self.dataset[i]
        finally:
            torch.set_rng_state(state)
            random.setstate(pstate)


class TrainTransform(nn.Module):
    """TSN's training augmentation on decoded frames (T, 3, H, W) uint8 -> (3, T, size, size).

    Resize the short side to ``resize``; "multiscale": a crop whose width and height are each a
    ``scales`` fraction of the short side (at most one step apart, TSN's max_distort = 1), at one
    of TSN's 13 fixed positions, resized to ``size``; "center": the centre ``size`` crop. Every
    frame of the clip gets the same crop. The flip is not here: it can change the label
    (:func:`flip_batch`)."""

    def __init__(self, size: int = 224, resize: Optional[int] = None, crop: str = "multiscale",
                 scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66), mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225)):
        super().__init__()
        self.size, self.resize = size, resize or round(size * 256 / 224)
        self.crop, self.scales = crop, tuple(scales)
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1, 1), persistent=False)

    def _box(self, H: int, W: int) -> tuple[int, int, int, int]:
        if self.crop == "center":
            s = min(self.size, H, W)
            return (H - s) // 2, (W - s) // 2, s, s
        base = min(H, W)
        sizes = [int(base * s) for s in self.scales]
        pairs = [(h, w) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= 1]
        ch, cw = pairs[int(torch.randint(len(pairs), ()))]
        ys, xs = (H - ch) / 4, (W - cw) / 4
        # TSN's "more fixed crops": the corners, centre, edges' middles and quarter points
        grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (2, 0), (2, 4), (0, 2), (4, 2),
                (1, 1), (1, 3), (3, 1), (3, 3)]
        gy, gx = grid[int(torch.randint(len(grid), ()))]
        return round(gy * ys), round(gx * xs), ch, cw

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected frames (T, 3, H, W), got {tuple(x.shape)}")
        x = x.float() / 255 if not x.is_floating_point() else x.float()
        H, W = x.shape[-2:]
        if min(H, W) != self.resize:
            r = self.resize / min(H, W)
            x = F.interpolate(x, size=(max(1, round(H * r)), max(1, round(W * r))), mode="bilinear",
                              align_corners=False, antialias=True)
        top, left, h, w = self._box(*x.shape[-2:])
        x = x[..., top:top + h, left:left + w]
        if (h, w) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        x = x.transpose(0, 1)  # (3, T, h, w)
        return (x - self.mean) / self.std


def flip_batch(x: torch.Tensor, y: torch.Tensor, flip, swap: dict, keys: Sequence[int]):
    """Flip each clip of (B, 3, T, H, W) horizontally with probability 1/2, the coin of clip ``b``
    drawn from the seed ``keys[b]`` (so a sample's flip does not depend on its batch or rank);
    with ``flip="swap"`` a flipped clip whose label is in ``swap`` takes the mirrored label."""
    if flip is False or flip is None:
        return x, y
    pick = [bool(torch.rand((), generator=torch.Generator().manual_seed(k)) < 0.5) for k in keys]
    if not any(pick):
        return x, y
    x = x.clone()
    idx = torch.tensor([i for i, p in enumerate(pick) if p], device=x.device)
    x[idx] = x[idx].flip(-1)
    if flip == "swap" and swap:
        y = y.clone()
        for i in idx.tolist():
            y[i] = swap.get(int(y[i]), int(y[i]))
    return x, y


class TemporalOrderDataset(Dataset):
    """Two classes with the same frames in opposite orders: a bright square moving left to right
    (class 0) or right to left (class 1) over a noisy background.

    Item 2k+1 (class 1) is item 2k (class 0) reversed in time, so both classes hold exactly the
    same frames and any average of per-frame scores (TSN) gives a pair the same prediction: on
    an even number of items per-frame averaging is exactly at chance (50 %). Items are ``{"video": (3, T, S, S) float,
    "label": int, "id": str, "index": int}``, generated from (seed, index)."""

    def __init__(self, n: int, frames: int = 8, size: int = 32, seed: int = 0, noise: float = 0.1):
        self.n, self.frames, self.size, self.seed, self.noise = n, frames, size, seed, noise

    def __len__(self) -> int:
        return self.n

    def clip(self, i: int) -> tuple[torch.Tensor, int]:
        # items 2k and 2k+1 are one clip played forwards and backwards: the two classes hold
        # exactly the same frames
        g = torch.Generator().manual_seed(mix_seed(self.seed, i // 2))
        S, T = self.size, self.frames
        side = max(2, S // 4)
        y = int(torch.randint(0, S - side + 1, (), generator=g))
        start = int(torch.randint(0, max(1, S // 4), (), generator=g))
        span = S - side - start
        xs = [start + round(span * t / max(1, T - 1)) for t in range(T)]
        colour = 0.5 + 0.5 * torch.rand(3, generator=g)
        v = self.noise * torch.randn(3, T, S, S, generator=g)
        for t, x in enumerate(xs):
            v[:, t, y:y + side, x:x + side] += colour.view(3, 1, 1)
        label = i % 2
        if label:
            v = v.flip(1)  # the same frames, in reverse order
        return v, label

    def __getitem__(self, i: int) -> dict:
        v, label = self.clip(i)
        return {"video": v, "label": label, "id": f"synthetic-{i}", "index": i}
