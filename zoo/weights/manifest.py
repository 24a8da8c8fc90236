"""weights_manifest.json: which variant has which file, and the facts that make it trustworthy.

Every entry is checked where it is used: a ``hosted`` entry needs ``repo_id``, a 40-hex
``revision`` (a pinned commit, never a branch), ``filename``, a 64-hex ``sha256`` and an
integer ``bytes``; ``status`` is one of :data:`STATUSES`. A wrong value or type is one
:class:`ManifestError` naming the manifest file, the entry and the field.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable, Optional, Union

from ..registry import registry
from .files import WeightsError, atomic_write

__all__ = ["ManifestError", "STATUSES", "HOSTED_FIELDS", "manifest_path", "read_manifest", "write_manifest",
           "entry", "entry_problems", "variant", "build_manifest", "check_manifest", "not_hosted_message",
           "names_or_all"]

STATUSES = ("hosted", "original-only", "unreleased")
HOSTED_FIELDS = ("repo_id", "revision", "filename", "sha256", "bytes")
_SHA = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_STR_FIELDS = ("repo_id", "revision", "filename", "sha256", "converter", "endpoint")


class ManifestError(WeightsError, ValueError):
    """A manifest that is not valid JSON or has a wrong value; the message names file, entry, field."""


def manifest_path() -> Path:
    from ..registry import data_root

    return data_root() / "weights_manifest.json"


def read_manifest(path: Union[str, os.PathLike, None] = None) -> dict:
    """The ``weights`` mapping of a manifest file (empty when the file does not exist)."""
    path = Path(path) if path else manifest_path()
    if path.is_dir():
        raise ManifestError(f"{path} is a directory, not a manifest file")
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON ({e}); restore it (git checkout, or reinstall the "
                            "package) or rebuild it with `zoo manifest`") from e
    weights = doc.get("weights", {}) if isinstance(doc, dict) else None
    if not isinstance(weights, dict) or not all(isinstance(e, dict) for e in weights.values()):
        raise ManifestError(f"{path}: field 'weights' must be an object of entries (name -> object)")
    return weights


def entry_problems(name: str, e) -> list[str]:
    """What is wrong with one entry's values and types (no registry needed)."""
    if not isinstance(e, dict):
        return [f"entry {name!r} must be an object, got {type(e).__name__}"]
    out = []
    st = e.get("status")
    if st not in STATUSES:
        out.append(f"entry {name!r}: field 'status' is {st!r}, not one of {STATUSES}")
    for f in _STR_FIELDS:
        if f in e and not isinstance(e[f], str):
            out.append(f"entry {name!r}: field {f!r} must be a string, got {type(e[f]).__name__} {e[f]!r}")
    if "source" in e and not isinstance(e["source"], dict):
        out.append(f"entry {name!r}: field 'source' must be an object, got {type(e['source']).__name__}")
    if "bytes" in e and (not isinstance(e["bytes"], int) or isinstance(e["bytes"], bool) or e["bytes"] <= 0):
        out.append(f"entry {name!r}: field 'bytes' must be a positive integer, got {e['bytes']!r}")
    if st == "hosted":
        for f in HOSTED_FIELDS:
            if e.get(f) in (None, ""):
                out.append(f"entry {name!r}: hosted entry lacks field {f!r}")
        if isinstance(e.get("sha256"), str) and e["sha256"] and not _SHA.fullmatch(e["sha256"]):
            out.append(f"entry {name!r}: field 'sha256' must be 64 lowercase hex digits, got {e['sha256']!r}")
        if isinstance(e.get("revision"), str) and e["revision"] and not _COMMIT.fullmatch(e["revision"]):
            out.append(f"entry {name!r}: field 'revision' must be a pinned 40-hex commit, got {e['revision']!r}")
    return out


def variant(name: str):
    """The registry's Variant of ``name``; a clear error for ensembles, architectures, unknowns."""
    reg = registry()
    v = reg.variants.get(name)
    if v is None:
        if name in reg.ensembles:
            raise WeightsError(f"{name!r} is an ensemble; its members {list(reg.ensembles[name].members)} "
                               "carry the weights")
        reg.resolve(name)  # unknown names: UnknownModelError with suggestions
        raise WeightsError(f"{name!r} is an architecture, not a trained variant; weights belong to variants "
                           f"such as {', '.join(sorted(n for n, x in reg.variants.items() if x.arch == name)[:4])}")
    return v


def entry(name: str) -> dict:
    """``name``'s manifest entry, validated (an empty dict when the manifest has none)."""
    e = registry().weights(name)
    if e is None:
        return {}
    problems = entry_problems(name, e)
    if problems:
        raise ManifestError(f"{manifest_path()}: {problems[0]}"
                            + (f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else "")
                            + "; these weights cannot be verified, so they are not used")
    return e


