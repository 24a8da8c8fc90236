"""What a run shows and writes as it goes: progress (a tqdm bar on a terminal, plain lines in a
log), metrics.csv/json, and TensorBoard scalars when tensorboard is installed."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from pathlib import Path


class _Progress:
    """A tqdm bar on a terminal, plain lines otherwise (rank 0 only)."""

    def __init__(self, total: int, start: int, epoch: int, epochs: int, enabled: bool, every: int):
        self.total, self.n, self.epoch, self.epochs, self.every = total, start, epoch, epochs, every
        self.enabled = enabled
        self.bar = None
        self.t0 = time.perf_counter()
        self.start = start
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=f"epoch {epoch + 1}/{epochs}", unit="step",
                            dynamic_ncols=True, leave=True)

    def update(self, loss: float, lr: float, clips_s: float) -> None:
        self.n += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}", clips_s=f"{clips_s:.1f}", refresh=False)
            self.bar.update(1)
        elif self.n % self.every == 0 or self.n == self.total:
            el = time.perf_counter() - self.t0
            eta = el / max(1, self.n - self.start) * (self.total - self.n)
            print(f"epoch {self.epoch + 1}/{self.epochs} step {self.n}/{self.total} loss {loss:.4f} lr {lr:.4g} "
                  f"clips/s {clips_s:.1f} eta {_hms(eta)}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _write_logs(out: Path, history: list[dict]) -> None:
    keys = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    for fname, text in (("metrics.csv", buf.getvalue()), ("metrics.json", json.dumps(history, indent=1) + "\n")):
        tmp = out / f".{fname}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / fname)


class _Board:
    """TensorBoard scalars when the tensorboard package is installed (optional)."""

    def __init__(self, out: Path, enabled: bool):
        self.w = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                return
            self.w = SummaryWriter(str(out / "tb"))

    def add(self, row: dict) -> None:
        if self.w is None:
            return
        for k, v in row.items():
            if isinstance(v, (int, float)) and k != "epoch":
                self.w.add_scalar(k, v, row["epoch"])
        self.w.flush()
