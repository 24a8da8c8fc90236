import os

import pytest
import torch

# a worker of pytest-xdist (make test runs one per core) takes one core: two threads each would
# contend for the same cores
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture
def clip():
    """A small clip batch (B, 3, T, H, W)."""
    return torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(1))
