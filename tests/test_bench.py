"""The benchmark harness on tiny models: naming, backbone mapping, alternation, probes, output.
No timing assertions (timings are benchmark figures, not unit tests)."""
import csv
import io
import json
import math
import sys
import types

import pytest

from zoo import bench
from zoo.bench import BenchResult, Spec, baseline_of, parse_spec, time_models
from zoo.bench import profiling as bench_profiling, run as bench_run, targets as bench_targets, timing as bench_timing
from zoo.bench.targets import Target
from zoo.cli import main as zoo_main
from zoo.registry import archs


def test_parse_spec():
    assert parse_spec("tsm_r50") == Spec("tsm_r50")
    s = parse_spec("gc_tsm_r50:ratio=0.5,loop=True,calibrators=gs")
    assert s.kwargs == (("ratio", 0.5), ("loop", True), ("calibrators", "gs"))
    assert s.label == "gc_tsm_r50:ratio=0.5,loop=True,calibrators=gs"
    assert parse_spec(s.label) == s
    assert parse_spec("tv_resnet50").name == "tv_resnet50"
    with pytest.raises(ValueError, match="did you mean"):
        parse_spec("tsm_r5")
    with pytest.raises(ValueError, match="key=value"):
        parse_spec("tsm_r50:oops")


def test_baseline_mapping():
    assert baseline_of("tv_resnet50") is None
    assert baseline_of("tsn_r50") == "tv_resnet50"
    assert baseline_of("tsn_r18") == "tv_resnet18"
    assert baseline_of("tsm_r50") == "tsn_r50"
    for n in ("gst_r50", "gst_large_r50", "c3d_r18"):
        assert baseline_of(n) == f"tsn_r{n.rsplit('_r', 1)[1]}"
    assert baseline_of("gc_tsm_r50") == "tsm_r50"
    assert baseline_of("gc_tsn_r50") == "tsn_r50"
    assert baseline_of("aia_tsn_r50") == "tsn_r50"
    assert baseline_of("sda_tsm_r50") == "tsm_r50"
    assert baseline_of("tdn_r50") == "tv_resnet50"
    reg = archs()
    for n in reg:  # every registered name maps to something buildable
        b = baseline_of(n)
        assert b.startswith("tv_resnet") or b in reg, (n, b)
    for n in ("gc_gst_r50", "gc_tdn_r50"):
        if n in reg:
            assert baseline_of(n) == n[3:]
    for label, t in bench.TARGETS.items():
        if label.split(":")[0] in reg and ":" not in label:
            assert t.baseline == baseline_of(label), label


def test_alternation_rotates_order():
    calls = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "ABC"}
    out = time_models(fns, repeats=3, warmup=1)
    assert calls == list("ABC") + list("ABC") + list("BCA") + list("CAB")
    assert all(len(v) == 3 and all(t >= 0 for t in v) for v in out.values())


def test_result_stats():
    r = BenchResult("x", None, times_ms=[10, 12, 11, 30, 9], batch=2)
    assert r.median == 11 and r.ms_per_clip == 5.5
    assert r.clips_per_s == pytest.approx(2000 / 11)
    lo, hi = r.iqr
    assert lo <= 11 <= hi


def _fake_run():
    res = {
        "tv_resnet50": BenchResult("tv_resnet50", None, [100, 101, 99], 1, 25_557_032, 32_000_000_000, 90.0, 100.0),
        "tsn_r50": BenchResult("tsn_r50", "tv_resnet50", [100, 100, 100], 1, 23_864_558, 32_878_567_424, 91.0, 99.0),
        "gc_tsn_r50": BenchResult("gc_tsn_r50", "tsn_r50", [110, 110, 110], 1, 24_000_000, 33_000_000_000, 95.0, 99.0),
        "broken_r50": BenchResult("broken_r50", "tsn_r50", error="ValueError: nope"),
    }
    return {"machine": {"cpu": "Test CPU", "logical_cpus": 2, "python": "3", "torch": "2.x",
                        "platform": "linux", "load_avg": (0.1, 0.2, 0.3), "mem_gb": 8},
            "settings": {"device": "cpu", "threads": 2, "batch": 1, "frames": 8, "size": 224,
                         "dtype": "fp32", "channels_last": False, "compile": False, "repeats": 3,
                         "warmup": 1, "memory_how": "RSS"},
            "results": res}


def test_rows_ratios_and_targets():
    rows = {r["model"]: r for r in bench.rows(_fake_run())}
    assert rows["tsn_r50"]["latency_ratio"] == pytest.approx(1.0)
    assert rows["gc_tsn_r50"]["latency_ratio"] == pytest.approx(1.1)
    assert rows["gc_tsn_r50"]["flops_ratio"] == pytest.approx(33e9 / 32_878_567_424)
    assert rows["gc_tsn_r50"]["ratio_to_r50"] == pytest.approx(1.1)
    assert rows["gc_tsn_r50"]["met"] is False and rows["gc_tsn_r50"]["target"] == 1.05
    assert rows["tsn_r50"]["met"] is True
    assert rows["broken_r50"]["error"]
    assert rows["gc_tsn_r50"]["latency_q1"] == rows["gc_tsn_r50"]["latency_q3"] == pytest.approx(1.1)
    run = _fake_run()
    run["results"]["gc_tsn_r50"].times_ms = [104, 108, 110, 112, 130]
    run["results"]["tsn_r50"].times_ms = [100, 100, 100, 100, 100]
    r = {r["model"]: r for r in bench.rows(run)}["gc_tsn_r50"]
    assert r["latency_q1"] < r["latency_ratio"] < r["latency_q3"] and r["latency_ratio"] == pytest.approx(1.1)
    assert "+10.0% [+6.0%, +21.0%]" in bench.render_md(run)


