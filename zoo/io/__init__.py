"""Reading frames by index from video files and frame directories.

>>> with zoo.io.open_video("clip.mp4") as v:
...     frames = v.get(zoo.sampling.sample("uniform", len(v), 8))    # uint8 (N, 3, H, W)

Video files go through torchcodec when it imports and finds FFmpeg's shared libraries, else
PyAV (``pip install av``, which bundles FFmpeg); ``backend=`` or ``ZOO_VIDEO_BACKEND=av|torchcodec``
forces one. Both count frames exactly, index frames in presentation order (variable frame rate
included), apply rotation metadata, and decode only the frames asked for (seek to the keyframe
before, decode forward). A directory is read as numbered images (``00001.jpg`` or
``img_00001.jpg`` detected; ``template=`` for others).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Optional

from .base import Video, VideoError
from .frames import FrameDir, detect_template

__all__ = ["open_video", "read_frames", "Video", "VideoError", "available_backends", "detect_template",
           "BACKENDS", "INSTALL"]

BACKENDS = ("torchcodec", "av")   # auto-selection order
INSTALL = {
    "av": "pip install av  (or: pip install 'video-action-zoo[video]')",
    "torchcodec": "pip install torchcodec  (it also needs FFmpeg 4-7 shared libraries: "
                  "apt-get install ffmpeg, or conda install ffmpeg)",
}


@lru_cache(maxsize=None)
def _probe(name: str) -> Optional[str]:
    """None when the backend works here, else why not."""
    try:
        if name == "av":
            import av  # noqa: F401
        elif name == "torchcodec":
            from torchcodec.decoders import VideoDecoder  # noqa: F401  (loads the FFmpeg libraries)
        else:
            return "unknown backend"
    except Exception as e:  # noqa: BLE001 - a broken install raises anything (OSError, RuntimeError)
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def available_backends() -> list[str]:
    return [b for b in BACKENDS if _probe(b) is None]


def _backend(backend: Optional[str]) -> str:
    forced = backend or os.environ.get("ZOO_VIDEO_BACKEND") or None
    if forced:
        if forced not in BACKENDS:
            raise VideoError(f"unknown video backend {forced!r} (ZOO_VIDEO_BACKEND or backend=); "
                             f"choose one of {', '.join(BACKENDS)}")
        why = _probe(forced)
        if why:
            raise VideoError(f"the video backend {forced!r} is not usable here ({why}); install it: {INSTALL[forced]}")
        return forced
    for b in BACKENDS:
        if _probe(b) is None:
            return b
    raise VideoError(f"no video decoder is installed; install one: {INSTALL['av']}")


def open_video(path, *, template: Optional[str] = None, backend: Optional[str] = None) -> Video:
    """Open a video file or a frame directory; see the module docstring."""
    p = Path(path)
    if p.is_dir():
        return FrameDir(p, template)
    if not p.exists():
        raise VideoError(f"{path}: no such file or directory")
    name = _backend(backend)
    if name == "av":
        from .pyav import AVVideo

        return AVVideo(p)
    from .codec import CodecVideo

    return CodecVideo(p)


def read_frames(path, indices, *, template: Optional[str] = None, backend: Optional[str] = None):
    """``open_video(path).get(indices)``, closing the file afterwards."""
    with open_video(path, template=template, backend=backend) as v:
        return v.get(indices)
