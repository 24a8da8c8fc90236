"""End-to-end evaluation throughput on CPU (decode + transform + model) and where the time goes.

A synthetic Something-Something-like dataset is written to a temporary folder (frame directories
of JPEG frames, or mp4 files with --videos), then for one network and view protocol:

* loader alone: decode + sample + transform of every video in this process (s/video);
* model alone: the forward of the already-prepared inputs (s/video);
* end to end: ``zoo.eval.evaluate`` over a DataLoader with 1 and 2 worker processes (videos/s).

The loader keeps up when (loader s/video) / workers < (model s/video): then the model is the
bottleneck, the project's target for the 1x1 protocol with 2 workers. Rates are compared within one
run only; the CPU and its vector extensions are recorded with the results.

    python benchmarks/eval_speed.py --out benchmarks/results        # tsm_r50, SSv1 8f, 1x1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402
from zoo.data import VideoDataset, read_samples, views_mode  # noqa: E402
from zoo.eval import evaluate  # noqa: E402
from zoo.weights.files import atomic_write  # noqa: E402


def cpu_info() -> dict:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"model": platform.processor(), "flags": []}
    info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = info.get("Flags", "").split()
    keep = [f for f in flags if f == "avx2" or f.startswith(("avx512", "amx", "avx_vnni"))]
    return {"model": info.get("Model name", "").strip(), "cpus": info.get("CPU(s)", "").strip(), "flags": keep}


def write_dataset(root: Path, n: int, frames: int, size: tuple[int, int], videos: bool) -> Path:
    """n videos of moving noise, ``frames`` frames of size (H, W) each; returns the list file."""
    from PIL import Image

    g = np.random.default_rng(0)
    lines = []
    for v in range(n):
        base = g.integers(0, 256, (size[0], size[1] + frames * 2, 3), dtype=np.uint8)
        imgs = [base[:, 2 * t:2 * t + size[1]] for t in range(frames)]      # panning texture: JPEG/codec work is real
        if videos:
            import av

            path = root / f"v{v}.mp4"
            with av.open(str(path), "w") as c:
                s = c.add_stream("mpeg4", rate=12)
                s.width, s.height, s.pix_fmt = size[1], size[0], "yuv420p"
                for im in imgs:
                    for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(im), format="rgb24")):
                        c.mux(pkt)
                for pkt in s.encode():
                    c.mux(pkt)
            lines.append(f"{path.name} {v % 174}")
        else:
            d = root / f"v{v}"
            d.mkdir()
            for t, im in enumerate(imgs):
                Image.fromarray(np.ascontiguousarray(im)).save(d / f"{t + 1:05d}.jpg", quality=90)
            lines.append(f"v{v} {frames} {v % 174}")
    lst = root / "val.txt"
    lst.write_text("\n".join(lines) + "\n")
    return lst


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tsm_r50_ssv1_8f")
    p.add_argument("--views", default="1x1")
    p.add_argument("--videos", type=int, default=12, help="videos in the synthetic set")
    p.add_argument("--frames", type=int, default=48, help="frames per synthetic video")
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--mp4", action="store_true", help="mp4 files instead of JPEG frame directories")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the model process")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--out", help="folder for eval-speed-cpu.{md,json}")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    reg = zoo.registry()
    v = reg.variants[a.model]
    crops, mode, clips = views_mode(a.views, v.sampling)
    model = zoo.create_model(a.model).eval()
    res: dict = {"model": a.model, "views": a.views, "videos": a.videos, "source_frames": a.frames,
                 "frame_size": f"{a.width}x{a.height}", "layout": "mp4 (PyAV)" if a.mp4 else "JPEG frame directories",
                 "threads": a.threads, "batch": a.batch, "torch": torch.__version__, "cpu": cpu_info(),
                 "load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        lst = write_dataset(Path(tmp), a.videos, a.frames, (a.height, a.width), a.mp4)
        ds = VideoDataset(read_samples(lst, labels=v.num_classes), frames=v.frames, protocol=v.sampling, mode=mode,
                          clips=clips, transform=zoo.create_transform(a.model, crops=crops))
        ds[0]                                                  # warm up decoder and transform
        t0 = time.perf_counter()
        items = [ds[i] for i in range(len(ds))]
        res["loader_s_per_video"] = (time.perf_counter() - t0) / len(ds)
        with torch.inference_mode():
            model(items[0]["video"])                           # warm up
            t0 = time.perf_counter()
            for i in range(0, len(items), a.batch):
                model(torch.cat([it["video"] for it in items[i:i + a.batch]]))
        res["model_s_per_video"] = (time.perf_counter() - t0) / len(items)
        for w in (1, 2):
            loader = DataLoader(ds, batch_size=a.batch, num_workers=w)
            t0 = time.perf_counter()
            evaluate(model, loader)
            res[f"end_to_end_videos_per_s_{w}w"] = len(ds) / (time.perf_counter() - t0)
    res["load_average_end"] = os.getloadavg()
    res["model_only_videos_per_s"] = 1 / res["model_s_per_video"]
    res["loader_only_videos_per_s"] = 1 / res["loader_s_per_video"]
    for w in (1, 2):
        res[f"loader_keeps_up_{w}w"] = res["loader_s_per_video"] / w < res["model_s_per_video"]
    text = render(res)
    print(text)
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "eval-speed-cpu.json", json.dumps(res, indent=1) + "\n")
        atomic_write(out / "eval-speed-cpu.md", text + "\n")
    return 0


def render(r: dict) -> str:
    cpu = r["cpu"]
    e2e = {w: r[f"end_to_end_videos_per_s_{w}w"] for w in (1, 2)}
    bound = lambda w: "model" if r[f"loader_keeps_up_{w}w"] else "loader"  # noqa: E731
    return "\n".join([
        f"# Evaluation throughput on CPU: {r['model']}, views {r['views']}",
        "",
        f"CPU: {cpu['model']} ({cpu.get('cpus', '?')} CPUs; flags: {' '.join(cpu['flags']) or 'no AVX2/AVX-512/AMX'}). "
        f"torch {r['torch']}, {r['threads']} torch threads in the model process, batch {r['batch']}.",
        f"**The host was shared with other jobs** (load average {r['load_average_start'][0]:.1f} at the start, "
        f"{r['load_average_end'][0]:.1f} at the end): absolute rates are low and noisy; compare the rows of this "
        "run with each other only.",
        f"Data: {r['videos']} synthetic videos, {r['source_frames']} frames of {r['frame_size']} each, "
        f"{r['layout']}; decoded with zoo.io, sampled and transformed by zoo.data.VideoDataset.",
        "",
        "| stage | s / video | videos / s |",
        "|---|---|---|",
        f"| loader alone (decode + sample + transform, one process) | {r['loader_s_per_video']:.3f} | {r['loader_only_videos_per_s']:.2f} |",
        f"| model alone (forward of prepared inputs) | {r['model_s_per_video']:.3f} | {r['model_only_videos_per_s']:.2f} |",
        f"| end to end, 1 worker | | {e2e[1]:.2f} |",
        f"| end to end, 2 workers | | {e2e[2]:.2f} |",
        "",
        f"Bottleneck: with 1 worker the {bound(1)}, with 2 workers the {bound(2)} "
        f"(the loader needs {r['loader_s_per_video'] / r['model_s_per_video']:.2f}x the model's time per video; "
        "it keeps up when that ratio is below the number of workers). "
        f"End to end with 2 workers reaches {100 * e2e[2] / r['model_only_videos_per_s']:.0f}% of the model-alone rate; "
        "on a host with few cores the decoding workers and the model's threads share the same cores.",
    ])


if __name__ == "__main__":
    sys.exit(main())
