"""Networks cut short for tests whose cost grows with the graph (export, compile), not the width."""
from torch import nn


def shorten(model: nn.Module, keep: int = 2) -> nn.Module:
    """Keep each stage's first ``keep`` blocks (2: the downsampling block and an identity block),
    in place. Every kind of module the network had stays in it (asserted): a ResNet-50 keeps 8
    of its 16 blocks, every family's modules and both of a block's joins."""
    kinds = {type(m) for m in model.modules()}
    for i in range(1, 5):
        layer = getattr(model, f"layer{i}", None)
        if isinstance(layer, nn.Sequential) and len(layer) > keep:
            setattr(model, f"layer{i}", layer[:keep])
    lost = kinds - {type(m) for m in model.modules()}
    assert not lost, f"shortening dropped {sorted(k.__name__ for k in lost)}"
    return model
