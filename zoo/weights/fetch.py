"""Where a variant's file comes from: a local mirror, else the Hugging Face Hub (cache or download).

Resolution order for ``create_model(name, pretrained=True, weights_dir=None)``:

1. a local mirror: ``weights_dir`` if given, else every folder in ``$ZOO_WEIGHTS_DIR``
   (``os.pathsep``-separated). A mirror holds ``<dir>/<name>/model.safetensors`` (what
   ``zoo download NAME --to DIR`` builds) or, for one model, ``<dir>/model.safetensors`` (what
   ``zoo convert ... --out DIR`` writes). An explicit ``weights_dir`` that lacks the file, or holds
   a bad one, is an error; a ``$ZOO_WEIGHTS_DIR`` folder that lacks it or holds a bad copy is
   skipped with a warning, and the next folder, then the Hub cache, is tried.
2. the Hub: ``hf_hub_download`` of the manifest's repo id, filename and pinned commit into the
   Hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``) through ``$HF_ENDPOINT``; with
   ``$HF_HUB_OFFLINE`` set only the cache is consulted. Env variables are read at call time.

Network policy: one metadata request with a ``$ZOO_HUB_TIMEOUT`` (default 10 s) limit and no
retries, so an unreachable or silent endpoint fails in seconds with the offline recipe in the
message; once the server has answered, huggingface_hub's own transfer retries apply (a cut
transfer is resumed with a Range request, up to 5 times).

Every file is checked against the manifest (size, then sha256) before it is read. A cached file
that fails is removed, but only inside the cache: a snapshot link that points elsewhere is
unlinked and its target left alone.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Union

from .files import FILENAME, INCOMPLETE, WeightsError, file_meta, verify_file
from .manifest import entry, not_hosted_message, variant

__all__ = ["resolve", "cached_path", "cache_dir", "offline", "mirror_dirs", "purge_cached", "incomplete_files",
           "hub_download", "hub_timeout", "ENV_DIR", "ENV_TIMEOUT", "OFFLINE_HINT"]

ENV_DIR = "ZOO_WEIGHTS_DIR"
ENV_TIMEOUT = "ZOO_HUB_TIMEOUT"
_TRUE = {"1", "on", "yes", "true"}
OFFLINE_HINT = (f"To work offline: on a machine with internet run `zoo download NAME --to DIR`, copy DIR over and "
                f"set {ENV_DIR}=DIR, or copy a filled Hub cache and set HF_HUB_OFFLINE=1")


def _env_true(key: str) -> bool:
    return os.environ.get(key, "").strip().lower() in _TRUE


def offline() -> bool:
    from huggingface_hub import constants

    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE") or constants.is_offline_mode()


def hub_timeout() -> float:
    """Seconds one Hub request may wait for an answer (``$ZOO_HUB_TIMEOUT``, default 10)."""
    raw = os.environ.get(ENV_TIMEOUT, "").strip()
    try:
        t = float(raw) if raw else 10.0
    except ValueError:
        raise WeightsError(f"{ENV_TIMEOUT}={raw!r} is not a number of seconds") from None
    if t <= 0:
        raise WeightsError(f"{ENV_TIMEOUT}={raw!r} must be > 0 seconds")
    return t


def cache_dir() -> str:
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return constants.HF_HUB_CACHE


def _endpoint(e: Optional[dict] = None) -> Optional[str]:
    return os.environ.get("HF_ENDPOINT") or (e or {}).get("endpoint") or None


def mirror_dirs(weights_dir=None) -> list[Path]:
    if weights_dir is not None:
        return [Path(weights_dir).expanduser()]
    return [Path(d).expanduser() for d in os.environ.get(ENV_DIR, "").split(os.pathsep) if d]


def _inside(path: str, root: str) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([path, root]) == root


def purge_cached(path: Union[str, os.PathLike]) -> list[str]:
    """Remove a cached file (its snapshot link and the blob it points to), never anything outside
    the cache: a link whose target lies elsewhere is unlinked, the target kept. Returns what was removed."""
    cache = cache_dir()
    link = os.path.abspath(os.fspath(path))
    removed = []
    if not _inside(os.path.dirname(link), cache):
        return removed
    target = os.path.realpath(link)
    if os.path.islink(link) or os.path.isfile(link):
        os.remove(link)
        removed.append(link)
    if target != link and os.path.isfile(target) and _inside(target, cache):
        os.remove(target)
        removed.append(target)
    return removed


def incomplete_files(repo_ids=(), dirs=()) -> list[str]:
    """Half-written files: huggingface_hub's ``.incomplete`` blobs of ``repo_ids`` in the cache,
    and the zoo's ``.incomplete`` temporaries in mirror folders (top level and one below)."""
    found = []
    for repo in dict.fromkeys(repo_ids):
        blobs = Path(cache_dir()) / f"models--{repo.replace('/', '--')}" / "blobs"
        if blobs.is_dir():
            found += [str(p) for p in blobs.glob(f"*{INCOMPLETE}") if p.is_file() and not p.is_symlink()]
    for d in dirs:
        d = Path(d)
        if d.is_dir():
            found += [str(p) for p in [*d.glob(f".*{INCOMPLETE}"), *d.glob(f"*/.*{INCOMPLETE}")]
                      if p.is_file() and not p.is_symlink()]
    return sorted(found)


