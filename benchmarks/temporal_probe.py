"""The papers' central claim on CPU: per-frame averaging (TSN) cannot tell temporal order, a
temporal module can.

Data (``zoo.train.data.TemporalOrderDataset``): a bright square moving left to right (class 0)
or right to left (class 1) over noise; clip 2k+1 is clip 2k reversed, so both classes hold
exactly the same frames and TSN's average of per-frame scores gives every (clip, reversed clip)
pair one prediction: 50 % by construction. Each family's smallest network is trained with
``zoo train``'s engine (``zoo.train.engine.fit``) from random initialisation for the same budget
(epochs x clips, SGD, the same lr for all), at 32x32 with 4 segments (TDN: 4 segments of 5
frames), and validated on held-out clips.

    python benchmarks/temporal_probe.py --out benchmarks/results            # every family
    python benchmarks/temporal_probe.py --family tsm --family gc --out ...   # some, merged into the table
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import zoo  # noqa: E402
from zoo.train.data import TemporalOrderDataset  # noqa: E402
from zoo.train.engine import TrainConfig, fit  # noqa: E402
from zoo.train.recipes import recipe_for  # noqa: E402
from zoo.weights.files import atomic_write  # noqa: E402

# family -> its smallest registered network
FAMILIES = {"tsn": "tsn_r18", "tsm": "tsm_r18", "gst": "gst_r18", "c3d": "c3d_r18", "p3d": "p3d_r18",
            "gc": "gc_tsn_r50", "aia": "aia_tsn_r50", "stc": "stc_light_r50", "sda": "sda_tsn_r50", "tdn": "tdn_r50"}


def probe(arch: str, args) -> dict:
    tdn = zoo.registry().archs[arch].family == "tdn"
    frames = args.frames * (5 if tdn else 1)
    size = max(args.size, 64) if tdn else args.size   # TDN pools layer4's map 2x: at least 33 px
    recipe = dataclasses.replace(recipe_for(arch), lr=args.lr, batch=args.batch, milestones=(), dropout=0.0,
                                 flip=False, warmup_epochs=0)
    torch.manual_seed(args.seed)
    model = zoo.create_model(arch, num_classes=2, num_frames=args.frames)
    train = TemporalOrderDataset(args.train, frames=frames, size=size, seed=args.seed)
    val = TemporalOrderDataset(args.val, frames=frames, size=size, seed=args.seed + 1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = fit(model, train, val, TrainConfig(out=tmp, recipe=recipe, batch=args.batch, epochs=args.epochs,
                                                 seed=args.seed, quiet=True, export=False))
        seconds = time.perf_counter() - t0
    hist = res["history"]
    return {"arch": arch, "size": size, "val_top1": hist[-1]["val_top1"], "best_top1": res["best"]["val_top1"],
            "per_epoch": [round(h["val_top1"], 1) for h in hist], "train_loss": round(hist[-1]["train_loss"], 4),
            "seconds": round(seconds, 1), "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}


def render(doc: dict) -> str:
    c, m = doc["config"], doc["machine"]
    lines = ["# Temporal-order probe (the papers' central claim, small)", "",
             f"Two classes with the same frames in opposite orders; {c['train']} training / {c['val']} validation "
             f"clips, {c['size']}x{c['size']} (TDN 64x64: its motion excitation needs 33 px), {c['frames']} segments "
             f"(TDN: 5 frames each), batch {c['batch']}, "
             f"{c['epochs']} epochs, SGD lr {c['lr']}, from random initialisation, seed {c['seed']}. Chance is 50 %; "
             "TSN is at exactly 50 % by construction (every clip has a reversed twin of the other class).", "",
             f"Machine: {m['cpu']['model']} ({m['cpu']['cpus']} CPUs; {', '.join(m['cpu']['flags']) or 'no AVX2/AVX-512/AMX'}), "
             f"{m['threads']} torch thread(s), torch {m['torch']}. The machine is shared with other jobs and was "
             f"busy (load average {m['load_avg']}): the times are wall-clock under that load.", "",
             "| family | network | params | size | val top-1 (last) | best | per epoch | train loss | time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for fam, r in doc["results"].items():
        lines.append(f"| {fam} | {r['arch']} | {r['params_m']}M | {r['size']} | {r['val_top1']:.1f} % | {r['best_top1']:.1f} % | "
                     f"{' '.join(map(str, r['per_epoch']))} | {r['train_loss']} | {r['seconds']:.0f} s |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from eval_speed import cpu_info

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", action="append", choices=sorted(FAMILIES), help="default: all")
    p.add_argument("--train", type=int, default=128)
    p.add_argument("--val", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="folder for temporal-probe-cpu.{json,md} (results of other families kept)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    config = {k: getattr(a, k) for k in ("train", "val", "size", "frames", "batch", "epochs", "lr", "seed")}
    path = Path(a.out) / "temporal-probe-cpu.json" if a.out else None
    doc = {"config": config, "results": {}}
    if path and path.is_file():
        old = json.loads(path.read_text())
        if old.get("config") == config:
            doc["results"] = old["results"]
    for fam in a.family or list(FAMILIES):
        r = probe(FAMILIES[fam], a)
        doc["results"][fam] = r
        print(f"{fam:5s} {r['arch']:15s} val top1 {r['val_top1']:5.1f} %  per epoch {r['per_epoch']}  {r['seconds']:.0f} s",
              flush=True)
    doc["results"] = {f: doc["results"][f] for f in FAMILIES if f in doc["results"]}
    doc["machine"] = {"cpu": cpu_info(), "threads": a.threads, "torch": torch.__version__,
                      "load_avg": [round(x, 1) for x in os.getloadavg()], "python": platform.python_version(),
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(doc, indent=1) + "\n")
        atomic_write(path.with_suffix(".md"), render(doc))
        print(f"wrote {path} and {path.with_suffix('.md')}")
    else:
        print(render(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
