"""The inference form of a zoo model: ``zoo.deploy(model, example_input)`` (this package is
callable; the function itself is ``zoo.deploy.deploy``).

The family modules have one forward, the one training, fvcore, tracing, export and
``torch.compile`` use. :func:`deploy` converts a copy of a model once (as timm's
``reparameterize_model`` and PyTorchVideo's ``convert_to_deployable_form``):

* every BatchNorm that follows a conv or linear is folded into it (the backbone's, the
  calibrators', the difference stem's) and replaced by ``nn.Identity``: the model holds one
  copy of the weights, the folded one. Whether folding pays is itself timed (whole model
  against whole model): it does on CPUs, it did not on an H200 in bf16 channels-last, where
  the BNs are then kept;
* the layout: the 2D weights, and with them the frames, contiguous (NCHW) or channels-last,
  whichever runs faster here, each layout's model converted in full and timed against the
  other's; with channels-last frames each block's slot module may run on an NCHW copy;
* modules that gate a block temporary (GC, AIA, SDA) become their in-place forms;
* where two implementations compete for the same result (TSM's shift copied, done in place
  around the next conv, or fused into a 1x1 conv as products; a 1x1 conv as the library conv
  or a batched product; a (k, 1, 1) temporal conv as the library conv, tap products (NCHW) or
  row products (channels-last); AIA's 2-channel gate conv or its banded form; TDN's shift conv
  or three multiply-adds; the stem's max pool as the library kernel or separable maxima; AIA's
  context maxima as torch's reduction or maxima of halves; GC's four calibrators as PyTorch
  operators or as kernels compiled on this machine, see below), each runs on this machine for
  the shapes and strides the example input produces (a channel slice is timed as a slice) and
  the fastest is kept. Timings
  are cached per machine, torch version, thread count, dtype and shape (``~/.cache/zoo`` or
  ``$ZOO_CACHE``), as ``cudnn.benchmark`` does; ``autotune=False`` keeps the library kernels,
  deterministically, without timing anything.

Compiled kernels (``native``, source ``kernels.c``): where a C compiler is at hand (``$CC`` or
``cc``, as inductor needs on CPUs too), the conversion builds them once per machine with
``-march=native`` and offers them as one more timed candidate; ``ZOO_NATIVE=0`` turns them off.
GC on channels-last fp32 frames runs as two passes (the groups' means; the gates applied in
place, ECal-L's temporal conv computed in registers on the way), where PyTorch runs about twenty
operators per block (op-count.json); a BN that follows GC (GC-GST) is applied in the same pass.
AIA's C unit runs as one call; its ST unit, CinST and STinC as one pass for the three axial
contexts, the gate convs, one pass for the product. SDA (the paper's four branches) keeps its
down-projection and 3x3 branch conv in PyTorch; its pooling, temporal convs, aggregation,
up-projection and gate run as two calls. STC keeps its two convs' library kernels (T_S's
temporal conv may run in registers); S_T's shifted input is one copy, and the refinements'
gates, the concatenation, the block's bn2 and the ReLU after it are one pass; TR's gate, and
STC-Light's 1x1 reductions before both refinement convs, run in registers. GST keeps its
spatial conv and its temporal conv's three taps as one 2D conv (both the library's); the taps'
sums across frames, the concatenation and the block's ReLU are one pass. The compiled forms
are chosen before the slot layouts (they take channels-last frames only). Weights are read at
conversion: deploy after loading them. TSM's shift may be lent: the block input shifted in place
and not shifted back, the residual join reading the shifted channels from the neighbouring
frames (timed per block); a lent block may also write its output already shifted for the next
block of its stage, which then shifts nothing (timed per pair; a hook on such a block sees its
output shifted). Forward hooks in general receive tensors that later in-place steps overwrite
(a folded conv's output ReLU'd, gated or joined in place): a hook that keeps one clones it. Not compiled, but timed the same way: each block's join (add, ReLU) as ATen's
``_add_relu_`` in one pass.

The result is for inference only (``eval()``, no gradients); it traces and exports (tracing,
``torch.export`` and ONNX see the plain operators). Under ``torch.compile`` the compiled kernels'
forms are custom operators (``library``: one opaque call each, run as eager runs it); the other
choices give way to the plain operators, which inductor fuses itself. Inputs of other shapes
still run (each choice checks its shapes and falls back to the library kernel).

Here: the conversion. ``choices``: the timed kernel-choice cache; ``fold``: BatchNorm folding;
``forms``: the deployed forms of the modules; ``native``: building and loading the compiled
kernels; ``library``: the compiled forms as custom operators for ``torch.compile``.
"""
from __future__ import annotations

