"""torchcodec backend (``pip install torchcodec``; needs FFmpeg's shared libraries 4-7 from the
system, e.g. ``apt-get install libavcodec59 libavformat59 libavutil57 libswscale6
libswresample4 libavdevice59 libavfilter8`` on Debian 12, or ``conda install ffmpeg``).

``seek_mode="exact"`` scans the packets once on open (no decoding) for exact frame counts and
timestamps, like the PyAV backend; ``get_frames_at`` seeks to keyframes and decodes forward.
torchcodec applies rotation metadata itself."""
from __future__ import annotations

from .base import Video, VideoError

__all__ = ["CodecVideo"]


class CodecVideo(Video):
    backend = "torchcodec"

    def __init__(self, path):
        from torchcodec.decoders import VideoDecoder

        self.path = str(path)
        try:
            self._d = VideoDecoder(self.path, seek_mode="exact", dimension_order="NCHW")
            n = len(self._d)
        except (RuntimeError, ValueError, OSError) as e:
            raise VideoError(f"{self.path}: cannot open as a video ({str(e).splitlines()[0]}); the file is missing, "
                             "truncated or not a video (check it with ffprobe)") from None
        if n < 1:
            raise VideoError(f"{self.path}: no video frames could be read; the file is empty or corrupt")
        self._n = n
        fps = self._d.metadata.average_fps
        self.fps = float(fps) if fps else None

    def __len__(self) -> int:
        return self._n

    def _decode(self, wanted):
        try:
            frames = self._d.get_frames_at(list(wanted)).data
        except (RuntimeError, IndexError) as e:
            raise VideoError(f"{self.path}: cannot decode frames {list(wanted)[:4]}... of {self._n} "
                             f"({str(e).splitlines()[0]}); the file is truncated or corrupt - re-encode it "
                             "(e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)") from None
        return dict(zip(wanted, frames))

    def close(self) -> None:
        self._d = None
