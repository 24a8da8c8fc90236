"""The papers' central claim, small: on clips whose two classes hold the same frames in opposite
orders, a temporal module (TSM's shift) learns the order and per-frame averaging (TSN) cannot."""
import dataclasses

import torch

import zoo
from zoo.train.data import TemporalOrderDataset
from zoo.train.engine import TrainConfig, fit
from zoo.train.recipes import recipe_for


def _train(arch, tmp_path, epochs):
    torch.set_num_threads(1)
    recipe = dataclasses.replace(recipe_for(arch), lr=0.02, batch=16, milestones=(), dropout=0.0, flip=False)
    torch.manual_seed(0)
    model = zoo.create_model(arch, num_classes=2, num_frames=4)
    train = TemporalOrderDataset(128, frames=4, size=32, seed=0)
    val = TemporalOrderDataset(64, frames=4, size=32, seed=1)
    cfg = TrainConfig(out=str(tmp_path / arch), recipe=recipe, batch=16, epochs=epochs, quiet=True, export=False)
    return fit(model, train, val, cfg)["history"]


def test_dataset_classes_hold_the_same_frames():
    d = TemporalOrderDataset(4, frames=4, size=16)
    a, b = d[2]["video"], d[3]["video"]
    assert d[2]["label"] == 0 and d[3]["label"] == 1
    assert torch.equal(a.flip(1), b) and not torch.equal(a, b)


def test_tsm_learns_temporal_order_and_tsn_stays_at_chance(tmp_path):
    tsm = _train("tsm_r18", tmp_path, 3)
    assert tsm[-1]["val_top1"] >= 90.0, tsm
    tsn = _train("tsn_r18", tmp_path, 1)
    # a pair (clip, clip reversed) gets one prediction from any per-frame average: exactly 50 %
    # whatever the weights, so one epoch shows it as well as more would
    assert all(h["val_top1"] == 50.0 for h in tsn), tsn
