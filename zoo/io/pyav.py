"""PyAV backend (``pip install av``: wheels bundle FFmpeg).

Opening a file demuxes its packets once without decoding them (cheap: no pixel work) to get
the exact frame count - also for containers whose header has none (WebM, some AVI) - and the
presentation timestamp and keyframe flag of every frame, so that index i means the i-th
displayed frame even with B-frames or a variable frame rate. ``get`` then seeks to the
keyframe before each wanted frame and decodes forward, continuing without a seek when the next
wanted frame lies before the next keyframe (dense indices are one sequential pass).
"""
from __future__ import annotations

import bisect

import torch

from .base import Video, VideoError

__all__ = ["AVVideo"]


def _rgb(frame) -> torch.Tensor:
    x = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
    k = round((frame.rotation or 0) / 90) % 4   # display matrix angle, counter-clockwise
    return torch.rot90(x, k, dims=(1, 2)).contiguous() if k else x


class AVVideo(Video):
    backend = "av"

    def __init__(self, path):
        import av

        self.path = str(path)
        self._av = av
        self._c = None
        try:
            self._c = av.open(self.path, metadata_errors="ignore")
        except (av.FFmpegError, OSError) as e:
            raise VideoError(f"{self.path}: cannot open as a video ({e}); the file is missing, truncated or "
                             "not a video (check it with ffprobe)") from None
        if not self._c.streams.video:
            self.close()
            raise VideoError(f"{self.path}: the file has no video stream")
        self._s = self._c.streams.video[0]
        rate = self._s.average_rate or self._s.guessed_rate
        self.fps = float(rate) if rate else None
        self._scan()
        self._it = None     # the running decoder and the timestamp of its last frame
        self._pos = None

    def _scan(self) -> None:
        pts, keys, broken = [], [], None
        try:
            for p in self._c.demux(self._s):
                if p.size == 0:
                    continue
                t = p.pts if p.pts is not None else p.dts
                pts.append(t)
                if p.is_keyframe:
                    keys.append(t)
        except self._av.FFmpegError as e:   # damaged tail: keep the frames before it
            broken = e
        if not pts:
            why = f" ({broken})" if broken else ""
            raise VideoError(f"{self.path}: no video frames could be read{why}; the file is empty or corrupt")
        if any(t is None for t in pts):
            self._ts = None                  # no timestamps: count frames from the start
            self._n = len(pts)
        else:
            self._ts = sorted(pts)
            self._n = len(self._ts)
            self._keys = sorted(set(keys)) or [self._ts[0]]
        self._c.seek(0)   # rewind for decoding, whatever the scan did

    def __len__(self) -> int:
        return self._n

    def _fail(self, i: int, why: str):
        raise VideoError(f"{self.path}: cannot decode frame {i} of {self._n} ({why}); the file is truncated or "
                         "corrupt - re-encode it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)")

    def _restart(self, at):
        # seek to the keyframe at or before timestamp ``at`` (None: the start) and decode forward
        if at is None:
            self._c.seek(0)
        else:
            self._c.seek(at, stream=self._s, backward=True, any_frame=False)
        self._it = self._c.decode(self._s)
        self._pos = None

    def _next(self, i):
        try:
            f = next(self._it)
        except StopIteration:
            self._it = None
            self._fail(i, "the stream ended early")
        except self._av.FFmpegError as e:
            self._it = None
            self._fail(i, str(e))
        return f

    def _decode(self, wanted):
        if self._ts is None:
            return self._decode_counting(wanted)
        out = {}
        for i in wanted:
            t = self._ts[i]
            key = self._keys[max(bisect.bisect_right(self._keys, t) - 1, 0)]
            if self._it is None or self._pos is None or self._pos >= t or key > self._pos:
                self._seek_before(t, key, i)
            while True:
                f = self._next(i)
                ft = f.pts if f.pts is not None else f.dts
                self._pos = ft
                if ft == t:
                    out[i] = _rgb(f)
                    break
                if ft is None or ft > t:
                    self._it = None
                    self._fail(i, f"the decoder skipped it (timestamp {t})")
        return out

    def _seek_before(self, t, key, i):
        # Containers seek by their own index (mp4: decoding timestamps), so a seek may land past
        # the keyframe we asked for; step back a keyframe at a time until the first frame is <= t.
        k = bisect.bisect_left(self._keys, key)
        while True:
            at = self._keys[k] if k >= 0 else None
            self._restart(at)
            f = self._next(i)
            ft = f.pts if f.pts is not None else f.dts
            if ft is not None and ft <= t or at is None:
                self._it = _chain(f, self._it)
                self._pos = None
                return
            k -= 1

    def _decode_counting(self, wanted):
        out, pos = {}, -1
        self._restart(None)
        for i in wanted:
            while pos < i:
                f = self._next(i)
                pos += 1
            out[i] = _rgb(f)
        self._it = None
        return out

    def close(self) -> None:
        if self._c is not None:
            self._c.close()
            self._c = None
            self._it = None


def _chain(first, rest):
    yield first
    yield from rest
