"""benchmarks/gpu.py and benchmarks/overhead.py: what they compute from their measurements."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent


def load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_overhead_counts_bytes_and_multiply_adds():
    ov = load("overhead")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 8, 3, padding=1, bias=False)

        def forward(self, x):
            return torch.relu_(self.conv(x))

    net = Net().eval()
    x = torch.randn(2, 4, 5, 5)
    ops = ov._ops(net, x, {"net": net})
    conv, relu = ops
    # conv: 2x8x5x5 outputs, 4x3x3 multiply-adds each; reads x and the weight, writes y
    assert conv == ((2 * 4 * 25 + 8 * 4 * 9 + 2 * 8 * 25) * 4, 2 * 8 * 25 * 4 * 9)
    # relu_ in place: one tensor, read and written where it lies, counted once; no multiply-adds
    assert relu == (2 * 8 * 25 * 4, 0)
    a, b = torch.randn(3, 4, 5), torch.randn(3, 5, 6)
    assert ov._macs("baddbmm_", (torch.zeros(3, 4, 6), a, b), None) == 3 * 4 * 5 * 6
    assert ov._macs("mm", (a[0], b[0]), None) == 4 * 5 * 6
    # op_count.py counts the same operators, one per launch
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    assert load("op_count").count(net, x) == 2
    # views move nothing: a forward of views only counts no operator
    view_net = nn.Flatten()
    assert ov._ops(view_net, x, {"v": view_net}) == []


def test_overhead_counts_on_the_library_form():
    ov = load("overhead")
    tsm, tsn = ov.counting_form(*ov.plain("tsm_r50", 4, 32)), ov.counting_form(*ov.plain("tsn_r50", 4, 32))
    ops, base = ov._ops(*tsm), ov._ops(*tsn)
    # TSM moves data TSN does not and adds no multiply-adds: a shift run by the zoo's own compiled
    # kernel, outside ATen, had counted as less traffic than TSN
    assert sum(n for n, k in ops if not k) > sum(n for n, k in base if not k)
    assert sum(k for _, k in ops) == sum(k for _, k in base) > 0
    assert len(tsm[2]) == 16 and set(tsm[2]) == set(tsn[2])  # the blocks counted in: ResNet-50's 16


def test_overhead_render_sets_the_roofline_against_the_allowance():
    ov = load("overhead")
    run = {"machine": {"cpu": "x", "vector": [], "cores": 2, "logical_cpus": 2, "python": "3", "torch": "2",
                       "platform": "p"}, "copy_gbps": 100.0,
           "settings": {"deploy": True, "rounds": 10, "warmup": 2, "frames": 8, "size": 224, "threads": 2},
           "rows": [{"model": "m", "baseline": "b", "model_ms": 110.0, "baseline_ms": 100.0, "overhead_ms": 10.0,
                     "allowed_ms": 5.0, "blocks_ms": 9.0, "slots_ms": 8.0, "extra_mb": 100.0, "memory_ms": 1.0,
                     "compute_ms": 2.0, "roofline_ms": 2.5, "parts_ms": {"A": 3.0}}],
           "ablations": [{"model": "m", "baseline": "b", "ms": {"model": 110.0, "backbone": 100.0, "-A": 104.0}}]}
    md = ov.render(run)
    assert "| m | b | 110.0 | +10.0 | +5.0 | +8.0 | +1.0 | +100 | 1.0 | +2.0 | +2.5 | 0.50 |" in md
    assert "removing the gates saves A 6.0 ms" in md


def test_gpu_render_ratios_and_targets(tmp_path, capsys):
    gpu = load("gpu")
    run = {"machine": {"gpu": "G", "torch": "2"}, "baselines": {"tsn_r50": None, "gc_tsn_r50": "tsn_r50",
                                                                 "aia_tsn_r50": "tsn_r50"},
           "settings": {"batch": 16, "frames": 8, "size": 224, "dtype": "bf16", "channels_last": True,
                        "repeats": 4, "warmup": 1, "timing": "t"},
           "forms": {"plain": {"tsn_r50": {"ms": [8.0] * 4}, "gc_tsn_r50": {"ms": [10.0] * 4},
                               "aia_tsn_r50": {"ms": [10.0] * 4}},
                     "compile": {"tsn_r50": {"ms": [6.0] * 4, "compile_s": 10.0},
                                 "gc_tsn_r50": {"error": "skipped: past the budget"},
                                 "aia_tsn_r50": {"ms": [7.0] * 4, "compile_s": 30.0, "rel_err": 0.01}}}}
    md = gpu.render(run)
    # 8/10 = 0.8x the backbone: under GC's 0.90x, over AIA's 0.75x
    assert "| gc_tsn_r50 | tsn_r50 | 1600, 0.800x [0.80-0.80] | skipped: past the budget | **no** |" in md
    assert "| aia_tsn_r50 | tsn_r50 | 1600, 0.800x [0.80-0.80] | 2286, 0.857x [0.86-0.86] | yes |" in md
    assert "median 20, max 30" in md and "1.00e-02 (aia_tsn_r50, compile" in md
    path = tmp_path / "r.json"
    path.write_text(json.dumps(run))
    notes = tmp_path / "n.md"
    notes.write_text("## What it says\n")
    assert gpu.main(["--render", str(path), str(path), "--notes", str(notes)]) == 0
    out = capsys.readouterr().out
    assert out.count("| gc_tsn_r50 |") == 2 and "## Run 2: plain / compile" in out and out.rstrip().endswith("## What it says")


def test_gpu_script_refuses_without_cuda(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert load("gpu").main(["tsn_r18", "--forms", "plain"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_choices_compares_two_entries_of_the_cache(tmp_path, capsys):
    ch = load("choices")
    cache = tmp_path / "deploy-choices.json"
    avx2 = "CPU | isa AVX2 ONEDNN_MAX_CPU_ISA=AVX2 | gpu - | torch 2 | threads 2 | code abc"
    avx512 = "CPU | isa AVX512 | gpu - | torch 2 | threads 2 | code abc"
    cache.write_text(json.dumps({
        avx2: {"shift (8, 256, 56, 56)": "fused", "conv1x1 (8, 64)": "conv", "maxpool (8, 64)": "separable"},
        avx512: {"shift (8, 256, 56, 56)": "inplace", "conv1x1 (8, 64)": "conv", "layout (1, 3)": "channels_last"},
        "CPU | isa AVX512 | gpu - | torch 2 | threads 2 | code old": {}}))
    out = tmp_path / "diff.md"
    assert ch.main(["AVX2", "AVX512", "--cache", str(cache), "--out", str(out)]) == 0
    md = out.read_text()
    assert "1 of 2 choices timed on both differ" in md
    assert "| shift | `(8, 256, 56, 56)` | fused | inplace |" in md and "conv1x1 | `" not in md
    assert "| conv1x1 | 1 | 0 |" in md and "maxpool" not in md
    assert ch.main(["--cache", str(cache)]) == 0 and "code old" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="select 0 pairs"):
        ch.compare(json.loads(cache.read_text()), "AVX2", "code old")
    assert ch.main(["AVX2", "--cache", str(cache)]) == 2
    assert ch.main(["AVX2", "AVX512", "--cache", str(cache), "--out", str(tmp_path / "no" / "d.md")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy-choices.json", "diff.md"]
    assert ch.main(["AVX2", "AVX512", "--cache", str(tmp_path / "none.json")]) == 2


def test_kernels_report_names_each_module_and_the_ratio():
    kernels = load("kernels")
    doc = {"machine": {"cpu": "Test CPU", "logical_cpus": 2, "python": "3", "torch": "2.x", "platform": "linux"},
           "threads": 2, "rounds": 4,
           "stages": [{"module": "InplaceGC", "network": "gc_tsn_r50", "block": 0, "frames": [8, 64, 56, 56],
                       "pytorch": 1.5, "kernel": 0.5}],
           "in_model": [{"name": "gc_tsn_r50", "module": "InplaceGC", "kernels_used": 16, "modules": 16,
                         "modules_ms": 7.6, "network": 164.6, "tsn_r50": 159.0},
                        {"name": "sda_tsn_r50", "module": "InplaceSDA", "kernels_used": 15, "modules": 16,
                         "modules_ms": 12.5, "network": 170.1, "tsn_r50": 158.0}]}
    text = kernels.render(doc)
    assert "| gc_tsn_r50 | InplaceGC | 8x64x56x56 | 1.500 | 0.500 | 3.00x |" in text and "16 of its 16 InplaceGC" in text
    assert "deployed sda_tsn_r50 (15 of its 16 InplaceSDA modules on the kernels): they take 12.5 ms of a " \
           "170.1 ms forward; deployed TSN 158.0 ms" in text


def test_gate_forms_switches_each_part_and_back():
    """benchmarks/gate_forms.py: the former way (small convs PyTorch's or oneDNN's, SDA's
    down-projection oneDNN's, AIA's units apart) and the conversion's, each applied in turn."""
    from tests.deploy.test_native import _compiled, _native_gc, _sda
    from zoo.deploy import native
    from zoo.deploy.forms import InplaceAIACombo, InplaceSDA, NativeSDA

    if native.load() is None:
        pytest.skip("no compiled kernels here")
    gf = load("gate_forms")
    gc = _native_gc(64)
    sda = _compiled(_sda(128, ("lst", "lt", "ls", "s122")), InplaceSDA, NativeSDA)
    if sda.native is None or 16 % native.vector_width():
        pytest.skip("groups narrower than this machine's vectors")
    gc.native.s_mode, sda.native.lt_mode, sda.native.down_mode = "native", "native", "native"
    combo = InplaceAIACombo.__new__(InplaceAIACombo)
    nn.Module.__init__(combo)
    combo.native = pair = object()
    ways = gf.settings({gc: (8, 64, 6, 6), sda: (8, 128, 6, 6), combo: (8, 64, 6, 6)})
    for apply in ways["former"]:
        apply()
    assert gc.native.s_mode in ("library", "onednn") and sda.native.lt_mode in ("library", "onednn")
    assert sda.native.down_mode == "library" and combo.native is None
    for apply in ways["as converted"]:
        apply()
    assert (gc.native.s_mode, sda.native.lt_mode, sda.native.down_mode) == ("native",) * 3 and combo.native is pair
    doc = {"machine": {"cpu": "Test CPU", "logical_cpus": 2, "python": "3", "torch": "2.x", "platform": "linux"},
           "threads": 2, "rounds": 4,
           "networks": [{"name": "gc_tsn_r50", "module": "InplaceGC", "modules": 16, "compiled": 16,
                         "converted_ms": 9.5, "former_ms": 12.25, "ratio": 0.78, "ratio_iqr": [0.75, 0.8]}]}
    assert "| gc_tsn_r50 | 16 InplaceGC (16 compiled) | 12.25 | 9.50 | 0.780 [0.750-0.800] |" in gf.render(doc)