def not_hosted_message(name: str) -> str:
    reg = registry()
    v = reg.variants.get(name)
    e = entry(name)
    src = e.get("source") or (v.source if v else None) or {}
    status = e.get("status") or ("original-only" if src.get("url") else "unreleased")
    msg = f"no hosted weights for {name!r} (weights_manifest.json status: {status})."
    note = f" ({src['note']})" if src.get("note") else ""
    if src.get("url"):
        msg += (f" The authors published a checkpoint: {src['url']}{note}. Download it, then convert it with: "
                f"zoo convert {name} <checkpoint file> --out <dir>, and load it with "
                f"create_model({name!r}, pretrained=True, weights_dir='<dir>').")
    else:
        msg += f" The authors did not publish a checkpoint for it{note}."
    hosted = sorted(n for n in reg.manifest if reg.hosted(n))
    msg += (f" Names with hosted weights: zoo.list_models(pretrained=True) ({len(hosted)} today)."
            if hosted else " No name has hosted weights yet.")
    return msg


def build_manifest(old: Optional[dict] = None, reg=None) -> dict:
    """One entry per registered variant, from the registry's ``source`` fields.

    Hosted entries of ``old`` are kept (their Hub fields are facts about an upload, not about
    the registry); every other entry is rebuilt: ``original-only`` where the authors published
    a checkpoint, ``unreleased`` otherwise. Entries of names no longer registered are dropped."""
    from ..convert import converters, converters_alias

    reg = reg or registry()
    old = old or {}
    known = converters()
    out = {}
    for name in sorted(reg.variants):
        v = reg.variants[name]
        src = dict(v.source or {})
        family = reg.archs[v.arch].family
        family = converters_alias.get(family, family)
        # families without an original implementation (STC, C3D, P3D) have no original layout
        converter = src.pop("converter", None) or (family if family in known else None)
        prev = old.get(name) or {}
        e = dict(prev) if prev.get("status") == "hosted" else {
            "status": "original-only" if src.get("url") else "unreleased"}
        if src:
            e["source"] = src
        if converter:
            e["converter"] = converter
        out[name] = e
    return out


def check_manifest(manifest: dict, reg=None) -> list[str]:
    """Problems of a manifest against the registry (empty when it is consistent)."""
    from ..convert import converters, converters_alias

    reg = reg or registry()
    known = set(converters())
    problems = []
    for name in sorted(set(manifest) - set(reg.variants)):
        problems.append(f"{name}: orphan entry (not a registered variant)")
    for name in sorted(set(reg.variants) - set(manifest)):
        problems.append(f"{name}: registered variant without a manifest entry (run: zoo manifest)")
    for name, e in sorted(manifest.items()):
        bad = entry_problems(name, e)
        problems += bad
        if bad:
            continue
        st = e.get("status")
        if st == "original-only" and not (e.get("source") or {}).get("url"):
            problems.append(f"{name}: original-only entry without source.url")
        conv = e.get("converter")
        if name in reg.variants and not conv and st == "original-only":
            problems.append(f"{name}: an original checkpoint with no converter named")
        elif conv and converters_alias.get(conv, conv) not in known:
            problems.append(f"{name}: converter {conv!r} is not registered (known: {sorted(known)})")
    return problems


def write_manifest(weights: dict, path: Union[str, os.PathLike, None] = None) -> Path:
    """Write the ``weights`` mapping into ``path`` (other top-level fields kept), atomically."""
    path = Path(path) if path else manifest_path()
    if path.is_dir():
        raise ManifestError(f"{path} is a directory, not a manifest file")
    doc = {"schema": 1}
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
        except ValueError:  # a broken file is replaced whole, never patched
            pass
        doc = doc if isinstance(doc, dict) else {"schema": 1}
    doc["weights"] = {k: weights[k] for k in sorted(weights)}
    atomic_write(path, json.dumps(doc, indent=1) + "\n")
    if path.resolve() == manifest_path().resolve():
        from ..registry import _registry_at

        _registry_at.cache_clear()  # the next registry() reads the new file
    return path


def names_or_all(names: Iterable[str]) -> list[str]:
    """Expand ensembles to their members (unknown names are an error); no names = every hosted name."""
    reg = registry()
    out = []
    for n in names or sorted(x for x in reg.manifest if reg.hosted(x)):
        if n in reg.ensembles:
            out += list(reg.ensembles[n].members)
        else:
            variant(n)
            out.append(n)
    return list(dict.fromkeys(out))
