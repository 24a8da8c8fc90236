"""`zoo convert | publish | download | verify | manifest`: the weights' life cycle.

    zoo convert NAME CHECKPOINT --out DIR    authors' .pth/.pth.tar -> DIR/model.safetensors,
            [--force]                        config.json, README.md (Hub model card); never
                                             replaces them without --force
    zoo publish DIR --repo-id ORG/NAME       upload DIR, record the commit in weights_manifest.json
    zoo download [NAME...] [--to DIR]        fill the Hub cache, or build a mirror (ZOO_WEIGHTS_DIR)
    zoo verify [NAME...] [--dir DIR]         re-check cached / mirrored files against the manifest and
            [--purge]                        report interrupted downloads (.incomplete)
    zoo manifest [--check]                   rebuild the manifest entries from the registry

zoo/cli.py adds these with ``add_commands(subparsers)``; ``python -m zoo.weights_cli`` runs them alone.
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

from . import weights as W
from .registry import registry

__all__ = ["add_commands", "main", "convert", "publish", "download", "verify"]


def convert(name: str, checkpoint: str, out: str, trust_pickle: bool = False, converter: str = None,
            force: bool = False) -> dict:
    """Convert an authors' checkpoint of variant ``name`` into ``out``; returns the manifest entry.
    Existing model files in ``out`` are replaced only with ``force``."""
    from .version import __version__
    from .convert import load_original, read_checkpoint
    from .factory import create_model

    v = W.variant(name)
    out_dir = Path(out)
    _check_out(out_dir, force)
    sd = read_checkpoint(checkpoint, trust_pickle=trust_pickle)   # a bad file fails before the build
    model = create_model(name)
    load_original(model, sd, converter=converter or (v.source or {}).get("converter"))
    meta = {"name": name, "arch": v.arch, "num_classes": v.num_classes, "frames": v.frames,
            "kwargs": json.dumps(v.kwargs, sort_keys=True), "zoo_version": __version__, "format": "pt",
            "source_url": (v.source or {}).get("url", ""), "source_sha256": W.sha256(checkpoint)}
    cfg = W.model_config(name)
    cfg["source_file"] = {"name": os.path.basename(checkpoint), "sha256": meta["source_sha256"]}
    card = lambda info: W.model_card(name, sha=info["sha256"], source_file=os.path.basename(checkpoint))  # noqa: E731
    return {name: W.write_model_folder(out_dir, model, meta, cfg, card, force=force)}


def _check_out(out_dir: Path, force: bool) -> None:
    """Refuse early (before the slow part) what write_model_folder would refuse at the end."""
    if out_dir.exists() and not out_dir.is_dir():
        raise W.WeightsError(f"--out {out_dir} exists and is not a folder")
    existing = [n for n in (W.FILENAME, W.CONFIG, W.CARD) if (out_dir / n).exists()]
    if existing and not force:
        raise W.WeightsError(f"{out_dir} already holds {', '.join(existing)}; nothing was written. Pass --force "
                             "to replace them, or choose another --out")


def publish(folder: str, repo_id: str, manifest: str = None, private: bool = False, token=None) -> dict:
    """Upload ``folder`` (from ``zoo convert``, ``zoo train`` or ``save_pretrained``) to ``repo_id``.
    A registered variant's own weights are recorded in the manifest (commit, sha256, size); any
    other model (fine-tuned to other classes, or an architecture) is loaded by the returned
    ``hf-hub:REPO@COMMIT`` name."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not folder.is_dir():
        raise W.WeightsError(f"{folder} is not a folder; publish uploads what `zoo convert --out DIR` wrote")
    for n in (W.CONFIG, W.FILENAME):
        if not (folder / n).is_file():
            raise W.WeightsError(f"{folder} has no {n}; publish uploads what `zoo convert --out DIR` wrote")
    try:
        cfg = json.loads((folder / W.CONFIG).read_text())
        name = cfg["name"]
    except (ValueError, KeyError, TypeError) as e:
        raise W.WeightsError(f"{folder / W.CONFIG} is not a zoo config.json (no 'name': {e})") from None
    reg = registry()
    v = reg.variants.get(name)
    # the manifest records a variant's own weights only: a model fine-tuned to other classes,
    # frames or kwargs (or built from an architecture) is uploaded and loaded by its hf-hub: name
    own = v is not None and all(cfg.get(k, want) == want for k, want in (
        ("num_classes", v.num_classes), ("frames", v.frames), ("kwargs", dict(v.kwargs))))
    if v is None and name not in reg.archs:
        W.variant(name)   # an ensemble or an unknown name: the one-line error with suggestions
    path = folder / W.FILENAME
    meta = W.file_meta(path)
    if meta.get("name") != name:
        raise W.WeightsError(f"{path} says it holds {meta.get('name')!r}, config.json says {name!r}")
    info = {"filename": W.FILENAME, "sha256": W.sha256(path), "bytes": os.path.getsize(path)}
    recorded = cfg.get("weights") or {}
    if recorded.get("sha256") and recorded["sha256"] != info["sha256"]:
        raise W.WeightsError(f"{path} changed since {W.CONFIG} was written (sha256 {info['sha256']}, "
                             f"config says {recorded['sha256']}); convert again")
    mf = Path(manifest) if manifest else W.manifest_path()
    old = W.read_manifest(mf) if own else {}   # a broken manifest stops us before the upload, not after
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                               commit_message=f"{name}: weights converted with zoo",
                               allow_patterns=[W.FILENAME, W.CONFIG, W.CARD])
    oid = getattr(commit, "oid", None) or getattr(commit, "commit_id", None)
    if not oid:
        raise W.WeightsError(f"the upload to {repo_id} returned no commit id: {commit!r}")
    if not own:
        return {name: {"repo_id": repo_id, "revision": oid, **info, "load": f"hf-hub:{repo_id}@{oid}",
                       "manifest": "not recorded: not the registered variant's own classes, frames and kwargs"}}
    entry = {**W.build_manifest(old, reg).get(name, {}), **old.get(name, {})}
    entry.update(status="hosted", repo_id=repo_id, revision=oid, **info)
    old[name] = entry
    W.write_manifest(old, mf)
    return {name: entry}


