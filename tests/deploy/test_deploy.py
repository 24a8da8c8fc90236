"""zoo.deploy: the inference form equals the plain forward for every family and every kernel choice."""
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import zoo
from tests.models.test_temporal import naive_shift
from tests.short import shorten
from zoo.deploy import (Autotuner, DeployedShift, deploy, fold_bn, max_pool_separable, shift_, shift_conv1x1,
                        temporal_conv, tree_max, unshift_)
from zoo.deploy import choices
from zoo.deploy.forms import DeployedAxialGate, DeployedBottleneck, _banded, channels_inner, temporal_rows
from zoo.models.aia import ATTENTIONS, AxialGate, aia_slot
from zoo.models.conv3d import FrameConv3d
from zoo.models.gc import GC
from zoo.models.sda import SDA
from zoo.models.tdn import MotionExcitation, ShiftConv

_BN = nn.modules.batchnorm._BatchNorm

# one architecture per family (R18 where the family has it), and the comparators on TSN R18
FAMILIES = ["tsn_r18", "tsm_r18", "gst_r18", "c3d_r18", "p3d_r18", "gc_tsm_r50", "gc_gst_r50", "sda_tsm_r50",
            "aia_tsm_r50", "stc_r50", "tdn_r50", "gc_tdn_r50"]
COMPARATORS = ["se3d", "ge3d_dw333", "s3d_g", "cbam3d_377", "nln"]


class Alternative(Autotuner):
    """Times nothing and always takes the last candidate: the non-library kernels (and
    channels-last frames, unless ``layout=False``: then the layout stays as given)."""

    def __init__(self, layout: bool = True):
        super().__init__(enabled=False)
        self.layout = layout

    def choose(self, kind, key, candidates, margin=0.0):
        return list(candidates)[-1 if self.layout or kind != "layout" else 0]


