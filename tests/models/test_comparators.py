"""The comparator calibrators (zoo/models/comparators.py): build, run, trace, place, count."""
import math
import tomllib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zoo.models.calibrators import calibrator_slots, calibrators
from zoo.models.comparators import CBAM3D, GE3DDW, GE3DG, S3DG, SE3D, NonLocal
from zoo.registry import archs

KINDS = ["se3d", "ge3d_g", "ge3d_dw133", "ge3d_dw333", "ge3d_c", "s3d_g", "cbam3d_177", "cbam3d_377", "nln"]
TSN = 23_864_558  # TSN/TSM R50, 174 classes
PARAMS = {  # exact counts with 174 classes; the papers' rows are these rounded
    "se3d": 26_379_502, "ge3d_g": TSN, "ge3d_dw133": 24_362_990, "ge3d_dw333": 25_178_606,
    "ge3d_c": 25_178_606, "s3d_g": 25_125_806, "cbam3d_177": 26_397_150, "cbam3d_377": 26_400_286,
    "nln": 31_223_022,
}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # small tensors: thread hand-offs cost more than they save on a shared 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def build(arch, **kw):
    return archs()[arch].builder(num_classes=kw.pop("num_classes", 174), num_frames=8, **kw)


def test_registered():
    assert set(KINDS) <= set(calibrators())
    assert calibrator_slots(None) == {}


# where each kind sits: (calib_at, blocks carrying one, channels of layer1.0's / layer2.0's module)
PLACE = {"se3d": "bn3", "ge3d_g": "bn3", "ge3d_dw133": "bn3", "ge3d_dw333": "bn3", "ge3d_c": "bn3",
         "s3d_g": "bn2", "cbam3d_177": "bn3", "cbam3d_377": "bn3", "nln": "out"}


def _blocks(m):
    return [(f"{name}.{i}", b) for name in ("layer1", "layer2", "layer3", "layer4")
            for i, b in enumerate(getattr(m, name))]


@pytest.mark.parametrize("kind", KINDS)
def test_build_count_place_forward(kind):
    torch.manual_seed(0)
    m = build("tsn_r50", calibrator=kind).eval()
    assert sum(p.numel() for p in m.parameters()) == PARAMS[kind]
    blocks = _blocks(m)
    assert {b.calib_at for _, b in blocks} == {PLACE[kind]}
    with_calib = [n for n, b in blocks if b.calib is not None]
    if kind == "nln":
        assert with_calib == ["layer2.0", "layer2.2", "layer3.0", "layer3.2", "layer3.4"]
    else:
        assert len(with_calib) == 16
    with torch.no_grad():
        for T in (8, 3):  # T comes from the input
            out = m(torch.randn(1, 3, T, 32, 32))
            assert out.shape == (1, 174) and torch.isfinite(out).all()


def test_tsm_and_basic_blocks():
    m = build("tsm_r50", calibrator="nln").eval()
    assert sum(p.numel() for p in m.parameters()) == PARAMS["nln"]
    assert m.layer2[0].shift is not None and m.layer2[0].calib is not None
    m(torch.randn(1, 3, 4, 32, 32))
    r18 = build("tsn_r18", calibrator="se3d").eval()  # basic blocks: bn3 is the end of the branch
    assert r18.layer1[0].calib.fc2.out_features == 64
    r18(torch.randn(1, 3, 4, 32, 32))


def test_bad_kind():
    with pytest.raises(ValueError, match="unknown calibrator 'se'.*se3d"):
        build("tsn_r50", calibrator="se")
    with pytest.raises(ValueError, match="kt"):
        GE3DDW(8, kt=2)
    with pytest.raises(ValueError, match="kt"):
        CBAM3D(8, kt=5)


def _clips(T=4, C=16, H=8, W=8, B=2):
    torch.manual_seed(1)
    return torch.randn(B * T, C, H, W), T