import copy
import os
import sys
import types
from typing import Callable, Optional

import torch
import torch.nn as nn

from ..models.aia import AxialGate
from ..models.conv3d import FrameConv3d
from ..models.gst import GSTConv
from ..models.ops import Conv1x1
from ..models.resnet import BasicBlock, Bottleneck
from ..models.tdn import ShiftConv
from ..models.temporal import TemporalShift
from .choices import Autotuner, _key, machine_id  # noqa: F401
from .fold import fold_batchnorms, fold_bn
from .forms import (_INPLACE, DeployedAxialGate, DeployedBasicBlock, DeployedBottleneck, joins_fused, _dense,
                    DeployedConv1x1, DeployedFrameConv3d, DeployedMaxPool, DeployedShift, DeployedShiftConv, _banded,
                    _plain_1x1, channels_inner, max_pool_separable, shift_, shift_conv1x1, temporal_conv, tree_max,
                    unshift_)
from .forms import InplaceAIACombo, InplaceAIAUnit, InplaceGC, InplaceSDA  # noqa: F401  (importable from here as before)
from .forms import (DeployedGSTConv, DeployedSTCConv, NativeAIA, NativeAIAPair, NativeGC, NativeGST, NativeSDA,
                    NativeSTC, _eval_bn, conv_modes)
from .forms import ShiftedConv, _conv_hw

__all__ = ["deploy", "deploy_default", "fold_bn", "Autotuner", "DeployedShift", "shift_conv1x1", "shift_", "unshift_",
           "temporal_conv", "max_pool_separable", "tree_max", "is_deployed"]


def _deploy_shift(block: nn.Module, x: torch.Tensor, T: int, tuner: Autotuner) -> None:
    shift = block.shift
    conv = block.conv1 if isinstance(block, Bottleneck) or not block._conv1_takes_t \
        else (lambda y: block.conv1(y, T))
    modes = ["copy"] + (["inplace"] if _dense(x) else []) \
        + (["fused"] if _plain_1x1(block.conv1) and x.stride(-1) == 1 else [])
    forms = {m: DeployedShift(shift.fold_div, m) for m in modes}
    work = x.clone()
    name = f"{type(block.conv1).__name__}{tuple(block.conv1.weight.shape)}"
    mode = tuner.choose("shift", _key(x, T, shift.fold_div, name),
                        {m: (lambda f=f: f.around(work, T, conv)) for m, f in forms.items()})
    block.shift = forms[mode]
    if isinstance(block, DeployedBottleneck) and block._lends(x, T):
        # lent: the shift and the join change together, so the whole block is timed
        lent = DeployedShift(shift.fold_div, "lent")
        run = _time_module(block, (x.clone(), T))
        best = tuner.choose("shift_lent", _key(x, T, shift.fold_div, name), {
            mode: _set(block, forms[mode], run, "shift"), "lent": _set(block, lent, run, "shift")})
        block.shift = lent if best == "lent" else forms[mode]
    if isinstance(block, Bottleneck) and _plain_1x1(block.conv1):
        block.shift.conv_form = ShiftedConv(block.shift, block.conv1)  # under torch.compile


