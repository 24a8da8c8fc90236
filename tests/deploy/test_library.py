"""zoo.deploy.library: the compiled forms as custom operators, so that ``torch.compile`` of a
deployed model calls them as they are instead of tracing the plain operators."""
import copy
import gc as pygc

import pytest
import torch
import torch.nn as nn

from tests.deploy.test_deploy import build, clips, rel_err
from tests.deploy.test_deploy import _randomised
from tests.deploy.test_native import KernelsWherever, _compiled, _frames, _native_gc, _sda, needs_kernels
from tests.short import shorten
from zoo.deploy import deploy, library, native
from zoo.deploy.fold import fold_batchnorms
from zoo.deploy.forms import (DeployedBottleneck, DeployedGSTConv, DeployedShift, DeployedSTCConv, InplaceAIAUnit,
                              InplaceSDA, NativeAIA, NativeGST, NativeSDA, NativeSTC, ShiftedConv)
from zoo.models.aia import AIAUnit
from zoo.models.gc import GC
from zoo.models.gst import GSTConv
from zoo.models.sda import SDA
from zoo.models.stc import STCConv
from zoo.models.temporal import temporal_shift


class _Recorded:
    """A form whose runs are recorded by key (its shape, asked while tracing, is not a run)."""

    def __init__(self, form, key, seen):
        self.form, self.key, self.seen = form, key, seen

    def __call__(self, x, T):
        self.seen.append(self.key)
        return self.form(x, T)

    def out_shape(self, shape):
        return self.form.out_shape(shape)


def _recording(monkeypatch):
    seen, form = [], library._form
    monkeypatch.setattr(library, "_form", lambda key: _Recorded(form(key), key, seen))
    return seen


@pytest.fixture
def calls(monkeypatch):
    """The keys of the forms the custom operators ran, in order."""
    return _recording(monkeypatch)


def _compile(fn):
    torch._dynamo.reset()
    return torch.compile(fn, backend="aot_eager", fullgraph=True, dynamic=False)


def _stc(stride=1, reduction=None):
    from tests.deploy.test_deploy import randomise_bn

    torch.manual_seed(0)
    conv = STCConv(64, 64, stride, reduction=reduction)
    for m in conv.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.normal_(m.weight, 0, 0.1)   # gates off saturation
    bn = randomise_bn(nn.BatchNorm2d(64))
    plain = copy.deepcopy(conv)
    conv.__class__ = DeployedSTCConv
    conv.bn_after = bn
    conv.native = NativeSTC(conv, bn)
    return conv, lambda x, T: torch.relu(bn(plain(x, T)))


def _gst(stride=1, beta=0.5):
    torch.manual_seed(0)
    conv = _randomised(GSTConv(64, 64, stride, 0.25, beta))
    conv.temporal.bias = nn.Parameter(torch.randn(conv.temporal.out_channels))  # as a folded BN leaves it
    plain = copy.deepcopy(conv)
    _compiled(conv, DeployedGSTConv, NativeGST).relu_after = True
    return conv, lambda x, T: torch.relu(plain(x, T))


def _gate(kind):
    from tests.deploy.test_deploy import randomise_bn

    if kind == "gc":
        m = _native_gc(64)
        return m, lambda x, T: GC.forward(m, x, T)
    if kind == "sda":
        m = _compiled(_sda(64), InplaceSDA, NativeSDA)
        return m, lambda x, T: SDA.forward(m, x, T)
    torch.manual_seed(0)
    m = AIAUnit(kind)
    m.init_weights()
    randomise_bn(m)
    fold_batchnorms(m)
    m = _compiled(m, InplaceAIAUnit, NativeAIA)
    return m, lambda x, T: AIAUnit.forward(m, x, T)


