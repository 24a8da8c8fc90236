"""zoo.deploy's compiled kernels (GC, AIA, SDA, STC, GST, TSM's shift), built on this machine. Each
case compares with the plain module; where the kernels cannot be built (no C compiler) only the
fallback is checked."""
import copy
import io
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from tests.deploy.test_deploy import Alternative, _randomised
from zoo.deploy import deploy, library, native
from zoo.deploy.fold import fold_batchnorms
from zoo.deploy.forms import (_Form, DeployedGSTConv, DeployedSTCConv, InplaceAIACombo, InplaceAIAUnit, InplaceGC,
                              InplaceSDA, NativeAIA, NativeAIAPair, NativeGC, NativeGST, NativeSDA, NativeSTC,
                              _taps3x3, conv_modes)
from zoo.models.aia import AIACombo, AIAUnit
from zoo.models.gc import GC
from zoo.models.gst import GSTConv
from zoo.models.sda import SDA
from zoo.models.stc import STCConv

needs_kernels = pytest.mark.skipif(native.load() is None, reason=f"no compiled kernels: {native.why_not()}")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A cache of its own and a library loaded anew (the state of this process's load put back after)."""
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_state", {})
    return tmp_path


class KernelsWherever(Alternative):
    """Channels-last frames, slot modules in the frames' layout, the compiled kernels wherever offered."""

    def choose(self, kind, key, candidates, margin=0.0):
        return list(candidates)[0] if kind == "slot_layout" else super().choose(kind, key, candidates, margin)


def _frames(B, T, C, H, W, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B * T, C, H, W, generator=g).contiguous(memory_format=torch.channels_last)


def _compiled(module, deployed, form):
    """``module`` as its deployed class, running its compiled ``form`` (which must support it)."""
    module.__class__ = deployed
    assert form.supports(module)
    module.native = form(module)
    return module


def _in_place(module, x, T, ref, atol=1e-6):
    """``module`` on a copy of x changes that copy in place, to ``ref``."""
    y = x.clone()
    out = module(y, T)
    assert out.data_ptr() == y.data_ptr()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=atol)


def _native_gc(channels, ratio=1.0, offset=0, bn=True):
    gc = _randomised(GC(channels, ratio, "gstl", group_offset=offset, bn=bn))
    fold_batchnorms(gc)
    gc.__class__ = InplaceGC
    gc.native = NativeGC(gc)
    return gc


@needs_kernels
@pytest.mark.parametrize("channels, ratio, offset, bn, B, T, H, W", [
    (64, 1.0, 0, True, 1, 8, 7, 9),      # c = 16: a tail of 3 pixels after the 6- or 12-pixel tiles
    (128, 0.5, 3, True, 2, 4, 6, 5),     # half the channels pass through; groups rotated (loop version)
    (128, 1.0, 1, False, 2, 3, 5, 5),    # GC-GST's calibrators (no BN, no biases); c = 32
    (256, 1.0, 0, True, 1, 8, 3, 4),     # c = 64
    (512, 1.0, 2, True, 2, 2, 7, 7),     # c = 128: several output blocks per tile
    (64, 1.0, 0, True, 1, 1, 4, 4),      # one frame: ECal-L's conv sees only its centre tap
])
def test_native_gc_equals_plain_gc(channels, ratio, offset, bn, B, T, H, W):
    gc = _native_gc(channels, ratio, offset, bn)
    if channels // gc.groups % native.vector_width():
        pytest.skip("groups narrower than this machine's vectors: the kernels are not offered")
    x = _frames(B, T, channels, H, W)
    with torch.no_grad():
        ref = GC.forward(gc, x.clone(), T)
        assert "native" in conv_modes(gc.native.wS)
        for mode in conv_modes(gc.native.wS):
            gc.native.s_mode = mode
            assert gc.native.takes(x, T)
            # ECal-L sums 3c products in another order than PyTorch's conv: on an AVX2 EPYC one
            # element of 100,352 (c = 128) differed by 3e-6; a wrong index would differ by ~0.1
            _in_place(gc, x, T, ref, atol=1e-5)