def test_stc_parts_report_sums_the_parts_and_the_saving():
    import types

    sp = load("stc_parts")
    doc = {"machine": {"cpu": "Test CPU", "logical_cpus": 2, "python": "3", "torch": "2.x", "platform": "linux"},
           "threads": 2, "rounds": 3, "tsn": {"shapes": [], "per_clip": 60.0},
           "networks": [{"network": "stc_r50", "shapes": [],
                         "per_clip": {"S_T's 3x3 conv": 30.0, "TR's gate": 0.5, "whole": 40.0}},
                        {"network": "stc_light_r50", "shapes": [],
                         "per_clip": {"S_T's 3x3 conv": 29.0, "SR's reduction (STC-Light)": 0.25, "whole": 41.5}}]}
    text = sp.render(doc)
    assert "**60.0 ms** per clip" in text and "| S_T's 3x3 conv | 30.00 | 29.00 |" in text
    assert "Inside full forwards" not in text                             # without that part: no table
    doc["tsn_in_network"] = {"conv2": 70.0, "forward": 170.0}
    doc["in_network"] = [{"network": "stc_r50", "modules": 16, "forward": 155.0,
                          "per_forward": {"S_T's 3x3 conv": 36.5, "whole": 50.0}}]
    text = sp.render(doc)
    assert "conv2 calls take **70.0 ms**" in text and "of a 170.0 ms forward" in text
    assert "| S_T's 3x3 conv | 36.50 |" in text and "| **whole** | **50.00** |" in text and "| forward | 155.0 |" in text
    assert "| SR's reduction (STC-Light) | 0.00 | 0.25 |" in text          # a part one network lacks: zero
    assert "| saved against TSN's | 20.00 | 18.50 |" in text
    # the timed calls: by the name given, or by the attribute called
    acc = {}
    assert sp._Timed(lambda a: a + 1, acc, "add")(1) == 2
    assert sp._Timed(types.SimpleNamespace(three=lambda: 3), acc).three() == 3
    assert set(acc) == {"add", "three"} and all(v >= 0 for v in acc.values())