def test_render_md_and_csv(tmp_path):
    run = _fake_run()
    md = bench.render_md(run, notes="## Notes\nwhy")
    # three rounds cannot show a target met or missed: the side of the median, marked undecided
    assert "| gc_tsn_r50 | tsn_r50 | 110.0" in md and "+10.0%" in md and "| ~no |" in md and "| **no** |" not in md
    assert "Test CPU" in md and "## Notes" in md and "error: ValueError" in md
    rows = list(csv.DictReader(io.StringIO(bench.render_csv(run))))
    assert [r["model"] for r in rows] == list(run["results"])
    assert float(rows[2]["latency_ratio"]) == pytest.approx(1.1)
    paths = bench.write_results(run, str(tmp_path))
    assert sorted(p.suffix for p in paths) == [".csv", ".json", ".md"]
    assert all(p.name.startswith("latency-cpu-") for p in paths)


_WRITE_ON_A_FULL_DISK = """
import pickle, resource, signal, sys
from zoo import bench
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))  # as on a full disk: 200 bytes per file
bench.write_results(pickle.loads(sys.stdin.buffer.read()), sys.argv[1])
"""


def test_results_are_written_whole_and_replace_only_bench_files(tmp_path):
    import pickle
    import subprocess

    run = _fake_run()
    md, csv_path, js = bench.write_results(run, str(tmp_path))
    before = md.read_text()
    run["results"]["gc_tsn_r50"].times_ms = [120, 120, 120]
    r = subprocess.run([sys.executable, "-c", _WRITE_ON_A_FULL_DISK, str(tmp_path)], input=pickle.dumps(run),
                       capture_output=True)
    assert r.returncode != 0 and b"File too large" in r.stderr
    assert md.read_text() == before             # the earlier file, not the first 200 bytes of a new one
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (md, csv_path, js))
    assert bench.write_results(run, str(tmp_path))  # earlier results of zoo bench are replaced
    for p in (md, csv_path, js):                 # someone else's file of the same name is not
        other = tmp_path / "other"
        other.mkdir(exist_ok=True)
        (other / p.name).write_text("my notes")
        with pytest.raises(FileExistsError, match="not written by zoo bench"):
            bench.write_results(run, str(other))
        assert (other / p.name).read_text() == "my notes"
        (other / p.name).unlink()


def test_file_arguments_are_checked_before_measuring(tmp_path, monkeypatch, capsys):
    from zoo.bench import cli as bench_cli

    calls = []
    monkeypatch.setattr(bench_cli, "run_bench", lambda *a, **k: calls.append(a))
    args = ["bench", "tsn_r18", "--frames", "2", "--size", "32", "--repeats", "1", "-q"]
    (tmp_path / "file").write_text("mine")
    dest = bench.render.result_paths(str(tmp_path / "dir"), "cpu")[0]
    dest.parent.mkdir()
    dest.write_text("mine")
    cases = [(["--no-probe", "--out", str(tmp_path / "file")], "is not a folder"),
             (["--no-probe", "--out", str(dest.parent)], "not written by zoo bench"),
             (["--no-probe", "--notes", str(tmp_path / "missing.md")], "missing.md: cannot read it"),
             (["--probe-cache", str(tmp_path / "file")], "is not a probe cache written by zoo bench")]
    for extra, message in cases:
        assert zoo_main(args + extra) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert calls == []
    assert (tmp_path / "file").read_text() == "mine" and dest.read_text() == "mine"
    (tmp_path / "run.json").write_text('{"models": []}')
    assert zoo_main(["bench", "--from-json", str(tmp_path / "run.json")]) == 2
    assert "is not a run saved by zoo bench" in capsys.readouterr().err


def test_probe_child_memory_and_flops():
    cfg = {"device": "cpu", "threads": 1, "batch": 1, "frames": 2, "size": 32, "dtype": "fp32",
           "channels_last": False}
    out = bench.run_probes([parse_spec("tsn_r18"), parse_spec("tsm_r18")], cfg, jobs=2)
    for k in ("tsn_r18", "tsm_r18"):
        r = out[k]
        assert "error" not in r, r
        assert r["peak_mb"] > 0 and r["model_mb"] > 0
        assert r["params"] == 11_689_512 - 1000 * 513 + 400 * 513
    assert out["tsn_r18"]["flops"] == out["tsm_r18"]["flops"] > 0


