"""The compiled forms as PyTorch custom operators, for ``torch.compile``.

Dynamo cannot trace into the kernels (ctypes calls on data addresses). Without these operators a
compiled deployed model gave way to the plain operators inside every calibrator, which inductor
compiles to several passes where the kernels make one or two. Registered with ``torch.library``,
a form is one opaque call in the compiled graph, run as eager runs it; inductor compiles
everything around it (the library convs, the joins, the ReLUs).

Two operators run forms: ``zoo::gate_`` one that gates its input in place (GC, AIA, SDA);
``zoo::conv`` one that returns a new tensor (STC's and GST's middle convs, TSM's shift with or
without its conv). Two more are TSM's lent shift and the join that reads it back. A form is
registered once under an integer key, which the graph holds as a constant; the registry holds it
weakly (the deployed module owns it). The inputs keep the strides they were traced with
(``needs_exact_strides``): the kernels read channels-last frames."""
from __future__ import annotations

import itertools
import weakref
from typing import Callable

import torch

from . import native

__all__ = ["register", "run_", "run", "tsm_lend_", "tsm_join_"]

_forms: "weakref.WeakValueDictionary[int, Callable]" = weakref.WeakValueDictionary()
_keys = itertools.count()
_TAGS = (torch.Tag.needs_exact_strides,)


def register(form) -> int:
    """A new key for ``form`` (a compiled form, called as ``form(x, T)``), held weakly."""
    k = next(_keys)
    _forms[k] = form
    return k


def _form(key: int):
    form = _forms.get(key)
    if form is None:  # the deployed module that owned it is gone
        raise RuntimeError(f"zoo.deploy: compiled form {key} no longer exists; deploy the model again, then compile it")
    return form


@torch.library.custom_op("zoo::gate_", mutates_args=("x",), device_types="cpu", tags=_TAGS)
def _gate_(x: torch.Tensor, T: int, key: int) -> None:
    _form(key)(x, T)


@_gate_.register_fake
def _(x, T, key):
    return None


@torch.library.custom_op("zoo::conv", mutates_args=(), device_types="cpu", tags=_TAGS)
def _conv(x: torch.Tensor, T: int, key: int) -> torch.Tensor:
    return _form(key)(x, T)


@_conv.register_fake
def _(x, T, key):
    shape = _form(key).out_shape(tuple(x.shape))
    return x.new_empty(shape).contiguous(memory_format=torch.channels_last)


# TSM's lent shift (zoo.deploy.forms.DeployedBottleneck): the block input shifted in place, and the
# join that reads it back; plain kernels, no form to hold

def _lend(x: torch.Tensor, T: int, f: int, save: bool) -> torch.Tensor:
    N, C, H, W = x.shape
    saved = x.new_empty(N // T, H * W, 2 * f) if save else x.new_empty(0)
    native.load().tsm_shift(x.data_ptr(), N // T, T, H * W, C, f, saved.data_ptr() if save else None)
    return saved


def _join(out: torch.Tensor, x: torch.Tensor, saved: torch.Tensor, T: int, f: int) -> None:
    N, C, H, W = out.shape
    native.load().tsm_join(out.data_ptr(), x.data_ptr(), N // T, T, H * W, C, f, saved.data_ptr())


@torch.library.custom_op("zoo::tsm_lend_", mutates_args=("x",), device_types="cpu", tags=_TAGS)
def _tsm_lend_(x: torch.Tensor, T: int, f: int, save: bool) -> torch.Tensor:
    return _lend(x, T, f, save)


@_tsm_lend_.register_fake
def _(x, T, f, save):
    N, C, H, W = x.shape
    return x.new_empty(N // T, H * W, 2 * f) if save else x.new_empty(0)


@torch.library.custom_op("zoo::tsm_join_", mutates_args=("out",), device_types="cpu", tags=_TAGS)
def _tsm_join_(out: torch.Tensor, x: torch.Tensor, saved: torch.Tensor, T: int, f: int) -> None:
    _join(out, x, saved, T, f)


@_tsm_join_.register_fake
def _(out, x, saved, T, f):
    return None


def tsm_lend_(x: torch.Tensor, T: int, f: int, save: bool) -> torch.Tensor:
    """TSM's shift in place on channels-last frames (``tsm_shift``); returns what it drops
    (empty unless ``save``). One ``zoo::tsm_lend_`` call while compiling."""
    if torch.compiler.is_compiling():
        return torch.ops.zoo.tsm_lend_(x, T, f, save)
    return _lend(x, T, f, save)


def tsm_join_(out: torch.Tensor, x: torch.Tensor, saved: torch.Tensor, T: int, f: int) -> torch.Tensor:
    """``out = relu(out + x as it was before tsm_lend_(x))`` in place; returns ``out``."""
    if torch.compiler.is_compiling():
        torch.ops.zoo.tsm_join_(out, x, saved, T, f)
    else:
        _join(out, x, saved, T, f)
    return out


def run_(form, x: torch.Tensor, T: int) -> torch.Tensor:
    """``form(x, T)`` for a form (its key in ``form.key``) that gates ``x`` in place and returns
    it: a call of ``zoo::gate_`` while compiling."""
    if torch.compiler.is_compiling():
        torch.ops.zoo.gate_(x, T, form.key)
        return x
    return form(x, T)


def run(form, x: torch.Tensor, T: int) -> torch.Tensor:
    """``form(x, T)`` for a form that returns a new channels-last tensor (``form.out_shape(shape)``
    gives its shape): a call of ``zoo::conv`` while compiling."""
    if torch.compiler.is_compiling():
        return torch.ops.zoo.conv(x, T, form.key)
    return form(x, T)
