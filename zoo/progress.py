"""Progress of long commands: a tqdm bar on a terminal, plain lines in a log.

``progress(iterable, total=None, desc=..., unit=...)`` wraps an iterable. When stderr is a
terminal it is tqdm's bar; otherwise (piped into a file, CI) it prints a line now and then
(``desc: i/n unit``, at most ~20 lines plus the last), so a log does not fill with one
20 kB line of carriage returns. ``describe(item) -> str`` adds what is being worked on.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Optional, TextIO

__all__ = ["progress"]


def progress(iterable: Iterable, total: Optional[int] = None, desc: str = "", unit: str = "it", *,
             describe: Optional[Callable[[object], str]] = None, file: Optional[TextIO] = None,
             disable: bool = False, lines: int = 20):
    """Yield the items of ``iterable`` while showing progress on ``file`` (stderr)."""
    out = file if file is not None else sys.stderr
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if disable:
        yield from iterable
        return
    if getattr(out, "isatty", lambda: False)():
        from tqdm import tqdm

        bar = tqdm(iterable, total=total, desc=desc, unit=unit, file=out, dynamic_ncols=True)
        for item in bar:
            if describe is not None:
                bar.set_postfix_str(describe(item)[:60], refresh=False)
            yield item
        return
    yield from _lines(iterable, total, desc, unit, describe, out, lines)


def _lines(iterable, total, desc, unit, describe, out, lines):
    every = max(1, (total or 0) // lines) if total else 1
    t0 = time.monotonic()
    n = 0
    for n, item in enumerate(iterable, 1):
        yield item
        if n % every == 0 or n == total:
            what = f" {describe(item)}" if describe is not None else ""
            of = f"/{total}" if total else ""
            print(f"{desc + ': ' if desc else ''}{n}{of} {unit} ({time.monotonic() - t0:.0f} s){what}",
                  file=out, flush=True)
