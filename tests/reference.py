"""The reference fixtures' deterministic weights and input (see tests/fixtures/README.md)."""
import hashlib
import json
import math
from pathlib import Path

import torch

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def rule_tensor(key: str, shape, dtype: str = "float32") -> torch.Tensor:
    """The fixtures' weight rule for one original state-dict entry."""
    g = torch.Generator().manual_seed(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16))
    shape = tuple(shape)
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if key.endswith("running_mean"):
        return torch.randn(shape, generator=g) * 0.1
    if key.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if len(shape) == 1:
        if key.endswith("weight"):
            return 0.5 + torch.rand(shape, generator=g)
        return torch.randn(shape, generator=g) * 0.1
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=g) * math.sqrt(1.0 / fan_in)


def original_state_dict(fx: dict, prefix: str = "module.") -> dict:
    """The original model's state dict under the weight rule, keys as a released checkpoint has them."""
    return {prefix + k: rule_tensor(k, shape, dtype) for k, shape, dtype in fx["state_dict"]}


def reference_input(T: int, size: int, frames_per_segment: int = 1) -> torch.Tensor:
    """The fixtures' X, as a zoo clip batch (B, 3, T*fps, H, W)."""
    x = torch.randn(2, T * frames_per_segment, 3, size, size, generator=torch.Generator().manual_seed(0))
    return x.permute(0, 2, 1, 3, 4)


def assert_logits_close(out: torch.Tensor, expected, rtol: float = 1e-4) -> None:
    exp = torch.tensor(expected, dtype=out.dtype)
    assert out.shape == exp.shape, (out.shape, exp.shape)
    err = ((out - exp).abs().max() / exp.abs().max()).item()
    assert err < rtol, f"relative error {err:.3g} >= {rtol}"


def check_reference_logits(fx_name: str, arch: str, converter=None, frames_per_segment: int = 1, **kwargs) -> dict:
    """The fixture's network: ``arch`` at its classes and segments has its parameter count, loads
    its original-layout weights strictly and reproduces its reference logits at 112, under
    torch.no_grad and with autograd on. Returns the fixture."""
    import zoo

    fx = fixture(fx_name)
    m = zoo.create_model(arch, num_classes=fx["num_classes"], num_frames=fx["num_segments"], **kwargs)
    assert sum(p.numel() for p in m.parameters()) == fx["params"]
    zoo.load_original(m, original_state_dict(fx), converter=converter)
    x = reference_input(fx["num_segments"], 112, frames_per_segment)
    # both grad modes: eval without autograd may take other kernels than training and export do
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            out = m.eval()(x)
        assert_logits_close(out.detach(), fx["reference"]["logits"])
    return fx
