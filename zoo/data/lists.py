"""Annotation files -> samples: the layouts the papers' code and users have.

* ``list``: one video a line, ``<path> <num_frames> <label>`` (TSN/TSM/TDN/GC/AIA/SDA lists for
  Something-Something V1, Diving48, EGTEA; the path is a frame directory or a video file) or
  ``<path> <label>`` (MMAction2's video lists). Labels are class indices.
* ``ssv2``: Something-Something V2 JSON (``[{"id", "template", "label", ...}]``). The class is the
  template with its ``[something]`` brackets removed ("Putting [something] on [something]" ->
  "Putting something on something"), as TSM's ``gen_label_sthv2.py`` does, looked up in the label
  list. Videos ``<id>.webm`` / ``<id>.mp4`` or frame directories ``<id>``.
* ``k400``: Kinetics CSV ``label,youtube_id,time_start,time_end,split[,is_cc]``; the label is a
  class name, files ``<youtube_id>_<start:06d>_<end:06d>.mp4`` directly under the root or in a
  folder per class (``name_format`` changes the pattern).
* ``csv``: ``path,label`` with an optional header; labels are indices or class names.

Every problem names the file and the line (``list.txt:12: ...``); ``skip_bad=True`` collects them
in ``samples.skipped`` instead, so a user sees exactly which videos were left out.
"""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

__all__ = ["Sample", "Samples", "BadLine", "DataError", "read_samples", "resolve_labels", "FORMATS",
           "IMAGE_EXTS", "count_frames"]

FORMATS = ("auto", "list", "ssv2", "k400", "csv")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
K400_NAMES = ("{youtube_id}_{time_start:06d}_{time_end:06d}.mp4", "{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4",
              "{label_}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4")
SSV2_NAMES = ("{id}.webm", "{id}.mp4", "{id}")


class DataError(ValueError):
    """A bad annotation line or an unreadable video; the message names the file and the line."""


@dataclass(frozen=True)
class Sample:
    id: str                      # unique within a list: what the per-video scores are keyed by
    path: str                    # video file or frame directory
    num_frames: Optional[int]    # as listed (frame directories are checked against it), or None
    label: int


@dataclass(frozen=True)
class BadLine:
    file: str
    line: int                    # 1-based line (list/CSV) or entry (JSON) number
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


class Samples(list):
    """A list of :class:`Sample`; ``skipped`` holds the lines left out with ``skip_bad=True``."""

    def __init__(self, items=(), skipped=()):
        super().__init__(items)
        self.skipped: list[BadLine] = list(skipped)


def _normalise(name: str) -> str:
    # TSM's label scripts rewrite names (spaces -> "_", quotes and parentheses dropped)
    return re.sub(r"[\s_]+", " ", re.sub(r"[\"'()]", "", name)).strip().lower()


def resolve_labels(labels) -> tuple[Optional[list[str]], Optional[int]]:
    """``labels`` -> (class names or None, number of classes or None).

    Accepts a list of names, a number of classes, a label file (one name a line, in index
    order) or a dataset key / model name understood by ``zoo.labels.label_names``."""
    if labels is None:
        return None, None
    if isinstance(labels, int) and not isinstance(labels, bool):
        return None, labels
    if isinstance(labels, (str, os.PathLike)):
        from .. import labels as zlabels

        if os.path.isfile(labels):
            names = zlabels.read_label_file(labels)
        else:
            names = zlabels.label_names(str(labels))
            if names is None:
                raise DataError(f"no class-name list is bundled for {labels!r}; pass a label file "
                                "(one name a line, in the checkpoint's index order)")
        return list(names), len(names)
    names = [str(n) for n in labels]
    return names, len(names)


def _template_regex(template: Optional[str]):
    if not template:
        return None
    parts = re.split(r"\{[^}]*\}", template)
    return re.compile(r"\d+".join(re.escape(p) for p in parts) + r"\Z")


def count_frames(directory: Union[str, Path], template: Optional[str] = None) -> int:
    """Frames in a frame directory: files matching ``template`` (``img_{:05d}.jpg``), or image
    files when no template is given (what the papers' list scripts count)."""
    rx = _template_regex(template)
    with os.scandir(directory) as it:
        if rx is not None:
            return sum(1 for e in it if rx.match(e.name))
        return sum(1 for e in it if e.name.lower().endswith(IMAGE_EXTS))


