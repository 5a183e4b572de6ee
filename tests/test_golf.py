"""Golf Optimizer: Table 1's parameter counts and the iteration of Eq. 4."""

import torch

from restore_core.models import build_model, count_parameters
from restore_core.models.golf import GolfNet, GolfNetConfig


def test_table1_parameter_counts_exactly():
    assert count_parameters(GolfNet(GolfNetConfig(filters=32))) == 466_348  # F
    assert count_parameters(GolfNet(GolfNetConfig(filters=16))) == 120_188  # G


def test_fifty_basic_layers():
    net = GolfNet(GolfNetConfig(filters=16))
    blocks = list(net.body)
    # first conv + 8 BB units of six basic layers + last conv
    assert len(blocks) == 10 and sum(len(b.residual) for b in blocks[1:-1]) == 48


def test_iterates_apply_the_shared_step():
    model = build_model("golf", {"iterations": 3}).eval()
    y = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        xs = model.iterates(y, iterations=4)
        assert len(xs) == 5
        assert torch.allclose(xs[2], model.step(xs[1]))
        assert torch.allclose(model(y), model.iterates(y)[-1])
    assert model(y).shape == y.shape
