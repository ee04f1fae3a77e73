import pytest
import torch
from torch_geometric.nn import GATConv

from conftest import random_graph
from gnn_center.nn import CenteredGATConv


def make_gat(mode, heads=2, concat=True, **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("bias", False)
    return CenteredGATConv(5, 3, heads=heads, concat=concat, center=mode,
                           **kwargs).double()


def dense_attention(conv, x, edge_index):
    """Per-head dense attention matrices S[h, i, j] (edge j -> i), read from
    the layer's own attention weights, and Z = X Θ per head."""
    n = x.size(0)
    _, (ei, alpha) = conv(x, edge_index, return_attention_weights=True)
    s = torch.zeros(conv.heads, n, n, dtype=x.dtype)
    for h in range(conv.heads):
        s[h].index_put_((ei[1], ei[0]), alpha[:, h].detach(), accumulate=True)
    z = conv.lin(x).view(n, conv.heads, conv.out_channels).detach()
    return s, z


@pytest.mark.parametrize("mode", ["mean", "uniform"])
@pytest.mark.parametrize("concat", [True, False])
def test_matches_dense(graph, mode, concat):
    x, edge_index = graph
    n = x.size(0)
    conv = make_gat(mode, concat=concat)
    out = conv(x, edge_index)
    s, z = dense_attention(conv, x, edge_index)
    # Attention is row-stochastic, the property that makes 'uniform' exact.
    torch.testing.assert_close(s.sum(-1), torch.ones(2, n, dtype=x.dtype))
    ones = torch.ones(n, n, dtype=x.dtype) / n
    heads = []
    for h in range(2):
        if mode == "mean":
            heads.append((torch.eye(n, dtype=x.dtype) - ones) @ s[h] @ z[:, h])
        else:
            heads.append((s[h] - ones) @ z[:, h])
    expected = torch.cat(heads, dim=-1) if concat else \
        torch.stack(heads).mean(0)
    torch.testing.assert_close(out, expected)


def test_uniform_equals_attention_of_centered_input(graph):
    # S (I - 11ᵀ/n) Z = (S - 11ᵀ/n) Z because S is row-stochastic.
    x, edge_index = graph
    conv = make_gat("uniform")
    s, z = dense_attention(conv, x, edge_index)
    centered_z = z - z.mean(0, keepdim=True)
    expected = torch.cat([s[h] @ centered_z[:, h] for h in range(2)], -1)
    torch.testing.assert_close(conv(x, edge_index), expected)


@pytest.mark.parametrize("kwargs", [
    {},
    {"concat": False},
    {"edge_dim": 4},
    {"residual": True},
])
def test_center_none_equals_gatconv(graph, kwargs):
    x, edge_index = graph
    edge_attr = None
    if "edge_dim" in kwargs:
        edge_attr = torch.randn(edge_index.size(1), 4, dtype=x.dtype)
    torch.manual_seed(0)
    ref = GATConv(5, 3, heads=2, **kwargs).double()
    with torch.no_grad():
        ref.bias.normal_()
    conv = CenteredGATConv(5, 3, heads=2, center=None, **kwargs).double()
    conv.load_state_dict(ref.state_dict())
    torch.testing.assert_close(conv(x, edge_index, edge_attr),
                               ref(x, edge_index, edge_attr), rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["mean", "uniform"])
def test_beta_interpolates_linearly(graph, mode):
    x, edge_index = graph
    plain = make_gat(mode, beta=0.0)(x, edge_index)
    full = make_gat(mode, beta=1.0)(x, edge_index)
    out = make_gat(mode, beta=0.3)(x, edge_index)
    torch.testing.assert_close(out, 0.7 * plain + 0.3 * full)


@pytest.mark.parametrize("concat", [True, False])
def test_residual_and_bias_are_added_after_centering(graph, concat):
    x, edge_index = graph
    batch = torch.tensor([0] * 5 + [1] * 7)
    conv = make_gat("mean", concat=concat, bias=True, residual=True)
    with torch.no_grad():
        conv.bias.normal_()
    out = conv(x, edge_index, batch=batch)
    offset = conv.res(x) + conv.bias
    for g in (0, 1):
        torch.testing.assert_close((out - offset)[batch == g].mean(0),
                                   torch.zeros(out.size(1), dtype=x.dtype))


def test_learn_beta_receives_gradient(graph):
    x, edge_index = graph
    conv = make_gat("uniform", beta=0.5, learn_beta=True)
    conv(x, edge_index).pow(2).sum().backward()
    assert conv.beta.grad is not None and conv.beta.grad.abs() > 0


def test_learned_beta_survives_two_calls_before_backward(graph):
    x, edge_index = graph
    conv = make_gat("uniform", beta=0.5, learn_beta=True)
    with torch.no_grad():
        conv.beta.fill_(-0.5)  # out of range: used as 0, gradient still flows
    torch.testing.assert_close(conv(x, edge_index),
                               make_gat("uniform", beta=0.0)(x, edge_index))
    (conv(x, edge_index) * conv(x, edge_index)).sum().backward()
    assert conv.beta.grad.abs() > 0 and conv.beta.item() == -0.5


def test_center_none_has_no_beta_parameter(graph):
    x, edge_index = graph
    ref = GATConv(5, 3, heads=2).double()
    conv = CenteredGATConv(5, 3, heads=2, center=None,
                           learn_beta=True).double()
    conv.load_state_dict(ref.state_dict(), strict=True)
    torch.testing.assert_close(conv(x, edge_index), ref(x, edge_index),
                               rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["mean", "uniform"])
def test_two_graphs_in_a_batch_are_centered_independently(mode):
    ei_a, _ = random_graph(7, 8, seed=5)
    ei_b, _ = random_graph(9, 12, seed=6)
    x_a = torch.randn(7, 5, dtype=torch.float64)
    x_b = torch.randn(9, 5, dtype=torch.float64)
    conv = make_gat(mode)
    expected = torch.cat([conv(x_a, ei_a), conv(x_b, ei_b)])
    edge_index = torch.cat([ei_a, ei_b + 7], dim=1)
    x = torch.cat([x_a, x_b])
    batch = torch.tensor([0] * 7 + [1] * 9)
    torch.testing.assert_close(conv(x, edge_index, batch=batch), expected)
    assert not torch.allclose(conv(x, edge_index), expected)


def test_forward_is_reentrant(graph):
    # No per-call state on the layer: a call made while another is running
    # (here from a hook inside the outer call) leaves the outer one intact.
    x, edge_index = graph
    conv = make_gat("mean")
    batch = torch.tensor([0] * 5 + [1] * 7)
    expected = conv(x, edge_index, batch=batch)
    inner = []

    def hook(module, inputs, output):
        if not inner:
            inner.append(None)  # before the call, which runs the hook too
            inner[0] = conv(x, edge_index)

    handle = conv.lin.register_forward_hook(hook)
    out = conv(x, edge_index, batch=batch)
    handle.remove()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(inner[0], conv(x, edge_index))


def test_positional_arguments_follow_gatconv(graph):
    x, edge_index = graph
    # GATConv(in, out, heads, concat, negative_slope, dropout,
    #         add_self_loops, edge_dim, fill_value, bias, residual)
    conv = CenteredGATConv(5, 3, 2, False, 0.1, 0.0, False, 4, "add", False,
                           True)
    assert conv.heads == 2 and not conv.concat
    assert conv.negative_slope == 0.1 and not conv.add_self_loops
    assert conv.edge_dim == 4 and conv.fill_value == "add"
    assert conv.bias is None and conv.res is not None
    assert conv.center == "mean"
    assert conv(x.float(), edge_index).shape == (12, 3)
    with pytest.raises(TypeError):
        CenteredGATConv(5, 3, 1, True, 0.2, 0.0, True, None, "mean", True,
                        False, None)


@pytest.mark.parametrize("kwargs", [{}, {"residual": True, "concat": False}])
def test_bipartite_without_destination_features(kwargs):
    # (x_src, None) with size: the batch indexes the size[1] destinations.
    torch.manual_seed(0)
    x_src = torch.randn(6, 5, dtype=torch.float64)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 3], [0, 0, 1, 2, 2, 3, 1,
                                                          3]])
    batch = torch.tensor([0, 0, 1, 1])
    conv = make_gat("mean", add_self_loops=False, bias=True, **kwargs)
    ref = make_gat(None, add_self_loops=False, bias=True, **kwargs)
    ref.load_state_dict(conv.state_dict())
    out = conv((x_src, None), edge_index, size=(6, 4), batch=batch)
    plain = ref((x_src, None), edge_index, size=(6, 4)) - ref.bias
    expected = plain.clone()
    for g in (0, 1):
        expected[batch == g] -= plain[batch == g].mean(0)
    torch.testing.assert_close(out, expected + ref.bias)


