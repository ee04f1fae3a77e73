"""The hand-written uniform and spectral corrections against the autograd
form they replace: values, first and second derivatives."""

import pytest
import torch
import torch.nn.functional as F

from gnn_center.nn import center
from gnn_center.nn.fused import spectral_center, uniform_center

NUM_NODES, NUM_GRAPHS = 9, 3
# Unsorted on purpose: per-graph sums must not assume contiguous graphs.
BATCH = torch.tensor([0, 2, 1, 0, 1, 2, 2, 0, 1])


def reference_uniform(h, x, beta, batch=None, batch_size=None):
    # The autograd form center(mode="uniform") had before the fused path.
    if batch is None:
        return h - beta * x.mean(dim=0, keepdim=True)
    count = torch.zeros(batch_size, dtype=x.dtype).index_add_(
        0, batch, torch.ones(x.size(0), dtype=x.dtype))
    total = x.new_zeros((batch_size, ) + x.shape[1:]).index_add(0, batch, x)
    view = (-1, ) + (1, ) * (x.dim() - 1)
    correction = total * (beta / count.clamp(min=1)).view(view)
    return h - correction.index_select(0, batch)


def reference_spectral(h, x, u, beta, batch=None, batch_size=None):
    # Dense: one-hot graph membership P, coefficients β Pᵀ(u∘X) / Pᵀu².
    src = h if x is None else x
    if batch is None:
        batch, batch_size = torch.zeros_like(u, dtype=torch.long), 1
    member = F.one_hot(batch, batch_size).to(src.dtype)
    flat = src.reshape(src.size(0), -1)
    norm = member.t() @ u.square()
    norm = torch.where(norm > 0, norm, torch.ones_like(norm))
    coeff = beta * (member.t() @ (u[:, None] * flat)) / norm[:, None]
    out = h.reshape(h.size(0), -1) - u[:, None] * (member @ coeff)
    return out.view_as(h)


def make_inputs(shape, learned_beta, seed=0):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(*shape, generator=gen, dtype=torch.float64)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    u = torch.rand(shape[0], generator=gen, dtype=torch.float64) + 0.1
    h.requires_grad_()
    x.requires_grad_()
    beta = (torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
            if learned_beta else 0.7)
    return h, x, u, beta


CASES = [(shape, batched, learned)
         for shape in [(NUM_NODES, 4), (NUM_NODES, 2, 3)]
         for batched in (False, True) for learned in (False, True)]


def batch_args(batched):
    return (BATCH, NUM_GRAPHS) if batched else (None, None)


@pytest.mark.parametrize("shape,batched,learned", CASES)
def test_uniform_matches_autograd_form(shape, batched, learned):
    h, x, _, beta = make_inputs(shape, learned)
    batch, size = batch_args(batched)
    inputs = (h, x, beta) if learned else (h, x)

    def fused(h, x, b=beta):
        return uniform_center(h, x, b, batch, size)

    def reference(h, x, b=beta):
        return reference_uniform(h, x, b, batch, size)

    torch.testing.assert_close(fused(h, x), reference(h, x))
    grad = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(
        torch.autograd.grad(fused(*inputs), inputs, grad),
        torch.autograd.grad(reference(*inputs), inputs, grad))
    assert torch.autograd.gradcheck(fused, inputs)
    assert torch.autograd.gradgradcheck(fused, inputs)


