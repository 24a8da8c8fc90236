"""Compiled (inductor) TSN vs TSM, with the current shift and with the former cat-based one, in one
process, rounds alternating: ``PYTHONPATH=$PWD python benchmarks/compile_shift.py SIZE THREADS ROUNDS``."""
import copy
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import zoo
from zoo.models.temporal import TemporalShift

torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
px = int(sys.argv[1]) if len(sys.argv) > 1 else 112


def cat_shift(x, T, fold_div=8):  # the previous plain shift: padded slices joined by torch.cat
    N, C, H, W = x.shape
    fold = C // fold_div
    v = x.view(N // T, T, C, H, W)
    fwd = F.pad(v[:, 1:, :fold], (0, 0, 0, 0, 0, 0, 0, 1))
    bwd = F.pad(v[:, :-1, fold:2 * fold], (0, 0, 0, 0, 0, 0, 1, 0))
    return torch.cat((fwd, bwd, v[:, :, 2 * fold:]), dim=2).view(N, C, H, W)


class CatShift(TemporalShift):
    def forward(self, x, T):
        return cat_shift(x, T, self.fold_div)


x = torch.randn(1, 3, 8, px, px)
models = {"tsn": zoo.create_model("tsn_r50", num_classes=400).eval(),
          "tsm": zoo.create_model("tsm_r50", num_classes=400).eval()}
old = copy.deepcopy(models["tsm"])
for blk in [b for l in (old.layer1, old.layer2, old.layer3, old.layer4) for b in l]:
    blk.shift = CatShift(blk.shift.fold_div)
models["tsm_cat"] = old
comp = {}
with torch.no_grad():
    for n, m in models.items():
        t0 = time.time()
        c = comp[n] = torch.compile(m)
        c(x)
        print(n, "compile s", round(time.time() - t0), flush=True)
    torch.testing.assert_close(comp["tsm"](x), comp["tsm_cat"](x), rtol=1e-4, atol=1e-4)
    times = {n: [] for n in comp}
    names = list(comp)
    for r in range(int(sys.argv[3]) if len(sys.argv) > 3 else 8):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            t0 = time.perf_counter()
            comp[n](x)
            times[n].append(time.perf_counter() - t0)
for n in names:
    r = [a / b for a, b in zip(times[n], times["tsn"])]
    q = statistics.quantiles(r, n=4)
    print(f"{n}: median {statistics.median(times[n]) * 1000:.0f} ms, "
          f"vs compiled TSN {statistics.median(r):.3f} [{q[0]:.3f}, {q[2]:.3f}]")
