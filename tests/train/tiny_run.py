"""A tiny training run for the tests: TSN-R18 on the synthetic temporal-order clips.

Run directly (one process) or under torchrun (several). ``--die-at E:S`` kills the process
with SIGKILL right after step S of epoch E (0-based epoch), before that step is saved."""
import argparse
import dataclasses
import os
import signal
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import zoo  # noqa: E402
from zoo.train.data import TemporalOrderDataset  # noqa: E402
from zoo.train.engine import TrainConfig, fit  # noqa: E402
from zoo.train.recipes import recipe_for  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--batch", type=int, default=4)
p.add_argument("--epochs", type=int, default=2)
p.add_argument("--samples", type=int, default=16)
p.add_argument("--resume", action="store_true")
p.add_argument("--save-every", type=int, default=0)
p.add_argument("--die-at", default="")
p.add_argument("--freeze-bn", action="store_true")
p.add_argument("--flip", action="store_true")
p.add_argument("--dropout", type=float, default=0.0)
a = p.parse_args()
torch.set_num_threads(1)

recipe = dataclasses.replace(recipe_for("tsn_r18"), lr=0.05, batch=4, milestones=(1,), dropout=a.dropout,
                             flip=a.flip, weight_decay=1e-4)
torch.manual_seed(0)
model = zoo.create_model("tsn_r18", num_classes=2, num_frames=2)
train = TemporalOrderDataset(a.samples, frames=2, size=32, seed=0)
val = TemporalOrderDataset(8, frames=2, size=32, seed=1)
die = tuple(int(v) for v in a.die_at.split(":")) if a.die_at else None


def on_step(s):
    if die and (s["epoch"], s["step"]) == die:
        os.kill(os.getpid(), signal.SIGKILL)


cfg = TrainConfig(out=a.out, recipe=recipe, batch=a.batch, epochs=a.epochs, resume=a.resume, save_every=a.save_every,
                  freeze_bn=a.freeze_bn, name="tsn_r18", quiet=True, log_every=1000)
fit(model, train, val, cfg, on_step=on_step)