@needs_kernels
@pytest.mark.parametrize("d, bias, H, W", [(2, False, 6, 9), (1, True, 5, 3), (2, True, 2, 7)])
def test_native_s_conv_equals_the_library_conv(d, bias, H, W):
    """ECal-S's conv in the kernels: each pixel finds its 3x3 taps (rows and columns falling in
    the padding read zeros; with H = 2 and d = 2 no pixel has a row above or below)."""
    gc = _native_gc(64)
    form = gc.native
    form.s = s = nn.Conv2d(16, 16, 3, padding=d, dilation=d, bias=bias)
    nn.init.normal_(s.weight)
    if bias:
        nn.init.normal_(s.bias)
    form.wS = _taps3x3(s)
    sS = torch.randn(2, H, W, 16)
    with torch.no_grad():
        ref = s(sS.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        form.s_mode = "native"
        torch.testing.assert_close(form.s_conv(sS), ref, rtol=1e-5, atol=1e-4)


@needs_kernels
@pytest.mark.parametrize("bias, cin, N, H, W", [(True, 64, 2, 5, 7), (False, 200, 1, 3, 3)])
def test_native_down_projection_equals_the_library_conv(bias, cin, N, H, W):
    """SDA's down-projection in the kernels (conv1x1), with and without a bias, over a pixel
    count that leaves a tail after the full tiles."""
    form = _compiled(_sda(128, ("lst", "lt", "ls", "s122")), InplaceSDA, NativeSDA).native
    r = form.r
    form.down = d = nn.Conv2d(cin, r, 1, bias=bias)
    nn.init.normal_(d.weight)
    form.wD = d.weight.detach().flatten(1).t().contiguous()
    x = _frames(N, 1, cin, H, W)
    with torch.no_grad():
        form.down_mode = "native"
        y = form.down_conv(x)
        assert y.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(y, d(x), rtol=1e-5, atol=1e-4)


@needs_kernels
def test_the_bn_after_gc_runs_in_its_pass():
    from tests.deploy.test_deploy import randomise_bn

    gc = _native_gc(128, 0.5, 1, bn=False)   # half the channels pass through: the BN covers them too
    bn = randomise_bn(nn.BatchNorm2d(128))
    gc.native.take_bn(bn)
    x = _frames(2, 4, 128, 5, 6)
    with torch.no_grad():
        ref = bn(GC.forward(gc, x.clone(), 4))
        torch.testing.assert_close(gc(x.clone(), 4), ref, rtol=1e-5, atol=1e-5)
        gc.bn_after, gc.native = bn, None     # the PyTorch path applies the same BN after
        torch.testing.assert_close(gc(x.clone(), 4), ref, rtol=1e-5, atol=1e-5)


@needs_kernels
def test_native_gc_leaves_other_frames_to_torch():
    gc = _native_gc(64)
    x = _frames(1, 4, 64, 5, 5).contiguous()          # NCHW
    assert not gc.native.takes(x, 4) and not gc.native.takes(x.to(torch.bfloat16), 4)
    with torch.no_grad():
        torch.testing.assert_close(gc(x.clone(), 4), GC.forward(gc, x.clone(), 4))
    assert not gc.native.takes(_frames(1, 4, 64, 5, 5).requires_grad_(), 4)


@needs_kernels
@pytest.mark.parametrize("name", ["gc_tsn_r50", "gc_gst_r50", "gc_tdn_r50"])
def test_deployed_gc_networks_run_the_kernels(name):
    gcs = _deployed_with_kernels(name, InplaceGC)
    # GC-GST's calibrators sit between the conv and bn2: the BN moves into their pass
    moved = [isinstance(getattr(m, "bn_after", None), nn.BatchNorm2d) and m.native.scale is not None for m in gcs]
    assert all(moved) if name == "gc_gst_r50" else not any(moved)


def _deployed_with_kernels(name, kind, attr="native", tuner=None, **kw):
    """The network deployed with the kernels wherever offered (or ``tuner``'s choices): every
    ``kind`` module has its ``attr`` set, and the outputs equal the plain model's (one and two
    clips). Returns those modules."""
    from tests.deploy.test_deploy import build, clips, rel_err

    model = build(name, **kw)
    x = clips(model)
    with torch.no_grad():
        ref = model(x)
        d = deploy(model, x[:1], autotune=tuner or KernelsWherever())
        mods = [m for m in d.modules() if isinstance(m, kind)]
        assert mods and all(getattr(m, attr) is not None for m in mods)
        assert rel_err(d(x), ref) < 1e-4 and rel_err(d(x[:1]), ref[:1]) < 1e-4
    return mods


@needs_kernels
@pytest.mark.parametrize("B, T, C, H, W", [(1, 8, 64, 7, 9), (2, 3, 32, 5, 4), (1, 1, 16, 2, 2)])
def test_native_aia_c_equals_plain(B, T, C, H, W):
    unit = _randomised(AIAUnit("c"))
    fold_batchnorms(unit)
    x = _frames(B, T, C, H, W)
    with torch.no_grad():
        ref = AIAUnit.forward(unit, x.clone(), T)
        _in_place(_compiled(unit, InplaceAIAUnit, NativeAIA), x, T, ref)
        assert not unit.native.takes(x.contiguous(), T) and NativeAIA.supports(unit)
        assert not NativeAIA.supports(_randomised(AIAUnit("cinst")))   # its BNs not folded


@needs_kernels
def test_deployed_aia_c_network_runs_the_kernel():
    _deployed_with_kernels("aia_tsn_r50", InplaceAIAUnit, attention="c")


def _sda(channels, deps=("lst", "lt", "ls", "s122"), agg="sec", chunk=None):
    """An SDA with BN statistics far from the identity and a query that weighs the maps unevenly
    (the authors' init keeps the gates off saturation), BNs folded."""
    from tests.deploy.test_deploy import randomise_bn

    torch.manual_seed(0)
    sda = SDA(channels, deps, agg, chunk=chunk)
    sda.init_weights()
    randomise_bn(sda)
    if sda.query is not None:
        nn.init.normal_(sda.query, 0, 1)
    fold_batchnorms(sda)
    return sda


@needs_kernels
@pytest.mark.parametrize("C, deps, agg, chunk, B, T, H, W", [
    (64, ("lst", "lt", "ls", "s122"), "sec", None, 1, 8, 8, 8),      # r = 16, even: 2x2 windows
    (128, ("s122", "ls", "lst", "lt"), "sec", None, 2, 3, 7, 7),     # another order; 7 -> 3 -> 7 overlaps
    (256, ("lst", "lt", "ls", "s122"), "avg", None, 1, 4, 9, 5),     # r = 64, plain average, odd sizes
    (512, ("lt", "s144", "lst", "ls"), "sec", None, 1, 4, 7, 7),     # r = 128, 4x4 pooling
    (128, ("lst", "lt", "ls", "s122"), "sec", 4, 1, 8, 6, 6),        # two chunks of 4 frames
    (64, ("lst", "lt", "ls", "s122"), "sec", None, 2, 1, 4, 6),      # one frame
    (192, ("lst", "lt", "ls", "s122"), "sec", None, 1, 10, 4, 4),    # r = 48: an odd vector count; T > 8
])
def test_native_sda_equals_plain_sda(C, deps, agg, chunk, B, T, H, W):
    sda = _sda(C, deps, agg, chunk)
    if sda.down.out_channels % native.vector_width():
        pytest.skip("reduced channels narrower than this machine's vectors: the kernels are not offered")
    x = _frames(B, T, C, H, W)
    with torch.no_grad():
        ref = SDA.forward(sda, x.clone(), T)
        form = _compiled(sda, InplaceSDA, NativeSDA).native
        assert form.takes(x, T) and "native" in conv_modes(form.wT)
        for mode, down in zip(conv_modes(form.wT), ["library", "native", "native"]):
            form.lt_mode, form.down_mode = mode, down  # the pooled-over-T branch's conv, the down-projection
            _in_place(sda, x, T, ref, atol=1e-5)


@needs_kernels
def test_native_sda_is_offered_for_its_branches_only_and_leaves_other_frames_to_torch():
    for deps in (("lst", "lt"), ("lst", "lt", "ls", "s222"), ("lst", "lt", "ls", "p122c133")):
        assert not NativeSDA.supports(_sda(64, deps))
    assert not NativeSDA.supports(SDA(64))                    # BNs not folded
    sda = _sda(64)
    _compiled(sda, InplaceSDA, NativeSDA)
    x = _frames(1, 4, 64, 6, 6)
    for other in (x.contiguous(), x.to(torch.bfloat16), x.clone().requires_grad_()):
        assert not sda.native.takes(other, 4)
    with torch.no_grad():
        torch.testing.assert_close(sda(x.contiguous(), 4), SDA.forward(sda, x.contiguous(), 4))


@needs_kernels
@pytest.mark.parametrize("name", ["sda_tsn_r50", "sda_tsm_r50"])
def test_deployed_sda_networks_run_the_kernels(name):
    _deployed_with_kernels(name, InplaceSDA)


def _folded_aia(module):
    """AIA units with the authors' init (gates off saturation, so a wrong axis shows), BNs far
    from the identity, then folded."""
    from tests.deploy.test_deploy import randomise_bn

    torch.manual_seed(0)
    for unit in (m for m in module.modules() if isinstance(m, AIAUnit)):
        unit.init_weights()
    randomise_bn(module)
    fold_batchnorms(module)
    return module


@needs_kernels
@pytest.mark.parametrize("kind", ["st", "cinst", "stinc"])
@pytest.mark.parametrize("B, T, C, H, W", [(1, 8, 64, 7, 9), (2, 3, 32, 5, 4), (1, 4, 128, 3, 6), (1, 1, 16, 2, 3)])
def test_native_aia_st_units_equal_plain(kind, B, T, C, H, W):
    unit = _folded_aia(AIAUnit(kind))
    if C % native.vector_width():
        pytest.skip("channels narrower than this machine's vectors: the kernels are not offered")
    x = _frames(B, T, C, H, W)
    with torch.no_grad():
        ref = AIAUnit.forward(unit, x.clone(), T)
        _compiled(unit, InplaceAIAUnit, NativeAIA)
        assert unit.native.takes(x, T) and not unit.native.takes(x.contiguous(), T)
        # the ST gates' kernels take whole vectors of channels
        assert not unit.native.takes(_frames(B, T, native.vector_width() + 1, H, W), T)
        _in_place(unit, x, T, ref, atol=1e-5)


@needs_kernels
@pytest.mark.parametrize("first, second", [("cinst", "stinc"), ("st", "st"), ("cinst", "st"), ("st", "stinc")])
@pytest.mark.parametrize("B, T, C, H, W", [(1, 8, 64, 7, 9), (2, 3, 32, 5, 4)])
def test_native_aia_pair_equals_plain(first, second, B, T, C, H, W):
    """Two units as one form: the first's last pass gates the frames and reads the second's ST
    contexts; the second applies the block's ReLU."""
    combo = _folded_aia(AIACombo(first, second, ">"))
    if C % native.vector_width():
        pytest.skip("channels narrower than this machine's vectors: the kernels are not offered")
    x = _frames(B, T, C, H, W)
    with torch.no_grad():
        ref = torch.relu(AIACombo.forward(combo, x.clone(), T))
        combo.__class__ = InplaceAIACombo
        for unit in (combo.first, combo.second):
            _compiled(unit, InplaceAIAUnit, NativeAIA)
        combo.second.relu_after = combo.relu_after = True
        combo.second.native.relu = True
        assert NativeAIAPair.supports(combo)
        combo.native = NativeAIAPair(combo.first.native, combo.second.native)
        assert combo.native.takes(x, T)
        _in_place(combo, x, T, ref, atol=1e-5)
        twin = copy.deepcopy(combo)  # a copy's pair runs the copy's units (and their ReLU flag)
        assert twin.native.first is twin.first.native and twin.native.second is twin.second.native
        assert twin.native.key != combo.native.key
        _in_place(twin, x, T, ref, atol=1e-5)
        combo.native = None  # the units one after the other: the same
        _in_place(combo, x, T, ref, atol=1e-5)
    combo.first.native.kind = "c"
    assert not NativeAIAPair.supports(combo)


@needs_kernels
@pytest.mark.parametrize("attention", ["st", "cinst>stinc"])
def test_deployed_aia_networks_run_the_kernels(attention):
    _deployed_with_kernels("aia_tsn_r50", InplaceAIAUnit, attention=attention)
    if attention == "cinst>stinc":
        _deployed_with_kernels("aia_tsn_r50", InplaceAIACombo, attention=attention)  # as pairs


@needs_kernels
@pytest.mark.parametrize("C, stride, kw, B, T, H, W", [
    (64, 1, {}, 1, 8, 6, 7),                    # the temporal conv and TR's gate in the kernels
    (64, 2, {}, 2, 4, 9, 7),                    # stride 2 on odd sizes: T_S reads every other pixel
    (128, 1, {"reduction": 4}, 1, 4, 5, 5),     # STC-Light: reductions 96 -> 24 and 32 -> 8, padded to vectors
    (64, 2, {"reduction": 4}, 1, 11, 9, 7),     # STC-Light, stride 2, 11 frames: 48 -> 12 and 16 -> 8
    (64, 1, {"reduction": 16}, 2, 8, 4, 4),     # STC-Light at max(8, C / r): 8 channels each
    (64, 1, {"equal": True, "shift": False}, 1, 4, 4, 6),   # T_S 32 -> 16 channels: PyTorch's conv
    (64, 1, {"tr": False, "sr": False}, 1, 1, 3, 3),       # no refinements; one frame
    (40, 1, {}, 1, 4, 5, 6),                    # 30 + 10 channels, not whole vectors: TR and T_S in PyTorch
    (256, 1, {}, 1, 11, 3, 4),                  # TR over 11 frames: the kernel takes them 8 at a time
])
def test_native_stc_equals_conv_bn_relu(C, stride, kw, B, T, H, W):
    from tests.deploy.test_deploy import randomise_bn

    torch.manual_seed(0)
    stc = STCConv(C, C, stride, **kw)
    for m in stc.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.normal_(m.weight, 0, 0.1)   # gates off saturation: a wrong axis shows
    bn = randomise_bn(nn.BatchNorm2d(C))
    x = _frames(B, T, C, H, W)
    with torch.no_grad():
        ref = torch.relu(bn(stc(x, T)))
        stc.__class__ = DeployedSTCConv
        assert NativeSTC.supports(stc, bn)
        form = NativeSTC(stc, bn)
        kernels = C // 4 % native.vector_width() == 0 and not kw.keys() - {"reduction"}
        assert (form.wT is not None and form.wR is not None) == kernels
        assert (form.wSr is not None and form.wRr is not None) == ("reduction" in kw)
        assert form.takes(x, T) and not form.takes(x.contiguous(), T)
        for onednn in (False, True):
            form.sr_onednn = onednn and stc.sr is not None
            torch.testing.assert_close(form(x, T), ref, rtol=1e-5, atol=1e-5)
        x0 = x.clone()
        form(x, T)
        assert torch.equal(x, x0)   # the block input is only read


@needs_kernels
@pytest.mark.parametrize("name", ["stc_r50", "stc_light_r50"])
def test_deployed_stc_networks_run_the_kernels(name):
    convs = _deployed_with_kernels(name, DeployedSTCConv)
    assert all(isinstance(c.bn_after, nn.BatchNorm2d) for c in convs)


@needs_kernels
@pytest.mark.parametrize("C, stride, beta, B, T, H, W, relu", [
    (64, 1, 0.5, 1, 8, 6, 7, True),      # GST: the input split in half
    (64, 2, 0.5, 2, 4, 9, 7, False),     # stride 2 on odd sizes, two clips, no ReLU (a calibrator follows)
    (64, 1, 1.0, 1, 3, 5, 5, True),      # GST-Large: both convs read every channel
    (32, 1, 0.5, 1, 1, 4, 4, True),      # one frame: both neighbours beyond the clip
    (48, 2, 1.0, 1, 2, 7, 7, False),     # two frames: each has one neighbour; 12 temporal channels
])
def test_native_gst_equals_plain(C, stride, beta, B, T, H, W, relu):
    torch.manual_seed(0)
    gst = _randomised(GSTConv(C, C, stride, 0.25, beta))
    gst.temporal.bias = nn.Parameter(torch.randn(gst.temporal.out_channels))  # as a folded BN leaves it
    x = _frames(B, T, C, H, W)
    with torch.no_grad():
        ref = GSTConv.forward(gst, x, T)
        ref = ref.relu() if relu else ref
        gst.__class__ = DeployedGSTConv
        assert NativeGST.supports(gst)
        form = NativeGST(gst)
        gst.relu_after = relu
        assert form.takes(x, T) and not form.takes(x.contiguous(), T)
        x0 = x.clone()
        out = form(x, T)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        assert out.is_contiguous(memory_format=torch.channels_last) and torch.equal(x, x0)
        gst.native = form  # through the module, and its plain path where the form does not take the frames
        torch.testing.assert_close(gst(x, T), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gst(x.contiguous(), T), ref, rtol=1e-4, atol=1e-4)


class FoldedKernels(KernelsWherever):
    """As :class:`KernelsWherever`, with every BN folded."""

    def choose(self, kind, key, candidates, margin=0.0):
        return "fold" if kind == "fold" else super().choose(kind, key, candidates, margin)


@needs_kernels
@pytest.mark.parametrize("name, relu", [("gst_r50", True), ("gst_large_r50", True), ("gc_gst_r50", False)])
def test_deployed_gst_networks_run_the_kernels(name, relu):
    """Each middle conv on its kernel; where bn2 is folded away and no calibrator follows the conv,
    it applies the block's ReLU (GC-GST's GC takes it instead)."""
    convs = _deployed_with_kernels(name, DeployedGSTConv, tuner=FoldedKernels())
    assert all(c.relu_after == relu for c in convs)


@needs_kernels
@pytest.mark.parametrize("B, T, C, H, W", [(1, 8, 64, 5, 7), (2, 3, 256, 4, 4), (1, 1, 16, 3, 3)])
def test_tsm_shift_in_place_and_the_join_that_reads_it_back(B, T, C, H, W):
    from zoo.models.temporal import temporal_shift

    lib, f = native.load(), C // 8
    x = _frames(B, T, C, H, W)
    out = _frames(B, T, C, H, W, seed=1)
    ref_shift, ref_join = temporal_shift(x, T), torch.relu(out + x)
    saved = x.new_empty(B, H * W, 2 * f)
    lib.tsm_shift(x.data_ptr(), B, T, H * W, C, f, saved.data_ptr())
    torch.testing.assert_close(x, ref_shift, rtol=0, atol=0)
    lib.tsm_join(out.data_ptr(), x.data_ptr(), B, T, H * W, C, f, saved.data_ptr())
    torch.testing.assert_close(out, ref_join, rtol=1e-6, atol=1e-6)


@needs_kernels
def test_deployed_tsm_lends_its_blocks_input():
    from zoo.deploy import DeployedShift
    from zoo.deploy.forms import DeployedBottleneck

    blocks = _deployed_with_kernels("tsm_r50", DeployedBottleneck, attr="shift")
    assert all(isinstance(b.shift, DeployedShift) and b.shift.mode == "lent" for b in blocks)


@needs_kernels
@pytest.mark.parametrize("B, T, C, H, W", [(1, 8, 64, 5, 7), (2, 3, 256, 4, 4), (1, 1, 16, 3, 3)])
def test_the_join_that_shifts_its_output_for_the_next_block(B, T, C, H, W):
    from zoo.models.temporal import temporal_shift

    lib, f = native.load(), C // 8
    x, out = _frames(B, T, C, H, W), _frames(B, T, C, H, W, seed=1)
    joined = torch.relu(out + x)
    # after a lent block (x shifted, its dropped channels saved) and after a downsample block (x as it is)
    for lent in (True, False):
        o, xs, saved, so = out.clone(), x.clone(), x.new_empty(B, H * W, 2 * f), x.new_empty(B, H * W, 2 * f)
        if lent:
            lib.tsm_shift(xs.data_ptr(), B, T, H * W, C, f, saved.data_ptr())
        assert lib.tsm_join_shift(o.data_ptr(), xs.data_ptr(), B, T, H * W, C, f if lent else 0,
                                  saved.data_ptr() if lent else None, f, so.data_ptr()) == 0
        torch.testing.assert_close(o, temporal_shift(joined, T), rtol=1e-6, atol=1e-6)
        # what the next block's join reads back: the output as it was before the shift
        nxt = _frames(B, T, C, H, W, seed=2)
        ref = torch.relu(nxt + joined)
        lib.tsm_join(nxt.data_ptr(), o.data_ptr(), B, T, H * W, C, f, so.data_ptr())
        torch.testing.assert_close(nxt, ref, rtol=1e-6, atol=1e-6)


@needs_kernels
def test_deployed_tsm_blocks_hand_their_output_shifted():
    from zoo.deploy.forms import DeployedBottleneck

    class HandEverywhere(KernelsWherever):
        def choose(self, kind, key, candidates, margin=0.0):
            return "handoff" if kind == "shift_handoff" else super().choose(kind, key, candidates, margin)

    blocks = _deployed_with_kernels("tsm_r50", DeployedBottleneck, "shift", HandEverywhere())
    # every block but the last of each stage hands over, without registering the next as its submodule
    assert [b.hand_to is not None for b in blocks] == [b is not blocks[-1] and n.downsample is None
                                                       for b, n in zip(blocks, blocks[1:] + [blocks[0]])]
    assert not any("hand_to" in b._modules for b in blocks)


@needs_kernels
def test_stage_maps_stay_whole_when_the_next_stage_shifts_its_input():
    """A stage's map is the next stage's input, which a lent shift changes in place: the maps
    ``forward_intermediates`` keeps (and ``features_only`` returns) are copies."""
    from tests.deploy.test_deploy import build, clips, rel_err

    model = build("tsm_r50")
    x = clips(model)
    with torch.no_grad():
        ref = model.forward_intermediates(x, intermediates_only=True)
        d = deploy(model, x[:1], autotune=KernelsWherever())
        assert all(b.shift.mode == "lent" for b in d.modules() if hasattr(b, "shift") and hasattr(b.shift, "mode"))
        maps = d.forward_intermediates(x, intermediates_only=True)
        assert len(maps) == 5 and all(rel_err(m, r) < 1e-4 for m, r in zip(maps, ref))


def _forms(model) -> list:
    return [v for m in model.modules() for v in vars(m).values() if isinstance(v, _Form)]


@needs_kernels
@pytest.mark.parametrize("name", ["gc_tsn_r50", "sda_tsn_r50", "stc_light_r50", "aia_tsm_r50", "gc_gst_r50", "tsm_r50"])
def test_a_copy_runs_its_own_weights(name):
    """A deep copy and a pickled copy of a deployed network: each form takes a key and weight
    addresses of its own. The original's kernel weights are then changed in place: the
    original's output changes, a copy's must not (it read the original's weights before).
    TSM's forms (for torch.compile) hold no weights: its copies are only run."""
    from tests.deploy.test_deploy import build, clips, rel_err

    model = build(name)
    x = clips(model)
    with torch.no_grad():
        ref = model(x)
        d = deploy(model, x[:1], autotune=KernelsWherever())
        d(x)  # SDA's form binds its windows' addresses for these frames on a first call
        buf = io.BytesIO()
        torch.save(d, buf)
        buf.seek(0)
        copies = [copy.deepcopy(d), torch.load(buf, weights_only=False)]
        forms = _forms(d)
        weights = [t for f in forms for v in vars(f).values() for t in (v.values() if isinstance(v, dict) else [v])
                   if isinstance(t, torch.Tensor) and t.is_floating_point()]
        assert forms and bool(weights) == (name != "tsm_r50")
        for t in weights:
            t.mul_(-3.0).add_(0.5)
        assert not weights or not rel_err(d(x), ref) < 1e-2  # NaN where the changed weights overflow
        for c in copies:
            mine = _forms(c)
            assert len(mine) == len(forms) and {f.key for f in mine}.isdisjoint(f.key for f in forms)
            assert all(library._form(f.key) is f for f in mine)
            assert rel_err(c(x), ref) < 1e-4 and rel_err(c(x[:1]), ref[:1]) < 1e-4


@needs_kernels
def test_weights_loaded_into_a_deployed_model_reach_its_kernels_or_are_refused():
    """The compiled forms run on copies of the weights taken at conversion: a load into a module
    that has one is refused, in one line that says what to do; loads elsewhere (the classifier),
    and into a model deployed without kernels, take effect."""
    from tests.deploy.test_deploy import build, clips, rel_err

    model = build("gc_tsn_r50")
    x = clips(model)
    with torch.no_grad():
        d = deploy(model, x[:1], autotune=KernelsWherever())
        with pytest.raises(RuntimeError, match=r"^zoo.deploy: layer1.0.calib runs compiled kernels on copies .*"
                                               r"load the weights into the plain model, then deploy it again$"):
            d.load_state_dict(d.state_dict())
        fc = {k: v * 2 for k, v in d.state_dict().items() if k.startswith("fc.")}
        before = d(x)
        d.load_state_dict(fc, strict=False)
        assert rel_err(d(x), 2 * before) < 1e-5 and not rel_err(d(x), before) < 0.1
        plain = deploy(model, x[:1], autotune=False)
        other = build("gc_tsn_r50")
        other.load_state_dict({k: v + 0.01 if v.is_floating_point() else v for k, v in model.state_dict().items()})
        plain.load_state_dict(deploy(other, x[:1], autotune=False).state_dict())
        assert rel_err(plain(x), other(x)) < 1e-4


def test_without_a_compiler_the_torch_forms_stay(fresh, monkeypatch):
    monkeypatch.setenv("CC", str(fresh / "no-such-cc"))
    assert native.load() is None and "no C compiler" in native.why_not()
    gc = _randomised(GC(64))
    fold_batchnorms(gc)
    assert not NativeGC.supports(gc)
    x = _frames(1, 4, 64, 5, 5)
    with torch.no_grad():
        ref = gc(x.clone(), 4)
        d = deploy(gc, (x.clone(), 4), autotune=Alternative())
        assert d.native is None
        torch.testing.assert_close(d(x.clone(), 4), ref, rtol=1e-5, atol=1e-6)


def test_turned_off_by_the_environment(fresh, monkeypatch):
    monkeypatch.setenv("ZOO_NATIVE", "0")
    assert native.load() is None and "ZOO_NATIVE=0" in native.why_not()
    assert native.vector_width() == 0


@needs_kernels
def test_built_once_per_machine_whole_and_shared_with_torch(fresh):
    lib = native.load()
    built = list((fresh / "native").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"   # no temporary build folder left
    stamp = built[0].stat().st_mtime_ns
    native._state.clear()
    assert native.load() is not None and built[0].stat().st_mtime_ns == stamp  # reused, not rebuilt
    # one OpenMP runtime: torch's thread count is the kernels'
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert native.load().zoo_max_threads() == 1
    finally:
        torch.set_num_threads(before)
    del lib


@needs_kernels
def test_compile_flags_do_not_change_the_process_float_mode():
    # a library linked with -ffast-math would flush denormals to zero for the whole process
    native.load()
    tiny = torch.tensor([1e-39], dtype=torch.float32)
    assert (tiny * 1.0).item() != 0.0


def test_kernel_source_is_part_of_the_package():
    assert native.SOURCE.is_file() and "gc_apply" in native.SOURCE.read_text()
    cfg = (Path(__file__).resolve().parents[2] / "setup.cfg").read_text()
    assert "deploy/*.c" in cfg
