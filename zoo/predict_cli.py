"""`zoo predict VIDEO|DIR|FRAMES_DIR... --model NAME`: top-k class names per video.

Results stream as each video finishes: to stdout, or with ``--out FILE`` to ``FILE.partial``
(appended and flushed per video, so an interrupted run keeps what it finished), renamed to FILE
at the end. ``--format json`` writes JSON Lines (one object per video). A file that fails to
decode is reported on one stderr line and the others go on; the exit code is the number of
failed videos (at most 100), 0 when all succeeded.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import warnings
from pathlib import Path

__all__ = ["add_commands"]


class _Writer:
    def __init__(self, fmt: str, stream):
        self.fmt, self.stream = fmt, stream
        if fmt == "csv":
            self._row(["video", "rank", "index", "label", "prob"])

    def _row(self, row) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(row)
        self._put(buf.getvalue())

    def _put(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def write(self, r: dict) -> None:
        if self.fmt == "json":
            self._put(json.dumps({k: v for k, v in r.items() if k != "error"}) + "\n")
        elif self.fmt == "csv":
            for t in r["topk"]:
                self._row([r["video"], t["rank"], t["index"], t["label"] if t["label"] is not None else "",
                           f"{t['prob']:.4f}"])
        else:
            lines = [f"{r['video']}  ({r['model']}, views {r['views']})"]
            lines += [f"  {t['rank']}. {t['prob']:6.1%}  [{t['index']:>3}]  "
                      f"{t['label'] if t['label'] is not None else '(class ' + str(t['index']) + ')'}"
                      for t in r["topk"]]
            self._put("\n".join(lines) + "\n")


def _cmd_predict(a) -> int:
    import torch

    from .inference import Recognizer, expand_inputs

    if a.threads:
        torch.set_num_threads(a.threads)
    out = Path(a.out) if a.out else None
    partial = out.with_name(out.name + ".partial") if out else None
    if out and not a.force:
        for p in (out, partial):
            if p.exists():
                raise ValueError(f"{p} exists; choose another --out or pass --force to replace it")
    paths = expand_inputs(a.inputs, a.template)
    if any(Path(p).is_file() for p in paths):
        from .io import backend_name

        backend_name()     # no decoder: one error naming the pip command, before any work
    if a.random_weights:
        print(f"zoo predict: {a.model} with RANDOM weights (--random-weights): the classes printed are "
              "meaningless; this only tries the pipeline", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*using this file unverified.*")
        rec = Recognizer(a.model, pretrained=not a.random_weights, weights_dir=a.weights_dir, labels=a.labels,
                         views=a.views, device=a.device, input_size=a.size, template=a.template)
    if rec.labels is None:
        print(f"zoo predict: {rec.why_no_labels()}", file=sys.stderr)
    workers = a.workers if a.workers is not None else min(4, os.cpu_count() or 1, len(paths) - 1)

    stream = open(partial, "w", encoding="utf-8") if out else sys.stdout
    writer = _Writer(a.format, stream)
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    bar = tqdm(total=len(paths), unit="video", disable=not tty, file=sys.stderr, dynamic_ncols=True)
    failed = done = 0
    try:
        for r in rec.predict(paths, topk=a.topk, batch=a.batch, workers=max(workers, 0)):
            done += 1
            if r["error"]:
                failed += 1
                msg = f"zoo predict: failed: {r['error']}"
                if tty:
                    tqdm.write(msg, file=sys.stderr)
                else:
                    print(msg, file=sys.stderr, flush=True)
            else:
                writer.write(r)
                if not tty and (out or a.format != "table"):
                    t = r["topk"][0]
                    print(f"[{done}/{len(paths)}] {r['video']}: {t['label'] or t['index']} ({t['prob']:.3f})",
                          file=sys.stderr, flush=True)
            bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        if out:
            stream.close()
            print(f"zoo predict: interrupted; the {done - failed} finished result(s) are in {partial}", file=sys.stderr)
        return 130
    bar.close()
    if out:
        stream.close()
        os.replace(partial, out)
        print(f"zoo predict: wrote {out}", file=sys.stderr)
    if failed:
        print(f"zoo predict: {failed} of {len(paths)} video(s) failed", file=sys.stderr)
    return min(failed, 100)


def add_commands(sub) -> None:
    s = sub.add_parser("predict", help="top-k class names of videos, folders or frame directories",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    s.add_argument("inputs", nargs="+", metavar="VIDEO|DIR|FRAMES_DIR",
                   help="video files, frame directories (numbered images), or folders of either")
    s.add_argument("--model", required=True, help="a variant or ensemble name (zoo list)")
    s.add_argument("--weights-dir", help="a folder with NAME/model.safetensors (e.g. from zoo convert --out)")
    s.add_argument("--random-weights", action="store_true",
                   help="no checkpoint: random weights, to try the pipeline only (meaningless classes)")
    s.add_argument("--labels", help="class names, one a line in index order (default: the entry's bundled list)")
    s.add_argument("--views", help="CROPSxCLIPS, e.g. 1x1, 3x2, 3x10 (default: the entry's test views)")
    s.add_argument("--topk", type=int, default=5)
    s.add_argument("--batch", type=int, default=1, help="videos per forward")
    s.add_argument("--workers", type=int, help="decoding processes (default: up to 4)")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    s.add_argument("--size", type=int, help="test at this input size instead of the entry's")
    s.add_argument("--template", help="frame file names, e.g. 'img_{:05d}.jpg' (default: detected)")
    s.add_argument("--format", default="table", choices=["table", "json", "csv"],
                   help="json: one object per line (JSON Lines)")
    s.add_argument("--out", help="write results here (streamed to OUT.partial, renamed at the end)")
    s.add_argument("--force", action="store_true", help="replace an existing --out file")
    s.set_defaults(fn=_cmd_predict)