def _eval(m):
    for p in m.parameters():  # non-trivial BN statistics and affine
        if p.dim() == 1:
            torch.nn.init.uniform_(p, 0.5, 1.5)
    for b in m.modules():
        if isinstance(b, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            b.running_mean.uniform_(-0.1, 0.1)
            b.running_var.uniform_(0.5, 1.5)
    return m.eval()


def _as5d(x, T):
    N, C, H, W = x.shape
    return x.view(N // T, T, C, H, W).transpose(1, 2)  # (B, C, T, H, W)


def _as4d(y):
    B, C, T, H, W = y.shape
    return y.transpose(1, 2).reshape(B * T, C, H, W)


def test_se_s3dg_ge_g_match_5d_definitions():
    x, T = _clips()
    v = _as5d(x, T)
    pooled = v.mean((2, 3, 4))
    se = _eval(SE3D(16, reduction=4))
    ref = v * torch.sigmoid(se.fc2(F.relu(se.fc1(pooled))))[:, :, None, None, None]
    torch.testing.assert_close(se(x, T), _as4d(ref))
    s = _eval(S3DG(16))
    torch.testing.assert_close(s(x, T), _as4d(v * torch.sigmoid(s.fc(pooled))[:, :, None, None, None]))
    torch.testing.assert_close(GE3DG()(x, T), _as4d(v * torch.sigmoid(pooled)[:, :, None, None, None]))


@pytest.mark.parametrize("kt", [1, 3])
@pytest.mark.parametrize("size", [8, 6, 9])
def test_ge_dw_matches_conv3d_interpolate(kt, size):
    x, T = _clips(H=size, W=size)
    m = _eval(GE3DDW(16, kt=kt))
    g = _as5d(x, T)
    for layer in m.gather:
        if isinstance(layer, torch.nn.Conv2d):  # the 1x3x3 conv, as the 3D conv it stands for
            g = F.conv3d(g, layer.weight.unsqueeze(2), None, (1, 2, 2), (0, 1, 1), groups=16)
        elif isinstance(layer, torch.nn.BatchNorm2d):
            g = _as5d(layer(_as4d(g)), T)
        else:
            g = layer(g)
    ref = x * F.interpolate(torch.sigmoid(_as4d(g)), size=(size, size), mode="nearest")
    torch.testing.assert_close(m(x, T), ref)


@pytest.mark.parametrize("kt", [1, 3])
def test_cbam_matches_5d_definition(kt):
    x, T = _clips()
    m = _eval(CBAM3D(16, kt=kt, reduction=4))
    v = _as5d(x, T)
    g = torch.sigmoid(m.mlp(v.mean((2, 3, 4))) + m.mlp(v.amax((2, 3, 4))))
    y = v * g[:, :, None, None, None]
    s = torch.cat((y.amax(1, keepdim=True), y.mean(1, keepdim=True)), 1)
    w = m.conv.weight if kt == 3 else m.conv.weight.unsqueeze(2)
    s = F.conv3d(s, w, None, 1, (kt // 2, 3, 3))
    s = _as5d(m.bn(_as4d(s)), T) if kt == 1 else m.bn(s)
    torch.testing.assert_close(m(x, T), _as4d(y * torch.sigmoid(s)))


def test_nonlocal_matches_5d_definition_and_starts_as_identity():
    x, T = _clips(H=6, W=6)
    m = NonLocal(16)
    m.init_weights()
    torch.testing.assert_close(m.eval()(x, T), x)
    m = _eval(m)
    v = _as5d(x, T)
    B = v.shape[0]

    def conv(c, t):
        return F.conv3d(t, c.weight.unsqueeze(2), c.bias)
    q = conv(m.theta, v).flatten(2).transpose(1, 2)
    k = F.max_pool3d(conv(m.phi, v), (1, 2, 2)).flatten(2)
    val = F.max_pool3d(conv(m.g, v), (1, 2, 2)).flatten(2).transpose(1, 2)
    y = torch.softmax(q @ k, -1) @ val
    y = y.transpose(1, 2).reshape(B, 8, *v.shape[2:])
    ref = v + _as5d(m.bn(_as4d(conv(m.W, y))), T)
    torch.testing.assert_close(m(x, T), _as4d(ref), rtol=1e-4, atol=1e-5)


class _WithT(torch.nn.Module):
    def __init__(self, mod, T):
        super().__init__()
        self.mod, self.T = mod, T

    def forward(self, x):
        return self.mod(x, self.T)


@pytest.mark.parametrize("mod", [SE3D(16, 4), GE3DG(), GE3DDW(16, 1), GE3DDW(16, 3), S3DG(16), CBAM3D(16, 1, 4),
                                 CBAM3D(16, 3, 4), NonLocal(16)], ids=lambda m: type(m).__name__)
def test_clips_independent_and_traceable(mod):
    mod = _eval(mod)
    x, T = _clips()
    out = mod(x, T)
    torch.testing.assert_close(out[:T], mod(x[:T], T))  # one clip alone = the same clip in a batch
    traced = torch.jit.trace(_WithT(mod, T), (x,))
    torch.testing.assert_close(traced(x), out)


def test_rows_use_known_kinds_and_match_params():
    doc = tomllib.loads((ROOT / "registry" / "comparators.toml").read_text())
    rows = doc["complexity"]
    assert {r["paper"] for r in rows} == {"gc", "aia"} and "paper" not in doc
    assert sum(r["paper"] == "gc" for r in rows) == 10 and sum(r["paper"] == "aia" for r in rows) == 7
    for r in rows:
        kind = r["kwargs"]["calibrator"]
        assert kind in calibrators()
        printed = r["params"][:-1]
        dec = len(printed.split(".")[1])
        got = round(PARAMS[kind] / 1e6, dec)
        if not math.isclose(got, float(printed)):
            assert r.get("cause"), f"{r['row']} ({r['paper']}): {got} vs {printed} needs a cause"


def test_flops_ge3d_g_counts_the_pool():
    from zoo.complexity import complexity

    base = complexity(build("tsn_r50"), num_frames=2, input_size=32).flops
    got = complexity(build("tsn_r50", calibrator="ge3d_g"), num_frames=2, input_size=32).flops
    # the (T,H,W) mean of every block output: sum of 4p * T * H * W over the 16 blocks
    pooled = 2 * (3 * 256 * 8 ** 2 + 4 * 512 * 4 ** 2 + 6 * 1024 * 2 ** 2 + 3 * 2048 * 1 ** 2)
    assert got - base == pooled


def test_tsm_nl_converter_maps_the_tsm_layout():
    from zoo.convert import converters

    m = build("tsm_r50", calibrator="nln", num_classes=400)
    ours = m.state_dict()
    # the TSM authors' layout, written from our keys: NL3DWrapper(block) + shift-wrapped conv1
    orig = {}
    nl = {"theta": "theta", "phi": "phi.0", "g": "g.0", "W": "W.0", "bn": "W.1"}
    for k, v in ours.items():
        parts = k.split(".")
        if k.startswith("fc."):
            orig["new_fc." + k[3:]] = v
            continue
        if parts[0].startswith("layer") and parts[2] == "conv1":
            parts[2] = "conv1.net"
        block = ".".join(parts[:2])
        if parts[0] in ("layer2", "layer3") and m.get_submodule(block).calib is not None:
            if parts[2] == "calib":
                t = v.unsqueeze(2).clone() if v.dim() == 4 else v.clone()
                orig[f"base_model.{block}.nl.{nl[parts[3]]}.{parts[4]}"] = t
                continue
            parts.insert(2, "block")
        orig["base_model." + ".".join(parts)] = v
    conv = converters()["tsm_nl"](orig)
    assert set(conv) == set(ours)
    assert all(conv[k].shape == ours[k].shape for k in ours)
    m.load_state_dict(conv, strict=True)
