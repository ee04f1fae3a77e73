import pytest
import torch
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import (
    to_torch_coo_tensor,
    to_torch_csc_tensor,
    to_torch_csr_tensor,
)

from conftest import dense_gcn_operator, in_ci, random_graph
from gnn_center.nn import CenteredGCNConv, gcn_degree


def make_conv(mode, **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("bias", False)
    return CenteredGCNConv(5, 3, center=mode, **kwargs).double()


def weight(conv):
    return conv.lin.weight.t()  # X W with W of shape [F_in, F_out]


def top_eigenvector(a_hat):
    evals, evecs = torch.linalg.eigh(a_hat)
    return evals[-1], evecs[:, -1]


def test_mean_centering_matches_dense(graph):
    x, edge_index = graph
    n = x.size(0)
    conv = make_conv("mean")
    out = conv(x, edge_index)
    a_hat = dense_gcn_operator(edge_index, None, n)
    centering = torch.eye(n, dtype=x.dtype) - torch.ones(n, n,
                                                         dtype=x.dtype) / n
    expected = centering @ a_hat @ x @ weight(conv)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out.mean(dim=0),
                               torch.zeros(3, dtype=x.dtype))


def test_mean_centering_is_applied_before_bias(graph):
    x, edge_index = graph
    conv = make_conv("mean", bias=True)
    with torch.no_grad():
        conv.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
    torch.testing.assert_close(conv(x, edge_index).mean(dim=0),
                               conv.bias.detach())


def test_uniform_centering_matches_dense(graph):
    x, edge_index = graph
    n = x.size(0)
    conv = make_conv("uniform")
    a_hat = dense_gcn_operator(edge_index, None, n)
    expected = (a_hat - torch.ones(n, n, dtype=x.dtype) / n) @ x @ weight(conv)
    torch.testing.assert_close(conv(x, edge_index), expected)


def test_uniform_differs_from_mean_for_gcn_normalisation(graph):
    # Â is not row-stochastic, so the two forms are distinct operators.
    x, edge_index = graph
    out_mean = make_conv("mean")(x, edge_index)
    out_uniform = make_conv("uniform")(x, edge_index)
    assert not torch.allclose(out_mean, out_uniform)


# PyG's gcn_norm ignores `improved` when no edge weights are given, so the
# improved case is checked with weights here and by probing below.
@pytest.mark.parametrize("weighted,improved",
                         [(False, False), (True, False), (True, True)])
def test_spectral_centering_matches_dense(weighted, improved):
    edge_index, edge_weight = random_graph(15, 25, seed=3, weighted=weighted)
    n = 15
    x = torch.randn(n, 5, dtype=torch.float64)
    conv = make_conv("spectral", improved=improved)
    out = conv(x, edge_index, edge_weight)

    a_hat = dense_gcn_operator(edge_index, edge_weight, n, improved=improved)
    eigval, u = top_eigenvector(a_hat)
    # The top eigenvector is sqrt(deg) with eigenvalue 1, as the layer assumes.
    torch.testing.assert_close(eigval, torch.tensor(1.0, dtype=x.dtype))
    w = (torch.ones(edge_index.size(1), dtype=x.dtype)
         if edge_weight is None else edge_weight)
    deg = torch.zeros(n, dtype=x.dtype).index_add_(0, edge_index[1], w)
    deg = deg + (2.0 if improved else 1.0)
    cos = (u @ deg.sqrt()).abs() / deg.sqrt().norm()
    torch.testing.assert_close(cos, torch.tensor(1.0, dtype=x.dtype))

    expected = (a_hat - torch.outer(u, u) / (u @ u)) @ x @ weight(conv)
    torch.testing.assert_close(out, expected)
    # The output has no component along the dominant eigenvector.
    torch.testing.assert_close(u @ out, torch.zeros(3, dtype=x.dtype))


