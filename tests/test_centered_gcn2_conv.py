import math

import pytest
import torch
from torch_geometric.nn import GCN2Conv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_torch_csr_tensor

from conftest import dense_gcn_operator, random_graph
from gnn_center.nn import CenteredGCN2Conv, gcn_degree

ALPHA, THETA, LAYER = 0.2, 0.5, 3


def make_conv(mode, **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("theta", THETA)
    kwargs.setdefault("layer", LAYER)
    return CenteredGCN2Conv(5, ALPHA, center=mode, **kwargs).double()


def inputs(n=12, seed=1):
    edge_index, _ = random_graph(n, 20, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, dtype=torch.float64, generator=gen)
    x_0 = torch.randn(n, 5, dtype=torch.float64, generator=gen)
    return x, x_0, edge_index


def dense_correction(mode, a_hat, beta=1.0):
    r"""The operator C_β(Â ·) as a dense matrix acting on X."""
    n = a_hat.size(0)
    ones = torch.ones(n, n, dtype=a_hat.dtype) / n
    eye = torch.eye(n, dtype=a_hat.dtype)
    if mode is None:
        return a_hat
    if mode == "mean":
        return (eye - beta * ones) @ a_hat
    if mode == "uniform":
        return a_hat - beta * ones
    evals, evecs = torch.linalg.eigh(a_hat)
    torch.testing.assert_close(evals[-1], torch.tensor(1.0, dtype=a_hat.dtype))
    u = evecs[:, -1]
    return a_hat - beta * torch.outer(u, u)


def dense_gcn2(conv, op, x, x_0):
    r"""((1-α) op X + α X0)((1-γ) I + γ Θ), GCNII's formula written out."""
    gamma = math.log(THETA / LAYER + 1)
    eye = torch.eye(x.size(1), dtype=x.dtype)
    mapping = (1 - gamma) * eye + gamma * conv.weight1.detach()
    if conv.weight2 is None:
        return ((1 - ALPHA) * op @ x + ALPHA * x_0) @ mapping
    mapping2 = (1 - gamma) * eye + gamma * conv.weight2.detach()
    return (1 - ALPHA) * op @ x @ mapping + ALPHA * x_0 @ mapping2


@pytest.mark.parametrize("shared_weights", [True, False])
@pytest.mark.parametrize("mode", [None, "mean", "uniform", "spectral"])
def test_matches_dense_reference(mode, shared_weights):
    x, x_0, edge_index = inputs()
    conv = make_conv(mode, shared_weights=shared_weights)
    a_hat = dense_gcn_operator(edge_index, None, x.size(0))
    expected = dense_gcn2(conv, dense_correction(mode, a_hat), x, x_0)
    torch.testing.assert_close(conv(x, x_0, edge_index), expected)


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_weighted_graph_matches_dense_reference(mode):
    edge_index, edge_weight = random_graph(10, 15, seed=4, weighted=True)
    x = torch.randn(10, 5, dtype=torch.float64)
    x_0 = torch.randn(10, 5, dtype=torch.float64)
    conv = make_conv(mode)
    a_hat = dense_gcn_operator(edge_index, edge_weight, 10)
    expected = dense_gcn2(conv, dense_correction(mode, a_hat), x, x_0)
    torch.testing.assert_close(conv(x, x_0, edge_index, edge_weight),
                               expected)
    assert not torch.allclose(conv(x, x_0, edge_index), expected)


def test_mean_centering_removes_the_mean_of_the_propagated_term():
    # With Θ = 0 and γ = 1 nothing but the mix remains: the output mean is
    # α mean(X0), the propagated term contributing none.
    x, x_0, edge_index = inputs()
    conv = CenteredGCN2Conv(5, ALPHA, center="mean").double()  # γ = 1
    with torch.no_grad():
        conv.weight1.copy_(torch.eye(5))
    out = conv(x, x_0, edge_index)
    torch.testing.assert_close(out.mean(dim=0), ALPHA * x_0.mean(dim=0))


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_beta_interpolates_linearly(mode):
    x, x_0, edge_index = inputs()
    plain = make_conv(mode, beta=0.0)(x, x_0, edge_index)
    full = make_conv(mode, beta=1.0)(x, x_0, edge_index)
    out = make_conv(mode, beta=0.3)(x, x_0, edge_index)
    torch.testing.assert_close(out, 0.7 * plain + 0.3 * full)


@pytest.mark.parametrize("kwargs", [
    {},
    {"shared_weights": False},
    {"add_self_loops": False},
    {"cached": True},
    {"theta": None, "layer": None},
])
def test_center_none_equals_gcn2conv(kwargs):
    x, x_0, edge_index = inputs()
    args = dict(theta=THETA, layer=LAYER)
    args.update(kwargs)
    torch.manual_seed(0)
    ref = GCN2Conv(5, ALPHA, **args).double()
    conv = CenteredGCN2Conv(5, ALPHA, center=None, **args).double()
    assert set(conv.state_dict()) == set(ref.state_dict())
    conv.load_state_dict(ref.state_dict())
    for _ in range(2):  # the second call reads the cache when cached
        torch.testing.assert_close(conv(x, x_0, edge_index),
                                   ref(x, x_0, edge_index), rtol=0, atol=0)
    # beta = 0 is the same operator as no centering.
    conv0 = CenteredGCN2Conv(5, ALPHA, center="spectral", beta=0.0,
                             **args).double()
    conv0.load_state_dict(ref.state_dict())
    torch.testing.assert_close(conv0(x, x_0, edge_index),
                               ref(x, x_0, edge_index))


def test_accepts_gcn2conv_positional_arguments():
    # channels, alpha, theta, layer, shared_weights, cached, add_self_loops,
    # normalize: GCN2Conv's order; the centering options are keyword-only.
    conv = CenteredGCN2Conv(5, 0.1, 0.5, 2, False, True, False, False)
    assert conv.weight2 is not None and conv.cached
    assert not conv.add_self_loops and not conv.normalize
    assert conv.identity_beta == pytest.approx(math.log(0.5 / 2 + 1))
    assert conv.center == "mean"
    with pytest.raises(TypeError):
        CenteredGCN2Conv(5, 0.1, 0.5, 2, True, False, True, True, "mean")


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_cached_reuses_the_graph_and_u(mode):
    x, x_0, edge_index = inputs()
    conv = make_conv(mode, cached=True)
    first = conv(x, x_0, edge_index)
    if mode == "spectral":
        assert conv._cached_u is not None
    other, _ = random_graph(12, 5, seed=9)
    # The cache is really used: a different graph is ignored.
    torch.testing.assert_close(conv(x, x_0, other), first, rtol=0, atol=0)
    assert not torch.allclose(make_conv(mode)(x, x_0, other), first)
    conv.reset_parameters()
    assert conv._cached_edge_index is None and conv._cached_u is None


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_sparse_adjacency_input_matches_edge_index(mode):
    x, x_0, edge_index = inputs()
    n = x.size(0)
    adj_t = to_torch_csr_tensor(edge_index.flip(0), size=(n, n)).double()
    conv = make_conv(mode)
    torch.testing.assert_close(conv(x, x_0, adj_t),
                               conv(x, x_0, edge_index))


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_two_graphs_in_a_batch_are_centered_independently(mode):
    x_a, x0_a, ei_a = inputs(7, seed=5)
    x_b, x0_b, ei_b = inputs(9, seed=6)
    conv = make_conv(mode)
    expected = torch.cat([conv(x_a, x0_a, ei_a), conv(x_b, x0_b, ei_b)])
    x, x_0 = torch.cat([x_a, x_b]), torch.cat([x0_a, x0_b])
    edge_index = torch.cat([ei_a, ei_b + 7], dim=1)
    batch = torch.tensor([0] * 7 + [1] * 9)
    torch.testing.assert_close(conv(x, x_0, edge_index, batch=batch),
                               expected)
    torch.testing.assert_close(
        conv(x, x_0, edge_index, batch=batch, batch_size=2), expected)
    assert not torch.allclose(conv(x, x_0, edge_index), expected)


def test_spectral_on_a_graph_normalised_outside_the_layer():
    x, x_0, edge_index = inputs()
    n = x.size(0)
    inside = make_conv("spectral")
    outside = make_conv("spectral", normalize=False)
    norm_index, norm_weight = gcn_norm(edge_index, None, n, dtype=x.dtype)
    u = gcn_degree(edge_index, None, n, dtype=x.dtype).sqrt()
    torch.testing.assert_close(
        outside(x, x_0, norm_index, norm_weight, u=u),
        inside(x, x_0, edge_index))
    with pytest.raises(ValueError, match="normalize=False needs the dominant"):
        outside(x, x_0, norm_index, norm_weight)


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_learn_beta_is_a_parameter_with_gradient(mode):
    x, x_0, edge_index = inputs()
    conv = make_conv(mode, beta=0.5, learn_beta=True)
    assert "beta" in dict(conv.named_parameters())
    conv(x, x_0, edge_index).pow(2).sum().backward()
    assert conv.beta.grad is not None and conv.beta.grad.abs() > 0
    # The identity-mapping strength is GCN2Conv's, untouched by learning.
    assert conv.identity_beta == pytest.approx(math.log(THETA / LAYER + 1))


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_gradcheck(mode):
    edge_index, edge_weight = random_graph(6, 6, seed=7, weighted=True)
    conv = make_conv(mode, shared_weights=False, learn_beta=True, beta=0.6)
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    x_0 = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    batch = torch.tensor([0, 0, 0, 1, 1, 1])

    def fn(x, x_0, weight1, weight2, beta):
        params = {"beta": beta, "weight1": weight1, "weight2": weight2}
        return torch.func.functional_call(
            conv, params, (x, x_0, edge_index, edge_weight),
            {"batch": batch})

    weight1 = conv.weight1.detach().clone().requires_grad_()
    weight2 = conv.weight2.detach().clone().requires_grad_()
    beta = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x, x_0, weight1, weight2, beta))


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="center='median'"):
        CenteredGCN2Conv(5, 0.1, center="median")
    with pytest.raises(ValueError, match=r"beta=.*outside \[0, 1\]"):
        CenteredGCN2Conv(5, 0.1, beta=1.5)
    x, x_0, edge_index = inputs()
    with pytest.raises(ValueError, match=r"batch has shape \(11,\)"):
        make_conv("mean")(x, x_0, edge_index,
                          batch=torch.zeros(11, dtype=torch.long))


