"""Every registered name builds; every distinct configuration runs a small forward."""
import json

import pytest
import torch

import zoo
from zoo.factory import EnsembleModel
from zoo.registry import registry

SEEN: set = set()


def _config(name):
    info = zoo.model_info(name)
    if info["kind"] == "variant":
        return info["arch"], json.dumps(info["kwargs"], sort_keys=True), info["frames"]
    return name, "{}", 8


@pytest.mark.parametrize("name", [n for n in zoo.list_models() if n not in registry().ensembles])
def test_builds_and_runs(name):
    m = zoo.create_model(name).eval()
    assert not isinstance(m, EnsembleModel)
    classes = m.pretrained_cfg["num_classes"]
    assert m.num_classes == classes
    key = _config(name)
    if key in SEEN:  # same network as one already run, other head/frames metadata
        return
    SEEN.add(key)
    fps = getattr(m, "frames_per_segment", 1)
    x = torch.randn(1, 3, 8 * fps, 64, 64)
    with torch.no_grad():
        out = m(x)
    assert out.shape == (1, classes) and torch.isfinite(out).all()
