"""Networks made cheap for tests: cut short where the cost grows with the graph (export,
compile), not the width; built without random initialisation where only shapes and metadata
are checked."""
import contextlib

import pytest
import torch
from torch import nn


@contextlib.contextmanager
def no_init():
    """torch.nn.init's initialisers left out (weights keep uninitialised memory): ~3/4 of a
    ResNet-50's build time."""
    with pytest.MonkeyPatch.context() as mp:
        for fn in [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]:
            mp.setattr(torch.nn.init, fn, lambda t, *a, **k: t)
        yield


def shorten(model: nn.Module, keep=2) -> nn.Module:
    """Keep each stage's first ``keep`` blocks (2: the downsampling block and an identity block;
    or one count per stage), in place. Every kind of module the network had stays in it
    (asserted): a ResNet-50 keeps 8 of its 16 blocks, every family's modules and both of a
    block's joins."""
    kinds = {type(m) for m in model.modules()}
    keep = (keep,) * 4 if isinstance(keep, int) else tuple(keep)
    for i, k in enumerate(keep, 1):
        layer = getattr(model, f"layer{i}", None)
        if isinstance(layer, nn.Sequential) and len(layer) > k:
            setattr(model, f"layer{i}", layer[:k])
    lost = kinds - {type(m) for m in model.modules()}
    assert not lost, f"shortening dropped {sorted(k.__name__ for k in lost)}"
    return model
