"""Which kernel choices `zoo.deploy` made differently on two machines (or instruction sets) of
its choice cache: the evidence that a choice is a property of the machine, not of the code.

    python benchmarks/choices.py                      # the entries of the cache
    python benchmarks/choices.py AVX2 AVX512 [--cache FILE] [--out FILE.md]

Each argument selects entries (machine keys of ``deploy-choices.json``) by a substring; one
entry of each, timed for the same version of the zoo's code, is compared. The table lists
every (kind, shapes) both entries timed whose winner differs, after a count per kind.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path


def _hits(table: dict, part: str) -> list:
    """The machine keys containing ``part`` (as the instruction set, ``"isa <part>"``, when any does)."""
    return [k for k in table if f"isa {part} " in k or f"isa {part} |" in k] or [k for k in table if part in k]


def _code(key: str) -> str:
    return key.rsplit(" | code ", 1)[-1]


def compare(table: dict, a: str, b: str) -> str:
    pairs = [(x, y) for x in _hits(table, a) for y in _hits(table, b) if x != y and _code(x) == _code(y)]
    if len(pairs) != 1:
        raise SystemExit(f"error: {a!r} and {b!r} select {len(pairs)} pairs of entries timed for the same version "
                         "of the zoo's code, not one; run without arguments to list the entries")
    ka, kb = pairs[0]
    A, B = table[ka], table[kb]
    both = sorted(set(A) & set(B))
    diff = [k for k in both if A[k] != B[k]]
    kinds, changed = Counter(k.split(" ", 1)[0] for k in both), Counter(k.split(" ", 1)[0] for k in diff)
    lines = [f"A: `{ka}`", "", f"B: `{kb}`", "",
             f"{len(diff)} of {len(both)} choices timed on both differ.", "",
             "| kind | timed on both | differ |", "|---|---|---|"]
    lines += [f"| {k} | {n} | {changed.get(k, 0)} |" for k, n in sorted(kinds.items())]
    lines += ["", "| kind | shapes | A | B |", "|---|---|---|---|"]
    lines += [f"| {k.split(' ', 1)[0]} | `{k.split(' ', 1)[1]}` | {A[k]} | {B[k]} |" for k in diff]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("entries", nargs="*", help="two substrings, each selecting one machine entry")
    p.add_argument("--cache", type=Path, help="deploy-choices.json (default: zoo.deploy's cache)")
    p.add_argument("--out", type=Path, help="write the Markdown table here")
    a = p.parse_args(argv)
    path = a.cache
    if path is None:
        from zoo.deploy.choices import _cache_dir
        path = _cache_dir() / "deploy-choices.json"
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        print(f"error: cannot read the choice cache {path}: {e}", file=sys.stderr)
        return 2
    if not a.entries:
        for k, v in table.items():
            print(f"{len(v):4d}  {k}")
        return 0
    if len(a.entries) != 2:
        print("error: give two substrings (e.g. AVX2 AVX512), or none to list the entries", file=sys.stderr)
        return 2
    md = compare(table, *a.entries)
    if a.out:
        try:  # a temporary name, then renamed: no half-written table
            fd, tmp = tempfile.mkstemp(dir=a.out.parent, prefix=f".{a.out.name}.", suffix=".tmp")
        except OSError as e:
            print(f"error: cannot write {a.out}: {e}", file=sys.stderr)
            return 2
        try:
            with os.fdopen(fd, "w") as f:
                f.write(md)
            os.replace(tmp, a.out)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            print(f"error: cannot write {a.out}: {e}", file=sys.stderr)
            return 2
    print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
