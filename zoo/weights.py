"""Pretrained weights: where a file comes from, whether it can be trusted, and loading it.

Resolution order for ``create_model(name, pretrained=True, weights_dir=None)``:

1. a local mirror: ``weights_dir`` if given, else every folder in ``$ZOO_WEIGHTS_DIR``
   (``os.pathsep``-separated). A mirror holds ``<dir>/<name>/model.safetensors`` (what
   ``zoo download NAME --to DIR`` builds) or, for one model, ``<dir>/model.safetensors`` (what
   ``zoo convert ... --out DIR`` writes). An explicit ``weights_dir`` that lacks the file is an
   error; a ``$ZOO_WEIGHTS_DIR`` miss falls through to the Hub.
2. the Hugging Face Hub: ``hf_hub_download`` of the manifest's repo id, filename and pinned
   commit, into the Hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``), through
   ``$HF_ENDPOINT``; with ``$HF_HUB_OFFLINE`` set only the cache is consulted. Env variables are
   read at call time, not when huggingface_hub was imported.

Every file is checked against ``weights_manifest.json`` (size, then sha256) before it is read.
A cached file that fails is removed from the cache (snapshot link and blob) before the error is
raised, so no later call trusts it. Files are read with safetensors (never unpickled) and
applied with ``strict=True``. A file in a mirror for a name the manifest has no hash for (your
own ``zoo convert`` output) is accepted when its metadata names the same architecture, with a
warning that it was not verified.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Iterable, Optional, Union

import torch
import torch.nn as nn

from .registry import registry

__all__ = ["load_pretrained", "load_imagenet_backbone", "resolve", "verify_file", "WeightsError",
           "read_weights", "save_weights", "model_card", "build_manifest", "check_manifest",
           "write_manifest", "cached_path", "FILENAME", "ENV_DIR"]

FILENAME = "model.safetensors"
ENV_DIR = "ZOO_WEIGHTS_DIR"
STATUSES = ("hosted", "original-only", "unreleased")
HOSTED_FIELDS = ("repo_id", "revision", "filename", "sha256", "bytes")
_SHA = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_TRUE = {"1", "on", "yes", "true"}

# the 2D ResNets the papers initialise from: torchvision's original ImageNet weights, as timm hosts them
IMAGENET = {18: "timm/resnet18.tv_in1k", 34: "timm/resnet34.tv_in1k", 50: "timm/resnet50.tv_in1k",
            101: "timm/resnet101.tv_in1k"}


class WeightsError(RuntimeError):
    """Weights that cannot be had or cannot be trusted."""


# -- manifest ---------------------------------------------------------------------------------

def _variant(name: str):
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


def _entry(name: str) -> dict:
    return registry().weights(name) or {}


def not_hosted_message(name: str) -> str:
    reg = registry()
    v = reg.variants.get(name)
    entry = _entry(name)
    src = entry.get("source") or (v.source if v else None) or {}
    status = entry.get("status") or ("original-only" if src.get("url") else "unreleased")
    msg = f"no hosted weights for {name!r} (weights_manifest.json status: {status})."
    if src.get("url"):
        note = f" ({src['note']})" if src.get("note") else ""
        msg += (f" The authors published a checkpoint: {src['url']}{note}. Download it, then convert it with: "
                f"zoo convert {name} <checkpoint file> --out <dir>, and load it with "
                f"create_model({name!r}, pretrained=True, weights_dir='<dir>').")
    else:
        note = f" ({src['note']})" if src.get("note") else ""
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
    from .convert import converters, converters_alias

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
        if prev.get("status") == "hosted":
            e = dict(prev)
        else:
            e = {"status": "original-only" if src.get("url") else "unreleased"}
        if src:
            e["source"] = src
        if converter:
            e["converter"] = converter
        out[name] = e
    return out


def check_manifest(manifest: dict, reg=None) -> list[str]:
    """Problems of a manifest against the registry (empty when it is consistent)."""
    from .convert import converters, converters_alias

    reg = reg or registry()
    known = set(converters())
    problems = []
    for name in sorted(set(manifest) - set(reg.variants)):
        problems.append(f"{name}: orphan entry (not a registered variant)")
    for name in sorted(set(reg.variants) - set(manifest)):
        problems.append(f"{name}: registered variant without a manifest entry (run: python -m zoo.weights_cli manifest)")
    for name, e in sorted(manifest.items()):
        st = e.get("status")
        if st not in STATUSES:
            problems.append(f"{name}: status {st!r} is not one of {STATUSES}")
            continue
        if st == "hosted":
            for f in HOSTED_FIELDS:
                if not e.get(f):
                    problems.append(f"{name}: hosted entry lacks {f!r}")
            if e.get("sha256") and not _SHA.fullmatch(str(e["sha256"])):
                problems.append(f"{name}: sha256 must be 64 lowercase hex digits")
            if e.get("revision") and not _COMMIT.fullmatch(str(e["revision"])):
                problems.append(f"{name}: revision must be a pinned 40-hex commit, got {e['revision']!r}")
            if e.get("bytes") is not None and (not isinstance(e["bytes"], int) or e["bytes"] <= 0):
                problems.append(f"{name}: bytes must be a positive integer")
        if st == "original-only" and not (e.get("source") or {}).get("url"):
            problems.append(f"{name}: original-only entry without source.url")
        conv = e.get("converter")
        if name in reg.variants and not conv and st == "original-only":
            problems.append(f"{name}: an original checkpoint with no converter named")
        elif conv and converters_alias.get(conv, conv) not in known:
            problems.append(f"{name}: converter {conv!r} is not registered (known: {sorted(known)})")
    return problems


def manifest_path() -> Path:
    from .registry import data_root

    return data_root() / "weights_manifest.json"


def write_manifest(weights: dict, path: Union[str, os.PathLike, None] = None) -> Path:
    path = Path(path) if path else manifest_path()
    doc = json.loads(path.read_text()) if path.is_file() else {"schema": 1}
    doc["weights"] = {k: weights[k] for k in sorted(weights)}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    if path.resolve() == manifest_path().resolve():
        from .registry import _registry_at

        _registry_at.cache_clear()  # the next registry() reads the new file
    return path


# -- files ------------------------------------------------------------------------------------

def sha256(path: Union[str, os.PathLike]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: Union[str, os.PathLike], entry: dict) -> Optional[str]:
    """None when ``path`` has the entry's size and sha256, else what is wrong."""
    size = os.path.getsize(path)
    if entry.get("bytes") is not None and size != entry["bytes"]:
        return f"size {size} bytes, expected {entry['bytes']}"
    digest = sha256(path)
    if entry.get("sha256") and digest != entry["sha256"]:
        return f"sha256 {digest}, expected {entry['sha256']}"
    return None