@needs_kernels
@pytest.mark.parametrize("make, B, T, H, W", [
    (lambda: _stc(), 1, 4, 6, 6),
    (lambda: _stc(2, 4), 2, 3, 7, 5),    # STC-Light, stride 2 on odd sizes: the traced shape must be the real one
    (lambda: _gst(), 1, 4, 6, 6),
    (lambda: _gst(2, 1.0), 1, 3, 7, 7),  # GST-Large, stride 2
])
def test_compiled_conv_forms_run_as_one_operator(make, B, T, H, W, calls):
    """The middle convs that return a new tensor: one ``zoo::conv`` call in the graph (no graph
    break: ``fullgraph``), the same values as the plain conv, channels-last as eager."""
    conv, plain = make()
    x = _frames(B, T, 64, H, W)
    with torch.no_grad():
        ref, eager = plain(x, T), conv(x, T)
        y = _compile(lambda x: conv(x, T))(x)
    assert calls == [conv.native.key]
    assert y.shape == eager.shape and y.stride() == eager.stride()
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


@needs_kernels
@pytest.mark.parametrize("mode", ["copy", "inplace", "lent"])
@pytest.mark.parametrize("T, C", [(4, 64), (3, 24), (1, 16)])  # 24: 3 shifted channels each way
@pytest.mark.parametrize("with_conv", [True, False])
def test_compiled_tsm_shift_is_one_call(mode, T, C, with_conv, calls):
    """TSM's shift before the next conv: one call in the graph, inductor's shift replaced; with
    the conv (``conv_form``), in the mode timed, in place and back for "inplace" and "lent";
    else the compiled kernel's shifted copy. The frames are as they were after the call."""
    shift = DeployedShift(8, mode)
    conv = nn.Conv2d(C, C, 1).eval()
    if with_conv:
        shift.conv_form = ShiftedConv(shift, conv)
    x = _frames(2, T, C, 5, 3)
    x0 = x.clone()
    with torch.no_grad():
        ref = conv(temporal_shift(x, T))
        # the frames shifted, read by the conv, then read again (the block's residual)
        y = _compile(lambda x: (lambda t: shift.around(t, T, conv) + t)(x * 1.0))(x)
    assert calls == [(shift.conv_form or shift.native).key]
    torch.testing.assert_close(y, ref + x0, rtol=1e-5, atol=1e-5)
    assert torch.equal(x, x0)


@needs_kernels
@pytest.mark.parametrize("kind", ["gc", "sda", "c", "st", "cinst"])
def test_compiled_gates_run_as_one_operator_in_place(kind, calls):
    """The in-place gates: one ``zoo::gate_`` call in the graph; the compiled function returns
    the gated frames and, as a function should, leaves its input as it was."""
    m, plain = _gate(kind)
    T, x = 4, _frames(2, 4, 64, 5, 6, seed=1)
    x0 = x.clone()
    with torch.no_grad():
        ref = plain(x.clone(), T)
        y = _compile(lambda x: m(x * 1.0, T))(x)
    assert calls == [m.native.key]
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(x, x0)


class _NotLent(KernelsWherever):
    """As :class:`KernelsWherever`, but TSM's blocks keep their shift (no lending)."""

    def choose(self, kind, key, candidates, margin=0.0):
        return list(candidates)[0] if kind == "shift_lent" else super().choose(kind, key, candidates, margin)


class _Counted:
    """The compiled kernels, counting the calls of some."""

    def __init__(self, lib, counted):
        self.lib, self.calls = lib, {k: 0 for k in counted}

    def __getattr__(self, name):
        fn = getattr(self.lib, name)
        if name not in self.calls:
            return fn

        def call(*args):
            self.calls[name] += 1
            return fn(*args)
        return call


