"""Frame directories: one image per frame, named by a template (Something-Something V1 ships
``<video_id>/00001.jpg``; the TSN/TSM/TDN list files use ``img_{:05d}.jpg``)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Sequence

import torch

from .base import Video, VideoError

__all__ = ["FrameDir", "detect_template"]

_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_NUMBERED = re.compile(r"^(.*?)(\d+)(\.[A-Za-z]+)$")


def _template_regex(template: str) -> re.Pattern:
    m = re.fullmatch(r"(.*?)\{(?::0?(\d*)d)?\}(.*)", template)
    if not m:
        raise VideoError(f"frame template {template!r} must hold one integer field, e.g. 'img_{{:05d}}.jpg'")
    return re.compile(re.escape(m.group(1)) + r"(\d+)" + re.escape(m.group(3)))


def detect_template(names: Sequence[str]) -> Optional[str]:
    """The commonest '<prefix><number><ext>' pattern among image file names, as a template."""
    counts: dict[tuple, int] = {}
    for n in names:
        m = _NUMBERED.match(n)
        if m and m.group(3).lower() in _IMAGE_EXT:
            key = (m.group(1), len(m.group(2)), m.group(3))
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return None
    prefix, width, ext = max(counts, key=counts.get)
    return f"{prefix}{{:0{width}d}}{ext}"


def _decode_image(path: str) -> torch.Tensor:
    import warnings

    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        with warnings.catch_warnings():   # torchvision 0.29 points to torchcodec's readers; these need no FFmpeg
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_image(read_file(path), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError):   # formats or modes libjpeg/libpng refuse: let Pillow try
        pass
    try:
        import numpy as np
        from PIL import Image

        with Image.open(path) as im:
            return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad frame
        raise VideoError(f"{path}: cannot decode this frame image ({e}); re-extract the frames") from None


class FrameDir(Video):
    """A directory of numbered images; frame i is the i-th file in numeric order."""

    backend = "frames"

    def __init__(self, path, template: Optional[str] = None):
        self.path = str(path)
        try:
            names = os.listdir(path)
        except OSError as e:
            raise VideoError(f"{path}: cannot list the frame directory ({e.strerror})") from None
        if template is None:
            template = detect_template(names)
            if template is None:
                raise VideoError(f"{path}: no numbered image files (e.g. 00001.jpg, img_00001.jpg) in this "
                                 "directory; pass template='...' (--template) naming its frames")
        rx = _template_regex(template)
        numbered = sorted((int(m.group(1)), n) for n in names if (m := rx.fullmatch(n)))
        if not numbered:
            raise VideoError(f"{path}: no file matches the frame template {template!r}")
        self.template = template
        self.files = [str(Path(path) / n) for _, n in numbered]

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, wanted):
        frames = {i: _decode_image(self.files[i]) for i in wanted}
        shapes = {tuple(f.shape) for f in frames.values()}
        if len(shapes) > 1:
            raise VideoError(f"{self.path}: frames have different sizes {sorted(shapes)}; re-extract the frames")
        return frames
