"""AIA: fidelity to the authors' code (reference fixtures), registry entries, kwargs, tracing."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
import zoo.models.aia as aia
from zoo.factory import create_model
from zoo.models.aia import ATTENTIONS, AIACombo, AIAUnit, _context_3d, parse_attention
from zoo.registry import registry

from ..reference import check_reference_logits, fixture
from ..short import shorten

torch.set_num_threads(1)

FIXTURES = [  # fixture, arch, attention
    ("aia_c2d_C_t8", "aia_tsn_r50", "c"),
    ("aia_c2d_ST_t8", "aia_tsn_r50", "st"),
    ("aia_c2d_CinST2STinC_t8", "aia_tsn_r50", "cinst>stinc"),
    ("aia_tsm_CinST2STinC_t8", "aia_tsm_r50", "cinst>stinc"),
]


@pytest.mark.parametrize("name,arch,attention", FIXTURES)
def test_reference_logits(name, arch, attention):
    check_reference_logits(name, arch, attention=attention)


@pytest.mark.parametrize("name,arch,attention", [FIXTURES[0], FIXTURES[3]])
def test_fvcore_flops_match_original(name, arch, attention):
    fx = fixture(name)
    c = zoo.complexity(create_model(arch, num_classes=fx["num_classes"], attention=attention), num_frames=8)
    assert c.params == fx["params"]
    assert c.flops == fx["flops_fvcore"]
    assert c.by_operator == fx["fvcore_by_operator"]


# the original key layout, written from the facts (not from our own naming): a single module is
# `eft`, a pair `eft1`, `eft2`; C/ST units hold C / T,H,W gates, CinST and STinC all four
_GATES = {"c": "C", "st": "THW", "cinst": "CTHW", "stinc": "CTHW"}
_ORIGINAL = {"c": ["C"], "st": ["ST"], "c>st": ["C", "ST"], "st>c": ["ST", "C"], "c+st": ["C", "ST"],
             "cinst": ["CinST"], "stinc": ["STinC"], "cinst>stinc": ["CinST", "STinC"],
             "stinc>cinst": ["STinC", "CinST"], "cinst+stinc": ["STinC", "CinST"]}


def _original_keys(model, parts):
    sd = {f"base_model.{k}": v for k, v in model.state_dict().items() if ".calib." not in k}
    sd = {k.replace("base_model.fc.", "new_fc."): v for k, v in sd.items()}
    blocks = sorted({k.split(".calib.")[0] for k in model.state_dict() if ".calib." in k})
    for b in blocks:
        for i, part in enumerate(parts):
            slot = "eft" if len(parts) == 1 else f"eft{i + 1}"
            for g in _GATES[part.lower()]:
                pre = f"base_model.{b}.{slot}.{g}_"
                sd[pre + "conv.weight"] = torch.randn(1, 2, 3, 3, 3)
                for s in ("weight", "bias", "running_mean", "running_var"):
                    sd[pre + "bn." + s] = torch.rand(1) + 0.5
                sd[pre + "bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    return sd


@pytest.mark.parametrize("attention", list(ATTENTIONS))
def test_every_configuration_builds_runs_and_converts(attention):
    arch = "aia_tsm_r50" if attention in ("c>st", "cinst", "cinst+stinc", "stinc") else "aia_tsn_r50"
    model = create_model(arch, num_classes=10, attention=attention).eval()
    zoo.load_original(model, {"module." + k: v for k, v in _original_keys(model, _ORIGINAL[attention]).items()})
    x = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, 10) and torch.isfinite(y).all()
        # T comes from the input
        assert model(x[:, :, :4]).shape == (2, 10)


def test_registry_covers_every_layout():
    # building and running every name is tests/test_all_models.py's job
    reg = registry()
    names = [n for n, v in reg.variants.items() if reg.archs[v.arch].family == "aia"]
    names += [n for n, e in reg.ensembles.items() if reg.archs[reg.variants[e.members[0]].arch].family == "aia"]
    assert len(names) >= 50
    seen = {(v.arch, v.kwargs.get("attention", "cinst>stinc")) for v in reg.variants.values()
            if reg.archs[v.arch].family == "aia"}
    assert len(seen) == 2 * len(ATTENTIONS)
    ens = create_model("aia_tsm_r50_ssv1_8f16f").eval()
    with torch.no_grad():
        assert ens([torch.randn(2, 3, 8, 64, 64), torch.randn(2, 3, 16, 64, 64)]).shape == (2, 174)


def test_combinations_are_their_parts():
    torch.manual_seed(0)
    x = torch.randn(2 * 4, 16, 6, 5)
    for how in (">", "+"):
        combo = AIACombo("cinst", "stinc", how).eval()
        for m in combo.modules():  # non-trivial BN statistics
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
        with torch.no_grad():
            a = combo.first(x, 4)
            want = combo.second(a, 4) if how == ">" else 0.5 * a + 0.5 * combo.second(x, 4)
            torch.testing.assert_close(combo(x, 4), want)


def test_units_follow_the_definitions():
    """Gate semantics (ORIGINAL_CODE.md): CinST multiplies x, not x*C, by the ST gate; STinC
    multiplies x by the C gate of x*ST."""
    torch.manual_seed(0)
    x = torch.randn(2 * 3, 8, 5, 4)
    v = x.view(2, 3, 8, 5, 4)
    u = AIAUnit("cinst").eval()
    with torch.no_grad():
        torch.testing.assert_close(u(x, 3).view_as(v), v * u.st_gate(v * u.c_gate(v)))
        s = AIAUnit("stinc").eval()
        s.load_state_dict(u.state_dict())
        torch.testing.assert_close(s(x, 3).view_as(v), v * s.c_gate(v * s.st_gate(v)))
        # channels_last activations give the same result
        torch.testing.assert_close(u(x.contiguous(memory_format=torch.channels_last), 3), u(x, 3))


@pytest.mark.parametrize("shape", [(1, 8, 6, 5, 7), (2, 3, 4, 14, 14), (1, 2, 3, 1, 20)])
@pytest.mark.parametrize("dim", [1, 2, 3, 4])
def test_compiled_form_of_the_context_is_the_same_context(shape, dim):
    """The merged-axes form torch.compile traces on narrow frames, run eagerly: same values,
    same (B, D, 2, ...) layout as the stacked max and mean."""
    v = torch.randn(shape)
    v[0, 0, 0, 0, 0] = float("nan") if dim == 1 else v[0, 0, 0, 0, 0]
    want = torch.stack((v.amax(dim), v.mean(dim)), 2)
    got = _context_3d(v, dim)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("narrower, merged", [(1, True), (0, False)])
def test_compiled_aia_reduces_narrow_frames_over_merged_axes(narrower, merged):
    """Under torch.compile (CPU), frames narrower than one vector (16 floats with AVX-512) take
    the merged form (inductor otherwise splits the reduction itself across threads, one
    parallel region per row); wider ones keep the 5-D reductions, as does the reduction over W
    itself. Either way the compiled unit equals the eager one."""
    size = aia._LANES - narrower
    torch._dynamo.reset()
    graphs = []
    u = AIACombo("cinst", "stinc", ">").eval()
    compiled = torch.compile(u, backend=lambda gm, ex: graphs.append(gm) or gm.forward)
    x = torch.randn(2 * 4, 8, size, size)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, 4), u(x, 4))
    ranks = {n.args[0].meta["example_value"].dim() for gm in graphs for n in gm.graph.nodes
             if n.op in ("call_function", "call_method") and "amax" in str(n.target)}
    assert ranks == ({3, 5} if merged else {5}), ranks  # the max over W (innermost) stays 5-D


def test_vector_width_follows_the_instruction_set_inductor_compiles_for():
    """Inductor compiles for ATen's dispatch level; capped at AVX2 (8 floats a vector), frames of
    14 keep the 5-D form that runs faster there (compiled AIA-TSN 1.34x compiled TSN against
    1.38x merged, AVX-512 EPYC capped at AVX2)."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}
    code = "import torch, zoo.models.aia as a; print(torch.backends.cpu.get_cpu_capability(), a._LANES)"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).parents[2],
                         capture_output=True, text=True, check=True).stdout.split()
    if out[0] != "AVX2":
        pytest.skip(f"this CPU does not run ATen's AVX2 kernels (capability {out[0]})")
    assert out[1] == "8"
    assert aia._LANES == {"AVX512": 16, "AVX2": 8}.get(torch.backends.cpu.get_cpu_capability(), aia._LANES)


def test_trace():
    m = shorten(create_model("aia_tsm_r50", num_classes=5)).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        traced = torch.jit.trace(m, x, check_trace=False)
        torch.testing.assert_close(traced(x), m(x))


def test_attention_names_and_errors():
    assert parse_attention("CinST2STinC") == "cinst>stinc"
    assert parse_attention("STinCplusCinST") == "cinst+stinc"
    assert parse_attention("C -> ST") == "c>st"
    with pytest.raises(ValueError, match="cinst>stinc"):
        create_model("aia_tsn_r50", attention="sc")
    with pytest.raises(TypeError, match="attention"):
        create_model("aia_tsn_r50", shift_div=4)


def test_registry_rows():
    reg = registry()
    # this family's rows and the plain TSN/TSM ones (comparators.toml adds Table I's SE3D, ... rows)
    rows = [r for r in reg.complexity if r.paper == "aia" and (r.arch.startswith("aia_") or not r.kwargs)]
    assert {r.table for r in rows} == {"Table I", "Table II"}
    assert len([r for r in rows if r.table == "Table I"]) == 22
    # every mismatching row says why
    assert all(r.cause for r in rows if r.frames in (12, 16) and r.arch.startswith("aia"))