def _mirror_dir(to) -> Path:
    d = Path(to)
    if d.exists() and not d.is_dir():
        raise W.WeightsError(f"--to {d} exists and is not a folder; a mirror is a folder (it is created if missing)")
    return d


def download(names, to: str = None, imagenet=()) -> list[str]:
    """Fetch verified files into the Hub cache, or copy them into a mirror ``to``/<name>/."""
    out = []
    mirror = _mirror_dir(to) if to is not None else None
    for name in (W.names_or_all(names) if names or not imagenet else []):
        path = W.resolve(name)
        if mirror is not None:
            dst = mirror / name / W.FILENAME
            if not (dst.is_file() and W.verify_file(dst, W.entry(name)) is None):
                W.copy_file(path, dst)
            path = str(dst)
        out.append(path)
    for depth in imagenet:
        p = W.imagenet_path(int(depth), mirrors=False)
        if mirror is not None:
            dst = mirror / W.IMAGENET[int(depth)].split("/")[1] / W.FILENAME
            W.copy_file(p, dst)
            p = str(dst)
        out.append(p)
    return out


def verify(names=(), dirs=(), purge: bool = False) -> list[tuple[str, str, str]]:
    """(name, path, verdict) for every hosted name's cached copy and every mirror copy, and for every
    half-written (``.incomplete``) file of theirs; ``purge`` removes the bad ones (only inside the
    cache, and only the zoo's own files in mirrors)."""
    wanted = W.names_or_all(names)
    dirs = [Path(d) for d in dirs] or W.mirror_dirs(None)
    rows, repos = [], []
    for name in wanted:
        e = W.entry(name)
        if e.get("status") != "hosted":
            rows.append((name, "-", f"not hosted ({e.get('status', 'no entry')})"))
            continue
        repos.append(e["repo_id"])
        found = []
        cached = W.cached_path(name)
        if cached:
            found.append((cached, True))
        for d in dirs:
            p = d / name / e["filename"]
            if p.is_file():
                found.append((str(p), False))
        if not found:
            rows.append((name, "-", "missing"))
        for p, in_cache in found:
            bad = W.verify_file(p, e)
            if bad and purge:
                if in_cache:
                    bad += " (removed)" if W.purge_cached(p) else " (outside the cache: not removed)"
                elif os.path.islink(p):
                    bad += " (a link: not removed)"
                else:
                    os.remove(p)
                    bad += " (removed)"
            rows.append((name, p, "ok" if not bad else f"CORRUPT: {bad}"))
    for p in W.incomplete_files(repos, dirs):
        verdict = "INCOMPLETE: a download or write was interrupted"
        if purge:
            os.remove(p)
            verdict += " (removed)"
        rows.append(("-", p, verdict))
    return rows


# -- argparse ---------------------------------------------------------------------------------