def test_repr_names_both_strengths():
    text = repr(make_conv("spectral", beta=0.5))
    assert "center=spectral" in text and "beta=0.5" in text
    assert "identity_beta=" in text


@pytest.mark.parametrize("mode", [None, "mean", "spectral"])
def test_learned_alpha_matches_dense_reference(mode):
    # alpha = sigmoid(alpha_logit): start at the given alpha, then move the
    # free parameter and check the mixing follows the sigmoid.
    x, x_0, edge_index = inputs()
    conv = make_conv(mode, learn_alpha=True)
    assert "alpha_logit" in dict(conv.named_parameters())
    assert conv.effective_alpha().item() == pytest.approx(ALPHA)
    with torch.no_grad():
        conv.alpha_logit.fill_(0.3)
    alpha = 1 / (1 + math.exp(-0.3))
    a_hat = dense_gcn_operator(edge_index, None, x.size(0))
    gamma = math.log(THETA / LAYER + 1)
    eye = torch.eye(5, dtype=x.dtype)
    mapping = (1 - gamma) * eye + gamma * conv.weight1.detach()
    expected = ((1 - alpha) * dense_correction(mode, a_hat) @ x
                + alpha * x_0) @ mapping
    torch.testing.assert_close(conv(x, x_0, edge_index), expected)
    conv.reset_parameters()
    assert conv.effective_alpha().item() == pytest.approx(ALPHA)


def test_learned_alpha_has_gradient_and_passes_gradcheck():
    edge_index, edge_weight = random_graph(6, 6, seed=7, weighted=True)
    conv = make_conv("mean", learn_alpha=True, learn_beta=True, beta=0.6)
    x = torch.randn(6, 5, dtype=torch.float64)
    x_0 = torch.randn(6, 5, dtype=torch.float64)
    conv(x, x_0, edge_index, edge_weight).pow(2).sum().backward()
    assert conv.alpha_logit.grad.abs() > 0

    def fn(alpha_logit, beta):
        params = {"alpha_logit": alpha_logit, "beta": beta}
        return torch.func.functional_call(
            conv, params, (x, x_0, edge_index, edge_weight))

    logit = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (logit, beta))


def test_learned_alpha_needs_an_open_interval():
    for alpha in (0.0, 1.0):
        with pytest.raises(ValueError, match=r"learn_alpha=True needs alpha"):
            CenteredGCN2Conv(5, alpha, learn_alpha=True)
    # A fixed alpha keeps GCN2Conv's float, with no parameter.
    conv = make_conv("mean")
    assert conv.alpha == ALPHA and "alpha_logit" not in dict(
        conv.named_parameters())