def test_run_bench_adds_baselines_and_cli(tmp_path, capsys):
    run = bench.run_bench(["tsm_r18", "tv_resnet18"], frames=2, size=32, threads=1, repeats=2, warmup=1,
                          probes=False)
    res = run["results"]
    assert set(res) == {"tsm_r18", "tsn_r18", "tv_resnet18"}
    assert res["tsm_r18"].baseline == "tsn_r18" and res["tsn_r18"].baseline == "tv_resnet18"
    assert all(len(r.times_ms) == 2 for r in res.values())
    assert len(res["tsm_r18"].base_ms) == 2 and res["tv_resnet18"].base_ms is None
    assert "each timed right beside its backbone" in bench.render_md(run)
    assert "`met`:" not in bench.render_md(run) and "targets:" not in bench.render_md(run)  # no target here
    run = bench.run_bench(["tsm_r18", "tsn_r18"], baseline="tsn_r18", frames=2, size=32, threads=1,
                          repeats=1, warmup=0, probes=False)
    assert run["results"]["tsm_r18"].baseline == "tsn_r18" and run["results"]["tsn_r18"].baseline is None
    rc = zoo_main(["bench", "tsn_r18:dropout=0.0", "--baseline", "tsn_r18", "--frames", "2", "--size", "32",
                   "--threads", "1", "--repeats", "1", "--warmup", "0", "--no-probe", "-q", "--out", str(tmp_path)])
    assert rc == 0
    assert "tsn_r18:dropout=0.0" in capsys.readouterr().out
    assert list(tmp_path.glob("latency-cpu-*.md"))


def test_cli_errors(capsys):
    assert zoo_main(["bench", "nosuch_r50", "--no-probe"]) == 2
    assert "unknown architecture" in capsys.readouterr().err
    assert zoo_main(["bench", "tsm_r50_ssv1_8f16f", "--no-probe"]) == 2
    assert "is an ensemble" in capsys.readouterr().err
    assert zoo_main(["bench", "tsn_r18", "--freeze", "--no-probe"]) == 2
    err = capsys.readouterr().err
    assert "--freeze applies to compiled models: add --compile" in err and "Traceback" not in err


def test_probe_cache_reused(tmp_path, monkeypatch):
    cache = tmp_path / "probes.json"
    calls = []

    def fake(specs, cfg, jobs=1, log=None):
        calls.append([s.label for s in specs])
        return {s.label: {"spec": s.label, "params": 1, "flops": 2, "peak_mb": 3.0, "model_mb": 4.0,
                          "memory_how": "fake"} for s in specs}

    monkeypatch.setattr(bench_run, "run_probes", fake)
    kw = dict(frames=2, size=32, threads=1, repeats=1, warmup=0, probe_cache=str(cache))
    bench.run_bench(["tsm_r18"], **kw)
    run = bench.run_bench(["tsm_r18", "tsm_r34"], **kw)
    assert calls == [["tsm_r18", "tsn_r18"], ["tsm_r34", "tsn_r34"]]
    assert run["results"]["tsm_r18"].peak_mb == 3.0 and run["results"]["tsm_r34"].flops == 2


def test_explain_lists_operators(monkeypatch):
    fake = {"gc_tsn_r50": {"aten::conv": 100.0, "aten::cat": 7.0, "aten::mul": 3.0},
            "tsn_r50": {"aten::conv": 99.0}}
    monkeypatch.setattr(bench_profiling, "op_times", lambda n, *a, **k: fake[n])
    text = bench.explain(_fake_run())
    assert "**gc_tsn_r50** vs tsn_r50" in text and "`aten::cat` +7.0 ms" in text
    assert "tsn_r50** vs" not in text.replace("gc_tsn_r50** vs", "")


def test_profiles_are_of_the_form_the_run_timed(monkeypatch):
    """--profile and --explain profile the model as the run's settings build it (deployed,
    compiled, its frames), not the plain eager model."""
    import torch

    class Marked(torch.nn.Module):  # what the fake conversion returns: an operator the plain model lacks
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return torch.nn.functional.hardswish(self.model(x))

    seen = []
    fake = types.ModuleType("zoo.deploy")
    fake.deploy = lambda model, x: seen.append(tuple(x.shape)) or Marked(model)
    monkeypatch.setitem(sys.modules, "zoo.deploy", fake)
    form = {"frames": 2, "size": 32}
    assert "aten::hardswish" not in bench.profile("tsn_r18", threads=1, top=200, **form)
    assert "aten::hardswish" in bench.profile("tsn_r18", threads=1, top=200, deploy=True, **form)
    assert seen == [(1, 3, 2, 32, 32)]
    assert "aten::hardswish" in bench.op_times("tsn_r18", threads=1, runs=1, deploy=True, **form)
    # explain hands op_times the run's settings
    calls = []
    monkeypatch.setattr(bench_profiling, "op_times", lambda n, threads, **k: calls.append(k) or {"aten::conv": 1.0})
    run = _fake_run()
    run["settings"].update(deploy=True, compile=True, freeze=False)
    bench.explain(run)
    assert calls and all(k["deploy"] and k["compile"] and k["frames"] == 8 and k["size"] == 224 for k in calls)


def test_render_again_from_json(tmp_path):
    run = _fake_run()
    run["explain"] = "- **gc_tsn_r50** vs tsn_r50: ..."
    paths = bench.write_results(run, str(tmp_path))
    js = next(p for p in paths if p.suffix == ".json")
    notes = tmp_path / "n.md"
    notes.write_text("## Notes\nnew")
    out = tmp_path / "again"
    assert bench.main(["--from-json", str(js), "--notes", str(notes), "--out", str(out)]) == 0
    md = next(out.glob("*.md")).read_text()
    assert "## Notes\nnew" in md and "Where the time goes" in md and "| gc_tsn_r50 | tsn_r50 |" in md