def cached_path(name: str) -> Optional[str]:
    """The Hub-cache copy of a hosted name's file, if present (no network, no check)."""
    from huggingface_hub import try_to_load_from_cache

    e = entry(name)
    if e.get("status") != "hosted":
        return None
    p = try_to_load_from_cache(e["repo_id"], e["filename"], cache_dir=cache_dir(), revision=e["revision"])
    return p if isinstance(p, str) else None


def _http():
    try:  # huggingface_hub's HTTP client (httpx2 here, httpx in older releases)
        import httpx2 as http
    except ImportError:
        import httpx as http
    return http


def _unreachable_errors() -> tuple:
    """No answer: nothing listens, or it listens and never answers."""
    http = _http()
    return (http.ConnectError, http.TimeoutException, ConnectionError)


def hub_download(repo_id: str, filename: str, revision: Optional[str], what: str, endpoint: Optional[str] = None) -> str:
    """``hf_hub_download`` with the zoo's network policy and one-line errors (``what`` names the
    thing in them). A cached file of a pinned commit is returned without a request."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    from ..version import __version__

    where = f"{repo_id}@{(revision or 'main')[:12]}/{filename}"
    endpoint = endpoint or _endpoint()
    is_offline = offline()
    cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir(), revision=revision)
    if isinstance(cached, str) and revision and len(revision) == 40:
        return cached
    timeout = hub_timeout()
    try:
        if not is_offline:  # fail fast on a dead or silent endpoint: one request, no retries
            url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
            get_hf_file_metadata(url, timeout=timeout, endpoint=endpoint, library_name="zoo",
                                 library_version=__version__)
        return hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir(), endpoint=endpoint,
                               local_files_only=is_offline, etag_timeout=timeout, library_name="zoo",
                               library_version=__version__)
    except LocalEntryNotFoundError as err:
        why = "HF_HUB_OFFLINE is set" if is_offline else f"the Hub ({endpoint or 'huggingface.co'}) could not be reached"
        raise WeightsError(f"{what} ({where}) is not in the cache ({cache_dir()}) and {why}. {OFFLINE_HINT}.") from err
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as err:
        raise WeightsError(f"the Hub has no {where} for {what} ({type(err).__name__}): weights_manifest.json is "
                           "out of date or the upload was removed; update the package, or use a mirror") from err
    except _unreachable_errors() as err:
        raise WeightsError(f"the Hub ({endpoint or 'huggingface.co'}) could not be reached for {what} ({where}): "
                           f"{type(err).__name__} {str(err).splitlines()[0] if str(err) else ''} (limit "
                           f"{timeout:g} s per request, {ENV_TIMEOUT}). {OFFLINE_HINT}.") from err
    except (HfHubHTTPError, OSError, _http().HTTPError) as err:
        raise WeightsError(f"downloading {where} for {what} failed: {str(err).splitlines()[0]}. Nothing "
                           f"partial was kept; retry, or use a mirror. {OFFLINE_HINT}.") from err


def _download(name: str, e: dict) -> str:
    path = hub_download(e["repo_id"], e["filename"], e["revision"], f"the weights of {name!r}", _endpoint(e))
    where = f"{e['repo_id']}@{e['revision'][:12]}/{e['filename']}"
    bad = verify_file(path, e)
    if bad:
        target = os.path.realpath(path)
        removed = purge_cached(path)
        done = "The file was removed from the cache. " if removed else ""
        if target not in removed and os.path.exists(target):
            done += f"{target} lies outside the cache ({cache_dir()}) and was left alone. "
        raise WeightsError(
            f"{where} for {name!r} does not match weights_manifest.json: {bad}. " + done
            + "Retry once (a broken transfer or disk); if it persists, the hosted file differs from the one "
              "this version of the package pins: update the package or report it.")
    return path


def _check_mirror(p: Path, name: str, e: dict) -> Optional[str]:
    """None when the mirror file ``p`` may be used for ``name``, else why not."""
    if e.get("sha256"):
        bad = verify_file(p, e)
        return f"does not match weights_manifest.json for {name!r}: {bad}" if bad else None
    v = variant(name)
    try:
        meta = file_meta(p)
    except WeightsError as err:
        return str(err).replace(f"{p} ", "", 1)
    if meta.get("arch") not in (None, v.arch):
        return f"holds weights for architecture {meta.get('arch')!r}, not {v.arch!r}"
    if meta.get("name") not in (None, name):
        return f"holds the weights of {meta['name']!r}, not {name!r}"
    return None


def _in_mirror(d: Path, name: str, filename: str) -> Optional[Path]:
    p = d / name / filename
    if p.is_file():
        return p
    p = d / filename
    if p.is_file():
        try:
            if file_meta(p).get("name") == name:
                return p
        except WeightsError:
            return p  # unreadable: let the check name the file
    return None


def resolve(name: str, weights_dir: Union[str, os.PathLike, None] = None) -> str:
    """The verified local path of ``name``'s weights (mirror first, then the Hub cache/download)."""
    variant(name)
    e = entry(name)
    filename = e.get("filename", FILENAME)
    explicit = weights_dir is not None
    dirs = mirror_dirs(weights_dir)
    skipped = []
    for d in dirs:
        p = _in_mirror(d, name, filename)
        if p is None:
            continue
        why = _check_mirror(p, name, e)
        if why is None:
            if not e.get("sha256"):
                warnings.warn(f"{p}: weights_manifest.json has no hash for {name!r} ({e.get('status', 'unreleased')}); "
                              "using this file unverified (your own conversion?)", stacklevel=3)
            return str(p)
        if explicit:
            raise WeightsError(f"{p} {why}. Rebuild the mirror with `zoo download {name} --to {d}`"
                               if e.get("sha256") else f"{p} {why}")
        skipped.append(f"{p} {why}")
        warnings.warn(f"{ENV_DIR}: skipping {p}: {why}", stacklevel=3)
    if explicit:
        raise WeightsError(f"no weights for {name!r} in weights_dir={os.fspath(weights_dir)!r}: looked for "
                           f"{name}/{filename} and {filename} (with metadata name={name!r})")
    if e.get("status") != "hosted":
        msg = not_hosted_message(name)
        if dirs:
            msg += f" (Not found in {ENV_DIR} either: {', '.join(map(str, dirs))}.)"
        if skipped:
            msg += f" Skipped: {'; '.join(skipped)}."
        raise WeightsError(msg)
    return _download(name, e)
