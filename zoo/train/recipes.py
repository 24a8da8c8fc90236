"""Training recipes: the papers' protocols as data (``registry/recipes.toml``).

``recipe_for(name)`` returns the paper recipe of a variant or architecture (first ``match``
that fits, ``base`` resolved, the ``when`` rows for its dataset / frames applied);
``recipe_for(name, "finetune")`` the fine-tuning one. ``Recipe.scaled_lr(batch)`` applies the
linear scaling rule to the global batch a run uses.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional

from ..registry import RegistryError, Variant, data_root, registry

__all__ = ["Recipe", "recipe_for", "all_recipes", "describe_recipe", "recipe_text", "RECIPE_FILE"]

RECIPE_FILE = "recipes.toml"
_CROPS = ("multiscale", "center")
_OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class Recipe:
    id: str
    title: str = ""
    optimizer: str = "sgd"
    momentum: float = 0.9
    lr: float = 0.01
    batch: int = 64            # the global batch ``lr`` is for
    epochs: int = 50
    milestones: tuple = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    weight_decay: float = 1e-4
    dropout: float = 0.5
    clip_grad: Optional[float] = None
    partial_bn: bool = False
    lr_mult: dict = field(default_factory=dict)
    bias_lr_mult: float = 2.0
    crop: str = "multiscale"
    scales: tuple = (1.0, 0.875, 0.75, 0.66)
    flip: object = True        # True, False or "swap"
    swap: tuple = ()           # label pairs exchanged by a flip
    init: str = "imagenet"     # "imagenet" | "pretrained" | "none"
    cite: str = ""
    match: tuple = ()
    base: str = ""

    def scaled_lr(self, batch: int) -> float:
        """The linear scaling rule: ``lr * batch / self.batch``."""
        return self.lr * batch / self.batch

    def swap_map(self) -> dict:
        out = {}
        for a, b in self.swap:
            out[a], out[b] = b, a
        return out

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("match")
        d.pop("base")
        return d


_FIELDS = {f.name for f in dataclasses.fields(Recipe)}
_WHEN_KEYS = {"dataset", "frames"}


def _check(d: dict, where: str) -> None:
    bad = set(d) - _FIELDS - {"when"}
    if bad:
        raise RegistryError(f"{RECIPE_FILE} {where}: unknown field(s) {sorted(bad)}; allowed: {sorted(_FIELDS)}")
    if "crop" in d and d["crop"] not in _CROPS:
        raise RegistryError(f"{RECIPE_FILE} {where}: crop must be one of {_CROPS}, got {d['crop']!r}")
    if "optimizer" in d and d["optimizer"] not in _OPTIMIZERS:
        raise RegistryError(f"{RECIPE_FILE} {where}: optimizer must be one of {_OPTIMIZERS}, got {d['optimizer']!r}")
    if "flip" in d and d["flip"] not in (True, False, "swap"):
        raise RegistryError(f"{RECIPE_FILE} {where}: flip must be true, false or \"swap\", got {d['flip']!r}")
    for key in ("lr", "batch", "epochs"):
        if key in d and not (isinstance(d[key], (int, float)) and d[key] > 0):
            raise RegistryError(f"{RECIPE_FILE} {where}: {key} must be a positive number, got {d[key]!r}")


def _freeze(d: dict) -> dict:
    d = dict(d)
    for k in ("milestones", "scales", "match"):
        if k in d:
            d[k] = tuple(d[k])
    if "swap" in d:
        d["swap"] = tuple(tuple(p) for p in d["swap"])
    return d


@lru_cache(maxsize=None)
def _load(path: str) -> tuple[dict, dict]:
    doc = tomllib.loads(open(path, encoding="utf-8").read())
    if set(doc) - {"recipe"}:
        raise RegistryError(f"{RECIPE_FILE}: only [[recipe]] tables are allowed, got {sorted(set(doc) - {'recipe'})}")
    raw, whens = {}, {}
    for i, r in enumerate(doc.get("recipe", [])):
        where = f"recipe #{i + 1}"
        if not isinstance(r.get("id"), str):
            raise RegistryError(f"{RECIPE_FILE} {where}: missing id")
        where = f"recipe {r['id']!r}"
        _check(r, where)
        if r["id"] in raw:
            raise RegistryError(f"{RECIPE_FILE}: recipe id {r['id']!r} used twice")
        rows = r.pop("when", [])
        for j, w in enumerate(rows):
            _check({k: v for k, v in w.items() if k not in _WHEN_KEYS}, f"{where} when #{j + 1}")
            if not set(w) & _WHEN_KEYS:
                raise RegistryError(f"{RECIPE_FILE} {where} when #{j + 1}: needs dataset = [...] or frames = [...]")
        raw[r["id"]], whens[r["id"]] = r, rows
    for rid, r in raw.items():
        if r.get("base") and r["base"] not in raw:
            raise RegistryError(f"{RECIPE_FILE} recipe {rid!r}: base {r['base']!r} is not a recipe id")
    return raw, whens


def _path() -> str:
    return str(data_root() / "registry" / RECIPE_FILE)


def _merged(rid: str, raw: dict, whens: dict, seen=()) -> tuple[dict, list]:
    if rid in seen:
        raise RegistryError(f"{RECIPE_FILE}: recipe {rid!r} is its own base")
    r = raw[rid]
    if r.get("base"):
        d, rows = _merged(r["base"], raw, whens, (*seen, rid))
        d = {**d, **r}
        return d, rows + whens[rid]
    return dict(r), list(whens[rid])


def all_recipes() -> dict[str, Recipe]:
    """Every recipe by id, before dataset / frames rows."""
    raw, whens = _load(_path())
    return {rid: Recipe(**_freeze(_merged(rid, raw, whens)[0])) for rid in raw}


def _target(name: str) -> tuple[str, Optional[str], Optional[int]]:
    """(arch or variant name to match, dataset, frames) of a registered name."""
    reg = registry()
    obj = reg.resolve(name)
    if isinstance(obj, Variant):
        return obj.name, obj.dataset, obj.frames
    if name in reg.ensembles:
        raise ValueError(f"{name} is an ensemble: train its members ({', '.join(obj.members)}) one by one")
    return obj.name, None, None


def recipe_for(name: str, kind: str = "paper", dataset: Optional[str] = None,
               frames: Optional[int] = None) -> Recipe:
    """The recipe for a registered name. ``kind``: "paper" (its paper's protocol) or "finetune".

    ``dataset`` / ``frames`` override the variant's own (they select the ``when`` rows)."""
    if kind not in ("paper", "finetune"):
        raise ValueError(f"recipe kind must be 'paper' or 'finetune', got {kind!r}")
    raw, whens = _load(_path())
    target, ds, fr = _target(name)
    ds = dataset or ds
    fr = frames or fr
    if kind == "finetune":
        rid = "finetune"
    else:
        rid = next((i for i, r in raw.items() if any(fnmatch.fnmatchcase(target, p) for p in r.get("match", ()))), None)
        if rid is None:
            raise ValueError(f"no paper recipe matches {name!r} in registry/{RECIPE_FILE}; use --recipe finetune "
                             "or add a [[recipe]] whose match covers it")
    d, rows = _merged(rid, raw, whens)
    for w in rows:
        if "dataset" in w and ds not in w["dataset"]:
            continue
        if "frames" in w and fr not in w["frames"]:
            continue
        d.update({k: v for k, v in w.items() if k not in _WHEN_KEYS})
    return Recipe(**_freeze(d))


def describe_recipe(r: Recipe) -> str:
    sched = f"step x{r.gamma} at epochs {', '.join(map(str, r.milestones))}" if r.milestones else "constant"
    flip = {True: "random horizontal flip", False: "no flip"}.get(r.flip, "flip with label swap " + ", ".join(
        f"{a}<->{b}" for a, b in r.swap))
    crop = (f"multi-scale crop (scales {', '.join(map(str, r.scales))})" if r.crop == "multiscale" else "centre crop")
    lines = [f"Training recipe '{r.id}': {r.title}",
             f"  {r.optimizer.upper()} momentum {r.momentum}, lr {r.lr} for a batch of {r.batch} (scaled linearly), "
             f"{r.epochs} epochs, {sched}" + (f", warm-up {r.warmup_epochs} epochs" if r.warmup_epochs else ""),
             f"  weight decay {r.weight_decay} (none on biases and norms), dropout {r.dropout}, "
             f"gradient clipping {r.clip_grad or 'off'}, partial BN {'on' if r.partial_bn else 'off'}",
             f"  augmentation: {crop}, {flip}; init: {r.init}"]
    if r.lr_mult:
        lines.append("  lr multipliers: " + ", ".join(f"{k} x{v}" for k, v in r.lr_mult.items())
                     + f"; biases x{r.bias_lr_mult}")
    if r.cite:
        lines.append("  source: " + " ".join(r.cite.split()))
    return "\n".join(lines)


def recipe_text(name: str) -> str:
    """What ``zoo info NAME`` prints about training NAME (one line when no recipe applies)."""
    try:
        return describe_recipe(recipe_for(name))
    except ValueError as e:
        return f"Training recipe: none ({e})"
