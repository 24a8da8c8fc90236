import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture
def clip():
    """A small clip batch (B, 3, T, H, W)."""
    return torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(1))