# a whole-model choice departs from the first form (folded BNs; the layout as given) only for a
# larger gain than this: in 5 alternated forwards a busy host can flip a 1-2 % difference (a
# folded GC-TSM lost to the unfolded one once that way, and ran about 6 % slower for it)
WHOLE_MODEL_MARGIN = 0.03


def _copy(a: torch.Tensor) -> torch.Tensor:
    """A copy with ``a``'s strides, gaps included: a channel slice stays a slice (``clone`` would
    make it dense, and a kernel timed on the dense copy would not pay what it pays on the slice)."""
    return torch.empty_strided(a.shape, a.stride(), dtype=a.dtype, device=a.device).copy_(a)


def _record(model: nn.Module, example_input: torch.Tensor, types) -> dict:
    """The first inputs each module of ``types`` (a tuple of types, or a set of modules)
    receives on ``example_input`` (copies with their strides: :func:`_copy`)."""
    seen: dict = {}
    hooks = []
    for m in model.modules():
        if m in types if isinstance(types, set) else isinstance(m, types):
            def hook(mod, args, m=m):
                if m not in seen:
                    seen[m] = tuple(_copy(a) if isinstance(a, torch.Tensor) else a for a in args)
            hooks.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(*example_input) if isinstance(example_input, tuple) else model(example_input)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _time_module(m: nn.Module, args: tuple) -> Callable[[], object]:
    return lambda: m(*args)


def deploy(model: nn.Module, example_input, *, autotune=True, cache_dir: Optional[os.PathLike] = None,
           inplace: bool = False) -> nn.Module:
    """The inference form of ``model`` (a copy unless ``inplace``), in eval mode, with kernel
    choices fixed for ``example_input``'s shapes: a clip batch the model takes (or a tuple of
    the arguments of a slot module, e.g. ``(frames, T)``), on the device and in the dtype it
    will run in. ``autotune=False``: library kernels, nothing timed; an :class:`Autotuner`
    instance: its choices."""
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tuner = autotune if isinstance(autotune, Autotuner) else Autotuner(bool(autotune), cache_dir)
    model = _fold_or_keep(model, example_input, tuner)
    fmt, built = _layout(model, example_input, tuner)
    if built is not None and not inplace:
        model = built  # converted in full while its layout was timed
    else:
        if fmt is not None:
            _to_format(model, fmt)
        _convert(model, example_input, tuner)
    tuner.save()
    model.deployed = True
    return model


def _nchw_in(mod, args):
    x = args[0]
    return (x.contiguous(),) + tuple(args[1:]) if x.dim() == 4 and not x.is_contiguous() else None


def _channels_last_out(mod, args, out):
    if isinstance(out, torch.Tensor) and out.dim() == 4:
        return out.contiguous(memory_format=torch.channels_last)
    return None


def _slot_layouts(model: nn.Module, example_input, tuner: Autotuner) -> None:
    """Where the frames are channels-last, each block's slot modules (calibrator, ``mid``, slot
    conv) run on them as they are or on a contiguous (NCHW) copy whose result is turned back,
    whichever times faster here (``m.layout``: ``"as given"`` or ``"nchw"``; forward hooks do the
    turning). A module written around per-channel planes (pools, 2-channel convs) can lose more
    to the channels-inner layout than the two copies cost."""
    slots = set()
    for b in model.modules():
        if isinstance(b, (Bottleneck, BasicBlock)):
            slots.update(m for m in (b.calib, b.mid, b.conv2 if getattr(b, "_conv2_takes_t", False) else None)
                         if m is not None)
    if not slots:
        return
    seen = _record(model, example_input, slots)
    cl = torch.channels_last
    for m, args in seen.items():
        x = args[0]
        if not (isinstance(x, torch.Tensor) and x.dim() == 4 and not x.is_contiguous()
                and x.is_contiguous(memory_format=cl)):
            continue
        rest = args[1:]
        name = f"{type(m).__name__} {sum(p.numel() for p in m.parameters())}"
        nchw = {}

        def run_nchw(m=m, x=x, rest=rest):
            if "m" not in nchw:  # its own 2D weights contiguous too: mixed layouts reorder in every conv
                nchw["m"] = _to_format(copy.deepcopy(m), torch.contiguous_format)
            return nchw["m"](x.contiguous(), *rest).contiguous(memory_format=cl)

        # in-place gates change the recorded input each call: its values, not its timing
        best = tuner.choose("slot_layout", _key(*args, name), {"as given": lambda m=m, x=x, rest=rest: m(x, *rest),
                                                               "nchw": run_nchw})
        if best == "nchw":
            _to_format(m, torch.contiguous_format)
            m.register_forward_pre_hook(_nchw_in)
            m.register_forward_hook(_channels_last_out)
        m.layout = best


