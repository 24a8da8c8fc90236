"""The leaf every family imports: tables of architectures, converters and calibrator kinds.

A family module registers its builders (``@register_arch``), its checkpoint key map
(``@register_converter``) and any calibrator kinds (``register_calibrator``) here. This module
imports nothing of the zoo, so the families sit on top of it and the declarative tables
(``zoo.registry``) on top of the families; ``import zoo`` imports every family, so the tables are
complete by the time anything reads them.
"""
from __future__ import annotations

import inspect
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

__all__ = ["Arch", "register_arch", "archs", "register_converter", "converters", "Converter",
           "register_calibrator", "calibrators", "Calibrator", "CALIB_AT"]

# where a calibrator can sit in a block (zoo.models.resnet's ``calib_at``)
CALIB_AT = ("bn1", "conv2", "bn2", "bn3", "out")

# every builder takes these two positionally-named arguments; the rest are the public kwargs
_BUILD_ARGS = ("num_classes", "num_frames")


# -- architectures ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Arch:
    name: str
    builder: Callable[..., Any]
    family: str
    defaults: dict               # public kwargs -> default, read from the builder's signature
    doc: str
    sampling: str = "uniform"    # the frame-sampling protocol (datasets.toml [sampling]) of its input
    check: Optional[Callable[..., None]] = field(default=None, compare=False)

    def validate(self, kwargs: dict) -> None:
        """Raise TypeError/ValueError for kwargs the builder would refuse or misread: unknown
        names, a type that does not fit the default's (a bool for a bool, a number for a
        number, a string for a string), ``dropout`` outside [0, 1), and the family's own
        ``check`` (ranges such as ``shift_div > 0``)."""
        bad = set(kwargs) - set(self.defaults)
        if bad:
            raise TypeError(f"{self.name} has no kwarg(s) {sorted(bad)}; it accepts: "
                            f"{', '.join(f'{k}={v!r}' for k, v in self.defaults.items()) or 'none'}")
        for k, v in kwargs.items():
            want = _kind(self.defaults[k])
            if want is not None and not _fits(v, want):
                raise TypeError(f"{self.name}: {k} must be {want}, got {v!r}")
        if "dropout" in kwargs and not 0 <= kwargs["dropout"] < 1:
            raise ValueError(f"{self.name}: dropout must be in [0, 1), got {kwargs['dropout']!r}")
        if self.check is not None:
            self.check(**{**self.defaults, **kwargs})


def _kind(default) -> Optional[str]:
    if isinstance(default, bool):
        return "True or False"
    if isinstance(default, numbers.Real):
        return "a number"
    if isinstance(default, str):
        return "a string"
    return None  # None or a structured default: the builder checks it


def _fits(value, kind: str) -> bool:
    if kind == "True or False":
        return isinstance(value, bool)
    if kind == "a number":
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return isinstance(value, str)


_ARCHS: dict[str, Arch] = {}


def register_arch(name: str, family: str, *, sampling: str = "uniform",
                  check: Optional[Callable[..., None]] = None):
    """Register ``fn(num_classes, num_frames, **kwargs) -> nn.Module`` as architecture ``name``.

    The public kwargs and their defaults are the builder's own keyword parameters. ``sampling``
    names the protocol its clips are sampled with (a ``[sampling]`` key of datasets.toml: TDN's
    segments carry 5 frames); ``check(**kwargs)`` may refuse values eagerly (ranges), so that a
    registry row with a bad value fails when the tables load, not when the model is built."""

    def deco(fn):
        if name in _ARCHS:
            raise ValueError(f"architecture {name!r} registered twice")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"architecture name {name!r} must be lowercase snake_case")
        params = inspect.signature(fn).parameters
        missing = [a for a in _BUILD_ARGS if a not in params]
        if missing:
            raise TypeError(f"builder of {name!r} must take {', '.join(_BUILD_ARGS)}; missing {missing}")
        no_default = [k for k, p in params.items() if k not in _BUILD_ARGS and p.default is p.empty
                      and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if no_default:
            raise TypeError(f"builder of {name!r}: kwargs {no_default} need a default")
        defaults = {k: p.default for k, p in params.items()
                    if k not in _BUILD_ARGS and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        _ARCHS[name] = Arch(name, fn, family, defaults, inspect.cleandoc(fn.__doc__ or ""), sampling, check)
        return fn

    return deco


def archs() -> dict[str, Arch]:
    """Every registered architecture (complete once ``zoo.models`` is imported, as ``import zoo`` does)."""
    return _ARCHS


# -- converters -------------------------------------------------------------------------------------

Converter = Callable[[dict], dict]
_CONVERTERS: dict[str, Converter] = {}


def register_converter(name: str):
    """Register ``fn(state_dict) -> state_dict`` (an authors' checkpoint -> this zoo's keys) as ``name``."""

    def deco(fn: Converter) -> Converter:
        if name in _CONVERTERS:
            raise ValueError(f"converter {name!r} registered twice")
        _CONVERTERS[name] = fn
        return fn

    return deco


def converters() -> dict[str, Converter]:
    return _CONVERTERS


# -- calibrator kinds -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Calibrator:
    name: str
    factory: Callable[..., Any]   # BlockCtx -> nn.Module | None
    at: str                       # a CALIB_AT position
    doc: str


_CALIBRATORS: dict[str, Calibrator] = {}


def register_calibrator(name: str, factory: Callable[..., Any], at: str = "bn2", doc: str = "") -> None:
    """Make ``factory`` available to builders as ``calibrator=name``, placed at ``at``."""
    if name in _CALIBRATORS:
        raise ValueError(f"calibrator {name!r} registered twice")
    if at not in CALIB_AT:
        raise ValueError(f"calibrator {name!r}: at must be one of {CALIB_AT}, got {at!r}")
    _CALIBRATORS[name] = Calibrator(name, factory, at, doc)


def calibrators() -> dict[str, Calibrator]:
    return _CALIBRATORS
