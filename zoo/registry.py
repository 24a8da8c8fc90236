"""The registry: architectures (code) and the declarative tables (data).

Architectures are builder functions registered with ``zoo.registration.register_arch`` in each
family's module (importing this module imports every family). Everything else - named variants with their dataset, frames, protocol, paper claims and
weights source, ensembles, and the papers' params/FLOPs rows - is data in ``registry/*.toml``
(one file per paper, plus ``datasets.toml``), validated as a whole the first time it is read.
"""
from __future__ import annotations

import difflib
import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

from . import models  # noqa: F401  (importing the families registers their architectures)
from .registration import Arch, archs, register_arch

__all__ = [
    "register_arch", "archs", "data_root", "registry", "Arch", "Variant", "Ensemble", "ComplexityRow",
    "Claim", "Paper", "Dataset", "Protocol", "RegistryError", "UnknownModelError",
]


class RegistryError(ValueError):
    """A malformed registry table."""


class UnknownModelError(KeyError):
    """A name that is neither a variant, an ensemble nor an architecture."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


# -- data -----------------------------------------------------------------------------------------

def data_root() -> Path:
    """Where ``registry/`` and ``weights_manifest.json`` live.

    One rule for every way the package is used: a source checkout (torch.hub clone, editable
    install, tests) reads them from the repository root next to the package; an installed
    wheel reads the copies bundled into ``zoo/_data`` at build time."""
    pkg = Path(__file__).resolve().parent
    repo = pkg.parent
    if (repo / "registry").is_dir() and (repo / "weights_manifest.json").is_file() and (repo / "hubconf.py").is_file():
        return repo
    bundled = pkg / "_data"
    if (bundled / "registry").is_dir():
        return bundled
    raise RegistryError(
        f"cannot find the registry tables: neither {repo / 'registry'} (source checkout) nor "
        f"{bundled / 'registry'} (installed wheel) exists; reinstall the package"
    )


@dataclass(frozen=True)
class Dataset:
    key: str
    title: str
    num_classes: int
    mean: tuple
    std: tuple
    url: str = ""
    note: str = ""
    labels: Optional[dict] = None   # class-name list: {list, order, source} (zoo.labels)
    flip: bool = True      # training may mirror frames (False where labels name a direction)


@dataclass(frozen=True)
class Protocol:
    """A sampling protocol of datasets.toml [sampling]: which frames make a clip."""

    key: str
    kind: str              # "segment" | "dense"
    description: str
    length: int = 1        # consecutive frames per segment (TDN: 5)
    stride: int = 8        # dense: frame step


@dataclass(frozen=True)
class Paper:
    id: str
    title: str
    authors: str
    venue: str
    year: int
    url: str = ""
    code: str = ""
    short: str = ""


@dataclass(frozen=True)
class Claim:
    """An accuracy the paper reports for a variant."""

    paper: str
    table: str
    variant: str
    metrics: dict          # e.g. {"top1": 45.6, "top5": 74.2}
    views: str = ""        # crops x clips, e.g. "1x1", "3x2"
    note: str = ""


@dataclass
class Variant:
    name: str
    arch: str
    paper: str
    dataset: str
    frames: int
    num_classes: int
    kwargs: dict = field(default_factory=dict)
    input_size: int = 224
    mean: tuple = ()
    std: tuple = ()
    sampling: str = "uniform"
    views: str = "1x1"
    source: Optional[dict] = None   # the authors' checkpoint: url, format, converter, note
    note: str = ""
    claims: list = field(default_factory=list)
    labels: Optional[dict] = None   # the dataset's class-name list unless the row overrides it


@dataclass
class Ensemble:
    name: str
    paper: str
    members: tuple
    dataset: str
    num_classes: int
    note: str = ""
    claims: list = field(default_factory=list)


@dataclass(frozen=True)
class ComplexityRow:
    """One params/FLOPs row of a paper table, as printed, plus the config that rebuilds it."""

    paper: str
    table: str
    row: str
    arch: str
    kwargs: dict
    frames: int
    num_classes: int
    input_size: int
    params: str            # as printed, e.g. "23.9M" ("" when the table prints none)
    flops: str             # per view, as printed, e.g. "32.9G"
    views: int = 1         # views the printed FLOPs are multiplied by, if the table says "x6"
    cause: str = ""        # known reason the measurement cannot match
    pending: str = ""      # the issue that builds an architecture not in the zoo yet
    note: str = ""


_NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
_VARIANT_KEYS = {"name", "arch", "dataset", "frames", "kwargs", "input_size", "sampling", "views",
                 "source", "note", "num_classes", "claims", "paper", "labels"}
_CLAIM_KEYS = {"variant", "table", "views", "note", "paper", "top1", "top5", "mean_class", "top1_verb",
               "top1_noun", "top5_verb", "top5_noun", "frames"}
_METRICS = _CLAIM_KEYS - {"variant", "table", "views", "note", "frames", "paper"}
_CPLX_KEYS = {"table", "row", "arch", "kwargs", "frames", "num_classes", "input_size", "params",
              "flops", "views", "cause", "pending", "note", "paper"}
_ENS_KEYS = {"name", "members", "note", "claims", "paper"}
_SOURCE_KEYS = {"url", "format", "converter", "note", "file"}
_LABEL_KEYS = {"list", "order", "source"}


def _check_keys(obj: dict, allowed: set, where: str) -> None:
    extra = set(obj) - allowed
    if extra:
        raise RegistryError(f"{where}: unknown field(s) {sorted(extra)}; allowed: {sorted(allowed)}")


def _need(obj: dict, key: str, typ, where: str):
    if key not in obj:
        raise RegistryError(f"{where}: missing field {key!r}")
    val = obj[key]
    if not isinstance(val, typ) or (typ is int and isinstance(val, bool)):
        raise RegistryError(f"{where}: field {key!r} must be {getattr(typ, '__name__', typ)}, got {val!r}")
    return val


def _positive(obj: dict, key: str, where: str, default: Optional[int] = None) -> int:
    """An integer field that must be > 0 (frames, classes, sizes); ``default`` when absent and allowed."""
    if key not in obj and default is not None:
        return default
    val = _need(obj, key, int, where)
    if val < 1:
        raise RegistryError(f"{where}: field {key!r} must be > 0, got {val}")
    return val


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise RegistryError(f"{path}: TOML syntax error: {e}") from None


_VIEWS = re.compile(r"[1-9][0-9]*x[1-9][0-9]*")
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)([MG])")


def parse_quantity(text: str, unit: str, where: str = "") -> tuple[float, int]:
    """'23.86M' -> (23.86, 2): value and printed decimals."""
    m = _QUANTITY.fullmatch(text)
    if not m or m.group(2) != unit:
        raise RegistryError(f"{where}: {text!r} is not a number followed by {unit!r} (e.g. '23.9{unit}')")
    dec = len(m.group(1).split(".")[1]) if "." in m.group(1) else 0
    return float(m.group(1)), dec


class Registry:
    """All tables, validated. Build once with :func:`registry`."""

    def __init__(self, root: Path):
        self.root = root
        self.archs = archs()
        self.datasets: dict[str, Dataset] = {}
        self.sampling: dict[str, str] = {}       # protocol key -> description
        self.protocols: dict[str, Protocol] = {}
        self.papers: dict[str, Paper] = {}
        self.variants: dict[str, Variant] = {}
        self.ensembles: dict[str, Ensemble] = {}
        self.complexity: list[ComplexityRow] = []
        self.manifest: dict = {}
        self._load()

    # -- loading ------------------------------------------------------------------------
    def _load(self) -> None:
        tables = self.root / "registry"
        ds = _read_toml(tables / "datasets.toml")
        for key, d in ds.pop("sampling", {}).items():
            self._add_protocol(key, d, f"datasets.toml [sampling.{key}]")
        for key, d in ds.items():
            where = f"datasets.toml [{key}]"
            _check_keys(d, {"title", "num_classes", "mean", "std", "url", "note", "flip", "labels"}, where)
            _check_keys(d.get("labels", {}), _LABEL_KEYS, f"{where} labels")
            flip = d.get("flip", True)
            if not isinstance(flip, bool):
                raise RegistryError(f"{where}: flip must be true or false, got {flip!r}")
            self.datasets[key] = Dataset(key, _need(d, "title", str, where), _positive(d, "num_classes", where),
                                         tuple(_need(d, "mean", list, where)), tuple(_need(d, "std", list, where)),
                                         d.get("url", ""), d.get("note", ""), d.get("labels"), flip)
        for a in self.archs.values():
            if a.sampling not in self.protocols:
                raise RegistryError(f"architecture {a.name}: unknown sampling {a.sampling!r}; "
                                    f"datasets.toml [sampling] has {sorted(self.protocols)}")
        files = sorted(p for p in tables.glob("*.toml") if p.name not in ("datasets.toml", "recipes.toml"))
        pending_claims, pending_ens, docs = [], [], []
        for path in files:
            doc = _read_toml(path)
            where = path.name
            _check_keys(doc, {"paper", "variant", "claim", "ensemble", "complexity"}, where)
            p = doc.get("paper")
            pid = None
            if p is not None:  # a file without [paper] names the paper on every row
                _check_keys(p, {"id", "title", "authors", "venue", "year", "url", "code", "short"}, f"{where} [paper]")
                paper = Paper(_need(p, "id", str, where), _need(p, "title", str, where), _need(p, "authors", str, where),
                              _need(p, "venue", str, where), _need(p, "year", int, where), p.get("url", ""),
                              p.get("code", ""), p.get("short", ""))
                if paper.id in self.papers:
                    raise RegistryError(f"{where}: paper id {paper.id!r} already used")
                self.papers[paper.id] = paper
                pid = paper.id
            docs.append((where, pid, doc))
        for where, pid, doc in docs:
            def paper_of(row, w):
                p = row.get("paper", pid)
                if p is None:
                    raise RegistryError(f"{w}: no [paper] in the file, so the row needs paper = '<id>'")
                if p not in self.papers:
                    raise RegistryError(f"{w}: unknown paper {p!r}; known: {sorted(self.papers)}")
                return p
            for i, v in enumerate(doc.get("variant", [])):
                w = f"{where} variant #{i + 1}"
                self._add_variant(v, paper_of(v, w), w)
            for i, c in enumerate(doc.get("claim", [])):
                w = f"{where} claim #{i + 1}"
                pending_claims.append((c, paper_of(c, w), w))
            for i, e in enumerate(doc.get("ensemble", [])):
                w = f"{where} ensemble #{i + 1}"
                pending_ens.append((e, paper_of(e, w), w))
            for i, r in enumerate(doc.get("complexity", [])):
                w = f"{where} complexity #{i + 1}"
                self._add_row(r, paper_of(r, w), w)
        for e, pid, where in pending_ens:
            self._add_ensemble(e, pid, where)
        for c, pid, where in pending_claims:
            self._add_claim(c, pid, where)
        mf = self.root / "weights_manifest.json"
        try:
            self.manifest = json.loads(mf.read_text()).get("weights", {})
        except (ValueError, AttributeError) as e:  # JSON error or not an object: name the file
            raise RegistryError(f"{mf} is not a valid weights manifest ({e}); restore it "
                                "(git checkout weights_manifest.json, or reinstall the package)") from e

    def _add_protocol(self, key: str, d, where: str) -> None:
        if not isinstance(d, dict):
            raise RegistryError(f"{where}: a protocol is a table with kind, description (and length, stride)")
        _check_keys(d, {"kind", "description", "length", "stride"}, where)
        kind = _need(d, "kind", str, where)
        if kind not in ("segment", "dense"):
            raise RegistryError(f"{where}: kind must be 'segment' or 'dense', got {kind!r}")
        length, stride = _positive(d, "length", where, 1), _positive(d, "stride", where, 8)
        if kind == "dense" and length != 1:
            raise RegistryError(f"{where}: a dense protocol takes one frame per position (length 1)")
        self.protocols[key] = Protocol(key, kind, _need(d, "description", str, where), length, stride)
        self.sampling[key] = self.protocols[key].description

    def _claim(self, c: dict, paper: str, where: str, variant: str) -> Claim:
        _check_keys(c, _CLAIM_KEYS, where)
        metrics = {k: c[k] for k in _METRICS if k in c}
        if not metrics:
            raise RegistryError(f"{where}: a claim needs at least one metric of {sorted(_METRICS)}")
        for k, val in metrics.items():
            if not isinstance(val, (int, float)) or isinstance(val, bool):
                raise RegistryError(f"{where}: metric {k} must be a number, got {val!r}")
        return Claim(paper, _need(c, "table", str, where), variant, metrics, c.get("views", ""), c.get("note", ""))

    def _add_variant(self, v: dict, paper: str, where: str) -> None:
        _check_keys(v, _VARIANT_KEYS, where)
        arch = _need(v, "arch", str, where)
        if arch not in self.archs:
            raise RegistryError(f"{where}: unknown arch {arch!r}; registered: {sorted(self.archs)}")
        dkey = _need(v, "dataset", str, where)
        if dkey not in self.datasets:
            raise RegistryError(f"{where}: unknown dataset {dkey!r}; known: {sorted(self.datasets)}")
        frames = _positive(v, "frames", where)
        name = v.get("name") or f"{arch}_{dkey}_{frames}f"
        where = f"{where} ({name})"
        if not _NAME.fullmatch(name) or not name.startswith(arch + "_"):
            raise RegistryError(f"{where}: name must be '<arch>_<dataset>_<frames>f' in snake_case")
        if name in self.variants or name in self.archs:
            raise RegistryError(f"{where}: duplicate name {name!r}")
        kwargs = v.get("kwargs", {})
        self._check_kwargs(arch, kwargs, where)
        sampling = v.get("sampling", "uniform")
        if sampling not in self.sampling:
            raise RegistryError(f"{where}: unknown sampling {sampling!r}; known: {sorted(self.sampling)}")
        src = v.get("source")
        if src is not None:
            _check_keys(src, _SOURCE_KEYS, f"{where} source")
        _check_keys(v.get("labels", {}), _LABEL_KEYS, f"{where} labels")
        ds = self.datasets[dkey]
        views = v.get("views", "1x1")
        if not isinstance(views, str) or not _VIEWS.fullmatch(views):
            raise RegistryError(f"{where}: views must be '<crops>x<clips>' (e.g. '1x1', '3x2'), got {views!r}")
        var = Variant(name=name, arch=arch, paper=paper, dataset=dkey, frames=frames,
                      num_classes=_positive(v, "num_classes", where, ds.num_classes), kwargs=kwargs,
                      input_size=_positive(v, "input_size", where, 224), mean=ds.mean, std=ds.std,
                      sampling=sampling, views=views, source=src, note=v.get("note", ""),
                      labels=v.get("labels", ds.labels))
        for i, c in enumerate(v.get("claims", [])):
            var.claims.append(self._claim(c, paper, f"{where} claim #{i + 1}", name))
        self.variants[name] = var

    def _add_ensemble(self, e: dict, paper: str, where: str) -> None:
        _check_keys(e, _ENS_KEYS, where)
        name = _need(e, "name", str, where)
        members = tuple(_need(e, "members", list, where))
        if len(members) < 2:
            raise RegistryError(f"{where}: an ensemble needs at least two members")
        for m in members:
            if m not in self.variants:
                raise RegistryError(f"{where}: member {m!r} is not a registered variant")
        first = self.variants[members[0]]
        if any(self.variants[m].dataset != first.dataset for m in members):
            raise RegistryError(f"{where}: members are trained on different datasets")
        if not _NAME.fullmatch(name) or name in self.variants or name in self.ensembles or name in self.archs:
            raise RegistryError(f"{where}: bad or duplicate name {name!r}")
        ens = Ensemble(name, paper, members, first.dataset, first.num_classes, e.get("note", ""))
        for i, c in enumerate(e.get("claims", [])):
            ens.claims.append(self._claim(c, paper, f"{where} claim #{i + 1}", name))
        self.ensembles[name] = ens

    def _add_claim(self, c: dict, paper: str, where: str) -> None:
        name = _need(c, "variant", str, where)
        target = self.variants.get(name) or self.ensembles.get(name)
        if target is None:
            raise RegistryError(f"{where}: claim for unknown variant {name!r}")
        target.claims.append(self._claim(c, paper, where, name))

    def _add_row(self, r: dict, paper: str, where: str) -> None:
        _check_keys(r, _CPLX_KEYS, where)
        arch = _need(r, "arch", str, where)
        kwargs = r.get("kwargs", {})
        pending = r.get("pending", "")
        if arch in self.archs:
            self._check_kwargs(arch, kwargs, where)
        elif not pending:
            raise RegistryError(f"{where}: unknown arch {arch!r} (set pending = '<issue>' if it is not built yet)")
        params, flops = r.get("params", ""), r.get("flops", "")
        if params:
            parse_quantity(params, "M", where)
        if flops:
            parse_quantity(flops, "G", where)
        if not params and not flops:
            raise RegistryError(f"{where}: a complexity row needs params or flops")
        self.complexity.append(ComplexityRow(
            paper=paper, table=_need(r, "table", str, where), row=_need(r, "row", str, where), arch=arch,
            kwargs=kwargs, frames=_positive(r, "frames", where), num_classes=_positive(r, "num_classes", where, 174),
            input_size=_positive(r, "input_size", where, 224), params=params, flops=flops, views=r.get("views", 1),
            cause=r.get("cause", ""), pending=pending, note=r.get("note", "")))

    def _check_kwargs(self, arch: str, kwargs: dict, where: str) -> None:
        if not isinstance(kwargs, dict):
            raise RegistryError(f"{where}: kwargs must be a table")
        try:
            self.archs[arch].validate(kwargs)
        except (TypeError, ValueError) as e:
            raise RegistryError(f"{where}: kwargs: {e}") from None

    # -- queries ------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted([*self.variants, *self.ensembles, *self.archs])

    def resolve(self, name: str):
        """-> Variant | Ensemble | Arch, or UnknownModelError with the closest names."""
        for table in (self.variants, self.ensembles, self.archs):
            if name in table:
                return table[name]
        close = difflib.get_close_matches(name, self.names(), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        pattern = name.split("_")[0] + "_*"
        raise UnknownModelError(
            f"unknown model {name!r}.{hint} See zoo.list_models({pattern!r}) for the names that exist."
        )

    def weights(self, name: str) -> Optional[dict]:
        return self.manifest.get(name)

    def hosted(self, name: str) -> bool:
        w = self.manifest.get(name)
        return bool(w) and w.get("status") == "hosted"


@lru_cache(maxsize=None)
def _registry_at(root: str) -> Registry:
    return Registry(Path(root))


def registry() -> Registry:
    return _registry_at(str(data_root()))


def list_models(pattern: str = "*", pretrained: bool = False, kind: str = "all") -> list[str]:
    """Registered names matching an fnmatch ``pattern`` (or a list of patterns).

    ``kind``: "all", "variant" (named pretrained-variants), "ensemble" or "arch".
    ``pretrained=True`` keeps only names whose weights are hosted (see weights_manifest.json)."""
    reg = registry()
    pools = {"variant": reg.variants, "ensemble": reg.ensembles, "arch": reg.archs}
    if kind != "all" and kind not in pools:
        raise ValueError(f"kind must be 'all', 'variant', 'ensemble' or 'arch', got {kind!r}")
    names = reg.names() if kind == "all" else sorted(pools[kind])
    pats = [pattern] if isinstance(pattern, str) else list(pattern)
    names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in pats)]
    if pretrained:
        names = [n for n in names if reg.hosted(n) or (n in reg.ensembles and all(
            reg.hosted(m) for m in reg.ensembles[n].members))]
    return names