class _Reader:
    """Shared checks of every format; ``add`` validates one entry, ``bad`` records a problem."""

    def __init__(self, file: Path, root: Path, names, num_classes, template, skip_bad, check_frames):
        self.file, self.root = file, root
        self.names, self.num_classes = names, num_classes
        self.index = {_normalise(n): i for i, n in enumerate(names)} if names else {}
        self.template, self.skip_bad, self.check_frames = template, skip_bad, check_frames
        self.out = Samples()
        self.ids: dict[str, int] = {}

    def bad(self, line: int, reason: str, fix: str = "") -> None:
        b = BadLine(str(self.file), line, reason)
        if not self.skip_bad:
            raise DataError(f"{b} ({fix + '; ' if fix else ''}or pass --skip-bad / skip_bad=True to leave such lines out)")
        self.out.skipped.append(b)

    def label(self, line: int, text: str) -> Optional[int]:
        text = text.strip()
        if re.fullmatch(r"-?\d+", text):
            value = int(text)
            if value < 0 or (self.num_classes is not None and value >= self.num_classes):
                self.bad(line, f"label {value} is out of range for {self.num_classes} classes"
                         if self.num_classes is not None else f"label {value} is negative",
                         "check that the list belongs to this dataset")
                return None
            return value
        if not self.names:
            self.bad(line, f"class name {text!r} but no label list was given", "pass labels= / --labels")
            return None
        i = self.index.get(_normalise(text))
        if i is None:
            import difflib

            close = difflib.get_close_matches(text, self.names, n=1)
            self.bad(line, f"unknown class name {text!r}" + (f" (closest: {close[0]!r})" if close else ""),
                     "check the label list")
        return i

    def path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    def add(self, line: int, id_: str, path: Path, num_frames: Optional[int], label: Optional[int]) -> None:
        if label is None:
            return
        if not path.exists():
            self.bad(line, f"{path} does not exist", f"check --data (the root, now {self.root})")
            return
        if path.is_dir() and num_frames is not None and self.check_frames:
            found = count_frames(path, self.template)
            if found != num_frames:
                what = f"files matching {self.template!r}" if self.template else "image files"
                self.bad(line, f"frame directory {path} has {found} {what}, the list says {num_frames}",
                         "regenerate the list or pass the right --template")
                return
        if id_ in self.ids:
            self.bad(line, f"video id {id_!r} is listed twice (first on line {self.ids[id_]})",
                     "remove the duplicate")
            return
        self.ids[id_] = line
        self.out.append(Sample(id_, str(path), num_frames, label))


def _read_list(r: _Reader) -> None:
    with open(r.file, encoding="utf-8") as f:
        for line, text in enumerate(f, 1):
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            parts = text.split()
            if len(parts) not in (2, 3):
                r.bad(line, f"expected '<path> <num_frames> <label>' or '<path> <label>', got {text.strip()!r}")
                continue
            frames = None
            if len(parts) == 3:
                if not parts[1].isdigit():
                    r.bad(line, f"frame count {parts[1]!r} is not a number")
                    continue
                frames = int(parts[1])
            r.add(line, parts[0], r.path(parts[0]), frames, r.label(line, parts[-1]))


def _first(r: _Reader, line: int, names: Sequence[str], fields: dict) -> Optional[Path]:
    tried = []
    for fmt in names:
        p = r.path(fmt.format(**fields))
        if p.exists():
            return p
        tried.append(p.name if p.parent == r.root else str(p.relative_to(r.root)) if p.is_relative_to(r.root) else str(p))
    r.bad(line, f"no video for {fields.get('id') or fields.get('youtube_id')!r} under {r.root} (tried {', '.join(tried)})",
          "check --data or pass name_format=")
    return None


