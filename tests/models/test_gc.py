"""GC (Group Contextualization): reference logits of the authors' GC-TSN / GC-TSM / GC-GST, the
group layout (standard, loop, ratio, single ECals, R101), tracing/export, every GC name."""
import pytest
import torch

import zoo
from tests.reference import check_reference_logits, fixture
from tests.short import shorten
from zoo.models.gc import GC, ECalG, ECalL, ECalS, ECalT, gc_index, has_gc
from zoo.models.resnet import BlockCtx
from zoo.registry import parse_quantity, registry

CASES = [
    ("gc_tsn_m4_c4_t8", "gc_tsn_r50", {}),
    ("gc_tsm_m4_c4_t8", "gc_tsm_r50", {}),
    ("gc_gst_m4_c4_loop_t8", "gc_gst_r50", {"loop": True}),
]


@pytest.mark.parametrize("fx_name, arch, kwargs", CASES)
def test_reference_logits(fx_name, arch, kwargs):
    check_reference_logits(fx_name, arch, **kwargs)  # family converter picked by name


def test_fvcore_flops_equal_the_authors():
    fx = fixture("gc_tsn_m4_c4_t8")
    c = zoo.complexity("gc_tsn_r50", num_classes=174)
    assert (c.params, c.flops) == (fx["params"], fx["flops_fvcore"])
    # the BN the authors' ECal-S holds but never applies: in the state dict, never called
    # (their VideoNet also holds an unused nn.Softmax, which we do not)
    assert sorted(c.uncalled_modules) == sorted(k.replace("base_model.", "").replace("eft3.bn1", "calib.s.bn")
                                                for k in fx["fvcore_uncalled_modules"] if k != "softmax")


def _naive(gc: GC, x: torch.Tensor, T: int) -> torch.Tensor:
    """The authors' way: a zero-filled output and slice assignment, group by group."""
    n, c = gc.groups, gc.channels // gc.groups
    out = torch.zeros_like(x)
    done = set()
    for i, k in enumerate(gc.calibrators):
        g = (gc.group_offset + i) % n
        sl = slice(g * c, (g + 1) * c)
        v = x[:, sl].reshape(-1, T, c, *x.shape[2:])
        out[:, sl] = getattr(gc, k)(v).reshape(-1, c, *x.shape[2:])
        done.add(g)
    for g in set(range(n)) - done:
        out[:, g * c:(g + 1) * c] = x[:, g * c:(g + 1) * c]
    return out


@pytest.mark.parametrize("ratio, calibrators, shift", [
    (1.0, "gstl", 0), (1.0, "gstl", 3), (0.5, "gstl", 0), (0.5, "gstl", 6), (0.5, "lt", 7), (1.0, "s", 2),
    (0.25, "g", 15)])
@pytest.mark.parametrize("clips", [1, 2])
def test_groups_match_slice_assignment(ratio, calibrators, shift, clips):
    torch.manual_seed(0)
    gc = GC(64, ratio, calibrators, group_offset=shift).eval()
    for m in gc.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(clips * 4, 64, 6, 5)
    with torch.no_grad():
        ref = _naive(gc, x, 4)
        torch.testing.assert_close(gc(x, 4), ref)
    # the input is never written (zoo.deploy's form gates in place; tests/deploy/test_deploy.py)
    x0 = x.clone()
    gc(x, 4)
    assert torch.equal(x, x0)


def test_group_plan_code_order_and_loop():
    def owners(gc):
        return {k: a // (gc.channels // gc.groups) for k, a, b in gc.plan if k}
    assert owners(GC(64)) == {"l": 0, "t": 1, "s": 2, "g": 3}           # code order, not the paper's
    assert owners(GC(64, group_offset=1)) == {"l": 1, "t": 2, "s": 3, "g": 0}
    assert GC(64, 0.5).plan[-1] == ("", 32, 64)                          # untouched half in one slice
    assert owners(GC(64, 0.5, "t")) == {"t": 0}
    m = zoo.create_model("gc_tsn_r50", num_classes=10, loop=True)
    # ORIGINAL_CODE.md: layer1.0 -> 0,1,2,3; layer1.1 -> 1,2,3,0; layer2.0 -> 3,0,1,2; layer4.2 -> 3,0,1,2
    assert owners(m.layer1[1].calib) == {"l": 1, "t": 2, "s": 3, "g": 0}
    assert owners(m.layer2[0].calib)["l"] == 3 and owners(m.layer4[2].calib)["l"] == 3
    assert all(b.calib.group_offset == 0 for b in zoo.create_model("gc_tsn_r50", num_classes=10).modules()
               if isinstance(b, torch.nn.Module) and isinstance(getattr(b, "calib", None), GC))


def test_r101_even_blocks_of_layer3_and_loop_counter():
    assert [has_gc(i, 23) for i in range(4)] == [True, False, True, False]
    counts = (3, 4, 23, 3)
    ctx = BlockCtx(stage=3, index=0, position=30, blocks=3, in_channels=1024, width=512, out_channels=2048, stride=2)
    assert gc_index(ctx, counts) == 3 + 4 + 12
    m = zoo.create_model("gc_tsn_r101", num_classes=10, loop=True)
    assert m.layer3[1].calib is None and m.layer3[22].calib is not None
    assert m.layer4[0].calib.group_offset == (3 + 4 + 12) % 4
    with pytest.raises(ValueError, match="blocks per stage"):
        gc_index(ctx, (3, 4, 6, 3))  # R101's layer4 with R50's counts


def test_ecal_shapes_and_bn():
    x = torch.randn(2, 4, 8, 5, 6)  # (B, T, c, H, W)
    for cls in (ECalL, ECalT, ECalS, ECalG):
        assert cls(8).eval()(x).shape == x.shape
    assert ECalS(8).bn is not None and ECalS(8, bn=False).bn is None
    assert ECalS(8).conv.dilation == (2, 2)
    gst = zoo.create_model("gc_gst_r50", num_classes=5)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in gst.layer1[0].calib.modules())
    assert gst.layer1[0].calib_at == "conv2"