@pytest.mark.parametrize("improved", [False, True])
def test_spectral_deflates_the_operator_the_layer_applies(graph, improved):
    # Probe the operator with X = I (Θ = I, no centering) rather than
    # rebuilding it, so that u is checked against what propagate really does.
    x, edge_index = graph
    n = x.size(0)
    probe = CenteredGCNConv(n, n, center=None, bias=False,
                            improved=improved).double()
    with torch.no_grad():
        probe.lin.weight.copy_(torch.eye(n))
    a_hat = probe(torch.eye(n, dtype=x.dtype), edge_index).detach()
    eigval, u = top_eigenvector(a_hat)
    torch.testing.assert_close(eigval, torch.tensor(1.0, dtype=x.dtype))
    conv = make_conv("spectral", improved=improved)
    expected = (a_hat - torch.outer(u, u)) @ x @ weight(conv)
    torch.testing.assert_close(conv(x, edge_index), expected)


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_beta_interpolates_linearly(graph, mode):
    x, edge_index = graph
    plain = make_conv(mode, beta=0.0)(x, edge_index)
    full = make_conv(mode, beta=1.0)(x, edge_index)
    for beta in (0.25, 0.7):
        out = make_conv(mode, beta=beta)(x, edge_index)
        torch.testing.assert_close(out, (1 - beta) * plain + beta * full)


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_learn_beta_is_a_parameter_with_gradient(graph, mode):
    x, edge_index = graph
    conv = make_conv(mode, beta=0.5, learn_beta=True)
    names = dict(conv.named_parameters())
    assert "beta" in names
    conv(x, edge_index).pow(2).sum().backward()
    assert conv.beta.grad is not None
    assert conv.beta.grad.abs() > 0
    fixed = make_conv(mode, beta=0.5)
    n_fixed = sum(p.numel() for p in fixed.parameters())
    n_learned = sum(p.numel() for p in conv.parameters())
    assert n_learned == n_fixed + 1


def test_learned_beta_is_clamped_into_range(graph):
    x, edge_index = graph
    conv = make_conv("mean", learn_beta=True)
    with torch.no_grad():
        conv.beta.fill_(1.5)  # as if an optimiser step left the range
    reference = make_conv("mean", beta=1.0)
    torch.testing.assert_close(conv(x, edge_index), reference(x, edge_index))
    assert conv.effective_beta().item() == 1.0
    assert conv.beta.item() == 1.5  # the parameter itself is left alone
    # Out of range the gradient still flows, so beta can come back inward.
    conv(x, edge_index).pow(2).sum().backward()
    assert conv.beta.grad.abs() > 0
    with torch.no_grad():
        conv.beta.fill_(-0.2)
    torch.testing.assert_close(conv(x, edge_index),
                               make_conv("mean", beta=0.0)(x, edge_index))
    conv.reset_parameters()
    assert conv.beta.item() == 1.0


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_learned_beta_survives_two_calls_before_backward(graph, mode):
    # Weight sharing: the same layer applied twice in one graph of autograd.
    x, edge_index = graph
    conv = make_conv(mode, learn_beta=True, beta=0.5)
    with torch.no_grad():
        conv.beta.fill_(1.3)
    (conv(x, edge_index) - 2 * conv(x, edge_index)).pow(2).sum().backward()
    assert conv.beta.grad is not None and conv.beta.grad.abs() > 0
    assert conv.beta.item() == 1.3
    assert torch.autograd.gradcheck(
        lambda x: conv(x, edge_index) + conv(x, edge_index),
        (x.clone().requires_grad_(), ))


def test_center_none_has_no_beta_parameter(graph):
    x, edge_index = graph
    ref = GCNConv(5, 3).double()
    conv = CenteredGCNConv(5, 3, center=None, learn_beta=True).double()
    assert "beta" not in dict(conv.named_parameters())
    conv.load_state_dict(ref.state_dict(), strict=True)
    torch.testing.assert_close(conv(x, edge_index), ref(x, edge_index),
                               rtol=0, atol=0)


def test_positional_arguments_follow_gcnconv():
    # GCNConv(in, out, improved, cached, add_self_loops, normalize, bias)
    conv = CenteredGCNConv(5, 3, True, True, False, False, False)
    assert conv.improved and conv.cached and not conv.add_self_loops
    assert not conv.normalize and conv.bias is None
    assert conv.center == "mean"
    with pytest.raises(TypeError):
        CenteredGCNConv(5, 3, False, False, None, True, True, None)


@pytest.mark.parametrize("mode", [None, "mean", "uniform", "spectral"])
@pytest.mark.parametrize("learn_beta", [False, True])
def test_jit_script(graph, mode, learn_beta):
    # As in PyG's own test_gcn_conv: the scripted layer gives the same output.
    x, edge_index = graph
    conv = make_conv(mode, bias=True, learn_beta=learn_beta, beta=0.7)
    jit = torch.jit.script(conv)
    torch.testing.assert_close(jit(x, edge_index), conv(x, edge_index))
    batch = torch.tensor([0] * 5 + [1] * 7)
    torch.testing.assert_close(jit(x, edge_index, batch=batch),
                               conv(x, edge_index, batch=batch))
    with pytest.raises(Exception, match="batch has shape"):
        jit(x, edge_index, batch=batch[:-1])