def randomise_bn(model: nn.Module) -> nn.Module:
    """Statistics and affine parameters far from the identity, so a wrong fold shows."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BN):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
    return model.eval()


def build(name: str, **kw) -> nn.Module:
    torch.manual_seed(0)
    return randomise_bn(zoo.create_model(name, num_classes=7, num_frames=4, **kw))


def clips(model, B=2, size=32, dtype=torch.float32):
    fps = getattr(model, "frames_per_segment", 1)
    if fps > 1:
        size = 64  # TDN's motion module pools layer4's map by 2: it needs 2x2 there
    return torch.randn(B, 3, 4 * fps, size, size, generator=torch.Generator().manual_seed(1)).to(dtype)


def rel_err(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def check_family(model):
    x = clips(model)
    with torch.no_grad():
        ref = model(x)
    done = []
    for tuner in (Alternative(), Alternative(layout=False), False):  # the last: library kernels, BNs folded
        d = deploy(model, x[:1], autotune=tuner)
        done.append(d)
        with torch.no_grad():
            assert rel_err(d(x), ref) < 1e-4             # two clips
            assert rel_err(d(x[:1]), ref[:1]) < 1e-4     # one clip
    # bf16: the folded weights are rounded once more than the plain ones, so the deployed
    # model must be about as close to the fp32 logits as the plain bf16 model: within twice
    # its error (or 1% of the largest logit). One clip: on a CPU without AVX-512 BF16, bf16 runs
    # several times slower than fp32 (TDN-R50's plain forward here: 3.4 s against 0.39 s)
    mb, xb = model.to(torch.bfloat16), x[:1].to(torch.bfloat16)
    with torch.no_grad():
        plain_err = rel_err(mb(xb), ref[:1])
        assert rel_err(deploy(mb, xb, autotune=Alternative())(xb), ref[:1]) <= max(2 * plain_err, 1e-2)
    model.float()
    return done


@pytest.mark.parametrize("name", FAMILIES)
def test_deployed_equals_plain(name):
    # three blocks a stage: a downsampling block, then two identity blocks, the first of which
    # receives its input already shifted by the downsampling block and hands its own output on to
    # the second (deploy's chain)
    model = shorten(build(name), keep=3)
    chosen, *_, d = check_family(model)
    if name.endswith("tsm_r50"):  # the chain ran: one block a stage both received its input shifted and handed on
        blocks = [b for b in chosen.modules() if isinstance(b, DeployedBottleneck)]
        handed = {id(b.hand_to) for b in blocks}
        assert sum(b.hand_to is not None and id(b) in handed for b in blocks) == 4
    assert zoo.deploy.is_deployed(d) and not zoo.deploy.is_deployed(model)
    # the backbone copy is replaced, not kept beside: BNs are gone where a conv precedes them
    left = [n for n, m in d.named_modules() if isinstance(m, _BN)]
    # after a gate (GC-GST: in the block, or in GC's compiled pass) or STC's gated conv: no conv before
    kept = {"gc_gst_r50": ("bn2", "calib.bn_after"), "stc_r50": ("bn2",)}
    assert all(n.endswith(kept.get(name, ("-",))) for n in left), left
    assert not any(isinstance(m, _BN) for m in d.modules() if name not in kept)
    # the plain model is untouched (a copy was converted)
    assert sum(isinstance(m, _BN) for m in model.modules()) > 0


@pytest.mark.parametrize("calibrator", COMPARATORS)
def test_deployed_comparators_equal_plain(calibrator):
    d = check_family(build("tsn_r18", calibrator=calibrator))[-1]
    assert not any(isinstance(m, _BN) for m in d.modules())


def test_deployed_model_traces():
    model = build("tsm_r18")
    x1, x2 = clips(model, B=1), clips(model, B=1, size=32) * 2
    with torch.no_grad():
        ref = model(x2)
        for tuner in (False, Alternative()):
            d = deploy(model, x1, autotune=tuner)
            traced = torch.jit.trace(d, (x1,), check_trace=False)
            assert rel_err(traced(x2), ref) < 1e-4


def test_deployed_model_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = shorten(build("gc_tsm_r50"))  # two blocks a stage: every module kind, half the graph
    x1, x2 = clips(model, B=1), clips(model, B=1) * 2
    d = deploy(model, x1, autotune=False)
    path = tmp_path / "gc_tsm.onnx"
    torch.onnx.export(d, (x1,), str(path), input_names=["clip"], output_names=["logits"], dynamo=False)
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"clip": x2.numpy()})[0]
    with torch.no_grad():
        assert rel_err(torch.from_numpy(out), model(x2)) < 1e-4


def test_choices_are_timed_once_and_cached(tmp_path, monkeypatch):
    model = build("sda_tsm_r50")
    x = clips(model, B=1)
    d = deploy(model, x, cache_dir=tmp_path)
    table = json.loads((tmp_path / "deploy-choices.json").read_text())
    (machine, choices), = table.items()
    assert "torch " + torch.__version__ in machine
    kinds = {k.split()[0] for k in choices}
    assert {"fold", "shift", "conv1x1"} <= kinds and set(choices.values()) <= {
        "fold", "keep", "contiguous", "channels_last", "copy", "inplace", "fused", "conv", "bmm", "taps", "band",
        "madd", "library", "separable", "as given", "nchw", "rows", "amax", "tree", "lent", "native", "torch", "onednn",
        "none", "handoff"}
    modes = [m.mode for m in d.modules() if isinstance(m, DeployedShift)]
    assert len(modes) == 16 and all(m in choices.values() for m in modes)
    # a second conversion on this machine reads the cache: nothing is timed again
    monkeypatch.setattr(Autotuner, "_times", lambda self, fns, rounds=None: pytest.fail("timed again"))
    d2 = deploy(model, x, cache_dir=tmp_path)
    assert [m.mode for m in d2.modules() if isinstance(m, DeployedShift)] == modes
    with torch.no_grad():
        assert rel_err(d2(x), model(x)) < 1e-4


def test_choices_are_timed_again_for_new_code(tmp_path, monkeypatch):
    """A choice is remembered per code version: after a change to the models or the deployed
    forms it is timed again, and the stale entries of this machine are dropped."""
    model = build("tsm_r18")
    x = clips(model, B=1)
    deploy(model, x, cache_dir=tmp_path)
    (old,) = json.loads((tmp_path / "deploy-choices.json").read_text())
    assert f"code {choices.code_id()}" in old
    monkeypatch.setattr(choices, "code_id", lambda: "0123456789ab")
    timed = []
    real = Autotuner._times
    monkeypatch.setattr(Autotuner, "_times", lambda self, fns, rounds=None: timed.append(1) or real(self, fns, rounds))
    deploy(model, x, cache_dir=tmp_path)
    assert timed
    (new,) = json.loads((tmp_path / "deploy-choices.json").read_text())
    assert new.endswith("code 0123456789ab") and new.rsplit(" | code ", 1)[0] == old.rsplit(" | code ", 1)[0]


def _scripted(monkeypatch, script):
    """Autotuner._paired yields the ratios of ``script`` (other over default, one per round),
    and fails the test where a choice asks for more; returns the list of rounds taken."""
    taken = []

    def paired(default, other):
        for r in script.pop(0):
            taken.append(r)
            yield r
        pytest.fail("more rounds asked for than scripted")

    monkeypatch.setattr(Autotuner, "_paired", staticmethod(paired))
    return taken


def test_a_whole_model_choice_leaves_the_default_only_on_a_sign_test(tmp_path, monkeypatch):
    """A choice with a margin times the two candidates in pairs until a sign test decides: the
    other only where significantly more rounds than not show it faster by more than the margin;
    a burst spoils one round, not the choice; undecided after the most rounds: the default."""
    tuner = Autotuner(cache_dir=tmp_path)
    fns = {"fold": lambda: None, "keep": lambda: None}
    taken = _scripted(monkeypatch, [[0.8] * 7])
    assert tuner.choose("fold", "a", fns, margin=0.03) == "keep" and len(taken) == 7  # 7 of 7: decided at once
    taken = _scripted(monkeypatch, [[1.0] * 7])
    assert tuner.choose("fold", "b", fns, margin=0.03) == "fold" and len(taken) == 7
    taken = _scripted(monkeypatch, [[0.98] * 7])                                     # within the margin
    assert tuner.choose("fold", "c", fns, margin=0.03) == "fold"
    burst = [0.8, 0.8, 1.3] + [0.8] * 9                                                 # one round spoilt
    taken = _scripted(monkeypatch, [burst])
    assert tuner.choose("fold", "d", fns, margin=0.03) == "keep" and len(taken) == 11   # 10 of 11
    coin = [0.8, 1.0] * choices.PAIRS[1]                                                # a coin toss
    taken = _scripted(monkeypatch, [coin])
    assert tuner.choose("fold", "e", fns, margin=0.03) == "fold" and len(taken) == 26
    # 26: 13 wins and 13 losses; 27 of 40 is the most it could still reach, not significant (28 is)
    assert choices.sign_tail(27, 40) >= choices.ALPHA > choices.sign_tail(28, 40) and choices.PAIRS[1] == 40
    late = [0.8, 1.0] * 6 + [0.8] * 13                                                  # even, then ahead
    taken = _scripted(monkeypatch, [late])
    assert tuner.choose("fold", "e2", fns, margin=0.03) == "keep" and len(taken) == 25  # 19 of 25
    # more than two candidates: a first timing picks the challenger, which then must win the test
    monkeypatch.setattr(Autotuner, "_times", lambda self, f, rounds=None: {"fold": 1.0, "keep": 1.2, "other": 0.9})
    taken = _scripted(monkeypatch, [[0.9] * 7])
    assert tuner.choose("fold", "f", {**fns, "other": lambda: None}, margin=0.03) == "other"
    # no margin, a close call: the two fastest timed again, alone, for three times the rounds
    rounds, script = [], [{"fold": 1.0, "keep": 0.99, "other": 1.2}, {"fold": 0.97, "keep": 1.0}]

    def fake(self, f, n=None):
        rounds.append(sorted(f) + ([n] if n else []))
        return script.pop(0)

    monkeypatch.setattr(Autotuner, "_times", fake)
    assert tuner.choose("conv", "g", {**fns, "other": lambda: None}) == "fold"
    assert rounds[-1] == ["fold", "keep", 3 * tuner.rounds] and not script
    script = [{"fold": 1.0, "keep": 0.9, "other": 1.2}]
    assert tuner.choose("conv", "h", {**fns, "other": lambda: None}) == "keep" and not script  # no close call


def test_paired_rounds_time_the_two_alternately():
    order = []
    ratios = Autotuner._paired(lambda: order.append("d"), lambda: order.append("o"))
    assert [next(ratios) > 0 for _ in range(3)] == [True] * 3
    assert order == ["d", "o", "d", "o", "o", "d", "d", "o"]  # warm-up, then A B, B A, A B


def test_sign_test_tail():
    assert choices.sign_tail(7, 7) == 0.5 ** 7 and choices.sign_tail(0, 5) == 1.0
    assert abs(choices.sign_tail(9, 10) - 11 / 1024) < 1e-12


def test_choices_are_kept_per_instruction_set(tmp_path, monkeypatch):
    """A cap on oneDNN's or MKL's instruction set changes which kernel is fastest, as another
    CPU would: its choices are timed for it and kept beside the uncapped ones."""
    for k in choices.ISA_CAPS:
        monkeypatch.delenv(k, raising=False)
    model = build("tsm_r18")
    x = clips(model, B=1)
    deploy(model, x, cache_dir=tmp_path)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    timed = []
    real = Autotuner._times
    monkeypatch.setattr(Autotuner, "_times", lambda self, fns, rounds=None: timed.append(1) or real(self, fns, rounds))
    deploy(model, x, cache_dir=tmp_path)
    assert timed
    keys = json.loads((tmp_path / "deploy-choices.json").read_text())
    capped = [k for k in keys if "ONEDNN_MAX_CPU_ISA=AVX2" in k]
    assert len(keys) == 2 and len(capped) == 1
    assert f"isa {torch.backends.cpu.get_cpu_capability()}" in capped[0]


def test_inplace_shift_on_channels_last_frames():
    """GPUs run channels-last: the in-place shift is offered there too, and gives the plain result."""
    model = build("tsm_r18")
    x = clips(model, B=2)
    with torch.no_grad():
        ref = model(x)
    cl = model.to(memory_format=torch.channels_last)
    d = deploy(cl, x[:1], autotune=Alternative(layout=False))  # in place: the last (no fused form here)
    assert {m.mode for m in d.modules() if isinstance(m, DeployedShift)} == {"inplace"}
    with torch.no_grad():
        assert rel_err(d(x), ref) < 1e-4
    x1 = torch.randn(4, 16, 3, 3).contiguous(memory_format=torch.channels_last)
    x0 = x1.clone()
    kept = shift_(x1, 4)
    torch.testing.assert_close(x1, naive_shift(x0, 4), rtol=0, atol=0)
    unshift_(x1, 4, kept)
    assert torch.equal(x1, x0)


def test_folding_is_a_timed_choice(tmp_path):
    """Where keeping the BNs times faster (as on the H200), they stay, and the outputs agree."""
    model = build("gc_tsm_r50")
    x = clips(model, B=1)

    class Keep(Autotuner):
        def _times(self, fns, rounds=None):
            return {n: (0.0 if n == "keep" else 1.0) for n in fns}

        def _gains(self, candidates, default, other, margin):
            return other == "keep"

    d = deploy(model, x, autotune=Keep(cache_dir=tmp_path))
    left = [n for n, m in d.named_modules() if isinstance(m, _BN)]
    # the ResNet's own BNs stay (53 in a ResNet-50); the calibrators' are folded all the same
    assert len(left) == 53 and not any(".calib." in n for n in left), left
    with torch.no_grad():
        assert rel_err(d(x), model(x)) < 1e-4
    choices = json.loads((tmp_path / "deploy-choices.json").read_text())
    assert [v for k, v in next(iter(choices.values())).items() if k.startswith("fold ")] == ["keep"]
    # in place: the model handed over is the one converted
    m2 = build("tsm_r18")
    assert deploy(m2, clips(m2, B=1), autotune=False, inplace=True) is m2
    assert not any(isinstance(m, _BN) for m in m2.modules())


def test_layout_is_a_timed_choice(tmp_path):
    """Channels-last where it times faster: the 2D weights are converted, the frames follow, the
    outputs agree; timing off keeps the layout the model was given."""
    model = build("gc_tsm_r50")
    x = clips(model, B=2)

    class Last(Autotuner):
        def _times(self, fns, rounds=None):
            return {n: (0.0 if n == "channels_last" else 1.0) for n in fns}

        def _gains(self, candidates, default, other, margin):
            return other == "channels_last"

    cl = torch.channels_last
    d = deploy(model, x[:1], autotune=Last(cache_dir=tmp_path))
    w4 = [p for p in d.parameters() if p.dim() == 4]
    assert w4 and all(p.is_contiguous(memory_format=cl) for p in w4)
    assert all(not p.is_contiguous() for p in w4 if p.shape[-1] > 1)  # (a 1x1 kernel is both)
    seen = []
    h = d.layer2[0].conv2.register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous(memory_format=cl)))
    with torch.no_grad():
        assert rel_err(d(x), model(x)) < 1e-4
    h.remove()
    assert seen == [True]
    choices = next(iter(json.loads((tmp_path / "deploy-choices.json").read_text()).values()))
    assert [v for k, v in choices.items() if k.startswith("layout ")] == ["channels_last"]
    # with timing off: as given, either way
    assert not any(p.is_contiguous(memory_format=cl) and not p.is_contiguous()
                   for p in deploy(model, x[:1], autotune=False).parameters() if p.dim() == 4)
    given = deploy(model.to(memory_format=cl), x[:1], autotune=False)
    assert all(p.is_contiguous(memory_format=cl) for p in given.parameters() if p.dim() == 4)


@pytest.mark.parametrize("k,s,p", [(3, 2, 1), (2, 2, 0), (3, 1, 1), (5, 3, 2)])
@pytest.mark.parametrize("size", [(7, 9), (8, 8), (112, 111)])
def test_max_pool_separable_equals_library(k, s, p, size):
    x = torch.randn(2, 5, *size, generator=torch.Generator().manual_seed(0)) - 1.0  # negatives: padding must not win
    x[0, 0, 0, 0] = float("nan")
    for t in (x, x.contiguous(memory_format=torch.channels_last)):
        torch.testing.assert_close(max_pool_separable(t, k, s, p), F.max_pool2d(t, k, s, p), rtol=0, atol=0,
                                   equal_nan=True)


def test_recorded_inputs_keep_their_strides():
    """Kernels are timed on what they will get: a channel slice stays a slice, not a dense copy."""
    from zoo.deploy import _copy
    for x in (_channel_slice(2, 4, 8, 5, 5), torch.randn(2, 8, 32, 5, 5)[:, :, 8:16].reshape(16, 8, 5, 5)):
        y = _copy(x)
        assert y.stride() == x.stride() and torch.equal(y, x) and y.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("shape", [(1, 8, 6, 56, 56), (2, 3, 5, 7, 9), (1, 1, 2, 1, 5)])
def test_tree_max_equals_amax(shape):
    v = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) - 2.0
    v.view(-1)[3] = float("nan")
    for d in range(1, 5):
        torch.testing.assert_close(tree_max(v, d), v.amax(d), rtol=0, atol=0, equal_nan=True)


def test_stem_pool_deployed_separable():
    model = build("tsn_r18")
    x = clips(model, B=2)
    d = deploy(model, x[:1], autotune=Alternative(layout=False))
    assert type(d.maxpool).__name__ == "DeployedMaxPool" and d.maxpool.mode == "separable"
    with torch.no_grad():
        assert rel_err(d(x), model(x)) < 1e-4
    assert deploy(model, x[:1], autotune=False).maxpool.mode == "library"


def test_whole_model_choices_need_a_margin(tmp_path, monkeypatch):
    """A candidate beats the first (default) form only by more than ``margin`` of its time."""
    t = {"a": 1.0, "b": 0.98, "c": 0.9}

    class Fixed(Autotuner):
        def _times(self, fns, rounds=None):
            return {n: t[n] for n in fns}

    def paired(default, other):  # the candidates are their names here
        while True:
            yield t[other] / t[default]

    monkeypatch.setattr(Autotuner, "_paired", staticmethod(paired))
    fixed = Fixed(cache_dir=tmp_path)
    names = {n: n for n in t}

    assert fixed.choose("k", 1, {"a": "a", "b": "b"}, margin=0.03) == "a"
    assert fixed.choose("k", 2, {"a": "a", "b": "b"}) == "b"
    assert fixed.choose("k", 3, names, margin=0.03) == "c"


def test_autotune_off_keeps_library_kernels(tmp_path, monkeypatch):
    monkeypatch.setattr(Autotuner, "_times", lambda self, fns, rounds=None: pytest.fail("timed"))
    d = deploy(build("gc_tsm_r50"), clips(build("tsn_r18"), B=1), autotune=False, cache_dir=tmp_path)
    assert {m.mode for m in d.modules() if isinstance(m, DeployedShift)} == {"copy"}
    assert {m.mode for m in d.modules() if isinstance(m, FrameConv3d)} == {"conv"}
    assert not (tmp_path / "deploy-choices.json").exists()


# -- the pieces --------------------------------------------------------------------------------

@pytest.mark.parametrize("B, T, C", [(1, 8, 64), (3, 4, 16), (2, 1, 8)])
def test_shift_fused_into_the_1x1_conv(B, T, C):
    x = torch.randn(B * T, C, 5, 5)
    conv = nn.Conv2d(C, 12, 1, bias=True)
    with torch.no_grad():
        torch.testing.assert_close(shift_conv1x1(x, T, conv), conv(naive_shift(x, T)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", DeployedShift.MODES)
def test_shift_modes_leave_the_input_unchanged(mode):
    x = torch.randn(16, 32, 4, 4)
    x0 = x.clone()
    kept = shift_(x, 8)
    torch.testing.assert_close(x, naive_shift(x0, 8), rtol=0, atol=0)
    unshift_(x, 8, kept)
    assert torch.equal(x, x0)
    for conv in (nn.Conv2d(32, 8, 1), nn.Conv2d(32, 8, 3, padding=1)):
        with torch.no_grad():
            out = DeployedShift(8, mode).around(x, 8, conv)
            assert torch.equal(x, x0)
            torch.testing.assert_close(out, conv(naive_shift(x0, 8)), rtol=1e-5, atol=1e-5)


def test_fold_bn():
    conv, bn = nn.Conv2d(6, 5, 3, bias=True), randomise_bn(nn.Sequential(nn.BatchNorm2d(5)))[0]
    x = torch.randn(2, 6, 7, 7)
    w, b = fold_bn(conv.weight, bn, conv.bias)
    with torch.no_grad():
        torch.testing.assert_close(F.conv2d(x, w, b), bn(conv(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("B, T, C, O, k, L, bias", [(1, 8, 16, 24, 3, 49, True), (2, 4, 8, 8, 3, 200, False),
                                                    (1, 5, 4, 6, 5, 10, True), (2, 1, 4, 4, 3, 9, False)])
def test_temporal_conv_equals_conv3d(B, T, C, O, k, L, bias):
    w, b = torch.randn(O, C, k, 1, 1), torch.randn(O) if bias else None
    x = torch.randn(B, C, T, L, 1)
    ref = F.conv3d(x, w, b, padding=(k // 2, 0, 0))[..., 0].permute(0, 2, 1, 3)  # (B, T, O, L)
    frames = x[..., 0].permute(0, 2, 1, 3).contiguous()
    torch.testing.assert_close(temporal_conv(frames, w[..., 0, 0].permute(2, 0, 1), b), ref, rtol=1e-4, atol=1e-5)


def _channel_slice(B, T, C, H, W, seed=0):
    """Channels [C, 2C) of channels-last frames with 4C channels: the layout of a GC group."""
    x = torch.randn(B * T, 4 * C, H, W, generator=torch.Generator().manual_seed(seed))
    return x.contiguous(memory_format=torch.channels_last)[:, C:2 * C]


@pytest.mark.parametrize("B, T, C, k", [(1, 8, 16, 3), (2, 4, 8, 3), (2, 1, 4, 3), (1, 3, 6, 5), (2, 2, 5, 1)])
def test_temporal_rows_equals_conv3d(B, T, C, k):
    x = _channel_slice(B, T, C, 5, 6)
    assert channels_inner(x) and channels_inner(x.contiguous(memory_format=torch.channels_last))
    assert not channels_inner(x.contiguous())
    w, b = torch.randn(C + 3, C, k, 1, 1), torch.randn(C + 3)
    x5 = x.contiguous().view(B, T, C, 5, 6).transpose(1, 2)
    ref = F.conv3d(x5, w, b, padding=(k // 2, 0, 0)).transpose(1, 2).reshape(B * T, C + 3, 5, 6)
    out = temporal_rows(x, T, w, b)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(temporal_rows(x, T, w), ref - b.view(1, -1, 1, 1), rtol=1e-4, atol=1e-5)


def test_ecal_s_deployed_keeps_the_layout():
    from zoo.deploy.forms import DeployedECalS
    from zoo.models.gc import ECalS
    m = ECalS(8).eval()
    x = _channel_slice(2, 4, 8, 7, 5).view(2, 4, 8, 7, 5)
    ref = m.gate(x.contiguous())
    m.__class__ = DeployedECalS
    with torch.no_grad():
        torch.testing.assert_close(m.gate(x), ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(m.gate(x.contiguous()), ref, rtol=1e-5, atol=1e-6)  # NCHW: the plain gate


def test_slot_modules_run_nchw_where_chosen():
    """With channels-last frames each slot module may run on an NCHW copy (hooks turn it back)."""
    model = build("sda_tsm_r50")
    x = clips(model, B=2)
    d = deploy(model, x[:1], autotune=Alternative())
    layouts = {m.layout for m in d.modules() if hasattr(m, "layout")}
    assert layouts == {"nchw"}
    seen = []
    h = d.layer1[0].calib.register_forward_pre_hook(lambda m, a: seen.append(a[0].is_contiguous()), prepend=False)
    with torch.no_grad():
        assert rel_err(d(x), model(x)) < 1e-4
    h.remove()
    assert seen == [True]


def _randomised(module):
    torch.manual_seed(0)
    for p in module.parameters():
        nn.init.normal_(p, 0.3, 0.3)
    return randomise_bn(module)


def _check_slot(module, x, T):
    """Deployed (both kernel sets) vs plain on one and two clips; returns the deployed forms."""
    with torch.no_grad():
        ref = module(x.clone(), T)
        out = []
        for tuner in (False, Alternative()):
            d = deploy(module, (x[:T].clone(), T), autotune=tuner)
            for n in (T, len(x)):
                torch.testing.assert_close(d(x[:n].clone(), T), ref[:n], rtol=1e-4, atol=1e-5)
            out.append(d)
    return out


@pytest.mark.parametrize("attention", list(ATTENTIONS))
def test_aia_deployed_gates_in_place(attention):
    mod = _randomised(aia_slot(attention)(None))
    x = torch.randn(2 * 4, 16, 6, 5)
    for d in _check_slot(mod, x, 4):
        y = x.clone()
        with torch.no_grad():
            assert d(y, 4).data_ptr() == y.data_ptr()
    y = x.clone()
    with torch.no_grad():  # the plain module never writes its input
        mod(y, 4)
    assert torch.equal(y, x)


@pytest.mark.parametrize("D", [1, 2, 5])
def test_aia_deployed_gate_equals_plain(D):
    """The deployed gate (BN folded into the conv), as the 2-channel conv and as the banded one,
    equals the plain conv + BN + sigmoid, at depths where no, one or both neighbouring slices
    exist."""
    torch.manual_seed(D)
    g = _randomised(AxialGate())
    ctx = torch.randn(2, D, 2, 6, 7)
    with torch.no_grad():
        ref = g(ctx)
        d = deploy(g, ctx, autotune=False)
    assert type(d) is DeployedAxialGate and d.band is None and isinstance(d.bn, nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(d(ctx), ref, rtol=1e-5, atol=1e-6)
        # the banded form (the depth slices as the channels of one 2D conv), whichever the timing picks here
        d.band = _banded(d.conv.weight, d.conv.bias, D)
        torch.testing.assert_close(d(ctx), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ratio, calibrators, offset", [(1.0, "gstl", 0), (0.5, "gstl", 6), (0.5, "lt", 7)])
def test_gc_deployed_gates_in_place(ratio, calibrators, offset):
    mod = _randomised(GC(64, ratio, calibrators, group_offset=offset))
    for d in _check_slot(mod, torch.randn(2 * 4, 64, 6, 5), 4):
        assert not any(isinstance(m, _BN) for m in d.modules())


@pytest.mark.parametrize("deps", [("lst", "lt", "ls", "s122"), ("s122", "s144", "lt"), ("lst", "p211c311"),
                                  ("p213c313", "lst")])
@pytest.mark.parametrize("size", [(8, 12), (7, 7)])
def test_sda_deployed_equals_plain(deps, size):
    for agg in ("sec", "avg"):
        _check_slot(_randomised(SDA(32, deps, agg)), torch.randn(2 * 8, 32, *size), 8)


@pytest.mark.parametrize("size", [(8, 6), (7, 7)])
def test_tdn_modules_deployed_equal_plain(size):
    x = torch.randn(2 * 4, 64, *size)
    _check_slot(_randomised(MotionExcitation(64)), x, 4)
    _check_slot(_randomised(ShiftConv(64)), x, 4)


def test_frame_conv3d_deployed_equals_plain():
    x = torch.randn(2 * 5, 16, 6, 6)[:, 4:12]  # a channel slice, as STC's T_S reads it
    for kernel, stride in (((3, 1, 1), 1), ((3, 3, 3), 1), ((3, 1, 1), 2)):
        _check_slot(_randomised(FrameConv3d(8, 12, kernel, stride)), x, 5)


def test_create_model_deploy(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    d = zoo.create_model("tsn_r18", num_classes=3, num_frames=2, deploy=True)  # TSM's timed shifts: above
    assert zoo.deploy.is_deployed(d) and not any(isinstance(m, _BN) for m in d.modules())
    assert d.pretrained_cfg["frames"] == 2
    assert (tmp_path / "deploy-choices.json").exists()  # timed for 2 frames at the model's 224 px


def test_zoo_deploy_is_callable():
    model = build("tsm_r18")
    x = clips(model)
    d = zoo.deploy(model, x, autotune=False)
    assert zoo.deploy.is_deployed(d) and not zoo.deploy.is_deployed(model)  # a copy, as deploy() gives
    with torch.no_grad():
        torch.testing.assert_close(d(x), model(x), rtol=1e-4, atol=1e-4)
    assert zoo.deploy.deploy is deploy and callable(zoo.deploy)


def test_residual_join_runs_as_one_pass_where_chosen():
    from zoo.deploy.forms import DeployedBasicBlock, joins_fused

    model = build("tsm_r18")
    x = clips(model)
    with torch.no_grad():
        ref = model(x)
        d = deploy(model, x[:1], autotune=Alternative())
        blocks = [m for m in d.modules() if isinstance(m, DeployedBasicBlock)]
        assert len(blocks) == 8 and all(b.fused_join for b in blocks)
        assert rel_err(d(x), ref) < 1e-4
    half = torch.zeros(2, 3, dtype=torch.bfloat16)
    assert not joins_fused(half, half)  # ATen's add_relu takes fp32/fp64 only: the block adds, then ReLUs