def test_trace_and_onnx(tmp_path):
    m = shorten(zoo.create_model("gc_tsm_r50", num_classes=7, ratio=0.5, loop=True)).eval()
    x = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        ref = m(x)
        traced = torch.jit.trace(m, x)
        torch.testing.assert_close(traced(x), ref)
    gc = _WithT(GC(32, 0.5, group_offset=5), 4).eval()
    y = torch.randn(8, 32, 6, 6)
    with torch.no_grad():
        ref = gc(y)
    path = tmp_path / "gc.onnx"
    torch.onnx.export(gc, (y,), str(path), dynamo=False)
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path))
    out = sess.run(None, {sess.get_inputs()[0].name: y.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(out), ref, rtol=1e-4, atol=1e-5)


class _WithT(torch.nn.Module):
    def __init__(self, m, T):
        super().__init__()
        self.m, self.T = m, T

    def forward(self, x):
        return self.m(x, self.T)


def test_bad_kwargs():
    with pytest.raises(ValueError, match="ratio"):
        zoo.create_model("gc_tsn_r50", ratio=0.3)
    with pytest.raises(ValueError, match="calibrators"):
        zoo.create_model("gc_tsn_r50", calibrators="gx")
    with pytest.raises(ValueError, match="calibrators"):
        zoo.create_model("gc_tsm_r50", calibrators="")
    with pytest.raises(TypeError, match="loop"):
        zoo.create_model("gc_gst_r50", loop="yes")
    with pytest.raises(TypeError, match="cdiv"):
        zoo.create_model("gc_tsn_r50", cdiv=4)


def test_single_ecal_checkpoint_layout_converts():
    """The authors' single-ECal file names its calibrator ``eft``: the kind follows from the weight."""
    for k, cal in (("l", ECalL), ("t", ECalT), ("s", ECalS), ("g", ECalG)):
        m = zoo.create_model("gc_tsn_r50", num_classes=4, ratio=0.5, calibrators=k)
        want, sd = {}, {}
        for name, v in m.state_dict().items():
            orig = name.replace(f"calib.{k}.", "eft.").replace("eft.fc.", "eft.conv.").replace("eft.bn.", "eft.bn1.")
            orig = "new_fc." + orig[3:] if orig.startswith("fc.") else "base_model." + orig
            want[name] = sd["module." + orig] = v + 1 if v.is_floating_point() else v
        zoo.load_original(m, sd)
        assert isinstance(getattr(m.layer1[0].calib, k), cal)
        assert all(torch.equal(v, want[n]) for n, v in m.state_dict().items())


OURS = {"gc_tsn_r50", "gc_tsm_r50", "gc_gst_r50", "tsn_r50", "tsm_r50", "gst_r50"}  # GC-TDN: test_tdn.py


def _gc_names():
    reg = registry()
    names = [n for n, v in reg.variants.items() if v.paper == "gc" and v.arch in OURS]
    names += [n for n, e in reg.ensembles.items() if e.paper == "gc" and reg.variants[e.members[0]].arch in OURS]
    names += [n for n, a in reg.archs.items() if n.startswith(("gc_tsn", "gc_tsm", "gc_gst"))]
    return sorted(names)


def test_gc_names_resolve():
    # building and running every name is tests/test_all_models.py's job; GC's archs also take T=4 there
    kinds = {zoo.model_info(n)["kind"] for n in _gc_names()}
    assert kinds == {"arch", "variant", "ensemble"} and len(_gc_names()) > 20


def test_params_of_every_gc_row():
    """Parameter counts against every GC complexity row with a printed params value."""
    reg = registry()
    seen = {}
    for r in reg.complexity:
        if r.paper != "gc" or not r.params or r.pending or r.arch not in OURS:
            continue
        key = (r.arch, repr(sorted(r.kwargs.items())))
        if key not in seen:  # count once with 1 class; the head adds 2049 per class
            m = zoo.create_model(r.arch, num_classes=1, **r.kwargs)
            seen[key] = sum(p.numel() for p in m.parameters()) - 2049
        n = seen[key] + 2049 * r.num_classes
        value, dec = parse_quantity(r.params, "M")
        off = abs(round(n / 1e6, dec) - value)
        # exact, or one unit off where the row documents why (the paper's own rounding)
        assert off < 0.5 * 10 ** -dec or (r.cause and off < 1.5 * 10 ** -dec), (r.table, r.row, n)