@needs_kernels
@pytest.mark.parametrize("name, tuner, shifts", [
    ("gc_gst_r50", KernelsWherever(), None),
    ("gc_tsm_r50", KernelsWherever(), "lent"),   # each block shifts its input in place, the join reads it back
    ("gc_tsm_r50", _NotLent(), "with the conv"),  # each shift and its conv one call, in place and back
])
def test_a_compiled_deployed_network_calls_its_kernels(name, tuner, shifts, monkeypatch):
    """Deployed with the kernels, then compiled by inductor: every GC gate and GST conv runs as
    its operator, and every TSM shift as timed for eager (a call per module per forward; a lent
    downsampling block shifts in place and back around conv1: a lend there shifted a copy); the
    outputs equal the plain model's. Two blocks a stage (inductor's time grows with the graph):
    each stage's downsampling block and one that joins its own input."""
    model = shorten(build(name))
    x = clips(model)
    with torch.no_grad():
        ref = model(x)
        d = deploy(model, x, autotune=tuner)
    forms = [m.native for m in d.modules() if getattr(m, "native", None) is not None and not isinstance(m, DeployedShift)]
    blocks = [m for m in d.modules() if isinstance(m, DeployedShift)]
    assert len(forms) == 16 if name == "gc_gst_r50" else (len(forms) == 8 and len(blocks) == 8)
    if shifts == "with the conv":
        assert all(s.mode != "lent" and s.conv_form is not None for s in blocks)
        forms += [s.conv_form for s in blocks]
    if shifts == "lent":
        assert all(s.mode == "lent" for s in blocks)
        # compiled, the downsampling blocks shift in place and back around conv1 (one call each)
        forms += [b.shift.conv_form for b in d.modules()
                  if isinstance(b, DeployedBottleneck) and b.downsample is not None]
    seen = _recording(monkeypatch)
    kernels = _Counted(native.load(), ("tsm_shift", "tsm_join"))
    monkeypatch.setattr(native, "load", lambda: kernels.lib if torch.compiler.is_compiling() else kernels)
    torch._dynamo.reset()
    try:
        c = torch.compile(d, dynamic=False)
        with torch.inference_mode():
            c(x)
            seen.clear()
            kernels.calls = dict.fromkeys(kernels.calls, 0)
            y = c(x)
    finally:
        torch._dynamo.reset()
    assert sorted(seen) == sorted(f.key for f in forms)
    # lent: the 4 blocks without a downsample shift their input and read the shift back at the join
    assert kernels.calls == ({"tsm_shift": 4, "tsm_join": 4} if shifts == "lent" else {"tsm_shift": 0, "tsm_join": 0})
    assert rel_err(y, ref) < 1e-4


@needs_kernels
def test_compiled_without_the_kernels_the_relu_is_applied_once():
    """A deployed GC network without its kernels (the library's only): the gate that took over
    the block's ReLU applies it under compile too, and the block does not."""
    model = shorten(build("gc_tsn_r50"))
    x = clips(model)
    with torch.no_grad():
        ref = model(x)
        d = deploy(model, x, autotune=False)
        assert any(getattr(m, "relu_after", False) for m in d.modules())
        y = _compile(d)(x)
    torch._dynamo.reset()
    assert rel_err(y, ref) < 1e-4


def test_a_form_that_is_gone_says_so():
    class Form:
        def __call__(self, x, T):
            return x.clone()

        def out_shape(self, shape):
            return shape

    f = Form()
    key = library.register(f)
    x = torch.zeros(2, 3, 1, 1)
    assert torch.equal(torch.ops.zoo.conv(x, 2, key), x)
    del f
    pygc.collect()
    with pytest.raises(RuntimeError, match="deploy the model again"):
        torch.ops.zoo.conv(x, 2, key)


@needs_kernels
def test_an_exported_deployed_network_holds_the_plain_operators():
    """torch.export gives a graph that must run without this process: no zoo operator in it,
    and its outputs those of the plain model on another input."""
    model = shorten(build("gc_tsn_r50"))
    x = clips(model)
    with torch.no_grad():
        d = deploy(model, x, autotune=KernelsWherever())
        assert any(getattr(m, "native", None) is not None for m in d.modules())
        ep = torch.export.export(d, (x,))
        x2 = torch.randn_like(x)
        ref = model(x2)
        y = ep.module()(x2)
    assert not [n for n in ep.graph.nodes if "zoo" in str(n.target)]
    assert rel_err(y, ref) < 1e-4
