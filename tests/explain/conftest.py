"""Shared fixtures of the explainer tests."""
import pytest
import torch

from hrcam.models.hrcam.nets import HalfNet

MICRO = {"init_filters": 8, "growth_rate": 4, "layers_per_block": 1}


@pytest.fixture(scope="module")
def half():
    """A micro HalfNet (5 classes, eval mode) and three random 32-px images."""
    torch.manual_seed(0)
    net = HalfNet(5, **MICRO).eval()
    x = torch.rand(3, 3, 32, 32)
    return net, x