def test_jit_script_default_layer():
    conv = CenteredGCNConv(16, 32, center=None)
    x = torch.randn(4, 16)
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 3]])
    torch.testing.assert_close(torch.jit.script(conv)(x, edge_index),
                               conv(x, edge_index))


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_static_graphs_are_centered_per_graph(graph, mode):
    # x of shape [B, N, F]: B graphs sharing one edge_index (node_dim=-2).
    _, edge_index = graph
    conv = make_conv(mode, bias=True)
    x = torch.randn(3, 12, 5, dtype=torch.float64)
    out = conv(x, edge_index)
    assert out.shape == (3, 12, 3)
    expected = torch.stack([conv(x[b], edge_index) for b in range(3)])
    torch.testing.assert_close(out, expected)
    batch = torch.tensor([0, 1] * 6)
    torch.testing.assert_close(
        conv(x, edge_index, batch=batch),
        torch.stack([conv(x[b], edge_index, batch=batch) for b in range(3)]))


def test_spectral_with_csc_adjacency_raises_like_gcnconv(graph):
    x, edge_index = graph
    adj = to_torch_csc_tensor(edge_index, size=(12, 12)).to(torch.float64)
    with pytest.raises(NotImplementedError, match="Sparse CSC") as ref:
        GCNConv(5, 3).double()(x, adj)
    with pytest.raises(NotImplementedError) as err:
        make_conv("spectral")(x, adj)
    assert str(err.value) == str(ref.value)


@pytest.mark.parametrize("kwargs", [
    {},
    {"improved": True},
    {"add_self_loops": False},
    {"cached": True},
])
def test_center_none_equals_gcnconv(graph, kwargs):
    x, edge_index = graph
    torch.manual_seed(0)
    ref = GCNConv(5, 3, **kwargs).double()
    with torch.no_grad():
        ref.bias.normal_()
    conv = CenteredGCNConv(5, 3, center=None, **kwargs).double()
    conv.load_state_dict(ref.state_dict())
    torch.testing.assert_close(conv(x, edge_index), ref(x, edge_index),
                               rtol=0, atol=0)
    # beta = 0 is the same operator as no centering.
    conv0 = CenteredGCNConv(5, 3, center="spectral", beta=0.0,
                            **kwargs).double()
    conv0.load_state_dict(ref.state_dict())
    torch.testing.assert_close(conv0(x, edge_index), ref(x, edge_index))


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_cached_gives_same_result_and_reuses_the_graph(graph, mode):
    x, edge_index = graph
    conv = make_conv(mode, cached=True)
    first = conv(x, edge_index)
    torch.testing.assert_close(conv(x, edge_index), first, rtol=0, atol=0)
    # The cache is really used: a different graph is ignored, as in GCNConv.
    other, _ = random_graph(12, 5, seed=9)
    torch.testing.assert_close(conv(x, other), first, rtol=0, atol=0)
    uncached = make_conv(mode)
    assert not torch.allclose(uncached(x, other), first)
    conv.reset_parameters()
    assert conv._cached_edge_index is None and conv._cached_u is None


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_edge_weights_match_dense(mode):
    edge_index, edge_weight = random_graph(10, 15, seed=4, weighted=True)
    n = 10
    x = torch.randn(n, 5, dtype=torch.float64)
    conv = make_conv(mode)
    out = conv(x, edge_index, edge_weight)
    a_hat = dense_gcn_operator(edge_index, edge_weight, n)
    ones = torch.ones(n, n, dtype=x.dtype) / n
    if mode == "mean":
        op = (torch.eye(n, dtype=x.dtype) - ones) @ a_hat
    elif mode == "uniform":
        op = a_hat - ones
    else:
        _, u = top_eigenvector(a_hat)
        op = a_hat - torch.outer(u, u)
    torch.testing.assert_close(out, op @ x @ weight(conv))
    # Weights matter: unit weights give another result.
    assert not torch.allclose(out, conv(x, edge_index))


