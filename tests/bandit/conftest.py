import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """The bandit tensors are small: one thread avoids oversubscription on shared 2-core machines."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
