r"""The sparse aggregation :math:`\hat{\mathbf{A}} \mathbf{X}` of the GCN-type
layers, with the transposed adjacency built once per graph instead of once
per layer in the backward pass.

A layer given a sparse CSR adjacency aggregates with
:func:`torch.sparse.mm`, whose backward computes
:math:`\hat{\mathbf{A}}^\top \nabla` by converting the transpose of
:math:`\hat{\mathbf{A}}` to CSR, a sort of all its edges, in every layer of
every backward pass. :func:`sparse_matmul` returns the same values and
gradients bit for bit, but keeps that transpose on the adjacency tensor the
first time a backward pass needs it; the layers of a deep model share one
adjacency per forward pass (:meth:`~gnn_center.nn.DeepGNN.prepare_graph`),
so the sort runs once instead of once per layer. On the CPU this makes a
64-layer step on a 7,650-node graph 2.6 to 3.1 times faster at hidden width
32 (see ``experiments/bench_sparse_matmul.py``).

:class:`SparseMatmulMixin` routes a PyG layer's ``message_and_aggregate``
through it; :class:`SparseMatmulGCNConv` and :class:`SparseMatmulGCN2Conv`
are PyG's ``GCNConv`` and ``GCN2Conv`` with it, for the uncentered
baselines.
"""
import torch
from torch import Tensor

from torch_geometric.nn.conv import GCN2Conv, GCNConv
from torch_geometric.typing import Adj
from torch_geometric.utils import spmm

# The attribute of an adjacency tensor that holds (its version, its
# transpose as CSR), so that an in-place change of the adjacency is seen.
_TRANSPOSE = "_gnn_center_transpose"


def _csr_transpose(adj: Tensor) -> Tensor:
    cached = getattr(adj, _TRANSPOSE, None)
    if cached is not None and cached[0] == adj._version:
        return cached[1]
    # The conversion torch's own backward makes, so results are identical.
    transpose = adj.t().to_sparse_csr()
    setattr(adj, _TRANSPOSE, (adj._version, transpose))
    return transpose


class _SparseMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:
        ctx.save_for_backward(adj)
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        adj, = ctx.saved_tensors
        # Differentiable in grad_out, so double backward works.
        return None, torch.sparse.mm(_csr_transpose(adj), grad_out)


def uses_sparse_matmul(adj: Adj) -> bool:
    r"""Whether :func:`sparse_matmul` takes ``adj``: a CPU sparse CSR tensor
    without gradient, outside ``torch.compile``; anything else keeps PyG's
    own path. (Unmeasured on CUDA, whose backward may not convert.)"""
    return (isinstance(adj, Tensor) and adj.layout == torch.sparse_csr
            and not adj.is_cuda and not adj.requires_grad
            and not torch.compiler.is_compiling())


def sparse_matmul(adj: Tensor, x: Tensor) -> Tensor:
    r""":math:`\hat{\mathbf{A}} \mathbf{X}` for a sparse CSR ``adj``
    (:func:`uses_sparse_matmul`) and a dense ``x``, equal to
    ``torch.sparse.mm(adj, x)`` in value and gradient; the backward pass
    builds the transpose of ``adj`` once and keeps it on ``adj``."""
    if not uses_sparse_matmul(adj):
        raise ValueError(f"sparse_matmul takes a CPU sparse CSR adjacency "
                         f"that needs no gradient (got layout {adj.layout}, "
                         f"device {adj.device}, requires_grad="
                         f"{adj.requires_grad}); use torch.sparse.mm")
    return _SparseMatmul.apply(adj, x)


class SparseMatmulMixin:
    r"""Aggregates a sum over a sparse CSR adjacency with
    :func:`sparse_matmul`, and any other input or aggregation as
    ``GCNConv`` and ``GCN2Conv`` do, with PyG's ``spmm`` (TorchScript
    cannot call ``super()`` here). Put it before the PyG class."""

    def message_and_aggregate(self, adj_t: Adj, x: Tensor) -> Tensor:
        if (not torch.jit.is_scripting() and self.aggr in ("add", "sum")
                and uses_sparse_matmul(adj_t)):
            return sparse_matmul(adj_t, x)
        return spmm(adj_t, x, reduce=self.aggr)


class SparseMatmulGCNConv(SparseMatmulMixin, GCNConv):
    r"""PyG's :class:`~torch_geometric.nn.conv.GCNConv`, aggregating a
    sparse CSR adjacency with :func:`sparse_matmul` (the same values and
    gradients)."""


class SparseMatmulGCN2Conv(SparseMatmulMixin, GCN2Conv):
    r"""PyG's :class:`~torch_geometric.nn.conv.GCN2Conv`, aggregating a
    sparse CSR adjacency with :func:`sparse_matmul` (the same values and
    gradients)."""
