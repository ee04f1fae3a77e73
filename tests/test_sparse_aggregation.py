import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from torch_geometric.nn import GCN2Conv, GCNConv
from torch_geometric.utils import to_torch_coo_tensor, to_torch_csr_tensor

import gnn_center.nn.sparse_aggregation as sparse_aggregation
from gnn_center.nn import build_model
from gnn_center.nn.sparse_aggregation import (
    SparseMatmulGCN2Conv,
    SparseMatmulGCNConv,
    sparse_matmul,
)


def directed_adjacency(num_nodes=9, num_edges=30, dtype=torch.float,
                       seed=0):
    # Directed and weighted, so that a wrong transpose changes the gradient.
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    edge_index = torch.unique(edge_index, dim=1)
    weight = torch.rand(edge_index.size(1), generator=gen, dtype=dtype)
    return to_torch_csr_tensor(edge_index, weight,
                               size=(num_nodes, num_nodes))


def count_calls(monkeypatch):
    calls = []
    real = sparse_aggregation.sparse_matmul

    def counting(adj, x):
        calls.append(adj)
        return real(adj, x)

    monkeypatch.setattr(sparse_aggregation, "sparse_matmul", counting)
    return calls


def test_values_and_gradient_equal_torch_sparse_mm_and_a_dense_oracle():
    adj = directed_adjacency()
    x = torch.randn(9, 4, requires_grad=True)
    grad = torch.randn(9, 4)

    out = sparse_matmul(adj, x)
    got, = torch.autograd.grad(out, x, grad)
    ref_out = torch.sparse.mm(adj, x)
    ref, = torch.autograd.grad(ref_out, x, grad)
    # Bit for bit: the same conversion and kernel as torch's own backward.
    assert torch.equal(out, ref_out) and torch.equal(got, ref)

    dense = adj.to_dense()
    torch.testing.assert_close(out, dense @ x)
    torch.testing.assert_close(got, dense.t() @ grad)


def test_gradcheck_and_double_backward():
    adj = directed_adjacency(dtype=torch.double)
    x = torch.randn(9, 3, dtype=torch.double, requires_grad=True)
    assert gradcheck(lambda x: sparse_matmul(adj, x), (x,))
    assert gradgradcheck(lambda x: sparse_matmul(adj, x), (x,))


def test_the_transpose_is_built_once_per_adjacency(monkeypatch):
    conversions = []
    to_csr = torch.Tensor.to_sparse_csr

    def counting(self, *args, **kwargs):
        conversions.append(self.layout)
        return to_csr(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to_sparse_csr", counting)
    adj = directed_adjacency()
    x = torch.randn(9, 4, requires_grad=True)
    h = x
    for _ in range(3):  # three layers sharing one adjacency
        h = torch.tanh(sparse_matmul(adj, h))
    h.sum().backward()
    assert len(conversions) == 1
    sparse_matmul(adj, x).sum().backward()  # another step, same graph
    assert len(conversions) == 1


def test_an_inplace_change_of_the_adjacency_rebuilds_its_transpose():
    adj = directed_adjacency()
    x = torch.randn(9, 4, requires_grad=True)
    sparse_matmul(adj, x).sum().backward()
    adj.values().mul_(2)
    grad, = torch.autograd.grad(sparse_matmul(adj, x).sum(), x)
    torch.testing.assert_close(grad, adj.to_dense().t() @ torch.ones(9, 4))


def test_other_layouts_get_a_clear_error():
    edge_index = torch.tensor([[0, 1], [1, 2]])
    coo = to_torch_coo_tensor(edge_index, size=(3, 3))
    with pytest.raises(ValueError, match="sparse CSR adjacency.*"
                       "torch.sparse.mm"):
        sparse_matmul(coo, torch.randn(3, 2))


@pytest.mark.parametrize("fast_cls,ref_cls,args", [
    (SparseMatmulGCNConv, GCNConv, (6, 6)),
    (SparseMatmulGCN2Conv, GCN2Conv, (6, 0.1, 0.5, 2)),
], ids=["gcn", "gcn2"])
def test_layers_equal_pyg_in_values_and_gradients(fast_cls, ref_cls, args,
                                                  monkeypatch):
    fast = fast_cls(*args, normalize=False)
    ref = ref_cls(*args, normalize=False)
    ref.load_state_dict(fast.state_dict())
    adj = directed_adjacency()
    calls = count_calls(monkeypatch)
    outs, grads = [], []
    for layer in (fast, ref):
        x = torch.randn(9, 6, generator=torch.Generator().manual_seed(1),
                        requires_grad=True)
        inputs = (x, adj) if ref_cls is GCNConv else (x, x.detach(), adj)
        out = layer(*inputs)
        out.square().sum().backward()
        outs.append(out)
        grads.append([x.grad] + [p.grad for p in layer.parameters()])
    assert len(calls) == 1  # the fast layer only
    assert torch.equal(outs[0], outs[1])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


@pytest.mark.parametrize("method,options", [
    ("gcn", {}), ("centered", dict(center="spectral")),
    ("centered", dict(residual="initial")), ("gcnii", {}),
    ("centered-gcnii", {}), ("pairnorm", {}), ("dropedge", {}),
])
def test_deep_models_train_identically_with_and_without_it(
        method, options, monkeypatch):
    # What keeps earlier results reproducible: every parameter's gradient
    # is the same, bit for bit, as with torch.sparse.mm's own backward.
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, 30, (2, 120), generator=gen)
    x = torch.randn(30, 5, generator=gen)

    def gradients():
        torch.manual_seed(0)
        model = build_model(method, 5, 3, 8, hidden_channels=8, **options)
        model(x, edge_index).square().sum().backward()
        return [p.grad for p in model.parameters()], len(model.convs)

    calls = count_calls(monkeypatch)
    fast, num_convs = gradients()
    assert len(calls) == num_convs
    monkeypatch.setattr(sparse_aggregation, "uses_sparse_matmul",
                        lambda adj: False)
    ref, _ = gradients()
    assert len(calls) == num_convs and len(fast) == len(ref)
    for a, b in zip(fast, ref):
        assert torch.equal(a, b)
