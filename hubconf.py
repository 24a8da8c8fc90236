"""torch.hub entry points, generated from the registry at import (never a hand-written list).

    torch.hub.list("<owner>/<repo>")                      # every registered name
    torch.hub.help("<owner>/<repo>", "gc_tsm_r50_ssv1_8f")
    torch.hub.load("<owner>/<repo>", "gc_tsm_r50_ssv1_8f", pretrained=True)
"""
import os
import sys

dependencies = ["torch", "torchvision", "timm", "huggingface_hub", "safetensors", "fvcore"]

# a hub clone is not installed: import the package that sits next to this file
_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from zoo.hub import entrypoints as _entrypoints  # noqa: E402

globals().update(_entrypoints())
