import pytest
import torch

from conftest import dense_gcn_operator, random_graph
from gnn_center.nn import center, gcn_degree, graph_sum
from gnn_center.nn.functional import center_nodes

def test_graph_sum_matches_loop():
    src = torch.randn(10, 3, 2, dtype=torch.float64)
    batch = torch.tensor([2, 0, 1, 2, 2, 0, 1, 1, 0, 2])
    out = graph_sum(src, batch, 3)
    for g in range(3):
        torch.testing.assert_close(out[g], src[batch == g].sum(0))
    torch.testing.assert_close(graph_sum(src)[0], src.sum(0))


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
@pytest.mark.parametrize("with_batch", [False, True])
def test_node_dim_centers_each_static_graph(mode, with_batch):
    # [B, N, F] with node_dim=-2: each of the B graphs on its own.
    torch.manual_seed(0)
    h = torch.randn(3, 8, 4, dtype=torch.float64)
    x = torch.randn(3, 8, 4, dtype=torch.float64)
    u = torch.rand(8, dtype=torch.float64)
    batch = torch.tensor([0, 1, 1, 0, 2, 2, 1, 0]) if with_batch else None
    out = center(h, mode=mode, beta=0.8, x=x, u=u, batch=batch,
                 node_dim=-2)
    for b in range(3):
        torch.testing.assert_close(
            out[b], center(h[b], mode=mode, beta=0.8, x=x[b], u=u,
                           batch=batch))


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_center_nodes_scripts(mode):
    torch.manual_seed(0)
    h = torch.randn(9, 4, dtype=torch.float64)
    x = torch.randn(9, 4, dtype=torch.float64)
    u = torch.rand(9, dtype=torch.float64)
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2])
    scripted = torch.jit.script(center_nodes)
    for beta in (0.5, torch.tensor(0.5, dtype=torch.float64)):
        for b in (None, batch):
            torch.testing.assert_close(
                scripted(h, mode, beta, x, u, b, None, 0),
                center(h, mode=mode, beta=beta, x=x, u=u, batch=b))


def test_spectral_without_x_uses_output_for_symmetric_operator(graph):
    # uᵀ Â X = uᵀ X when Â is symmetric with Âu = u.
    x, edge_index = graph
    n = x.size(0)
    u = gcn_degree(edge_index, num_nodes=n, dtype=x.dtype).sqrt()
    h = dense_gcn_operator(edge_index, None, n) @ x
    torch.testing.assert_close(center(h, mode="spectral", u=u),
                               center(h, mode="spectral", u=u, x=x))


def test_spectral_graph_with_zero_eigenvector_is_left_alone():
    # An isolated node without self-loop has u = 0 in its own graph.
    h = torch.randn(3, 2, dtype=torch.float64)
    u = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    out = center(h, mode="spectral", u=u, batch=torch.tensor([0, 0, 1]))
    torch.testing.assert_close(out[2], h[2])
    assert torch.isfinite(out).all()


def test_gcn_degree_with_sparse_input_matches_edge_index():
    edge_index, weight = random_graph(9, 10, seed=2, weighted=True)
    adj_t = torch.sparse_coo_tensor(edge_index.flip(0), weight, (9, 9))
    torch.testing.assert_close(gcn_degree(adj_t, num_nodes=9),
                               gcn_degree(edge_index, weight, 9))


def test_functional_errors_name_the_argument():
    h = torch.randn(4, 2)
    with pytest.raises(ValueError, match="center='max'"):
        center(h, mode="max")
    with pytest.raises(ValueError, match="beta=-1"):
        center(h, beta=-1)
    with pytest.raises(ValueError, match="needs the aggregation's input x"):
        center(h, mode="uniform")
    with pytest.raises(ValueError, match="needs the dominant eigenvector u"):
        center(h, mode="spectral")
    with pytest.raises(ValueError, match="u has shape"):
        center(h, mode="spectral", u=torch.ones(3))
    with pytest.raises(ValueError, match="batch has shape"):
        center(h, batch=torch.zeros(5, dtype=torch.long))


def test_rms_scale_is_pairnorms_scaling_step():
    from torch_geometric.nn import PairNorm

    from gnn_center.nn import rms_scale
    torch.manual_seed(0)
    x = torch.randn(40, 6, dtype=torch.float64) * 5
    batch = torch.tensor([0] * 15 + [1] * 25)
    # PairNorm = centering + this scaling; on centered input they agree.
    centered = x - x.mean(0)
    torch.testing.assert_close(rms_scale(centered), PairNorm()(centered))
    per_graph = x.clone()
    for g in (0, 1):
        per_graph[batch == g] -= x[batch == g].mean(0)
    torch.testing.assert_close(rms_scale(per_graph, batch),
                               PairNorm()(per_graph, batch))
    # Mean squared row norm 1 per graph, whatever the input scale.
    out = rms_scale(x, batch)
    for g in (0, 1):
        mean_sq = out[batch == g].pow(2).sum(-1).mean()
        torch.testing.assert_close(mean_sq, torch.tensor(
            1.0, dtype=x.dtype), atol=1e-5, rtol=0)


def test_rms_scale_treats_multi_dim_features_like_flat_rows():
    from gnn_center.nn import rms_scale
    x = torch.randn(12, 3, 4, dtype=torch.float64)
    batch = torch.zeros(12, dtype=torch.long)
    flat = rms_scale(x.flatten(1)).view_as(x)
    torch.testing.assert_close(rms_scale(x), flat)
    torch.testing.assert_close(rms_scale(x, batch), flat)


@pytest.mark.parametrize("shape", [(7, 3), (5, 2, 3)])
def test_mean_centering_gradients_single_graph(shape):
    # The single-graph mean path has a hand-written backward: check values,
    # first and second derivatives (beta fixed and learned) against autograd.
    torch.manual_seed(0)
    h = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    n = shape[0]
    projector = torch.eye(n, dtype=h.dtype) - 0.6 * torch.ones(n, n) / n
    expected = (projector @ h.reshape(n, -1)).reshape(shape)
    torch.testing.assert_close(center(h, mode="mean", beta=beta), expected)
    torch.testing.assert_close(center(h, mode="mean", beta=0.6), expected)
    for fn, inputs in ((lambda h, b: center(h, mode="mean", beta=b),
                        (h, beta)),
                       (lambda h: center(h, mode="mean", beta=0.6), (h,))):
        assert torch.autograd.gradcheck(fn, inputs)
        assert torch.autograd.gradgradcheck(fn, inputs)
