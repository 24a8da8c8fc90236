"""Stand-in for ``zoo.io.open_video`` (same API) until the decoding package is merged: frame
directories via PIL, video files via PyAV (all frames decoded). Removed once zoo.io is here."""
from __future__ import annotations

import os

import numpy as np
import torch

from .lists import IMAGE_EXTS, _template_regex


class _Video:
    def __init__(self, path, template=None):
        self.path, self.fps = str(path), None
        if os.path.isdir(path):
            rx = _template_regex(template)
            names = sorted(n for n in os.listdir(path) if (rx.match(n) if rx else n.lower().endswith(IMAGE_EXTS)))
            self._files = [os.path.join(path, n) for n in names]
            self._frames = None
        else:
            import av

            with av.open(self.path) as c:
                self._frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
            self._files = None

    def __len__(self):
        return len(self._files) if self._files is not None else len(self._frames)

    def get(self, indices):
        if self._files is not None:
            from PIL import Image

            arr = [np.asarray(Image.open(self._files[i]).convert("RGB")) for i in indices]
        else:
            arr = [self._frames[i] for i in indices]
        return torch.from_numpy(np.stack(arr)).permute(0, 3, 1, 2).contiguous()

    def close(self):
        self._frames = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_video(path, *, template=None, backend=None):
    if not os.path.exists(path):
        raise ValueError(f"{path} does not exist")
    return _Video(path, template)