def _cmd_convert(a) -> int:
    if a.trust_pickle:
        warnings.warn("--trust-pickle: the checkpoint will be fully unpickled, which runs code stored in it; "
                      "use only files from a source you trust", stacklevel=1)
    entry = convert(a.name, a.checkpoint, a.out, trust_pickle=a.trust_pickle, converter=a.converter, force=a.force)
    print(f"wrote {Path(a.out) / W.FILENAME}, config.json, README.md")
    print("manifest entry (add repo_id and revision with `zoo publish`):")
    print(json.dumps(entry, indent=1))
    return 0


def _cmd_publish(a) -> int:
    entry = publish(a.dir, a.repo_id, manifest=a.manifest, private=a.private)
    print(json.dumps(entry, indent=1))
    return 0


def _cmd_download(a) -> int:
    for p in download(a.names, to=a.to, imagenet=a.imagenet or ()):
        print(p)
    if a.to:
        print(f"mirror ready: set {W.ENV_DIR}={os.path.abspath(a.to)} (or pass weights_dir=) on the offline machine")
    return 0


def _cmd_verify(a) -> int:
    rows = verify(a.names, a.dir or (), purge=a.purge)
    bad = 0
    for name, path, verdict in rows:
        print(f"{verdict:10s} {name}  {path}")
        bad += verdict.startswith(("CORRUPT", "INCOMPLETE"))
    if not rows:
        print("nothing to verify: no hosted names")
    return 1 if bad else 0


def _cmd_manifest(a) -> int:
    reg = registry()
    path = Path(a.path) if a.path else W.manifest_path()
    old = W.read_manifest(path)
    if a.check:
        problems = W.check_manifest(old, reg)
        for p in problems:
            print(p)
        print(f"{len(old)} entries, {len(problems)} problem(s)")
        return 1 if problems else 0
    new = W.build_manifest(old, reg)
    W.write_manifest(new, path)
    counts = {s: sum(e["status"] == s for e in new.values()) for s in W.STATUSES}
    print(f"wrote {path}: {len(new)} entries ({', '.join(f'{v} {k}' for k, v in counts.items())})")
    return 0


def add_commands(sub) -> None:
    """Add convert/publish/download/verify/manifest to an argparse subparsers object."""
    s = sub.add_parser("convert", help="convert an authors' checkpoint to safetensors + model card")
    s.add_argument("name", help="the variant the checkpoint is, e.g. tsm_r50_ssv1_8f")
    s.add_argument("checkpoint", help="the authors' .pth / .pth.tar")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--force", action="store_true", help="replace model files already in --out")
    s.add_argument("--converter", help="override the converter named in the registry")
    s.add_argument("--trust-pickle", action="store_true",
                   help="allow full unpickling for checkpoints torch.load(weights_only=True) refuses (runs code!)")
    s.set_defaults(fn=_cmd_convert)

    s = sub.add_parser("publish", help="upload a converted folder to the Hub and record it in the manifest")
    s.add_argument("dir")
    s.add_argument("--repo-id", required=True)
    s.add_argument("--manifest", help="manifest to update (default: the package's weights_manifest.json)")
    s.add_argument("--private", action="store_true")
    s.set_defaults(fn=_cmd_publish)

    s = sub.add_parser("download", help="pre-fetch hosted weights into the cache, or build a mirror")
    s.add_argument("names", nargs="*", help="variants or ensembles (default: every hosted name, unless --imagenet)")
    s.add_argument("--to", help=f"build a mirror here (<dir>/<name>/model.safetensors) for {W.ENV_DIR}")
    s.add_argument("--imagenet", action="append", choices=[str(d) for d in sorted(W.IMAGENET)],
                   help="also fetch the ImageNet ResNet of this depth (pretrained_backbone=True)")
    s.set_defaults(fn=_cmd_download)

    s = sub.add_parser("verify", help="re-check cached and mirrored weights against the manifest")
    s.add_argument("names", nargs="*")
    s.add_argument("--dir", action="append", help=f"mirror folder (default: {W.ENV_DIR})")
    s.add_argument("--purge", action="store_true",
                   help="delete files that fail and interrupted (.incomplete) ones (never outside the cache)")
    s.set_defaults(fn=_cmd_verify)

    s = sub.add_parser("manifest", help="rebuild weights_manifest.json entries from the registry")
    s.add_argument("--check", action="store_true", help="only report problems")
    s.add_argument("--path", help="manifest file (default: the package's)")
    s.set_defaults(fn=_cmd_manifest)


def main(argv=None) -> int:
    """``python -m zoo.weights_cli CMD ...`` is ``zoo CMD ...`` (these commands live there)."""
    from .cli import main as zoo_main

    return zoo_main(argv)


if __name__ == "__main__":
    sys.exit(main())