def _purge(path: str) -> None:
    """Remove a cached file: the snapshot link and the blob it points to."""
    real = os.path.realpath(path)
    for p in {path, real}:
        try:
            os.remove(p)
        except FileNotFoundError:
            pass


def _env_true(key: str) -> bool:
    return os.environ.get(key, "").strip().lower() in _TRUE


def _offline() -> bool:
    from huggingface_hub import constants

    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE") or constants.is_offline_mode()


def _cache_dir() -> str:
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return constants.HF_HUB_CACHE


def _endpoint(entry: dict) -> Optional[str]:
    return os.environ.get("HF_ENDPOINT") or entry.get("endpoint") or None


def _mirror_dirs(weights_dir) -> list[Path]:
    if weights_dir is not None:
        return [Path(weights_dir).expanduser()]
    return [Path(d).expanduser() for d in os.environ.get(ENV_DIR, "").split(os.pathsep) if d]


def _in_mirror(d: Path, name: str, filename: str) -> Optional[Path]:
    p = d / name / filename
    if p.is_file():
        return p
    p = d / filename
    if p.is_file() and _file_meta(p).get("name") == name:
        return p
    return None


def _file_meta(path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # a broken header: say which file
        raise WeightsError(f"{path} is not a readable safetensors file: {e}") from e


def cached_path(name: str) -> Optional[str]:
    """The Hub-cache copy of a hosted name's file, if present (no network, no check)."""
    from huggingface_hub import try_to_load_from_cache

    e = _entry(name)
    if e.get("status") != "hosted":
        return None
    p = try_to_load_from_cache(e["repo_id"], e["filename"], cache_dir=_cache_dir(), revision=e["revision"])
    return p if isinstance(p, str) else None


def _transport_errors() -> tuple:
    try:  # huggingface_hub's HTTP client; a cut transfer surfaces as its RemoteProtocolError
        import httpx2

        return (httpx2.HTTPError,)
    except ImportError:
        return ()


def _download(name: str, e: dict) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    from . import __version__

    where = f"{e['repo_id']}@{e['revision'][:12]}/{e['filename']}"
    offline = _offline()
    try:
        path = hf_hub_download(e["repo_id"], e["filename"], revision=e["revision"], cache_dir=_cache_dir(),
                               endpoint=_endpoint(e), local_files_only=offline, library_name="zoo",
                               library_version=__version__)
    except LocalEntryNotFoundError as err:
        why = ("HF_HUB_OFFLINE is set" if offline else
               f"the Hub ({_endpoint(e) or 'huggingface.co'}) could not be reached")
        raise WeightsError(
            f"weights for {name!r} ({where}) are not in the cache ({_cache_dir()}) and {why}. On a machine "
            f"with internet run `zoo download {name}` (fills the cache) or `zoo download {name} --to DIR` "
            f"(builds a mirror), then copy the cache or set {ENV_DIR}=DIR here.") from err
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as err:
        raise WeightsError(
            f"the Hub has no {where} for {name!r} ({type(err).__name__}): weights_manifest.json is out of date "
            "or the upload was removed; update the package, or use a mirror") from err
    except (HfHubHTTPError, OSError, *_transport_errors()) as err:
        raise WeightsError(f"downloading {where} for {name!r} failed: {str(err).splitlines()[0]}. Nothing "
                           "partial was kept; retry, or use a mirror") from err
    bad = verify_file(path, e)
    if bad:
        _purge(path)
        raise WeightsError(
            f"{where} for {name!r} does not match weights_manifest.json: {bad}. The file was removed from "
            f"the cache. Retry once (a broken transfer or disk); if it persists, the hosted file differs from "
            f"the one this version of the package pins: update the package or report it.")
    return path


def resolve(name: str, weights_dir: Union[str, os.PathLike, None] = None) -> str:
    """The verified local path of ``name``'s weights (mirror first, then the Hub cache/download)."""
    v = _variant(name)
    e = _entry(name)
    filename = e.get("filename", FILENAME)
    dirs = _mirror_dirs(weights_dir)
    for d in dirs:
        p = _in_mirror(d, name, filename)
        if p is None:
            continue
        if e.get("sha256"):
            bad = verify_file(p, e)
            if bad:
                raise WeightsError(f"{p} does not match weights_manifest.json for {name!r}: {bad}. Rebuild the "
                                   f"mirror with `zoo download {name} --to {d}`")
        else:
            meta = _file_meta(p)
            if meta.get("arch") not in (None, v.arch):
                raise WeightsError(f"{p} holds weights for architecture {meta.get('arch')!r}, not {v.arch!r}")
            if meta.get("name") not in (None, name):
                raise WeightsError(f"{p} holds the weights of {meta['name']!r}, not {name!r}")
            warnings.warn(f"{p}: weights_manifest.json has no hash for {name!r} ({e.get('status', 'unreleased')}); "
                          "using this file unverified (your own conversion?)", stacklevel=3)
        return str(p)
    if weights_dir is not None:
        raise WeightsError(f"no weights for {name!r} in weights_dir={os.fspath(weights_dir)!r}: looked for "
                           f"{name}/{filename} and {filename} (with metadata name={name!r})")
    if e.get("status") != "hosted":
        msg = not_hosted_message(name)
        if dirs:
            msg += f" (Not found in {ENV_DIR} either: {', '.join(map(str, dirs))}.)"
        raise WeightsError(msg)
    return _download(name, e)


# -- reading and writing ----------------------------------------------------------------------

def read_weights(path: Union[str, os.PathLike]) -> tuple[dict, dict]:
    """(state dict, metadata) of a safetensors file."""
    from safetensors.torch import load_file

    meta = _file_meta(path)
    return load_file(str(path)), meta


def save_weights(model: nn.Module, path: Union[str, os.PathLike], metadata: dict) -> dict:
    """Write ``model``'s state dict as safetensors; returns {filename, sha256, bytes}."""
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(path), metadata={k: str(v) for k, v in metadata.items()})
    return {"filename": Path(path).name, "sha256": sha256(path), "bytes": os.path.getsize(path)}