def test_spread_by_gap_rebuilds_the_rotated_order(tmp_path, capsys):
    from zoo.bench import BenchResult

    sg = load("spread_by_gap")
    # order a, b, x, y rotated each round: b runs right after its backbone a in rounds 0, 2, 3 and
    # with x and y between them in round 1 (order b x y a); x's 1000 ms and y's 500 ms lie between
    a = [100.0, 100.0, 100.0, 100.0]
    b = [110.0, 130.0, 110.0, 110.0]
    run = {"settings": {}, "machine": {}, "results": {
        "a": BenchResult("a", None, a), "b": BenchResult("b", "a", b),
        "x": BenchResult("x", None, [1000.0] * 4), "y": BenchResult("y", None, [500.0] * 4)}}
    g = sg.gaps(run)
    assert [(k, round(r, 2), gap) for k, r, gap in g] == [("b", 1.1, 0), ("b", 1.3, 1500.0), ("b", 1.1, 0), ("b", 1.1, 0)]
    p = tmp_path / "run.json"
    p.write_text(json.dumps({"settings": {"order": "beside"}, "machine": {},
                             "results": {k: {"label": v.label, "baseline": v.baseline, "times_ms": v.times_ms}
                                         for k, v in run["results"].items()}}))
    assert sg.table([str(p)]).count("\n") == 2  # timed beside: nothing to compare, header only
    # a file that is not a saved run, or an --out the script did not write: one line, rc 2, kept
    theirs = tmp_path / "theirs.md"
    theirs.write_text("someone's notes")
    assert sg.main([str(theirs)]) == 2 and sg.main([str(p), "--out", str(theirs)]) == 2
    err = capsys.readouterr().err
    assert "is not a run saved by zoo bench" in err and "was not written by this script" in err
    assert "Traceback" not in err and theirs.read_text() == "someone's notes"