@pytest.mark.parametrize("shape,batched,learned", CASES)
@pytest.mark.parametrize("with_x", [True, False])
def test_spectral_matches_autograd_form(shape, batched, learned, with_x):
    h, x, u, beta = make_inputs(shape, learned)
    batch, size = batch_args(batched)
    inputs = (h, x, beta) if learned else (h, x)

    def fused(h, x, b=beta):
        return spectral_center(h, x if with_x else None, u, b, batch, size)

    def reference(h, x, b=beta):
        return reference_spectral(h, x if with_x else None, u, b, batch,
                                  size)

    torch.testing.assert_close(fused(h, x), reference(h, x))
    grad = torch.randn(shape, dtype=torch.float64)
    # allow_unused: without x, the output does not depend on it.
    torch.testing.assert_close(
        torch.autograd.grad(fused(*inputs), inputs, grad, allow_unused=True),
        torch.autograd.grad(reference(*inputs), inputs, grad,
                            allow_unused=True))
    if not with_x:
        inputs = (h, beta) if learned else (h, )

        def fused(h, b=beta):  # noqa: F811 (x is not an input then)
            return spectral_center(h, None, u, b, batch, size)

    assert torch.autograd.gradcheck(fused, inputs)
    assert torch.autograd.gradgradcheck(fused, inputs)


@pytest.mark.parametrize("batched", [False, True])
def test_spectral_gradient_of_u(batched):
    # u is a cached buffer in the layers, but a learned or computed u must
    # still get its gradient.
    h, x, u, beta = make_inputs((NUM_NODES, 4), learned_beta=True, seed=1)
    batch, size = batch_args(batched)
    inputs = (h, x, u.requires_grad_(), beta)

    def fused(h, x, u, b):
        return spectral_center(h, x, u, b, batch, size)

    def reference(h, x, u, b):
        return reference_spectral(h, x, u, b, batch, size)

    grad = torch.randn(NUM_NODES, 4, dtype=torch.float64)
    torch.testing.assert_close(
        torch.autograd.grad(fused(*inputs), inputs, grad),
        torch.autograd.grad(reference(*inputs), inputs, grad))
    assert torch.autograd.gradcheck(fused, inputs)
    assert torch.autograd.gradgradcheck(fused, inputs)


def test_spectral_leaves_a_graph_with_zero_u_unchanged():
    h, x, u, beta = make_inputs((NUM_NODES, 4), learned_beta=True)
    u = torch.where(BATCH == 1, torch.zeros_like(u), u)
    out = spectral_center(h, x, u, beta, BATCH, NUM_GRAPHS)
    torch.testing.assert_close(
        out, reference_spectral(h, x, u, beta, BATCH, NUM_GRAPHS))
    torch.testing.assert_close(out[BATCH == 1], h[BATCH == 1])
    assert torch.autograd.gradcheck(
        lambda h, x, b: spectral_center(h, x, u, b, BATCH, NUM_GRAPHS),
        (h, x, beta))


@pytest.mark.parametrize("mode", ["uniform", "spectral"])
def test_beta_zero(mode):
    h, x, u, _ = make_inputs((NUM_NODES, 4), learned_beta=False)
    fn = (lambda b: uniform_center(h, x, b)) if mode == "uniform" else (
        lambda b: spectral_center(h, x, u, b))
    ref = (lambda b: reference_uniform(h, x, b)) if mode == "uniform" else (
        lambda b: reference_spectral(h, x, u, b))
    # A fixed beta = 0 is the identity (the same tensor, no work) ...
    assert fn(0.0) is h
    # ... a learned one at 0 leaves the values but has a gradient.
    beta = torch.zeros((), dtype=torch.float64, requires_grad=True)
    out = fn(beta)
    torch.testing.assert_close(out, h)
    grad = torch.randn_like(h)
    torch.testing.assert_close(
        torch.autograd.grad(out, (h, x, beta), grad),
        torch.autograd.grad(ref(beta), (h, x, beta), grad))


def test_uniform_bipartite_input_has_its_own_node_count():
    # Attention centers the aggregation over the source nodes' mean.
    h = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(7, 2, 3, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(uniform_center(h, x, 0.5),
                               reference_uniform(h, x, 0.5))
    assert torch.autograd.gradcheck(lambda h, x: uniform_center(h, x, 0.5),
                                    (h, x))


@pytest.mark.parametrize("mode", ["uniform", "spectral"])
@pytest.mark.parametrize("batched", [False, True])
def test_center_dispatches_to_fused_path(mode, batched):
    h, x, u, beta = make_inputs((NUM_NODES, 2, 3), learned_beta=True)
    batch, size = batch_args(batched)
    out = center(h, mode=mode, beta=beta, x=x, u=u, batch=batch)
    assert type(out.grad_fn).__name__ == "_SubtractRowsBackward"
    expected = (reference_uniform(h, x, beta, batch, size) if mode ==
                "uniform" else reference_spectral(h, x, u, beta, batch, size))
    torch.testing.assert_close(out, expected)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["uniform", "spectral"])