def load_pretrained(model: nn.Module, name: str, weights_dir: Union[str, os.PathLike, None] = None) -> nn.Module:
    """Resolve, verify and strictly load ``name``'s weights into ``model`` (built at the variant's
    own classes; the caller swaps the head for fine-tuning)."""
    v = _variant(name)
    path = resolve(name, weights_dir)
    sd, meta = read_weights(path)
    if meta.get("arch") and meta["arch"] != v.arch:
        raise WeightsError(f"{path} holds {meta['arch']!r} weights, but {name!r} is a {v.arch!r}")
    from .convert import fit_problems

    problems = fit_problems(model.state_dict(), sd)
    if problems:
        raise WeightsError("; ".join([f"{path} does not fit {name!r}", *problems]))
    model.load_state_dict(sd, strict=True)
    return model


# -- ImageNet initialisation ------------------------------------------------------------------

def _imagenet_state_dict(depth: int) -> dict:
    """torchvision's ImageNet ResNet (timm's ``resnetNN.tv_in1k``): mirror, else the Hub."""
    repo = IMAGENET.get(depth)
    if repo is None:
        raise WeightsError(f"no ImageNet ResNet-{depth} weights known; depths: {sorted(IMAGENET)}")
    for d in _mirror_dirs(None):
        p = d / repo.split("/")[1] / FILENAME
        if p.is_file():
            return read_weights(p)[0]
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = hf_hub_download(repo, FILENAME, cache_dir=_cache_dir(), local_files_only=_offline(),
                               endpoint=os.environ.get("HF_ENDPOINT") or None)
    except (LocalEntryNotFoundError, OSError) as err:
        raise WeightsError(
            f"cannot get the ImageNet ResNet-{depth} weights ({repo}: {str(err).splitlines()[0]}). On a machine "
            f"with internet run `zoo download --imagenet {depth} --to DIR` and set {ENV_DIR}=DIR") from err
    return read_weights(path)[0]