def test_variant_names_and_their_targets(capsys):
    assert parse_spec("tsm_r50_ssv1_8f").name == "tsm_r50_ssv1_8f"
    assert baseline_of("gc_tsm_r50_ssv1_8f") == "tsm_r50" and baseline_of("tdn_r50_ssv1_8f") == "tv_resnet50"
    assert bench.target_of("gc_tsm_r50_ssv1_8f") == bench.TARGETS["gc_tsm_r50"]
    assert bench.target_of("tsm_r50:shift_div=4") is None
    m = bench.build(parse_spec("tsm_r50_ssv1_8f"), num_frames=2)
    assert m.num_classes == 174 and m.pretrained_cfg["name"] == "tsm_r50_ssv1_8f"


def test_targets_are_the_projects_data():
    t = bench.TARGETS["aia_tsn_r50:attention=st"]
    assert t.baseline == "tsn_r50" and t.limit == pytest.approx(1 + (1.41 / 1.02 - 1) / 2)
    assert bench.TARGETS["gc_tdn_r50"].authors == pytest.approx(1.62 / 1.48)
    md = bench.render_md(_fake_run())
    assert "issue" not in md.lower() and "the project's limit" in md


def test_few_repeats_warn():
    with pytest.warns(UserWarning, match="interquartile"):
        bench.run_bench(["tsn_r18"], frames=2, size=32, threads=1, repeats=3, warmup=0, probes=False,
                        add_baselines=False)
    run = _fake_run()
    assert "not a spread" in bench.render_md(run)       # 3 rounds
    run["settings"]["repeats"] = 20
    assert "not a spread" not in bench.render_md(run)