@pytest.mark.parametrize("batched", [False, True])
def test_center_compiles_without_graph_breaks(mode, batched):
    # fullgraph=True raises on any graph break, the custom autograd
    # Function included; compiled values and gradients match eager ones.
    torch._dynamo.reset()
    h, x, u, beta = make_inputs((NUM_NODES, 4), learned_beta=True)
    h, x, u = h.float(), x.float(), u.float()
    beta = beta.detach().float().requires_grad_()
    batch, size = batch_args(batched)

    def fn(h, x, u, beta):
        return center(h, mode=mode, beta=beta, x=x, u=u, batch=batch,
                      batch_size=size)

    compiled = torch.compile(fn, fullgraph=True)
    grad = torch.randn(NUM_NODES, 4)
    for f in (compiled, fn):
        out = f(h, x, u, beta)
        grads = torch.autograd.grad(out, (h, x, beta), grad)
        if f is compiled:
            expected_out, expected_grads = out, grads
    torch.testing.assert_close(expected_out, out)
    torch.testing.assert_close(expected_grads, grads)


def _layer_case(kind, mode):
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    from conftest import random_graph
    from gnn_center.nn import CenteredGATConv, CenteredGCNConv, gcn_degree
    edge_index, _ = random_graph(12, 20)
    x = torch.randn(12, 5)
    torch.manual_seed(0)
    if kind == "gat":
        conv = CenteredGATConv(5, 3, heads=2, center=mode, learn_beta=True)
        return conv, (x, edge_index)
    # The graph prepared outside, as DeepGNN does: the layer's own code,
    # centering included, must trace as one graph.
    u = gcn_degree(edge_index, num_nodes=12).sqrt()
    norm_index, norm_weight = gcn_norm(edge_index, num_nodes=12)
    conv = CenteredGCNConv(5, 3, center=mode, normalize=False,
                           learn_beta=True)
    return conv, (x, norm_index, norm_weight, None, None, u)


@pytest.mark.slow
@pytest.mark.parametrize("kind,mode", [("gcn", "uniform"),
                                       ("gcn", "spectral"),
                                       ("gat", "uniform")])
def test_layer_compiles_without_graph_breaks(kind, mode):
    torch._dynamo.reset()
    conv, args = _layer_case(kind, mode)
    compiled = torch.compile(conv, fullgraph=True)
    results = []
    for f in (compiled, conv):
        conv.zero_grad()
        out = f(*args)
        out.square().sum().backward()
        results.append((out, [p.grad.clone() for p in conv.parameters()]))
    torch.testing.assert_close(results[0], results[1])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["centered", "centered-uniform",
                                    "centered-spectral", "centered-gat"])
def test_deep_model_has_no_graph_break_in_centering(method):
    # The model breaks where it builds the graph (self-loops, sparse CSR
    # adjacency) and around the sparse aggregation, never in the centering.
    from conftest import random_graph
    from gnn_center.nn import build_model
    from gnn_center.nn.compile_check import graph_breaks
    torch._dynamo.reset()
    edge_index, _ = random_graph(20, 30)
    model = build_model(method, 6, 3, 3, hidden_channels=8)
    breaks = graph_breaks(model, torch.randn(20, 6), edge_index)
    assert breaks.messages  # the capture works: graph preparation breaks
    assert not breaks.in_centering
    # The centering op was traced, not skipped with its frame.
    ops = {str(node.target) for graph in breaks.explanation.graphs
           for node in graph.graph.nodes}
    assert "autograd_function_apply" in ops or method == "centered-gat"
