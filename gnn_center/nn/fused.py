r"""The ``uniform`` and ``spectral`` corrections with the gradient written out.

Both corrections have the form

.. math::
    \mathbf{H}_c = \mathbf{H} - \mathbf{w}\,\mathbf{c}_{g(i)}^\top,
    \qquad \mathbf{c}_g = \beta\,\frac{\sum_{j \in g} w_j \mathbf{x}_j}
    {\sum_{j \in g} w_j^2 \text{ or } n_g}

per graph :math:`g`, with :math:`\mathbf{w} = \mathbf{1}` for ``uniform``
(:math:`\mathbf{c}_g` the graph's mean input) and :math:`\mathbf{w} =
\mathbf{u}` for ``spectral``. Left to autograd, ``H - beta * mean(X)``
writes two node-sized buffers in the backward pass (the negated gradient
before it is summed to the shape of the mean, and the mean's gradient
divided by :math:`n`) and reads them again; per graph, or with attention
heads, ``spectral`` does the same. Here the coefficients :math:`\mathbf{c}`
(one row per graph) come from a reduction whose autograd backward is already
minimal (a broadcast view for ``uniform``, one rank-one product for
``spectral``), and :class:`_SubtractRows` applies them with a hand-written
backward: the gradient of :math:`\mathbf{H}` is the incoming gradient itself
(no copy), and that of :math:`\mathbf{c}` one reduction of it.

Node-sized passes, one graph: forward reads :math:`\mathbf{X}` once and
:math:`\mathbf{H}` once and writes the output once; backward reads the
gradient once and, for ``spectral``, writes the gradient of
:math:`\mathbf{X}` once (``uniform`` returns a broadcast view); autograd
adds it to the aggregation's gradient of :math:`\mathbf{X}`, the one pass
two paths into :math:`\mathbf{X}` need anyway. With a ``batch`` vector the
per-graph rows are gathered to the nodes first, one more write and read
(and ``spectral`` forms :math:`\mathbf{u} \circ \mathbf{X}` for the
per-graph sums and :math:`\mathbf{u} \circ \text{grad}` for their
gradient: there is no weighted scatter to fuse them into).

The backward is built from differentiable operations on saved inputs, so
double backward (and the gradient of a learned :math:`\beta` or of
:math:`\mathbf{u}`) works too.

These functions take validated input: :func:`~gnn_center.nn.center` checks
``beta``, ``u`` and ``batch`` and dispatches here.
"""
from typing import Optional, Union

import torch
from torch import Tensor

from torch_geometric.typing import OptTensor
from torch_geometric.utils import scatter


def _column(vec: Tensor, ref: Tensor) -> Tensor:
    # A per-node (or per-graph) scalar shaped to broadcast against ref's rows.
    return vec.view((-1, ) + (1, ) * (ref.dim() - 1))


def _graph_sum(src: Tensor, batch: OptTensor, batch_size: int) -> Tensor:
    if batch is None:
        return src.sum(dim=0, keepdim=True)
    return scatter(src, batch, dim=0, dim_size=batch_size, reduce="sum")


def _resolve_batch_size(batch: OptTensor, batch_size: Optional[int]) -> int:
    if batch is None:
        return 1
    if batch_size is None:
        return int(batch.max()) + 1 if batch.numel() > 0 else 0
    return batch_size


class _SubtractRows(torch.autograd.Function):
    r"""``h - w[:, None] * coef[batch]``: ``coef`` holds one row per graph,
    ``w`` (optional) one weight per node."""

    @staticmethod
    def forward(ctx, h: Tensor, coef: Tensor, w: OptTensor, batch: OptTensor,
                batch_size: int) -> Tensor:
        ctx.save_for_backward(coef, w, batch)
        ctx.batch_size = batch_size
        rows = coef if batch is None else coef.index_select(0, batch)
        if w is None:
            return h - rows
        return torch.addcmul(h, _column(w, h), rows, value=-1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        coef, w, batch = ctx.saved_tensors
        grad_coef = grad_w = None
        if ctx.needs_input_grad[1]:
            if w is None:
                grad_coef = -_graph_sum(grad, batch, ctx.batch_size)
            elif batch is None:
                # uᵀ grad as one matrix-vector product: one read of grad.
                flat = grad.reshape(grad.size(0), -1)
                grad_coef = -(w @ flat).view_as(coef)
            else:
                grad_coef = -_graph_sum(_column(w, grad) * grad, batch,
                                        ctx.batch_size)
        if w is not None and ctx.needs_input_grad[2]:
            rows = coef if batch is None else coef.index_select(0, batch)
            grad_w = -(grad * rows).reshape(grad.size(0), -1).sum(dim=1)
        grad_h = grad if ctx.needs_input_grad[0] else None
        return grad_h, grad_coef, grad_w, None, None


def _scale_rows(total: Tensor, beta: Union[float, Tensor],
                denominator: Tensor) -> Tensor:
    # beta / denominator per graph, applied to the (small) per-graph rows.
    return total * _column(beta / denominator, total)


def uniform_center(h: Tensor, x: Tensor, beta: Union[float, Tensor] = 1.0,
                   batch: OptTensor = None,
                   batch_size: Optional[int] = None) -> Tensor:
    r""":math:`\mathbf{H} - \beta\,\mathbf{1}\,\mathrm{mean}(\mathbf{X})`
    per graph, nodes along dim 0; ``center(h, mode="uniform", x=x, ...)``
    with a hand-written backward. ``x`` may have other nodes than ``h``
    (bipartite attention) when ``batch`` is not given."""
    if not isinstance(beta, Tensor) and beta == 0.0:
        return h
    batch_size = _resolve_batch_size(batch, batch_size)
    total = _graph_sum(x, batch, batch_size)
    if batch is None:
        count = total.new_full((1, ), x.size(0))
    else:
        count = scatter(x.new_ones(x.size(0)), batch, dim=0,
                        dim_size=batch_size, reduce="sum").clamp(min=1)
    coef = _scale_rows(total, beta, count)
    return _SubtractRows.apply(h, coef, None, batch, batch_size)


def spectral_center(h: Tensor, x: OptTensor, u: Tensor,
                    beta: Union[float, Tensor] = 1.0, batch: OptTensor = None,
                    batch_size: Optional[int] = None) -> Tensor:
    r""":math:`\mathbf{H} - \beta\,\mathbf{u}\mathbf{u}^\top\mathbf{X} /
    \mathbf{u}^\top\mathbf{u}` per graph (``X = H`` when ``x`` is None),
    nodes along dim 0; ``center(h, mode="spectral", x=x, u=u, ...)`` with a
    hand-written backward. A graph whose ``u`` is zero is left as it is."""
    if not isinstance(beta, Tensor) and beta == 0.0:
        return h
    src = h if x is None else x
    u = u.to(src.dtype)
    batch_size = _resolve_batch_size(batch, batch_size)
    if batch is None:
        # uᵀX as one matrix-vector product: its backward writes one
        # rank-one product, the least the gradient of X needs.
        norm = u.dot(u).view(1)
        flat = src if src.dim() == 2 else src.reshape(src.size(0), -1)
        total = (u @ flat).view((1, ) + src.shape[1:])
    else:
        norm = scatter(u.square(), batch, dim=0, dim_size=batch_size,
                       reduce="sum")
        total = _graph_sum(_column(u, src) * src, batch, batch_size)
    norm = torch.where(norm > 0, norm, torch.ones_like(norm))
    coef = _scale_rows(total, beta, norm)
    return _SubtractRows.apply(h, coef, u, batch, batch_size)
