"""Class names, in the index order each checkpoint was trained with.

The bundled lists (``zoo/labels/<list>.txt``, one name a line, line i = class i) are named by
each dataset in ``registry/datasets.toml`` (``[<dataset>.labels]``: list, order, source); a variant
may override the list (a checkpoint converted from MMAction2's SSv1 indexes by the official CSV
order, not by the sorted order of the authors' code). Datasets without a public list (EGTEA,
EPIC-KITCHENS, Basketball-8, Soccer-10) have ``list = ""``: pass your own file, names are never
invented.

>>> zoo.labels.label_names("tsm_r50_ssv1_8f")[:2]
['Approaching something with your camera', 'Attaching something to something']
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional

__all__ = ["label_names", "label_info", "read_label_file", "bundled_lists"]

_DIR = Path(__file__).resolve().parent


def bundled_lists() -> list[str]:
    return sorted(p.stem for p in _DIR.glob("*.txt"))


@lru_cache(maxsize=None)
def _bundled(list_name: str) -> tuple:
    path = _DIR / f"{list_name}.txt"
    if not path.is_file():
        raise ValueError(f"no bundled label list {list_name!r}; bundled: {', '.join(bundled_lists())}")
    return tuple(read_label_file(path))


def label_info(name_or_dataset: str) -> Optional[dict]:
    """{list, order, source} of a dataset key, variant or ensemble; None for an architecture.

    A bundled list name (e.g. "ssv1_csv_order") is accepted too."""
    from ..registry import registry

    reg = registry()
    if name_or_dataset in reg.datasets:
        return reg.datasets[name_or_dataset].labels
    if name_or_dataset in bundled_lists():
        return {"list": name_or_dataset, "order": "as in the file", "source": f"zoo/labels/{name_or_dataset}.txt"}
    obj = reg.resolve(name_or_dataset)
    if name_or_dataset in reg.ensembles:    # members share the dataset and its list
        obj = reg.variants[obj.members[0]]
    return getattr(obj, "labels", None)


def label_names(name_or_dataset: str) -> Optional[list[str]]:
    """The class names of a dataset key, variant, ensemble or bundled list, in index order;
    None when no public list exists (see :func:`label_info` for why and what to pass)."""
    info = label_info(name_or_dataset)
    if not info or not info.get("list"):
        return None
    return list(_bundled(info["list"]))


def read_label_file(path, num_classes: Optional[int] = None) -> list[str]:
    """One class name a line, line i naming class i (blank lines only at the end).

    ``num_classes``: the model's head size; a different number of names is an error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the label file ({e})") from None
    names = [line.strip() for line in text.rstrip().splitlines()]
    if not names or names == [""]:
        raise ValueError(f"{path}: the label file is empty; write one class name a line, in index order")
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if not n:
            raise ValueError(f"{path}: line {i + 1} is blank; write one class name a line, in index order")
        if n in seen:
            raise ValueError(f"{path}: line {i + 1} repeats {n!r} (line {seen[n] + 1}); each class needs its own name")
        seen[n] = i
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(f"{path}: {len(names)} names for a model with {num_classes} classes; the file needs "
                         f"exactly {num_classes} lines, one class name a line in index order")
    return names