@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_sparse_adjacency_input_matches_edge_index(graph, layout, mode):
    x, edge_index = graph
    n = x.size(0)
    conv = make_conv(mode)
    to_sparse = to_torch_coo_tensor if layout == "coo" else \
        to_torch_csr_tensor
    # PyG takes the transposed adjacency; the graph is undirected.
    adj_t = to_sparse(edge_index.flip(0), size=(n, n)).to(torch.float64)
    torch.testing.assert_close(conv(x, adj_t), conv(x, edge_index))


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_two_graphs_in_a_batch_are_centered_independently(mode):
    ei_a, _ = random_graph(7, 8, seed=5)
    ei_b, _ = random_graph(9, 12, seed=6)
    x_a = torch.randn(7, 5, dtype=torch.float64)
    x_b = torch.randn(9, 5, dtype=torch.float64)
    conv = make_conv(mode)
    expected = torch.cat([conv(x_a, ei_a), conv(x_b, ei_b)])

    edge_index = torch.cat([ei_a, ei_b + 7], dim=1)
    x = torch.cat([x_a, x_b])
    batch = torch.tensor([0] * 7 + [1] * 9)
    torch.testing.assert_close(conv(x, edge_index, batch=batch), expected)
    torch.testing.assert_close(
        conv(x, edge_index, batch=batch, batch_size=2), expected)
    # Centering over the union instead gives a different answer.
    assert not torch.allclose(conv(x, edge_index), expected)


def test_unsorted_batch(graph):
    # Component labels need not be sorted by node.
    x, edge_index = graph
    batch = torch.tensor([0, 1] * 6)
    conv = make_conv("mean")
    out = conv(x, edge_index, batch=batch)
    for g in (0, 1):
        torch.testing.assert_close(out[batch == g].mean(dim=0),
                                   torch.zeros(3, dtype=x.dtype))


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_gradcheck(mode):
    edge_index, edge_weight = random_graph(6, 6, seed=7, weighted=True)
    conv = make_conv(mode, bias=True, learn_beta=True, beta=0.6)
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    batch = torch.tensor([0, 0, 0, 1, 1, 1])

    def fn(x, weight, beta):
        conv.lin.weight.data = weight
        return torch.func.functional_call(
            conv, {"beta": beta, "lin.weight": weight, "bias": conv.bias},
            (x, edge_index, edge_weight), {"batch": batch})

    weight_ = conv.lin.weight.detach().clone().requires_grad_()
    beta = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x, weight_, beta))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mean", "spectral"])
def test_torch_compile(graph, mode):
    x, edge_index = graph
    x = x.float()
    torch.manual_seed(0)
    conv = CenteredGCNConv(5, 3, center=mode, cached=True)
    expected = conv(x, edge_index)
    compiled = torch.compile(conv)
    torch.testing.assert_close(compiled(x, edge_index), expected)
    batch = torch.tensor([0] * 6 + [1] * 6)
    torch.testing.assert_close(
        compiled(x, edge_index, batch=batch, batch_size=2),
        conv(x, edge_index, batch=batch, batch_size=2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_cuda_matches_cpu(graph, mode):
    x, edge_index = graph
    conv = make_conv(mode, bias=True, cached=True)
    batch = torch.tensor([0] * 6 + [1] * 6)
    expected = conv(x, edge_index, batch=batch)
    conv_cuda = make_conv(mode, bias=True, cached=True).cuda()
    out = conv_cuda(x.cuda(), edge_index.cuda(), batch=batch.cuda())
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), expected)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="center='median'.*'mean'"):
        CenteredGCNConv(5, 3, center="median")


@pytest.mark.parametrize("beta", [-0.1, 1.5])
def test_beta_out_of_range_is_rejected(beta):
    with pytest.raises(ValueError, match=r"beta=.*outside \[0, 1\]"):
        CenteredGCNConv(5, 3, beta=beta)


def test_batch_length_mismatch_is_rejected(graph):
    x, edge_index = graph
    conv = make_conv("mean")
    with pytest.raises(ValueError, match=r"batch has shape \(11,\).*12 nodes"):
        conv(x, edge_index, batch=torch.zeros(11, dtype=torch.long))


def test_spectral_without_normalisation_needs_u(graph):
    x, edge_index = graph
    conv = make_conv("spectral", normalize=False)
    with pytest.raises(ValueError, match="normalize=False needs the dominant"):
        conv(x, edge_index)


def test_spectral_on_a_graph_normalised_outside_the_layer(graph):
    # A model can normalise once for all layers and pass u along.
    x, edge_index = graph
    n = x.size(0)
    inside = make_conv("spectral")
    outside = make_conv("spectral", normalize=False)
    norm_index, norm_weight = gcn_norm(edge_index, None, n, dtype=x.dtype)
    u = gcn_degree(edge_index, None, n, dtype=x.dtype).sqrt()
    torch.testing.assert_close(
        outside(x, norm_index, norm_weight, u=u), inside(x, edge_index))


def test_torch_scatter_present_in_ci():
    # CI installs the 'scatter' extra; a silent fallback would leave the
    # torch-scatter path untested.
    if not in_ci():
        pytest.skip("only enforced in CI")
    import torch_geometric.typing
    assert torch_geometric.typing.WITH_TORCH_SCATTER
