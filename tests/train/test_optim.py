"""The recipes' optimiser policies, schedule, partial BN, and an AMP run of the loop."""
import dataclasses

import pytest
import torch

import zoo
from zoo.train.data import TemporalOrderDataset
from zoo.train.engine import TrainConfig, _bn_modes, _freeze_bn_params, fit, lr_factor, param_groups
from zoo.train.recipes import recipe_for


def test_param_groups_follow_the_recipe():
    model = zoo.create_model("gc_tsn_r50", num_classes=10)
    r = recipe_for("gc_tsn_r50")
    groups = {n: g for g in param_groups(model, r, 0.1) for n in g["names"]}
    assert groups["layer1.0.conv1.weight"]["lr"] == pytest.approx(0.1)
    assert groups["layer1.0.conv1.weight"]["weight_decay"] == r.weight_decay
    assert groups["layer1.0.bn1.weight"]["weight_decay"] == 0.0
    assert groups["fc.bias"]["lr"] == pytest.approx(0.2) and groups["fc.bias"]["weight_decay"] == 0.0
    assert groups["layer1.0.calib.l.conv.weight"]["lr"] == pytest.approx(0.5)      # GC's --ef_lr5
    assert groups["layer1.0.calib.l.bn.bias"]["weight_decay"] == 0.0
    assert sum(len(g["names"]) for g in param_groups(model, r, 0.1)) == len(list(model.parameters()))


def test_schedule():
    f = lambda step: lr_factor(step, 10, [2, 4], 0.1, 1)  # noqa: E731
    assert f(0) == pytest.approx(0.01) and f(5) == pytest.approx(0.01 + 0.99 * 0.5)
    assert f(10) == 1 and f(19) == 1 and f(20) == pytest.approx(0.1) and f(45) == pytest.approx(0.01)


def test_partial_bn_freezes_all_but_the_first():
    model = zoo.create_model("tsn_r18", num_classes=2)
    _freeze_bn_params(model, True)
    model.train()
    _bn_modes(model, True, False)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns[0].training and bns[0].weight.requires_grad
    assert not any(b.training or b.weight.requires_grad for b in bns[1:])


def test_bf16_autocast_run(tmp_path):
    torch.set_num_threads(1)
    r = dataclasses.replace(recipe_for("tsm_r18"), lr=0.01, batch=4)
    model = zoo.create_model("tsm_r18", num_classes=2, num_frames=2)
    res = fit(model, TemporalOrderDataset(8, frames=2, size=32), TemporalOrderDataset(4, frames=2, size=32),
              TrainConfig(out=str(tmp_path / "r"), recipe=r, batch=4, epochs=1, amp="bf16", quiet=True, export=False))
    h = res["history"][0]
    assert h["train_loss"] == h["train_loss"] and h["val_videos"] == 4


@pytest.mark.parametrize("option", ["grad_checkpointing", "channels_last"])
def test_training_options_reach_the_same_weights(tmp_path, option):
    torch.set_num_threads(1)
    r = dataclasses.replace(recipe_for("tsm_r18"), lr=0.05, batch=4, dropout=0.0)
    data = TemporalOrderDataset(8, frames=2, size=32)
    out = []
    for on in (False, True):
        torch.manual_seed(0)
        model = zoo.create_model("tsm_r18", num_classes=2, num_frames=2)
        fit(model, data, None, TrainConfig(out=str(tmp_path / str(on)), recipe=r, batch=4, epochs=1, quiet=True,
                                           export=False, **{option: on}))
        if option == "grad_checkpointing":
            assert model.grad_checkpointing is on
        else:
            assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last) is on
        out.append({k: v.contiguous() for k, v in model.state_dict().items()})
    for k, v in out[0].items():
        torch.testing.assert_close(out[1][k], v, rtol=0, atol=1e-5)
