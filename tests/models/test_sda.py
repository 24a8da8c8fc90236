"""SDA-TSN/SDA-TSM against the authors' code (ty-97/SDA): reference logits, parameter and FLOP
counts, the 8-frame chunking of their 16-frame models, and every registered SDA name."""
import pytest
import torch

import zoo
from tests.reference import check_reference_logits, fixture, original_state_dict
from zoo.models.sda import BRANCHES, SDA, parse_dependencies

CASES = [("sda_tsn_t8", "sda_tsn_r50"), ("sda_tsm_t8", "sda_tsm_r50")]


@pytest.mark.parametrize("fx_name, arch", CASES)
def test_reference_logits(fx_name, arch):
    fx = check_reference_logits(fx_name, arch)  # converter "sda" from the family
    assert fx["params"] == 25_768_702


# The original upsamples S122's map with adaptive_avg_pool2d, which fvcore counts (one FLOP per
# input element); ours broadcasts it when H, W are even: layers 1-3 at 224 (layer4's 7x7 pools).
UPSAMPLE_POOL = sum(n * r * 8 * (s // 2) ** 2 for n, r, s in [(3, 16, 56), (4, 32, 28), (6, 64, 14)])


def test_fvcore_flops_match_original():
    # same counted operators as on the original (fixture: one clip, 224), the same totals but
    # for the upsampling pool that the broadcast replaces
    fx = fixture("sda_tsn_t8")
    c = zoo.complexity(zoo.create_model("sda_tsn_r50", num_classes=174), num_frames=8, input_size=224)
    assert c.params == fx["params"]
    assert UPSAMPLE_POOL == 652_288
    assert c.flops == fx["flops_fvcore"] - UPSAMPLE_POOL == 33_926_672_160
    expected = dict(fx["fvcore_by_operator"])
    expected["adaptive_avg_pool2d"] -= UPSAMPLE_POOL
    assert c.by_operator == expected  # its 1x1 convs run as batched products, reported as convs


def _pair():
    """SDA-TSN at T=16 with chunk=8 and without, both with the fixture's weights."""
    sd = original_state_dict(fixture("sda_tsn_t8"))
    chunked = zoo.load_original(zoo.create_model("sda_tsn_r50_ssv1_16f"), sd).eval()
    full = zoo.load_original(zoo.create_model("sda_tsn_r50", num_classes=174, num_frames=16), sd).eval()
    return chunked, full


def test_chunk_is_two_independent_8_frame_clips():
    chunked, full = _pair()
    assert chunked.layer1[0].calib.chunk == 8 and full.layer1[0].calib.chunk is None
    x = torch.randn(1, 3, 16, 48, 48, generator=torch.Generator().manual_seed(3))
    halves = torch.cat([x[:, :, :8], x[:, :, 8:]])  # two 8-frame clips
    with torch.no_grad():
        f16 = chunked.forward_features(x)                     # (1, 2048, 16, h, w)
        f8 = torch.cat(full.forward_features(halves).unbind(0), 1)[None]  # T=8 per clip: same as chunking
        f_all = full.forward_features(x)                       # SDA sees all 16 frames
    torch.testing.assert_close(f16, f8, rtol=1e-5, atol=1e-5)
    assert (f_all - f16).abs().max() > 1e-2  # chunk=None really mixes the two halves
    with pytest.raises(ValueError, match="multiple of 8"):
        chunked(torch.randn(1, 3, 12, 32, 32))


NAMES = zoo.list_models("sda_*") + [n for n in zoo.list_models(kind="variant")
                                    if zoo.model_info(n)["paper"] == "sda"]


def test_every_name_is_listed():
    assert {"sda_tsn_r50", "sda_tsm_r50", "sda_tsn_r50_ssv1_8f", "sda_tsm_r50_ssv2_16f",
            "sda_tsm_r50_ssv1_8f16f", "sda_tsn_r50_diving48_8f", "sda_tsm_r50_epic55noun_8f"} <= set(NAMES)


@pytest.fixture
def cheap_init(monkeypatch):
    # random init of an R50 costs ~1.5 s; these tests check structure and forward, not values
    def fill(t, *args, **kwargs):
        with torch.no_grad():
            return t.fill_(0.01)
    for fn in ("kaiming_uniform_", "kaiming_normal_", "normal_", "uniform_", "xavier_normal_"):
        monkeypatch.setattr(torch.nn.init, fn, fill)


def test_frames_come_from_the_input():
    m = zoo.create_model("sda_tsm_r50", num_classes=5, dependencies=list(BRANCHES)[:6]).eval()
    with torch.no_grad():
        for T in (8, 5, 2):
            assert m(torch.randn(1, 3, T, 32, 32)).shape == (1, 5)


@pytest.mark.parametrize("dep", [*BRANCHES, "p213c313"])
def test_each_branch_alone_and_odd_sizes(dep):
    # a single branch, "sec" and "avg"; 7x7 is the odd layer4 size of a 224 input
    for agg in ("sec", "avg"):
        mod = SDA(64, [dep], agg).eval()
        x = torch.randn(2 * 8, 64, 7, 7)
        with torch.no_grad():
            y = mod(x, 8)
        assert y.shape == x.shape and torch.isfinite(y).all()


def test_kwargs_are_checked_and_lists_normalised():
    m = zoo.create_model("sda_tsn_r50", num_classes=3, dependencies=["LST", "s144"], aggregation="avg",
                         reduction=8)
    sda = m.layer2[0].calib
    assert sda.dependencies == ("lst", "s144") and sda.query is None
    assert sda.down.out_channels == 16  # max(128 // 8, 16): the paper's minimum width
    assert m.layer4[0].calib.down.out_channels == 64
    assert parse_dependencies("lt") == ("lt",)
    with pytest.raises(ValueError, match="unknown SDA dependency 'xyz'.*lst"):
        zoo.create_model("sda_tsn_r50", dependencies=("lst", "xyz"))
    with pytest.raises(ValueError, match="aggregation must be 'sec' or 'avg'"):
        zoo.create_model("sda_tsn_r50", aggregation="max")
    with pytest.raises(ValueError, match="reduction must be a positive int"):
        zoo.create_model("sda_tsn_r50", reduction=0)
    with pytest.raises(ValueError, match="given twice"):
        zoo.create_model("sda_tsn_r50", dependencies=["lt", "lt"])
    with pytest.raises(TypeError, match="unexpected kwarg.*dependencies="):
        zoo.create_model("sda_tsn_r50", branches=("lst",))


@pytest.mark.parametrize("deps", [("lst", "lt", "ls", "s122"), ("s122", "s144", "lt"), ("s122",),
                                  ("lst", "p211c311"), ("s222", "ls")])
def test_broadcast_upsampling_equals_materialised(deps, monkeypatch):
    torch.manual_seed(0)
    mod = SDA(64, deps)
    for p in mod.parameters():  # non-trivial BN statistics and query
        torch.nn.init.normal_(p, 0.5, 0.3)
    mod.eval()
    x = torch.randn(2 * 8, 64, 8, 12)
    with torch.no_grad():
        fast = mod(x, 8)
        monkeypatch.setattr(SDA, "broadcast_up", False)
        slow = mod(x, 8)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)


class _AtT4(torch.nn.Module):
    def __init__(self, mod):
        super().__init__()
        self.mod = mod

    def forward(self, x):
        return self.mod(x, 4)


def test_sec_weights_and_trace():
    mod = SDA(64).eval()
    x = torch.randn(2 * 4, 64, 8, 8)
    with torch.no_grad():
        traced = torch.jit.trace(_AtT4(mod), x)
        torch.testing.assert_close(traced(x), mod(x, 4))
    assert mod.query.shape == (1, 16) and len(mod.branches) == 4


def test_trains():
    # the in-place sigmoid/gating must leave autograd intact
    mod = SDA(32).train()
    x = torch.randn(2 * 4, 32, 6, 6, requires_grad=True)
    mod(x, 4).square().sum().backward()
    assert x.grad is not None and mod.query.grad is not None and mod.down.weight.grad is not None
