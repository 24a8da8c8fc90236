"""Deployed TSM with each shift mode forced vs the timed choice, against deployed TSN, in one
process (8x224x224, 2 threads, 7 rounds, order rotating): ``PYTHONPATH=$PWD python benchmarks/shift_modes.py``."""
import statistics
import time

import torch

import zoo
from zoo.deploy import Autotuner, DeployedShift, deploy

torch.set_num_threads(2)
x = torch.randn(1, 3, 8, 224, 224)


class Force(Autotuner):
    def __init__(self, mode):
        super().__init__(enabled=False)
        self.mode = mode

    def choose(self, kind, key, candidates, margin=0.0):
        return self.mode if self.mode in candidates else list(candidates)[0]


tsn = deploy(zoo.create_model("tsn_r50", num_classes=400).eval(), x, autotune=False)
m = zoo.create_model("tsm_r50", num_classes=400).eval()
runs = {"tsn": tsn, "auto": deploy(m, x)}
for mode in ("copy", "inplace", "fused"):
    runs[mode] = deploy(m, x, autotune=Force(mode))
print("timed choices per block:", [s.mode for s in runs["auto"].modules() if isinstance(s, DeployedShift)])
t = {n: [] for n in runs}
names = list(runs)
with torch.inference_mode():
    for n in names:
        runs[n](x)
    for r in range(7):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            runs[n](x)
            t[n].append(time.perf_counter() - t0)
for n in names:
    ratio = statistics.median([a / b for a, b in zip(t[n], t["tsn"])])
    print(f"{n}: {statistics.median(t[n]) * 1000:.0f} ms, {ratio:.3f}x deployed TSN")