def _native_forms(model: nn.Module, example_input, tuner: Autotuner) -> None:
    """The compiled forms of the slot modules that have one (GC, SDA, AIA's units, STC's and GST's
    middle convs), each kept where it runs faster than the module's PyTorch form on the input it
    receives here.
    Decided before the slot layouts: the kernels take channels-last frames only, so the layout
    choice has to see them."""
    seen = _record(model, example_input, (InplaceGC, InplaceSDA, InplaceAIAUnit, DeployedSTCConv, DeployedGSTConv))
    blocks = {b.conv2: b for b in model.modules() if isinstance(b, Bottleneck)}
    with torch.no_grad():
        for m, args in seen.items():
            if isinstance(m, DeployedSTCConv):
                _native_stc(m, blocks.get(m), args, tuner)
                continue
            if isinstance(m, DeployedGSTConv):
                _native_gst(m, blocks.get(m), args, tuner)
                continue
            if isinstance(m, InplaceGC):
                form = NativeGC(m) if NativeGC.supports(m) else None
                kind, extra = "gc", ((m.channels, m.groups, m.plan),)
            elif isinstance(m, InplaceSDA):
                form, kind, extra = (NativeSDA(m) if NativeSDA.supports(m) else None), "sda", \
                    ((m.dependencies, m.aggregation, m.chunk),)
            else:
                form = NativeAIA(m) if NativeAIA.supports(m) else None
                kind, extra = f"aia_{m.kind}", ()
            if form is None or not form.takes(*args):
                continue
            fn = _time_module(m, args)
            best = tuner.choose(kind, _key(*args, *extra),
                                {"torch": _set(m, None, fn, "native"), "native": _set(m, form, fn, "native")})
            m.native = form if best == "native" else None
            if m.native is not None and isinstance(m, (InplaceGC, InplaceSDA)):
                x, T = args
                conv, attr, run, taps = (form.s, "s_mode", form.s_conv, form.wS) if isinstance(m, InplaceGC) else \
                    (form.lt, "lt_mode", form.lt_conv, form.wT)
                p = torch.zeros(x.shape[0] // T, *x.shape[2:], conv.in_channels)
                setattr(form, attr, tuner.choose("small_conv", _key(p, tuple(conv.weight.shape), conv.dilation, conv.bias is not None), {
                    k: _set(form, k, lambda: run(p), attr) for k in conv_modes(taps)}))
                if isinstance(m, InplaceSDA):
                    form.down_mode = tuner.choose("conv1x1_down", _key(x, tuple(form.down.weight.shape)), {
                        k: _set(form, k, lambda: form.down_conv(x), "down_mode")
                        for k in ["library"] + ["native"] * (form.wD is not None)})

        # AIA's two units in sequence, each compiled: their forms as one where that runs faster
        for combo, args in _record(model, example_input, InplaceAIACombo).items():
            if not NativeAIAPair.supports(combo):
                continue
            pair = NativeAIAPair(combo.first.native, combo.second.native)
            if pair.takes(*args):
                fn = _time_module(combo, args)
                best = tuner.choose("aia_pair", _key(*args, combo.first.kind, combo.second.kind),
                                    {"units": _set(combo, None, fn, "native"), "pair": _set(combo, pair, fn, "native")})
                combo.native = pair if best == "pair" else None


def _onednn_choice(tuner: Autotuner, kind: str, form, attr: str, run, weight: torch.Tensor, shape: tuple) -> None:
    """``form.<attr>``: whether ``run`` (a small conv of a compiled form) calls oneDNN directly,
    where PyTorch would take its own path, timed on channels-last zeros of ``shape``."""
    if not (hasattr(torch, "mkldnn_convolution") and torch.backends.mkldnn.is_available()):
        return
    p = torch.zeros(shape).contiguous(memory_format=torch.channels_last)
    best = tuner.choose(kind, _key(p, tuple(weight.shape)), {
        "library": _set(form, False, lambda: run(p), attr), "onednn": _set(form, True, lambda: run(p), attr)})
    setattr(form, attr, best == "onednn")


def _native_stc(stc: DeployedSTCConv, block, args: tuple, tuner: Autotuner) -> None:
    """STC's compiled form, which applies the block's bn2 too: timed against the conv and the BN
    as PyTorch runs them; where it wins, the BN moves into the form (``bn_after``)."""
    bn = getattr(block, "bn2", None)
    if block is None or not NativeSTC.supports(stc, bn) or _calib_before_relu(block):
        return
    form = NativeSTC(stc, bn)
    if not form.takes(*args):
        return
    best = tuner.choose("stc", _key(*args, (stc.alpha, stc.equal, stc.shift, stc.tr is not None, stc.sr is not None)), {
        "torch": lambda: bn(stc(*args)), "native": lambda: form(*args)})
    if best == "native":
        stc.native, stc.bn_after = form, bn
        block.bn2 = nn.Identity()
        if stc.sr is not None:
            x, T = args
            sp, w = stc.spatial, form.sr_weight  # its input: SR's pool, or STC-Light's reduction of it
            _onednn_choice(tuner, "stc_sr_conv", form, "sr_onednn", form.sr_conv, w,
                           (x.shape[0] // T, w.shape[1], *_conv_hw(sp, *x.shape[2:])))


def _calib_before_relu(block) -> bool:
    """Whether a calibrator sits between the block's middle conv and the ReLU after bn2."""
    return block.calib is not None and block.calib_at in ("conv2", "bn2")


def _native_gst(gst: DeployedGSTConv, block, args: tuple, tuner: Autotuner) -> None:
    """GST's compiled form, timed against the plain one (each followed by the block's ReLU where
    the form can take it over: bn2 folded away, no calibrator in between)."""
    if not NativeGST.supports(gst):
        return
    form = NativeGST(gst)
    if not form.takes(*args):
        return
    relu = block is not None and isinstance(block.bn2, nn.Identity) and not _calib_before_relu(block)
    gst.relu_after = relu  # both candidates timed with the ReLU where the form would take it over
    if type(gst.temporal) is FrameConv3d:
        gst.temporal.__class__ = DeployedFrameConv3d  # the plain form timed as it will run: taps summed in place
    after = torch.relu_ if relu else (lambda y: y)
    best = tuner.choose("gst", _key(*args, (gst.beta, tuple(gst.temporal.weight.shape)), relu), {
        "torch": lambda: after(GSTConv.forward(gst, *args)), "native": lambda: form(*args)})
    gst.native = form if best == "native" else None
    gst.relu_after = relu and best == "native"


def _convert(model: nn.Module, example_input, tuner: Autotuner) -> None:
    """In place: the deployed forms of the modules, and the kernel choices for the example
    input in the model's present layout."""
    for m in list(model.modules()):
        cls = _INPLACE.get(type(m))
        if cls is not None:
            m.__class__ = cls
    _native_forms(model, example_input, tuner)
    _slot_layouts(model, example_input, tuner)  # then: the kernels below are timed in the layout they get
    kinds = (Conv1x1, FrameConv3d, AxialGate, ShiftConv, nn.MaxPool2d, InplaceAIAUnit, Bottleneck, BasicBlock)
    seen = _record(model, example_input, kinds)
    with torch.no_grad():
        for m, args in seen.items():
            if isinstance(m, (Bottleneck, BasicBlock)):
                continue
            fn = _time_module(m, args)
            if isinstance(m, InplaceAIAUnit):
                x, T = args
                v = x.view(x.shape[0] // T, T, *x.shape[1:])
                m.tree = frozenset(d for d in (1, 3, 4) if tuner.choose(
                    "context_max", _key(v, d), {"amax": lambda d=d: v.amax(d), "tree": lambda d=d: tree_max(v, d)}
                ) == "tree")
                continue
            if type(m) is nn.MaxPool2d:
                m.__class__ = DeployedMaxPool
                if m.separable_ok():
                    key = _key(*args, (m.kernel_size, m.stride, m.padding))
                    m.mode = tuner.choose("maxpool", key, {"library": _set(m, "library", fn),
                                                           "separable": _set(m, "separable", fn)})
                continue
            key = _key(*args, tuple((m.conv if isinstance(m, AxialGate) else m).weight.shape))
            if type(m) is Conv1x1:
                m.__class__ = DeployedConv1x1
                m.mode = tuner.choose("conv1x1", key, {"conv": _set(m, "conv", fn), "bmm": _set(m, "bmm", fn)})
            elif isinstance(m, FrameConv3d):
                m.__class__ = DeployedFrameConv3d
                modes = {"conv": _set(m, "conv", fn)}
                if m.kernel_size[1:] == (1, 1) and m.stride == (1, 1, 1) and m.groups == 1:
                    # rows: fp32 only (in bf16 each tap's sum would be rounded once more)
                    alt = "rows" if channels_inner(args[0]) else "taps"
                    if alt == "taps" or args[0].dtype in (torch.float32, torch.float64):
                        modes[alt] = _set(m, alt, fn)
                m.mode = tuner.choose("frameconv3d", key, modes)
            elif type(m) is AxialGate:
                m.__class__ = DeployedAxialGate
                D = args[0].shape[1]
                band = _banded(m.conv.weight, m.conv.bias, D)
                best = tuner.choose("aia_gate", key, {"conv": _set(m, None, fn, "band"),
                                                      "band": _set(m, band, fn, "band")})
                m.band = band if best == "band" else None
            elif type(m) is ShiftConv:
                m.__class__ = DeployedShiftConv
                m.mode = tuner.choose("shiftconv", key, {"conv": _set(m, "conv", fn), "madd": _set(m, "madd", fn)})
        for m, args in seen.items():
            _gc_takes_bn(m)
            _relu_into_calib(m)
            if isinstance(m, (DeployedBottleneck, DeployedBasicBlock)):
                y = m(*args)
                if joins_fused(y, y):
                    a, b = _copy(y), _copy(y)
                    m.fused_join = tuner.choose("join", _key(y), {
                        "library": lambda a=a, b=b: a.add_(b).relu_(),
                        "fused": lambda a=a, b=b: torch.ops.aten._add_relu_(a, b)}) == "fused"
        for m, args in seen.items():
            if isinstance(m, (Bottleneck, BasicBlock)) and isinstance(m.shift, TemporalShift) \
                    and not isinstance(m.shift, DeployedShift):
                _deploy_shift(m, args[0], args[1], tuner)
        _hand_over(seen, tuner)


def _lent(block) -> bool:
    return isinstance(block, DeployedBottleneck) and getattr(block.shift, "mode", None) == "lent"


def _hand_over(seen: dict, tuner: Autotuner) -> None:
    """Each lent block whose successor in the stage is lent too may write its output shifted for
    it (``hand_to``): timed on the pair, the two blocks run in turn with and without."""
    blocks = [(m, args) for m, args in seen.items() if isinstance(m, (Bottleneck, BasicBlock))]
    for (a, (x, T)), (b, (y, _)) in zip(blocks, blocks[1:]):
        if not (_lent(a) and _lent(b) and b.downsample is None and a._lends(x, T) and b._lends(y, T)
                and (a.calib is None or a.calib_at != "out")):
            continue

        def run(a=a, b=b, work=x.clone(), T=T):  # each call shifts work again: its values, not its timing
            return b(a(work, T), T)

        key = _key(x, T, f"{tuple(a.conv1.weight.shape)} {tuple(b.conv1.weight.shape)}")
        best = tuner.choose("shift_handoff", key, {"none": lambda: (a.hand(None), run()),
                                                   "handoff": lambda: (a.hand(b), run())})
        a.hand(b if best == "handoff" else None)


def _relu_into_calib(block: nn.Module) -> None:
    """A bottleneck whose in-place gate is followed by the ReLU alone (GC, SDA, AIA after bn2; GC
    after conv2 once the BN has moved into it): the gate applies the ReLU in its last pass, one
    pass less over the block's middle tensor (no choice to time: the same work, minus a pass)."""
    if not isinstance(block, DeployedBottleneck) or block.mid is not None:
        return
    calib = block.calib
    if not isinstance(calib, (InplaceGC, InplaceSDA, InplaceAIAUnit, InplaceAIACombo)) or not (
            block.calib_at == "bn2" or (block.calib_at == "conv2" and isinstance(block.bn2, nn.Identity))):
        return
    units = [calib] + ([calib.second] if isinstance(calib, InplaceAIACombo) and calib.how == ">" else [])
    for u in units:
        u.relu_after = True
        if getattr(u, "native", None) is not None:
            u.native.relu = True


def _gc_takes_bn(block: nn.Module) -> None:
    """A block whose GC runs the compiled kernels right after its conv (GC-GST: no conv before
    the BN to fold it into): the BN that follows moves into GC's gating pass."""
    if not isinstance(block, (Bottleneck, BasicBlock)) or block.calib_at != "conv2":
        return
    gc, name = block.calib, "bn2" if isinstance(block, Bottleneck) else "bn1"
    bn = getattr(block, name)
    if isinstance(gc, InplaceGC) and gc.native is not None and getattr(gc, "bn_after", None) is None and _eval_bn(bn):
        gc.native.take_bn(bn)
        gc.bn_after = bn
        setattr(block, name, nn.Identity())


def _fold_or_keep(model: nn.Module, example_input, tuner: Autotuner) -> nn.Module:
    """The model with its BatchNorms folded, or with the ResNet's own BNs kept where that runs
    faster here (the slot modules' BNs are folded either way: their deployed forms expect it).

    Folding saves a pass over every conv output on a CPU (~3 % of a ResNet-50); on an H200 in
    bf16 channels-last the folded TSN ran 7 % slower than torchvision's ResNet-50 with its BNs
    (benchmarks/results/gpu-h200.md), so which form wins is timed, whole model against whole
    model, as every other choice; with timing off everything is folded."""
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if n_bn == 0:
        return model
    folded: dict = {}

    def fold_copy():
        if "m" not in folded:
            folded["m"] = copy.deepcopy(model)
            fold_batchnorms(folded["m"])
        return folded["m"]

    run = _runner(example_input)
    x = example_input[0] if isinstance(example_input, tuple) else example_input
    key = _key(x, f"{_signature(model)} bn={n_bn}")
    candidates = {"fold": run(fold_copy), "keep": run(lambda: model)}
    if tuner.choose("fold", key, candidates, margin=WHOLE_MODEL_MARGIN) == "keep":
        fold_batchnorms(model, backbone=False)
        return model
    fold_batchnorms(model)  # this model, not the timed copy: deploy(..., inplace=True) converts in place
    return model


def _signature(model: nn.Module) -> str:
    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__
    return f"{arch} params={sum(p.numel() for p in model.parameters())}"


def _runner(example_input):
    """``run(get)``: a timing candidate calling the model ``get()`` returns on the example input."""
    def run(get):
        return lambda: get()(*example_input) if isinstance(example_input, tuple) else get()(example_input)
    return run


def _to_format(model: nn.Module, fmt: torch.memory_format) -> nn.Module:
    """The 4-D tensors (2D conv weights) of ``model`` in ``fmt``, in place; 3-D/5-D ones as they are."""
    return model._apply(lambda t: t.contiguous(memory_format=fmt) if t.dim() == 4 else t)


def _layout(model: nn.Module, example_input, tuner: Autotuner) -> tuple:
    """(format, converted model or None): the layout the model runs faster in here (None: as
    given), and, when both were timed, the winner's copy, already converted in full. The layout:
    its 2D conv weights contiguous or channels-last (a channels-last weight makes the conv's
    output channels-last too, so the frames stay in that layout from the stem on). Timed whole
    model against whole model, each converted in full (its own kernel and slot-layout choices),
    as every other choice; with timing off or a cached choice, nothing is built. oneDNN's
    convolutions work in a blocked channels-inner layout: contiguous (NCHW) activations are
    reordered around every conv, channels-last ones are not (torchvision's ResNet-50 and TSN ran
    in 0.64-0.68x the time channels-last, AVX-512 EPYC), while modules written around
    per-channel planes can lose more than that. A slot module's input (a tuple of arguments)
    keeps the caller's layout: nothing is converted there."""
    if isinstance(example_input, tuple) or not any(p.dim() == 4 for p in model.parameters()):
        return None, None
    cl = torch.channels_last
    given = "channels_last" if all(p.is_contiguous(memory_format=cl) for p in model.parameters()
                                   if p.dim() == 4) else "contiguous"
    fmts = {"contiguous": torch.contiguous_format, "channels_last": cl}
    built: dict = {}

    def converted(name):
        if name not in built:
            built[name] = _to_format(copy.deepcopy(model), fmts[name])
            _convert(built[name], example_input, tuner)
        return built[name]

    run = _runner(example_input)
    names = [given] + [n for n in fmts if n != given]  # timing off: as given
    choice = tuner.choose("layout", _key(example_input, f"{_signature(model)} given={given}"),
                          {n: run(lambda n=n: converted(n)) for n in names}, margin=WHOLE_MODEL_MARGIN)
    return (None if choice == given else fmts[choice]), built.get(choice)


def deploy_default(model: nn.Module, **kw) -> nn.Module:
    """:func:`deploy` for one clip of the size the model was configured for (its
    ``pretrained_cfg``: frames and input size; 8 x 224 x 224 when it has none), on the device
    and in the dtype of its parameters (``create_model(..., deploy=True)``)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    T = (cfg.get("num_frames") or getattr(model, "num_frames", 8)) * (
        cfg.get("frames_per_segment") or getattr(model, "frames_per_segment", 1))
    H, W = (cfg.get("input_size") or (3, 224, 224))[-2:]
    p = next(model.parameters())
    return deploy(model, torch.randn(1, 3, T, H, W, dtype=p.dtype, device=p.device), **kw)


def _set(m: nn.Module, value, fn, attr: str = "mode"):
    """A timing candidate: ``m.<attr> = value``, then one call."""
    def go():
        setattr(m, attr, value)
        return fn()
    return go


def is_deployed(model: nn.Module) -> bool:
    return bool(getattr(model, "deployed", False))


class _Callable(types.ModuleType):
    """The package's module type: ``zoo.deploy(model, example_input)`` calls :func:`deploy`
    (one call, as timm's ``reparameterize_model(model)``); ``zoo.deploy.<name>`` stays the
    package's."""

    def __call__(self, model: nn.Module, example_input, **kwargs) -> nn.Module:
        return deploy(model, example_input, **kwargs)


sys.modules[__name__].__class__ = _Callable