def test_results_name_the_machine(tmp_path):
    from zoo.bench.machine import cpu_info, machine

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: Test CPU 9000\nphysical id\t: 0\ncore id\t: 0\n"
                    "flags\t\t: fpu sse avx2 avx512f amx_tile amx_bf16\n\nprocessor\t: 1\nphysical id\t: 0\n"
                    "core id\t: 1\nflags\t\t: fpu sse avx2 avx512f amx_tile amx_bf16\n")
    assert cpu_info(str(info)) == {"cpu": "Test CPU 9000", "family": "26 model 2",
                                   "vector": ["avx2", "avx512f", "amx_tile", "amx_bf16"], "cores": 2}
    m = machine(bandwidth=False)
    import torch

    assert m["torch"] == torch.__version__ and "vector" in m and "onednn_version" in m and "mkl_version" in m
    run = _fake_run()
    run["machine"].update(vector=["avx2", "avx512f"], cores=2, onednn_version="3.1", mkl_version="2024.2")
    md = bench.render_md(run)
    assert "Test CPU (AVX2, AVX512F; 2 cores" in md and "oneDNN 3.1, MKL 2024.2" in md and "capped" not in md
    run["machine"]["family"] = "26 model 2"  # two kinds of one model name told apart
    assert "Test CPU (family 26 model 2; AVX2, AVX512F; 2 cores" in bench.render_md(run)
    del run["machine"]["family"]
    rows = list(csv.DictReader(io.StringIO(bench.render_csv(run))))
    assert rows[0]["cpu"] == "Test CPU" and rows[0]["vector"] == "avx2 avx512f" and rows[0]["onednn"] == "3.1"
    assert rows[0]["family"] == ""  # not in this run's record
    # a run with the kernels capped below the CPU's extensions says so
    run["machine"].update(cpu_capability="AVX2", isa_caps={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert "AVX512F; ATen kernels AVX2; kernels capped by ONEDNN_MAX_CPU_ISA=AVX2; 2 cores" in bench.render_md(run)
    rows = list(csv.DictReader(io.StringIO(bench.render_csv(run))))
    assert rows[0]["isa_caps"] == "ONEDNN_MAX_CPU_ISA=AVX2"


def test_results_say_how_much_cpu_time_the_hypervisor_took(tmp_path, monkeypatch):
    from zoo.bench import machine as bench_machine

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 20 300 0 0 0 5 0 0\ncpu0 50 0 10 150 0 0 0 2 0 0\n")
    before = bench_machine.cpu_times(str(stat))
    stat.write_text("cpu  170 0 30 310 0 0 0 15 0 0\n")
    assert bench_machine.steal_share(before, bench_machine.cpu_times(str(stat))) == pytest.approx(10 / 100)
    assert bench_machine.steal_share(None, before) is None
    assert bench_machine.cpu_times(str(tmp_path / "none")) is None
    # a run records it, and the results name it beside the machine
    ticks = iter([[0] * 7 + [0], [80, 0, 10, 0, 0, 0, 0, 10]])
    monkeypatch.setattr(bench_run, "cpu_times", lambda: next(ticks))
    run = bench.run_bench(["tsn_r18"], frames=2, size=32, threads=1, repeats=1, warmup=0, probes=False,
                          add_baselines=False)
    assert run["machine"]["steal"] == pytest.approx(0.1)
    assert "10.0% of CPU time stolen by the hypervisor while timing" in bench.render_md(run)
    assert next(csv.DictReader(io.StringIO(bench.render_csv(run))))["steal"] == "0.1000"


def test_machine_records_the_caps_that_key_deploy_choices(monkeypatch):
    from zoo.bench.machine import machine
    from zoo.deploy.choices import ISA_CAPS

    for k in ("ATEN_CPU_CAPABILITY", *ISA_CAPS):
        monkeypatch.delenv(k, raising=False)
    assert machine(bandwidth=False)["isa_caps"] == {}
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    for k in ISA_CAPS:
        monkeypatch.setenv(k, "AVX2")
    assert machine(bandwidth=False)["isa_caps"] == {"ATEN_CPU_CAPABILITY": "avx2", **{k: "AVX2" for k in ISA_CAPS}}


def test_deploy_option(monkeypatch, capsys):
    args = ["bench", "tsn_r18", "--frames", "2", "--size", "32", "--threads", "1", "--repeats", "1",
            "--warmup", "0", "--no-probe", "-q", "--deploy"]
    monkeypatch.setitem(sys.modules, "zoo.deploy", None)     # not installed: one clear line
    assert zoo_main(args) == 2
    assert "--deploy needs zoo.deploy" in capsys.readouterr().err
    seen = []
    fake = types.ModuleType("zoo.deploy")
    fake.deploy = lambda model, x: seen.append((type(model).__name__, tuple(x.shape))) or model
    monkeypatch.setitem(sys.modules, "zoo.deploy", fake)
    assert zoo_main(args) == 0
    # tsn_r18 converted; its backbone, torchvision's ResNet-18, is the reference as shipped
    assert seen == [("VideoResNet", (1, 3, 2, 32, 32))]


def test_freeze_compiles_with_inductors_freezing(monkeypatch):
    """--freeze: inductor's freezing is on while each model compiles (its first call), off
    after, and named in the results' settings line."""
    import torch
    import torch._inductor.config as inductor

    seen = []

    class Spy(torch.nn.Module):
        def __init__(self, model, **_):
            super().__init__()
            self.model = model

        def forward(self, x):
            seen.append(inductor.freezing)
            return self.model(x)

    monkeypatch.setattr(torch, "compile", Spy)
    run = bench.run_bench(["tsn_r18"], baseline="tsn_r18", frames=2, size=32, threads=1, repeats=1, warmup=0,
                          probes=False, compile=True, freeze=True)
    assert seen[0] is True and not any(seen[1:]) and inductor.freezing is False
    assert "torch.compile with freezing" in bench.render_md(run)
    with pytest.raises(ValueError, match="freeze applies to compiled models"):
        bench.run_bench(["tsn_r18"], probes=False, freeze=True)


def test_compile_keeps_every_graph_static(monkeypatch):
    """Models with different input sizes in one run (TDN's clips hold 5 frames per segment)
    each get a graph of static shapes: a recompile of the shared forward for a new size must
    not turn T dynamic (dynamo's default), which gives TDN a graph unlike the others' and one
    that inductor's freezing fails to run (torch 2.14)."""
    import torch

    real, graphs = torch.compile, []

    def backend(gm, inputs):
        sizes = [n for t in inputs for n in (t.shape if isinstance(t, torch.Tensor) else [t])]
        graphs.append(any(isinstance(n, torch.SymInt) for n in sizes))
        return gm.forward
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real(model, backend=backend, **kw))
    torch._dynamo.reset()
    try:
        run = bench.run_bench(["tsn_r18", "tdn_r50"], baseline="tsn_r18", frames=2, size=64, threads=1, repeats=1,
                              warmup=0, probes=False, compile=True)
    finally:
        torch._dynamo.reset()
    assert not [r.error for r in run["results"].values() if r.error]
    assert len(graphs) >= 2 and not any(graphs)


def test_compile_option_reports_the_first_call(monkeypatch, capsys):
    import torch

    compiled = []

    def fake_compile(model, **_):
        compiled.append(model)
        return model
    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setattr(torch._dynamo.config, "cache_size_limit", 8)
    run = bench.run_bench(["tsm_r18"], frames=2, size=32, threads=1, repeats=1, warmup=0, probes=False,
                          compile=True)
    res = run["results"]
    assert len(compiled) == 2 and all(r.compile_s is not None and r.compile_s > 0 for r in res.values())
    # each model compiled behind a code object of its own: dynamo's guard lookup walks one model's graphs
    assert len({id(c.__code__) for c in compiled}) == 2
    # every model of the run gets a graph of its own: dynamo's default of 8 would leave the rest eager
    assert torch._dynamo.config.cache_size_limit > 8
    md = bench.render_md(run)
    assert "torch.compile, first call (tracing and code generation), s: tsm_r18" in md


def test_median_interval_is_the_sign_tests():
    # n = 20 at 95 %: P(Binomial(20, 1/2) <= 5) = 0.021 <= 0.025 < P(<= 6) = 0.058, so the 6th
    # smallest and the 6th largest
    assert bench.median_ci(list(range(1, 21))) == (6, 15)
    assert bench.median_ci([3, 1, 2, 5, 4, 6]) == (1, 6)   # 1 - 2/64 = 97 %
    assert bench.median_ci([1, 2, 3, 4, 5]) is None          # the widest, 1 - 2/32 = 94 %, is too narrow
    assert bench.median_ci(list(range(1, 21)), alpha=0.01) == (4, 17)  # P(<= 3) = 0.0013, P(<= 4) = 0.0059
    # it covers the median of a skewed distribution (disturbed rounds) 95 % of the time
    import random

    rng = random.Random(0)
    true = math.exp(0.0)  # the median of a log-normal
    hits = sum(lo <= true <= hi for lo, hi in
               (bench.median_ci([rng.lognormvariate(0, 1) for _ in range(20)]) for _ in range(4000)))
    assert 0.945 <= hits / 4000 <= 0.975


def test_a_target_is_met_or_missed_only_when_the_interval_shows_it():
    assert bench.verdict([1.02, 1.03, 1.01, 1.04, 1.02, 1.03, 1.02, 1.01], 1.05) is True
    assert bench.verdict([1.08, 1.07, 1.09, 1.08, 1.06, 1.07, 1.08, 1.10], 1.05) is False
    # median 1.04, under the limit, but three of eight rounds over it
    assert bench.verdict([1.04, 1.06, 1.03, 1.07, 1.04, 1.06, 1.02, 1.04], 1.05) is None
    assert bench.verdict([1.0] * 5, 1.05) is None           # too few rounds for any interval
    run = _fake_run()
    base = [100, 120, 90, 110, 100, 95, 105, 100, 130, 100]
    run["results"]["tsn_r50"].times_ms = base
    run["results"]["tv_resnet50"].times_ms = base
    run["results"]["gc_tsn_r50"].times_ms = [b * f for b, f in zip(base, [1.04, 1.06, 1.03, 1.07, 1.04, 1.06, 1.02,
                                                                          1.04, 1.03, 1.045])]
    rows = {r["model"]: r for r in bench.rows(run)}
    assert rows["tsn_r50"]["shown"] is True                   # 0 % over, every round: shown under +1 %
    g = rows["gc_tsn_r50"]
    assert g["met"] is True and g["shown"] is None and g["latency_ci_lo"] <= 1.05 <= g["latency_ci_hi"]
    md = bench.render_md(run)
    assert "| tsn_r50 | tv_resnet50 |" in md and "| <= +1.0% | +2.0% | yes |" in md
    # ten rounds at 95 %: the 2nd smallest and 2nd largest ratio
    assert "| <= +5.0% | +10.8% | ~yes |" in md and "| +3.0% .. +6.0% |" in md
    assert "Of 2 targets: 1 shown met, 0 shown missed, 1 undecided (1 with the median at or under the limit)." in md  # the undecided one only
    csv_row = next(r for r in csv.DictReader(io.StringIO(bench.render_csv(run))) if r["model"] == "gc_tsn_r50")
    assert float(csv_row["latency_ci_hi"]) == pytest.approx(1.06) and csv_row["shown"] == ""


def test_units_put_each_backbone_between_two_of_its_models():
    bases = {"tsn": "tv", "tsm": "tsn", "gc": "tsn", "sda": "tsn", "tdn": "tv", "x": None}
    plan = bench_timing.units(["tv", "tsn", "tsm", "gc", "sda", "tdn", "x"], bases)
    assert plan == [["tsn", "tv", "tdn"], ["tsm", "tsn", "gc"], ["sda", "tsn"], ["x"]]


def test_each_model_is_timed_beside_its_backbone(monkeypatch):
    # the "time" of a forward is its place in the sequence of forwards: beside = one apart
    seq = []
    monkeypatch.setattr(bench_timing, "_timer", lambda device: lambda fn: fn())
    fns = {k: (lambda k=k: seq.append(k) or float(len(seq))) for k in ("tv", "tsn", "tsm", "gc", "sda")}
    bases = {"tsn": "tv", "tsm": "tsn", "gc": "tsn", "sda": "tsn", "tv": None}
    own, beside = bench_timing.time_beside(fns, bases, repeats=4, warmup=1)
    assert seq[:7] == ["tsn", "tv", "tsm", "tsn", "gc", "sda", "tsn"]  # warm-up: the units once
    assert seq[7:14] == ["tsn", "tv", "tsm", "tsn", "gc", "sda", "tsn"]  # round 0
    assert seq[14:21] == ["gc", "tsn", "tsm", "tsn", "sda", "tv", "tsn"]  # round 1: rotated, each unit backwards
    assert set(beside) == {"tsn", "tsm", "gc", "sda"} and all(len(v) == 4 for v in own.values())
    for k, b in beside.items():
        gaps = [o - t for o, t in zip(own[k], b)]
        assert set(gaps) == {-1.0, 1.0}, (k, gaps)  # right beside it, before it as often as after
        assert all(seq[int(t) - 1] == bases[k] for t in b)
    assert [seq[int(t) - 1] for t in own["tv"]] == ["tv"] * 4
    # the ratio pairs each time with the backbone's forward beside it, not the backbone's own
    res = {k: BenchResult(k, bases[k], own[k], base_ms=beside.get(k)) for k in fns}
    assert bench_run.paired(res["gc"], res["tsn"]) == pytest.approx([o / t for o, t in zip(own["gc"], beside["gc"])])
    assert bench_run.paired(res["gc"], res["tv"]) == pytest.approx([o / t for o, t in zip(own["gc"], own["tv"])])


def test_rounds_pair_by_their_number():
    # a model timed in rounds 2-4 only is compared with its backbone's rounds 2-4, not 0-2
    b = BenchResult("b", None, [100, 200, 300, 400, 500, 600], rounds=list(range(6)))
    m = BenchResult("m", "b", [330, 440, 550], rounds=[2, 3, 4])
    assert bench_run.paired(m, b) == pytest.approx([1.1, 1.1, 1.1])
    assert bench_run.paired(BenchResult("m", "b", [110, 220]), BenchResult("b", None, [100, 200])) == \
        pytest.approx([1.1, 1.1])
    assert bench_run.paired(BenchResult("m", "b", [110]), BenchResult("b", None, [100, 200])) == []


def test_until_decided_times_only_what_is_still_undecided(monkeypatch):
    limits = {"tsn_r18": Target("tv_resnet18", 1.01, 1.02), "tsm_r18": Target("tsn_r18", 1.05, 1.1)}
    monkeypatch.setattr(bench_run, "target_of", limits.get)      # the backbones it picks
    monkeypatch.setattr(bench_targets, "target_of", limits.get)  # the targets it judges
    calls, every = [], [4]

    def fake(fns, bases, repeats, warmup, device="cpu", log=None, first_round=0):
        calls.append((sorted(fns), first_round, repeats))
        out = {k: [] for k in fns}
        beside = {k: [] for k in fns if bases.get(k) in fns}
        for r in range(first_round, first_round + repeats):
            tv = 100.0 + r % 7                  # the machine drifts; the ratios do not
            tsn = 0.9 * tv                      # shown under its limit from the first look
            tsm = tsn * (1.06 if r % every[0] == 0 else 1.045)  # a quarter of the rounds over its limit
            t = {"tv_resnet18": tv, "tsn_r18": tsn, "tsm_r18": tsm}
            for k in out:
                out[k].append(t[k])
            for k in beside:
                beside[k].append(t[bases[k]])
        return out, beside

    monkeypatch.setattr(bench_run, "time_beside", fake)
    run = bench.run_bench(["tsm_r18", "tv_resnet18"], frames=2, size=32, threads=1, repeats=10, warmup=0, probes=False,
                          until_decided=60)
    s, res = run["settings"], run["results"]
    assert s["looks"] == 6 and s["ci_alpha"] == pytest.approx(0.05 / 6)
    # at level 0.05/6 the interval's upper end is the 1st, 4th, 8th, 12th largest of 10, 20, 30,
    # 40 rounds; rounds 0, 4, 8, ... are over the limit: 3, 5, 8, 10 of them, so 40 rounds decide
    assert calls[0] == (["tsm_r18", "tsn_r18", "tv_resnet18"], 0, 10)
    assert calls[1:] == [(["tsm_r18", "tsn_r18"], r, 10) for r in (10, 20, 30)]
    assert len(res["tv_resnet18"].times_ms) == 10 and len(res["tsm_r18"].times_ms) == 40
    assert res["tsm_r18"].rounds == list(range(40))
    # TSN stayed on as TSM's backbone, without its own: no ratio for those rounds
    assert res["tsn_r18"].base_ms[:10] == res["tv_resnet18"].times_ms and res["tsn_r18"].base_ms[10:] == [None] * 30
    rows = {r["model"]: r for r in bench.rows(run)}
    assert rows["tsn_r18"]["pairs"] == 10 and rows["tsn_r18"]["shown"] is True
    assert rows["tsm_r18"]["pairs"] == 40 and rows["tsm_r18"]["shown"] is True
    assert rows["tsm_r18"]["latency_ratio"] == pytest.approx(1.045)
    assert "99.17% CI" in bench.render_md(run) and "Bonferroni" in bench.render_md(run)
    assert s["rounds_done"] == 40 and "up to 60; 40 were run" in bench.render_md(run)
    # a target the rounds never decide runs to the end, and says so
    every[0] = 2  # half the rounds over
    calls.clear()
    run = bench.run_bench(["tsm_r18", "tv_resnet18"], frames=2, size=32, threads=1, repeats=10, warmup=0, probes=False,
                          until_decided=55)
    assert len(run["results"]["tsm_r18"].times_ms) == 55 and calls[-1][1:] == (50, 5)
    assert {r["model"]: r for r in bench.rows(run)}["tsm_r18"]["shown"] is None


def test_until_decided_needs_more_rounds_than_repeats(capsys):
    assert zoo_main(["bench", "tsn_r18", "--repeats", "10", "--until-decided", "10", "--no-probe"]) == 2
    err = capsys.readouterr().err
    assert "--until-decided 10 must be more rounds than --repeats 10" in err and "Traceback" not in err


def test_compiled_calibrators_are_judged_by_their_flop_share():
    assert bench_targets.COMPILED_MARGIN == pytest.approx(0.02)
    assert bench.TARGETS["gc_tsn_r50"].compiled and bench.TARGETS["aia_tsn_r50:attention=c"].compiled
    assert not bench.TARGETS["tsm_r50"].compiled and not bench.TARGETS["stc_r50"].compiled
    run = _fake_run()
    base = [100, 120, 90, 110, 100, 95, 105, 100, 130, 100]
    run["results"]["tsn_r50"].times_ms = run["results"]["tv_resnet50"].times_ms = base
    # +3 % in every round: under GC's table limit (+5 %), over its FLOP share (+0.37 %) + 2 points
    run["results"]["gc_tsn_r50"].times_ms = [b * 1.03 for b in base]
    eager = {r["model"]: r for r in bench.rows(run)}["gc_tsn_r50"]
    assert eager["target"] == 1.05 and eager["shown"] is True and eager["limit_from"] == "table"
    run["settings"]["compile"] = True
    rows = {r["model"]: r for r in bench.rows(run)}
    g = rows["gc_tsn_r50"]
    assert g["target"] == pytest.approx(33e9 / 32_878_567_424 + 0.02) and g["limit_from"] == "flops"
    assert g["met"] is False and g["shown"] is False
    assert rows["tsn_r50"]["target"] == 1.01 and rows["tsn_r50"]["limit_from"] == "table"  # not a calibrator
    md = bench.render_md(run)
    assert "| <= +2.4% (FLOPs + 2) | +10.8% | **no** |" in md and "plus 2 points" in md
    # without the FLOPs there is no compiled limit to judge by: no verdict, and the table says why
    run["results"]["gc_tsn_r50"].flops = None
    g = {r["model"]: r for r in bench.rows(run)}["gc_tsn_r50"]
    assert g["target"] is None and g["met"] is None and g["shown"] is None
    md = bench.render_md(run)
    assert "| FLOPs + 2: not measured |" in md and "it is not judged" in md


def test_until_decided_compiled_extends_by_the_flop_limit():
    run = _fake_run()
    base = [100.0] * 20
    run["results"]["tsn_r50"].times_ms = run["results"]["tv_resnet50"].times_ms = base
    # ratios spread around +2.4 %: shown under +5 %, but the compiled limit (+2.37 %) inside them
    run["results"]["gc_tsn_r50"].times_ms = [b * (1.024 + (0.01 if i % 2 else -0.01)) for i, b in enumerate(base)]
    del run["results"]["broken_r50"]
    assert bench_run.undecided(run["results"], 0.05) == []
    assert bench_run.undecided(run["results"], 0.05, compiled=True) == ["gc_tsn_r50"]


def test_targets_file_states_compiled_limits_whole(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('compiled_margin = 0.02\n[[target]]\nmodel = "a"\nbaseline = "b"\nlimit = 1.05\ncompiled = "yes"\n')
    with pytest.raises(ValueError, match="compiled must be true or false"):
        bench_targets.load_targets(f)
    f.write_text('[[target]]\nmodel = "a"\nbaseline = "b"\nlimit = 1.05\ncompiled = true\n')
    with pytest.raises(ValueError, match="compiled_margin must be a ratio"):
        bench_targets.load_targets(f)
    f.write_text('[[target]]\nmodel = "a"\nbaseline = "b"\nlimit = 1.05\n')
    targets, _, _, margin = bench_targets.load_targets(f)
    assert not targets["a"].compiled and margin == 0.0


def test_render_again_fills_the_probes_a_no_probe_run_lacks(tmp_path, capsys):
    run = _fake_run()
    run["settings"]["compile"] = True
    probed = {k: r.flops for k, r in run["results"].items()}
    for r in run["results"].values():
        r.flops = r.peak_mb = r.params = None
    js = next(p for p in bench.write_results(run, str(tmp_path / "run")) if p.suffix == ".json")
    cfg = bench_run._probe_cfg(run["settings"])
    cache = tmp_path / "probes.json"
    cache.write_text(json.dumps({"settings": cfg, "results": {
        k: {"params": 7, "flops": v, "peak_mb": 5.0, "model_mb": 1.0, "memory_how": "RSS"}
        for k, v in probed.items() if v}}))
    out = tmp_path / "again"
    assert bench.main(["--from-json", str(js), "--probe-cache", str(cache), "--out", str(out)]) == 0
    assert "memory and FLOPs of 3 model(s)" in capsys.readouterr().err
    md = next(out.glob("*.md")).read_text()
    assert "| <= +2.4% (FLOPs + 2) |" in md and "| +0.4% |" in md
    # an entry that lacks a value is named, not half-used
    cache.write_text(json.dumps({"settings": cfg, "results": {"tsn_r50": {"params": 7, "flops": 1.0}}}))
    assert zoo_main(["bench", "--from-json", str(js), "--probe-cache", str(cache)]) == 2
    err = capsys.readouterr().err
    assert "the entry of tsn_r50 lacks peak_mb, model_mb, memory_how" in err and "Traceback" not in err
    # probes of other settings are not mixed in
    cache.write_text(json.dumps({"settings": {**cfg, "size": 112}, "results": {}}))
    assert zoo_main(["bench", "--from-json", str(js), "--probe-cache", str(cache)]) == 2
    err = capsys.readouterr().err
    assert "probed with other settings" in err and "Traceback" not in err