def _inflate(src: torch.Tensor, dst: torch.Tensor) -> Optional[torch.Tensor]:
    """A 2D tensor for a same-shaped or temporally inflated (kernel 1 in time) parameter."""
    if src.shape == dst.shape:
        return src
    if src.dim() == 4 and dst.dim() == 5 and dst.shape[2] == 1 and dst.shape[:2] + dst.shape[3:] == src.shape:
        return src.unsqueeze(2)
    return None


def load_imagenet_backbone(model: nn.Module, state_dict: Optional[dict] = None) -> dict:
    """Initialise the 2D ResNet of ``model`` from ImageNet (torchvision's ResNet, as the papers did).

    Every backbone tensor of the ImageNet checkpoint (all but ``fc``) must land: by the same
    name and shape, inflated to a (C, C', 1, k, k) Conv3d kernel, or through a hook, the
    ``load_imagenet(param_name, tensor) -> bool`` method of the module at that path (a slot that
    replaces a conv, e.g. GST's split conv2, takes its share of the 2D kernel). A model with an
    irregular layout may define ``load_imagenet_state_dict(sd) -> dict`` and take over. Layers
    the ImageNet ResNet does not have keep their own init. Returns {our key: source key}."""
    depth = getattr(model, "depth", None)
    if state_dict is None:
        if depth is None:
            raise WeightsError(f"{type(model).__name__} has no .depth: cannot tell which ImageNet ResNet applies")
        state_dict = _imagenet_state_dict(depth)
    src = {k[7:] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    src = {k: v for k, v in src.items() if not k.startswith("fc.")}
    if hasattr(model, "load_imagenet_state_dict"):
        return model.load_imagenet_state_dict(src)
    own = model.state_dict()
    modules = dict(model.named_modules())
    new, mapped, left = {}, {}, []
    for k, t in src.items():
        if k in own:
            x = _inflate(t, own[k])
            if x is not None:
                new[k] = x.to(own[k].dtype)
                mapped[k] = k
                continue
        mod_name, _, param = k.rpartition(".")
        mod = modules.get(mod_name)
        hook = getattr(mod, "load_imagenet", None)
        if hook is not None and hook(param, t):
            mapped[f"{mod_name}.<load_imagenet>.{param}"] = k
            continue
        left.append(f"{k} {tuple(t.shape)}" + (f" (model has {tuple(own[k].shape)})" if k in own else ""))
    if left:
        raise WeightsError(f"{len(left)} ImageNet backbone tensor(s) have no place in {type(model).__name__}: "
                           f"{left[:8]}. The family must map them (a load_imagenet hook on the slot module)")
    with torch.no_grad():
        for k, x in new.items():
            own[k].copy_(x)
    return mapped


# -- model card -------------------------------------------------------------------------------

def _y(s) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def citation(paper) -> str:
    key = re.sub(r"\W", "", paper.authors.split(",")[0].split()[-1].lower()) + str(paper.year) + paper.id
    authors = " and ".join(a.strip() for a in paper.authors.split(","))
    return (f"@article{{{key},\n  title = {{{paper.title}}},\n  author = {{{authors}}},\n"
            f"  journal = {{{paper.venue}}},\n  year = {{{paper.year}}},\n"
            + (f"  url = {{{paper.url}}},\n" if paper.url else "") + "}")


def model_card(name: str, sha: str = "", source_file: str = "") -> str:
    """A Hub model card (README.md with YAML metadata) for a variant, claims from the registry."""
    from . import __version__

    reg = registry()
    v = _variant(name)
    ds = reg.datasets[v.dataset]
    paper = reg.papers[v.paper]
    fam = reg.archs[v.arch].family
    claims = list(v.claims)
    y = ["---", "library_name: zoo", "pipeline_tag: video-classification",
         "tags:", "- video-classification", "- action-recognition", f"- {_y(fam)}", f"- {_y(v.arch)}",
         "datasets:", f"- {_y(ds.title)}", "metrics:", "- accuracy"]
    if claims:
        y += ["model-index:", f"- name: {_y(name)}", "  results:", "  - task:",
              "      type: video-classification", "      name: Action recognition",
              "    dataset:", f"      name: {_y(ds.title)}", f"      type: {_y(v.dataset)}", "    metrics:"]
        for c in claims:
            for metric, val in c.metrics.items():
                label = f"{metric} ({reg.papers[c.paper].short or c.paper} {c.table}, {c.views or '?'} views)"
                y += ["    - type: accuracy", f"      name: {_y(label)}", f"      value: {val}",
                      "      verified: false"]
    y.append("---")
    lines = [f"# {name}", "",
             f"{v.arch} ({fam} family) trained on {ds.title} ({v.num_classes} classes) with {v.frames} frames "
             f"at {v.input_size}x{v.input_size}, from *{paper.title}* ({paper.authors}, {paper.venue} {paper.year}).",
             "", "Converted from the authors' released checkpoint with `zoo convert` "
             f"(zoo {__version__}); the tensors are the authors', only renamed.", ""]
    if v.source and v.source.get("url"):
        lines += [f"- Original checkpoint: {v.source['url']} ({v.source.get('format', '?')})"]
    if source_file:
        lines += [f"- Converted from: `{source_file}`"]
    if sha:
        lines += [f"- `model.safetensors` sha256: `{sha}`"]
    lines += ["", "## Usage", "", "```python", "import zoo", f"model = zoo.create_model({name!r}, pretrained=True).eval()",
              f"tf = zoo.create_transform({name!r})      # resize, crop, normalise -> (3, T, H, W)", "```", "",
              f"Input: clips (B, 3, T, H, W), normalised with mean {list(v.mean)} and std {list(v.std)}; "
              f"sampling `{v.sampling}`: {reg.sampling[v.sampling]}", ""]
    if claims:
        lines += ["## What the papers report (not re-measured here)", "", "| paper | table | views | metrics |",
                  "|---|---|---|---|"]
        for c in claims:
            m = ", ".join(f"{k} {val}" for k, val in c.metrics.items())
            lines.append(f"| {reg.papers[c.paper].short or c.paper} | {c.table} | {c.views} | {m} |")
        lines.append("")
    lines += ["## Citation", "", "```bibtex", citation(paper), "```", ""]
    return "\n".join(y) + "\n" + "\n".join(lines)


def model_config(name: str) -> dict:
    from . import __version__

    reg = registry()
    v = _variant(name)
    return {"name": name, "arch": v.arch, "family": reg.archs[v.arch].family, "num_classes": v.num_classes,
            "frames": v.frames, "kwargs": v.kwargs, "input_size": v.input_size, "mean": list(v.mean),
            "std": list(v.std), "sampling": v.sampling, "views": v.views, "dataset": v.dataset,
            "paper": v.paper, "source": v.source or {}, "zoo_version": __version__}


def copy_verified(src: str, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".partial")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def names_or_all(names: Iterable[str]) -> list[str]:
    """Expand ensembles to their members; no names = every hosted name."""
    reg = registry()
    out = []
    for n in names or sorted(x for x in reg.manifest if reg.hosted(x)):
        out += list(reg.ensembles[n].members) if n in reg.ensembles else [n]
    return list(dict.fromkeys(out))
