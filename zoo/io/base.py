"""The `Video` interface shared by every backend, its error type and the index plan."""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

__all__ = ["Video", "VideoError", "as_indices"]


class VideoError(ValueError):
    """A video that cannot be opened or decoded; the message names the file and the fix."""


def as_indices(indices, n: int, path) -> list[int]:
    """Validate frame indices (any int sequence or tensor) against a video of ``n`` frames."""
    if isinstance(indices, torch.Tensor):
        indices = indices.flatten().tolist()
    elif isinstance(indices, int):
        indices = [indices]
    out = [int(i) for i in indices]
    bad = [i for i in out if not -n <= i < n]
    if bad:
        raise VideoError(f"{path}: frame index {bad[0]} is outside the video's {n} frames")
    return [i % n for i in out]


class Video:
    """An opened video file or frame directory.

    ``len(video)`` is its frame count, ``video.fps`` its average frame rate (None for frame
    directories), ``video.get(indices)`` decodes just those frames, in the given order (repeats
    allowed), as uint8 (N, 3, H, W) with any rotation metadata applied. Close it or use it as a
    context manager."""

    path: str
    fps = None
    backend = ""

    def __len__(self) -> int:
        raise NotImplementedError

    def _decode(self, wanted: Sequence[int]) -> dict[int, torch.Tensor]:
        """Sorted unique indices -> {index: (3, H, W) uint8}."""
        raise NotImplementedError

    def get(self, indices: Iterable[int]) -> torch.Tensor:
        idx = as_indices(indices, len(self), self.path)
        if not idx:
            raise VideoError(f"{self.path}: no frame indices asked for")
        frames = self._decode(sorted(set(idx)))
        return torch.stack([frames[i] for i in idx])

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, frames={len(self)}, fps={self.fps}, backend={self.backend!r})"
