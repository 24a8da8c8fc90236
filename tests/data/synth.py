"""Synthetic datasets for the data/eval tests: frame directories, list files, tiny videos and
their annotation files, written into a tmp folder.

Video ``v`` is grey with brightness ``level_v`` (one of LEVELS) ramping up or down over time
(``direction_v``); its class is ``2 * level + direction``, so a model that reads brightness and
the direction of change (``BrightnessModel``) predicts every class correctly, and a wrong frame
order or a wrong label/id pairing shows."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

LEVELS = (0.2, 0.4, 0.6, 0.8)
NUM_CLASSES = 2 * len(LEVELS)
RAMP = 0.08          # total change of brightness over the video


def frame_values(level: int, direction: int, n: int) -> np.ndarray:
    """Brightness of each frame in [0, 1]: direction 1 ramps up, 0 ramps down."""
    ramp = np.linspace(-RAMP / 2, RAMP / 2, n)
    return LEVELS[level] + (ramp if direction else -ramp)


def classes(n_videos: int) -> list[tuple[int, int]]:
    return [(v % len(LEVELS), (v // len(LEVELS) + v) % 2) for v in range(n_videos)]


def write_frame_dirs(root: Path, n_videos: int = 5, frames=(8, 9, 10, 11, 12), size=(40, 48),
                     template: str = "img_{:05d}.jpg") -> list[tuple[str, int, int]]:
    """Frame directories root/vid_<v>/img_00001.jpg ...; returns (rel path, frames, label)."""
    from PIL import Image

    rows = []
    for v, (lev, d) in enumerate(classes(n_videos)):
        n = frames[v % len(frames)]
        folder = root / f"vid_{v}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, val in enumerate(frame_values(lev, d, n)):
            img = np.full((*size, 3), round(val * 255), dtype=np.uint8)
            Image.fromarray(img).save(folder / template.format(i + 1), quality=95)
        rows.append((f"vid_{v}", n, 2 * lev + d))
    return rows


def write_list(path: Path, rows, labels=None) -> Path:
    labels = [r[2] for r in rows] if labels is None else labels
    path.write_text("".join(f"{p} {n} {lab}\n" for (p, n, _), lab in zip(rows, labels)))
    return path


def write_video(path: Path, level: int, direction: int, n: int = 10, size=(32, 32)) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = size[1], size[0], "yuv420p"
        s.options = {"qscale": "1"}
        for val in frame_values(level, direction, n):
            img = np.full((*size, 3), round(val * 255), dtype=np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


class BrightnessModel(nn.Module):
    """Known-answer classifier on (B, 3, T, H, W) clips in [0, 1]: level from the mean
    brightness, direction from the last minus the first frame."""

    num_frames = 4

    def forward(self, x):
        m = x.mean(dim=(1, 3, 4))                                         # (B, T)
        centres = torch.tensor(LEVELS, dtype=x.dtype)
        level = -(m.mean(1, keepdim=True) - centres).abs() * 100           # (B, levels)
        slope = (m[:, -1] - m[:, 0]).unsqueeze(1) * 1000
        direction = torch.cat([-slope, slope], 1)                         # (B, 2)
        return (level.unsqueeze(2) + direction.unsqueeze(1)).flatten(1)   # class = 2 * level + direction
