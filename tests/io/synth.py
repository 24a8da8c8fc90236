"""Synthetic videos whose frames say their own index: frame i is a flat colour with
R = 16 * (i % 16) + 8 and G = 16 * (i // 16) + 8 (so 256 frames are distinguishable after lossy
coding), B = 128, plus an optional white top-left marker to see rotations."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch


def frame_rgb(i: int, h: int, w: int, marker: bool = False) -> np.ndarray:
    x = np.empty((h, w, 3), np.uint8)
    x[..., 0] = 16 * (i % 16) + 8
    x[..., 1] = 16 * (i // 16) + 8
    x[..., 2] = 128
    if marker:
        x[: h // 4, : w // 4] = 255
    return x


def index_of(frames: torch.Tensor) -> list[int]:
    """Recover the indices of decoded frames (N, 3, H, W) from their median colour."""
    c = frames.flatten(2).float().median(dim=2).values       # (N, 3)
    r = ((c[:, 0] - 8) / 16).round().long()
    g = ((c[:, 1] - 8) / 16).round().long()
    return (g * 16 + r).tolist()


def make_video(path, n: int, codec: str = "libx264", size=(64, 48), fps: int = 25, gop: int = 12,
               rotation: int = 0, pts=None, marker: bool = False) -> Path:
    """Encode n index-coloured frames; ``pts`` (in 1/1000 s) gives a variable frame rate."""
    import av

    path = Path(path)
    w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = w, h
        s.pix_fmt = "yuv420p"
        s.codec_context.gop_size = gop
        if codec == "libx264":
            s.options = {"crf": "18"}
        if pts is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            s.set_display_rotation(rotation)
        for i in range(n):
            f = av.VideoFrame.from_ndarray(frame_rgb(i, h, w, marker), format="rgb24")
            if pts is not None:
                f.pts, f.time_base = pts[i], Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def make_frame_dir(path, n: int, template: str = "img_{:05d}.jpg", size=(64, 48), start: int = 1) -> Path:
    from PIL import Image

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in range(n):
        Image.fromarray(frame_rgb(i, h, w)).save(path / template.format(start + i), quality=95)
    return path
