"""Preprocessing that travels with the weights, as torchvision's weights carry theirs.

``zoo.create_transform(name)`` gives the test-time pipeline of a registered name, built from its entry
(input size, mean/std of its dataset, sampling protocol) with torchvision.transforms.v2:

* 1 crop (the "1x..." views): resize the short side to ``resize`` (256 for 224 input: the
  papers' 256/224 ratio), centre crop ``size``.
* 3 crops (the "3x..." views): resize the short side to ``resize`` and take three ``crop``
  squares along the long side (left/centre/right or top/centre/bottom). ``crop`` defaults to
  ``resize``: the TSM authors' "full resolution" 3-crop test (256x256 crops), which GC and AIA
  follow for their 3-crop rows; pass ``crop=size`` for 224 crops.
* training (``train=True``): random resized crop to ``size`` (area 25-100 %, aspect 3/4-4/3, an
  approximation of TSN's multi-scale corner crops) and a horizontal flip except for
  Something-Something, whose labels name directions ("left to right").

Then float in [0, 1], normalise, and lay out as the models want: one view is (3, T, H, W),
several views are (views, 3, T, H, W). Input: a decoded clip as a uint8 or float tensor
(T, 3, H, W) or (T, H, W, 3) (torchvision.io / decord layouts), or a list of PIL images.
``VideoTransform.views(video)`` combines sampling (zoo.sampling, the entry's protocol) and the
transform into the full test input of one video: (crops * clips, 3, T, H, W).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn as nn

from . import sampling
from .cfg import DEFAULT_MEAN, DEFAULT_STD

__all__ = ["create_transform", "VideoTransform", "DEFAULT_MEAN", "DEFAULT_STD"]

NO_FLIP = {"ssv1", "ssv2"}


def _as_video(frames) -> torch.Tensor:
    """Frames -> uint8/float tensor (T, 3, H, W)."""
    if isinstance(frames, (list, tuple)):
        from torchvision.transforms.v2 import functional as F

        frames = torch.stack([F.pil_to_tensor(f) if not isinstance(f, torch.Tensor) else f for f in frames])
    if not isinstance(frames, torch.Tensor):
        frames = torch.as_tensor(frames)
    if frames.dim() != 4:
        raise ValueError(f"expected frames (T, 3, H, W) or (T, H, W, 3), got shape {tuple(frames.shape)}")
    if frames.shape[1] != 3 and frames.shape[-1] == 3:
        frames = frames.permute(0, 3, 1, 2)
    if frames.shape[1] != 3:
        raise ValueError(f"expected 3 colour channels in (T, 3, H, W) or (T, H, W, 3), got {tuple(frames.shape)}")
    return frames


class ThreeCrop(nn.Module):
    """Three ``size`` squares along the long side: (T, C, H, W) -> (3, T, C, size, size)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        s = self.size
        if min(H, W) < s:
            raise ValueError(f"frames {H}x{W} are smaller than the {s} crop")
        if W >= H:
            top = (H - s) // 2
            return torch.stack([x[..., top:top + s, left:left + s] for left in (0, (W - s) // 2, W - s)])
        left = (W - s) // 2
        return torch.stack([x[..., top:top + s, left:left + s] for top in (0, (H - s) // 2, H - s)])


class VideoTransform(nn.Module):
    """Decoded frames -> normalised clip(s) (3, T, H, W) or (views, 3, T, H, W)."""

    def __init__(self, size: int = 224, resize: Optional[int] = None, crops: int = 1, crop: Optional[int] = None,
                 mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD, train: bool = False,
                 flip: bool = True, frames: int = 8, protocol: str = "uniform", interpolation: str = "bilinear"):
        super().__init__()
        from torchvision.transforms import v2

        if crops not in (1, 3):
            raise ValueError(f"crops must be 1 or 3, got {crops}")
        self.size = size
        self.resize = resize or round(size * 256 / 224)
        self.crops = 1 if train else crops
        self.crop = crop or (self.resize if crops == 3 else size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.train_mode = train
        self.frames = frames
        self.protocol = protocol
        self.interpolation = interpolation
        mode = v2.InterpolationMode(interpolation)
        if train:
            ops = [v2.RandomResizedCrop(size, scale=(0.25, 1.0), interpolation=mode, antialias=True)]
            if flip:
                ops.append(v2.RandomHorizontalFlip())
        elif crops == 1:
            ops = [v2.Resize(self.resize, interpolation=mode, antialias=True), v2.CenterCrop(self.crop)]
        else:
            ops = [v2.Resize(self.resize, interpolation=mode, antialias=True)]
        self.spatial = v2.Compose(ops)
        self.three = ThreeCrop(self.crop) if self.crops == 3 else None
        self.normalize = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)])

    def forward(self, frames) -> torch.Tensor:
        from torchvision import tv_tensors

        x = _as_video(frames)
        x = self.spatial(tv_tensors.Video(x))
        x = torch.as_tensor(x)
        if self.three is not None:
            x = self.three(x)                                   # (3, T, C, h, w)
        x = self.normalize(x.as_subclass(torch.Tensor))
        return x.transpose(-4, -3).contiguous()                # (..., C, T, h, w)

    def views(self, video, mode: Optional[str] = None, clips: int = 10,
              generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """All views of one decoded video: sample the entry's protocol, transform every clip.

        ``mode`` defaults to "train" for a training transform, else "1clip"; see
        :func:`zoo.sampling.sample`. Returns (clips * crops, 3, T, H, W), clip-major."""
        video = _as_video(video)
        mode = mode or ("train" if self.train_mode else "1clip")
        idx = sampling.sample(self.protocol, video.shape[0], self.frames, mode, clips=clips, generator=generator)
        out = [self(video[i]) for i in idx]
        return torch.cat([o if o.dim() == 5 else o.unsqueeze(0) for o in out])

    def extra_repr(self) -> str:
        return (f"size={self.size}, resize={self.resize}, crops={self.crops}, crop={self.crop}, train={self.train_mode}, "
                f"mean={self.mean}, std={self.std}, frames={self.frames}, protocol={self.protocol!r}")


def create_transform(name: str, train: bool = False, crops: Optional[int] = None, **overrides) -> VideoTransform:
    """The preprocessing of a registered name (variant, ensemble member or architecture).

    ``crops`` defaults to the crops of the entry's main test protocol (its ``views``, "3x2" ->
    3). The values are the name's ``pretrained_cfg`` (zoo.cfg): size, resize = floor(size /
    crop_pct), interpolation, mean, std, frames, sampling. ``overrides``: size, resize, crop, mean,
    std, flip, frames, protocol, interpolation."""
    from .registry import registry

    from .cfg import pretrained_cfg

    reg = registry()
    obj = reg.resolve(name)
    if name in reg.ensembles:   # members share a dataset; the first one's frames
        name = obj.members[0]
    c = pretrained_cfg(name)    # the values model.pretrained_cfg and timm's resolve_data_config see
    size = c["input_size"][-1]
    cfg = {"size": size, "resize": math.floor(size / c["crop_pct"]), "interpolation": c["interpolation"],
           "mean": c["mean"], "std": c["std"], "frames": c["num_frames"], "protocol": c["sampling"],
           "flip": c["dataset"] not in NO_FLIP}
    cfg.update(overrides)
    return VideoTransform(train=train, crops=c["test_views"][0] if crops is None else crops, **cfg)
