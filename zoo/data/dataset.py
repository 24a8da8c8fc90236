"""Samples -> model inputs: decode the frames a protocol needs, transform every view."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch.utils.data import Dataset

from .. import sampling
from .lists import DataError, Sample

__all__ = ["VideoDataset", "MODES", "views_mode"]

MODES = ("train", "1clip", "2clips", "clips")


def views_mode(views: str, protocol: str) -> tuple[int, str, int]:
    """A view protocol "CxK" (crops x clips) -> (crops, sampling mode, clips).

    Segment protocols: 1 clip = the segments' middle frames, 2 clips = first + middle (TSM's
    Something-Something test), other K = K random TSN draws (the "x10" rows). Dense: K windows
    with evenly spaced starts."""
    try:
        crops, clips = (int(x) for x in str(views).lower().split("x"))
    except ValueError:
        raise ValueError(f"views must be 'CROPSxCLIPS' such as 1x1, 3x2 or 3x10, got {views!r}") from None
    if crops not in (1, 3):
        raise ValueError(f"views {views}: only 1 (centre) or 3 crops are implemented (zoo.transforms), got {crops}")
    if clips < 1:
        raise ValueError(f"views {views}: need at least one clip")
    if protocol == "dense":
        return crops, ("1clip" if clips == 1 else "clips"), clips
    return crops, {1: "1clip", 2: "2clips"}.get(clips, "clips"), clips


class VideoDataset(Dataset):
    """Decodes each sample with ``zoo.io.open_video`` (inside the DataLoader workers), samples its
    frames with the protocol and transforms them.

    Items: ``{"video": (views, 3, T, H, W) float, "label": int, "id": str, "index": int}``, views
    clip-major (clip 0's crops first); in "train" mode one clip (3, T, H, W). ``index`` is the
    sample's position in ``samples``, kept under Subset so that shards stay addressable.

    ``frames``: T segments; ``protocol``: "uniform" | "dense" | "tdn"; ``mode``: "train" | "1clip"
    | "2clips" | "clips" (``clips`` draws/windows). Random test clips ("clips" on segment
    protocols) use a generator seeded with ``seed`` and the sample index, so a video gets the same
    clips in any process and any shard."""

    def __init__(self, samples: Sequence[Sample], *, frames: int, protocol: str = "uniform", mode: str = "1clip",
                 clips: int = 10, transform=None, template: Optional[str] = None, stride: int = 8,
                 seed: int = 0, backend: Optional[str] = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if protocol not in sampling.PROTOCOLS:
            raise ValueError(f"unknown sampling protocol {protocol!r}; known: {sorted(sampling.PROTOCOLS)}")
        self.samples = list(samples)
        self.frames, self.protocol, self.mode, self.clips = frames, protocol, mode, clips
        self.transform, self.template, self.stride = transform, template, stride
        self.seed, self.backend = seed, backend

    def __len__(self) -> int:
        return len(self.samples)

    def indices(self, index: int, n: int) -> torch.Tensor:
        """Frame indices (clips, T * length) of sample ``index`` in a video of ``n`` frames."""
        gen = None
        if self.mode == "clips" and self.protocol != "dense":
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return sampling.sample(self.protocol, n, self.frames, self.mode, clips=self.clips, generator=gen,
                               stride=self.stride)

    def load(self, index: int) -> torch.Tensor:
        """The decoded frames of every clip: uint8 (clips, T * length, 3, H, W)."""
        from .. import io as zio

        s = self.samples[index]
        try:
            with zio.open_video(s.path, template=self.template, backend=self.backend) as video:
                n = len(video)
                if n < 1:
                    raise DataError(f"{s.path}: no frames could be decoded")
                idx = self.indices(index, n)
                # decode each needed frame once, in time order, then lay the clips out
                uniq, inverse = torch.unique(idx, return_inverse=True)
                frames = video.get(uniq.tolist())
        except DataError:
            raise
        except (OSError, ValueError, RuntimeError) as e:
            raise DataError(f"video {s.id!r} ({s.path}): {e}") from e
        return frames[inverse]

    def __getitem__(self, index: int) -> dict:
        clips = self.load(index)
        tf = self.transform
        if tf is None:
            raise ValueError("VideoDataset needs transform= (zoo.create_transform(name))")
        out = [tf(c) for c in clips]
        if self.mode == "train":
            video = out[0]
        else:
            video = torch.cat([o if o.dim() == 5 else o.unsqueeze(0) for o in out])
        s = self.samples[index]
        return {"video": video, "label": s.label, "id": s.id, "index": index}