def _read_ssv2(r: _Reader, name_format) -> None:
    try:
        items = json.loads(r.file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{r.file}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(items, list):
        raise DataError(f"{r.file}: expected a JSON list of {{'id', 'template', ...}} entries (Something-Something V2)")
    for n, it in enumerate(items, 1):
        if not isinstance(it, dict) or "id" not in it or "template" not in it:
            r.bad(n, "entry has no 'id' and 'template' (the test set's JSON has no labels)")
            continue
        cls = it["template"].replace("[", "").replace("]", "")
        label = r.label(n, cls)
        if label is None:
            continue
        vid = str(it["id"])
        path = _first(r, n, name_format or SSV2_NAMES, {"id": vid})
        if path is not None:
            r.add(n, vid, path, None, label)


def _read_csv(r: _Reader, kinetics: bool, name_format) -> None:
    with open(r.file, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header = [h.strip().lower() for h in rows[0]]
    if kinetics:
        need = {"label", "youtube_id", "time_start", "time_end"}
        if not need <= set(header):
            raise DataError(f"{r.file}:1: a Kinetics CSV needs the columns {sorted(need)}, got {rows[0]}")
        col = {h: i for i, h in enumerate(header)}
        for line, row in enumerate(rows[1:], 2):
            if not row:
                continue
            try:
                f = {k: row[col[k]].strip() for k in need}
                f["time_start"], f["time_end"] = int(float(f["time_start"])), int(float(f["time_end"]))
            except (IndexError, ValueError):
                r.bad(line, f"malformed row {row}")
                continue
            label = r.label(line, f["label"])
            if label is None:
                continue
            f["label_"] = f["label"].replace(" ", "_")
            vid = f"{f['youtube_id']}_{f['time_start']:06d}_{f['time_end']:06d}"
            path = _first(r, line, name_format or K400_NAMES, f)
            if path is not None:
                r.add(line, vid, path, None, label)
        return
    start = 2 if header[:2] == ["path", "label"] else 1
    for line, row in enumerate(rows[start - 1:], start):
        if not row or row[0].startswith("#"):
            continue
        if len(row) != 2:
            r.bad(line, f"expected 'path,label', got {row}")
            continue
        r.add(line, row[0].strip(), r.path(row[0].strip()), None, r.label(line, row[1]))


def _detect(file: Path) -> str:
    if file.suffix.lower() == ".json":
        return "ssv2"
    if file.suffix.lower() == ".csv":
        with open(file, encoding="utf-8") as f:
            head = f.readline().lower()
        return "k400" if "youtube_id" in head else "csv"
    return "list"


def read_samples(list_file, fmt: str = "auto", root=None, labels=None, template: Optional[str] = None,
                 skip_bad: bool = False, *, name_format: Optional[Sequence[str]] = None,
                 check_frames: bool = True) -> Samples:
    """Read an annotation file into :class:`Sample` s (in file order).

    ``fmt``: "auto" (by extension and header), "list", "ssv2", "k400" or "csv". ``root``: the
    folder paths are relative to (default: the list file's folder). ``labels``: class names
    (a list, a label file, or a dataset key for ``zoo.labels.label_names``) or the number of
    classes; needed for formats that name classes, and used to range-check indices.
    ``template``: frame file names in frame directories (``img_{:05d}.jpg``), for the frame-count
    check. ``name_format``: file-name patterns tried in order for SSv2 (``{id}``) and Kinetics
    (``{youtube_id}``, ``{time_start}``, ``{time_end}``, ``{label}``, ``{label_}``) entries.
    ``check_frames=False`` skips counting each frame directory.

    Raises :class:`DataError` naming the file and line of the first bad entry, unless
    ``skip_bad`` (then the returned list's ``skipped`` holds them)."""
    file = Path(list_file)
    if not file.is_file():
        raise DataError(f"annotation file {file} does not exist")
    if fmt not in FORMATS:
        raise DataError(f"unknown annotation format {fmt!r}; known: {', '.join(FORMATS)}")
    fmt = _detect(file) if fmt == "auto" else fmt
    names, num_classes = resolve_labels(labels)
    r = _Reader(file, Path(root) if root is not None else file.parent, names, num_classes, template, skip_bad,
                check_frames)
    if isinstance(name_format, str):
        name_format = (name_format,)
    if fmt == "list":
        _read_list(r)
    elif fmt == "ssv2":
        _read_ssv2(r, name_format)
    else:
        _read_csv(r, fmt == "k400", name_format)
    return r.out
