"""The registry-wide suite: every registered name builds; every distinct configuration runs a
small forward; every architecture runs an eval forward and a train-mode backward on a tiny clip.
Family test files keep only what is specific to their family (the reference-logit fixtures,
which tests/reference.py runs under both torch.no_grad and grad mode, live there)."""
import contextlib
import json
import re

import pytest
import torch

import zoo
from zoo.factory import EnsembleModel
from zoo.registry import registry

from .short import no_init

SEEN: set = set()
# never run in forward, kept so that the authors' checkpoints load strictly: TDN's conv1_temp and
# the BN that GC's ECal-S holds but never applies
UNUSED = re.compile(r"^stem\.conv1_temp\.|\.calib\.s\.bn\.")


def _config(name):
    info = zoo.model_info(name)
    if info["kind"] == "variant":
        return info["arch"], json.dumps(info["kwargs"], sort_keys=True), info["frames"]
    return name, "{}", 8


@pytest.mark.parametrize("name", [n for n in zoo.list_models() if n not in registry().ensembles])
def test_builds_and_runs(name):
    key = _config(name)
    # same network as one already run, other head/frames metadata: its random draws are left out
    seen = key in SEEN
    with no_init() if seen else contextlib.nullcontext():
        m = zoo.create_model(name).eval()
    assert not isinstance(m, EnsembleModel)
    classes = m.pretrained_cfg["num_classes"]
    assert m.num_classes == classes and m.fc.out_features == classes
    if seen:
        return
    SEEN.add(key)
    fps = getattr(m, "frames_per_segment", 1)
    x = torch.randn(1, 3, 8 * fps, 64, 64)
    with torch.no_grad():
        out = m(x)
    assert out.shape == (1, classes) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(registry().ensembles))
def test_ensembles_resolve(name):
    reg = registry()
    members = reg.ensembles[name].members
    assert all(m in reg.variants for m in members)
    assert zoo.model_info(name)["kind"] == "ensemble"


@pytest.mark.parametrize("arch", sorted(registry().archs))
def test_eval_forward_and_train_backward(arch):
    """T = 3 segments of 2 clips at 32 px (48 for TDN, whose motion excitation pools 2x in
    layer4): eval logits, then a training step's gradients reach every parameter."""
    torch.manual_seed(0)
    m = zoo.create_model(arch, num_classes=5)
    fps = getattr(m, "frames_per_segment", 1)
    size = 48 if fps > 1 else 32
    x = torch.randn(2, 3, 3 * fps, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = m.eval()(x)
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    out = m.train()(x)
    torch.nn.functional.cross_entropy(out, torch.tensor([1, 3])).backward()
    no_grad = [n for n, p in m.named_parameters() if p.grad is None and not UNUSED.search(n)]
    assert not no_grad, no_grad[:8]
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    assert m.fc.weight.grad.abs().sum() > 0 and m.conv1.weight.grad.abs().sum() > 0
