"""Latency benchmark harness: ``zoo bench`` (also ``benchmarks/latency.py``).

Every network is timed in ONE process, the models alternated A B C A B C ... (the order rotated
each round) so that drift of the machine hits all of them alike, and each right beside its
backbone, whose forward there is the one its ratio divides by. After a warm-up, each model
gets ``repeats`` timed forwards of one batch of clips; the table shows the median and the
spread (interquartile range) in ms per batch, clips/s, and each model's ratio to its own
backbone measured in the same run (GC-TSM -> TSM, AIA(TSN) -> TSN, GST -> TSN, TSN ->
torchvision ResNet-50 on the same frames, ...), beside its FLOP overhead over that backbone, so
a row reads "FLOPs +1.3%, latency +2.1%". A target counts as met or missed only when the
ratio's 95 % confidence interval (distribution-free) lies on one side of it; otherwise the rounds
cannot tell, and the table says so. Compiled (``--compile``), a calibrator's limit is its FLOP
share over the backbone plus a margin (``targets.toml``). Peak memory and FLOPs come from a fresh child process per
model.

One job per module: ``spec`` (what is benchmarked, building it), ``targets`` (the project's
targets and presets, data in ``targets.toml``), ``probe`` (memory/FLOPs child), ``timing``
(alternated timing beside the backbones, statistics, heap settings), ``machine`` (what measured it), ``run`` (one run),
``render`` (tables and files), ``profiling`` (operator profiles), ``cli``. ``import zoo`` never
imports this package; it imports ``zoo`` (top-level tools sit above the library).
"""
from .cli import add_commands, main
from .probe import run_probes
from .profiling import explain, op_times, profile
from .render import load_run, render_csv, render_md, rows, write_results
from .run import run_bench
from .spec import Spec, baseline_of, build, clip_shape, parse_spec
from .targets import AUTHORS_ACT_MB, PRESETS, TARGETS, target_of
from .timing import BenchResult, median_ci, time_models, verdict

__all__ = ["Spec", "parse_spec", "build", "clip_shape", "baseline_of", "TARGETS", "PRESETS", "AUTHORS_ACT_MB",
           "target_of", "BenchResult", "time_models", "median_ci", "verdict", "run_bench", "run_probes", "rows", "render_md", "render_csv",
           "write_results", "load_run", "profile", "op_times", "explain", "add_commands", "main"]
