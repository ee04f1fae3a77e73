import math

import pytest
import torch

from gnn_center.metrics import (
    dirichlet_energy,
    effective_rank,
    layer_metrics,
    mean_average_distance,
    numerical_rank,
)

# Path 0 - 1 - 2, both directions.
PATH = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])


def test_dirichlet_energy_by_hand():
    x = torch.tensor([[1.0], [0.0], [2.0]])
    # degrees with self-loop: 2, 3, 2
    e01 = (1 / math.sqrt(2) - 0) ** 2
    e12 = (0 - 2 / math.sqrt(2)) ** 2
    expected = 2 * (e01 + e12) / 3  # both directions, per node
    assert dirichlet_energy(x, PATH) == pytest.approx(expected)
    assert dirichlet_energy(x, PATH, relative=True) == pytest.approx(
        2 * (e01 + e12) / 5.0)


def test_dirichlet_energy_extremes():
    deg = torch.tensor([2.0, 3.0, 2.0])
    smooth = deg.sqrt().unsqueeze(-1) * torch.tensor([[1.0, -2.0]])
    assert dirichlet_energy(smooth, PATH) == pytest.approx(0.0, abs=1e-12)
    x = torch.randn(3, 4)
    # Energy is quadratic in scale; the relative form is scale-free.
    assert dirichlet_energy(3 * x, PATH) == pytest.approx(
        9 * dirichlet_energy(x, PATH))
    assert dirichlet_energy(3 * x, PATH, relative=True) == pytest.approx(
        dirichlet_energy(x, PATH, relative=True))


def test_mad_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    # distances: d01 = 1, d02 = 0, d12 = 1 -> row means over non-zero
    # entries: node0: 1, node1: 1, node2: 1
    assert mean_average_distance(x) == pytest.approx(1.0)
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    # d01 = 2, d02 = 1, d12 = 1 -> rows 1.5, 1.5, 1.0
    assert mean_average_distance(x) == pytest.approx(4.0 / 3.0)


def test_mad_extremes_and_sampling():
    same_direction = torch.rand(50, 1) * torch.tensor([[1.0, 2.0, 3.0]])
    assert mean_average_distance(same_direction) == pytest.approx(0.0)
    x = torch.randn(300, 8)
    full = mean_average_distance(x, max_nodes=None)
    assert 0.8 < full < 1.2  # random directions: cos ~ 0
    sampled = mean_average_distance(x, max_nodes=100, seed=1)
    assert sampled == pytest.approx(full, abs=0.1)
    assert sampled == mean_average_distance(x, max_nodes=100, seed=1)


def test_ranks():
    constant = torch.ones(10, 4) * 3.0
    assert numerical_rank(constant) == 1
    assert effective_rank(constant) == pytest.approx(1.0)
    assert numerical_rank(torch.zeros(5, 3)) == 0
    assert effective_rank(torch.zeros(5, 3)) == 0.0
    # Equal singular values: effective rank = their number.
    assert effective_rank(torch.eye(4)) == pytest.approx(4.0)
    x = torch.randn(20, 3) @ torch.randn(3, 6)
    assert numerical_rank(x) == 3
    assert 1.0 < effective_rank(x) <= 3.0


def test_layer_metrics_shapes():
    hidden = [torch.randn(3, 4) for _ in range(5)]
    out = layer_metrics(hidden, PATH)
    assert set(out) == {"dirichlet_energy", "relative_energy", "mad", "rank",
                        "effective_rank", "norm"}
    assert all(len(v) == 5 for v in out.values())
