"""Which frames of a video a clip is made of: the papers' sampling protocols.

Every function takes the number of frames ``n`` of the decoded video and the number of segments
``T`` the model sees, and returns a LongTensor of frame indices of shape ``(clips, T * length)``;
``video[idx[c]]`` is clip ``c``. ``length`` > 1 takes that many consecutive frames per segment
(TDN: 5). Random protocols take a ``torch.Generator`` for reproducibility. The protocols
themselves (kind, frames per segment, dense stride) are data: ``[sampling]`` in
registry/datasets.toml, read by :func:`sample`.

Segment-based ("uniform", TSN, Wang et al. ECCV 2016; used for Something-Something, Diving48,
EGTEA and EPIC by GC, AIA, SDA, STC, GST and TSM): the usable range ``n - length + 1`` is cut into
``T`` equal segments.

* :func:`segment_train` - one random frame per segment (TSN training).
* :func:`segment_middle` - the middle frame of each segment: 1 clip, the papers' "1 clip" /
  "x1" test (TSN/TSM/TDN test loaders, GC/AIA/SDA "1x1" rows). As those loaders, a video of at
  most ``T + length - 1`` frames gives every segment position 0.
* :func:`segment_two_clips` - the first and the middle frame of each segment: 2 clips, TSM's
  "2 clips" test for Something-Something (the "3x2" views of TSM, GC and AIA rows).
* :func:`segment_random_clips` - ``clips`` independent training-style draws (10 for the
  "x10 clips" Kinetics rows of GC-TSM/GC-TDN, which test segment-sampled models on 10 clips).

Dense ("dense", I3D / Non-local style; TSM and GC-TSM on Kinetics-400): ``T`` frames at a fixed
``stride`` (8 for 8 frames) inside a window of ``T * stride`` frames.

* :func:`dense_train` - one window at a random start.
* :func:`dense_clips` - ``clips`` windows (10) with evenly spaced starts over the video.

Short videos: when a segment or window does not fit, indices repeat (segments; runs of
``length`` frames that pass the end repeat the last frame) or wrap around (dense windows), so
every protocol returns ``T`` segments for any ``n >= 1``.
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["segment_train", "segment_middle", "segment_two_clips", "segment_random_clips", "dense_train",
           "dense_clips", "sample", "SAMPLERS", "MODES"]


def _check(n: int, T: int, length: int) -> int:
    if n < 1 or T < 1 or length < 1:
        raise ValueError(f"need n >= 1 frames, T >= 1 segments and length >= 1, got n={n}, T={T}, length={length}")
    return max(n - length + 1, 1)


def _expand(starts: torch.Tensor, n: int, length: int) -> torch.Tensor:
    """(clips, T) segment positions -> (clips, T * length) frame indices, clamped to the video."""
    if length == 1:
        return starts
    idx = starts.unsqueeze(-1) + torch.arange(length)
    return idx.clamp_(max=n - 1).flatten(-2)


def segment_train(n: int, T: int, length: int = 1, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """TSN training: one random position in each of T equal segments. (1, T*length)."""
    usable = _check(n, T, length)
    bounds = torch.arange(T + 1, dtype=torch.float64) * usable / T
    lo, hi = bounds[:-1].floor().long(), bounds[1:].floor().long()
    span = (hi - lo).clamp(min=1)
    off = (torch.rand(T, generator=generator, dtype=torch.float64) * span).long()
    return _expand((lo + off).clamp(max=usable - 1).unsqueeze(0), n, length)


def segment_middle(n: int, T: int, length: int = 1) -> torch.Tensor:
    """1 test clip: the middle of each segment; all at 0 when ``n <= T + length - 1`` (the
    authors' test loaders). (1, T*length)."""
    usable = _check(n, T, length)
    if n <= T + length - 1:
        return _expand(torch.zeros(1, T, dtype=torch.long), n, length)
    tick = usable / T
    pos = (tick / 2 + tick * torch.arange(T, dtype=torch.float64)).long()
    return _expand(pos.unsqueeze(0), n, length)


def segment_two_clips(n: int, T: int, length: int = 1) -> torch.Tensor:
    """2 test clips: the first frame of each segment, then the middle one. (2, T*length)."""
    usable = _check(n, T, length)
    tick = usable / T
    x = torch.arange(T, dtype=torch.float64)
    pos = torch.stack([(tick * x).long(), (tick / 2 + tick * x).long()])
    return _expand(pos, n, length)


def segment_random_clips(n: int, T: int, clips: int = 10, length: int = 1,
                         generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``clips`` independent TSN draws (random position per segment). (clips, T*length)."""
    return torch.cat([segment_train(n, T, length, generator) for _ in range(clips)])


def dense_train(n: int, T: int, stride: int = 8, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Dense training: T frames every ``stride`` from a random start. (1, T)."""
    _check(n, T, 1)
    room = max(n - T * stride, 0)
    start = int(torch.randint(room + 1, (1,), generator=generator))
    return ((start + stride * torch.arange(T)) % n).unsqueeze(0)


def dense_clips(n: int, T: int, stride: int = 8, clips: int = 10) -> torch.Tensor:
    """Dense test: ``clips`` windows with evenly spaced starts. (clips, T)."""
    _check(n, T, 1)
    room = max(n - T * stride, 0)
    starts = torch.linspace(0, room, clips, dtype=torch.float64).long() if clips > 1 else torch.tensor([room // 2])
    return (starts.unsqueeze(1) + stride * torch.arange(T)) % n


# protocol kind (registry/datasets.toml [sampling.<key>] kind) -> per-mode samplers
SAMPLERS = {
    "segment": {"train": segment_train, "1clip": segment_middle, "2clips": segment_two_clips,
                "clips": segment_random_clips},
    "dense": {"train": dense_train, "1clip": dense_clips, "clips": dense_clips},
}
MODES = ("train", "1clip", "2clips", "clips")


def sample(protocol: str, n: int, T: int, mode: str = "1clip", clips: int = 10,
           generator: Optional[torch.Generator] = None, stride: Optional[int] = None) -> torch.Tensor:
    """Frame indices (clips, T * length) for a registry sampling protocol and a mode.

    ``mode``: "train", "1clip", "2clips" or "clips" (``clips`` clips: random segment draws for
    segment protocols, evenly spaced windows for dense). The protocol's entry in the registry
    gives its kind, its frames per segment (``length``: TDN's 5) and the dense ``stride``."""
    from .registry import registry

    table = registry().protocols
    if protocol not in table:
        raise ValueError(f"unknown sampling protocol {protocol!r}; known: {sorted(table)}")
    p = table[protocol]
    modes = SAMPLERS[p.kind]
    if mode not in modes:
        raise ValueError(f"protocol {protocol!r} has modes {sorted(modes)}, got {mode!r}")
    fn = modes[mode]
    if p.kind == "dense":
        stride = p.stride if stride is None else stride
        if mode == "train":
            return fn(n, T, stride, generator=generator)
        return fn(n, T, stride, clips=1 if mode == "1clip" else clips)
    if mode == "train":
        return fn(n, T, p.length, generator=generator)
    if mode == "clips":
        return fn(n, T, clips, p.length, generator=generator)
    return fn(n, T, p.length)