def test_gradcheck(graph):
    _, edge_index = graph
    conv = make_gat("uniform", bias=True)
    x = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)
    batch = torch.tensor([0] * 6 + [1] * 6)
    assert torch.autograd.gradcheck(
        lambda x: conv(x, edge_index, batch=batch), (x, ))


@pytest.mark.slow
def test_torch_compile(graph):
    x, edge_index = graph
    x = x.float()
    torch.manual_seed(0)
    conv = CenteredGATConv(5, 3, heads=2, center="uniform")
    batch = torch.tensor([0] * 6 + [1] * 6)
    expected = conv(x, edge_index, batch=batch, batch_size=2)
    compiled = torch.compile(conv)
    torch.testing.assert_close(
        compiled(x, edge_index, batch=batch, batch_size=2), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_matches_cpu(graph):
    x, edge_index = graph
    conv = make_gat("uniform", bias=True)
    expected = conv(x, edge_index)
    out = conv.cuda()(x.cuda(), edge_index.cuda())
    torch.testing.assert_close(out.cpu(), expected)


def test_spectral_is_rejected_with_a_reason():
    with pytest.raises(ValueError, match="center='spectral'.*uniform"):
        CenteredGATConv(5, 3, center="spectral")


def test_unknown_mode_and_bad_beta_are_rejected():
    with pytest.raises(ValueError, match="center='median'"):
        CenteredGATConv(5, 3, center="median")
    with pytest.raises(ValueError, match="beta=2"):
        CenteredGATConv(5, 3, beta=2)


def test_batch_length_mismatch_is_rejected(graph):
    x, edge_index = graph
    with pytest.raises(ValueError, match="batch has shape"):
        make_gat("mean")(x, edge_index, batch=torch.zeros(3, dtype=torch.long))
