r"""The centering correction, as functions every centered layer shares.

An aggregation :math:`\mathbf{H} = \hat{\mathbf{A}} \mathbf{X}` applied again
and again drives node features towards the dominant eigenvector of
:math:`\hat{\mathbf{A}}` (oversmoothing). :func:`center` removes that
component after the aggregation, per graph when a ``batch`` vector is given:

* ``"mean"``: :math:`\mathbf{H} - \beta\,\mathbf{1}\,\mathrm{mean}(\mathbf{H})`,
  i.e. :math:`(\mathbf{I} - \tfrac{1}{n}\mathbf{1}\mathbf{1}^\top)
  \hat{\mathbf{A}}\mathbf{X}`.
* ``"uniform"``: :math:`\mathbf{H} - \beta\,\mathbf{1}\,\mathrm{mean}(\mathbf{X})`,
  i.e. :math:`(\hat{\mathbf{A}} - \tfrac{1}{n}\mathbf{1}\mathbf{1}^\top)
  \mathbf{X}`, the form of "Centered Self-Attention Layers" (Ali, Galanti,
  Wolf, 2023). For a row-stochastic :math:`\hat{\mathbf{A}}` (attention, mean
  aggregation) it removes the eigenvalue-1 mode exactly.
* ``"spectral"``: :math:`\mathbf{H} - \beta\,\mathbf{u}\mathbf{u}^\top
  \mathbf{X} / \mathbf{u}^\top\mathbf{u}`, deflation of the dominant
  eigenvector :math:`\mathbf{u}` (prior art: "Analysis of Corrected Graph
  Convolutions", NeurIPS 2024). For the symmetric GCN normalisation
  :math:`\mathbf{D}^{-1/2}(\mathbf{A}+\mathbf{I})\mathbf{D}^{-1/2}` of an
  undirected graph, :math:`\mathbf{u} = \sqrt{\hat{d}}` (see
  :func:`gcn_degree`).

Per-graph sums go through :func:`torch_geometric.utils.scatter`. The layers
call :func:`center_nodes`, the positional form of :func:`center` that
TorchScript can compile (it does not take keyword-only arguments).
"""
from typing import Optional, Union

import torch
from torch import Tensor

from torch_geometric.typing import Adj, OptTensor, SparseTensor, torch_sparse
from torch_geometric.utils import (
    add_remaining_self_loops,
    add_self_loops as add_self_loops_fn,
    is_torch_sparse_tensor,
    scatter,
    to_edge_index,
)
from torch_geometric.utils.num_nodes import maybe_num_nodes

from gnn_center.nn.fused import spectral_center, uniform_center

CENTER_MODES = ("mean", "uniform", "spectral")


def check_center_mode(mode: Optional[str], allowed=CENTER_MODES,
                      allow_none: bool = True) -> None:
    if mode is None and allow_none:
        return
    if mode not in allowed:
        choices = ", ".join(repr(m) for m in allowed)
        if allow_none:
            choices += " or None"
        raise ValueError(f"Unknown centering mode center={mode!r}; "
                         f"choose one of {choices}")


def check_spectral_u(spectral: bool, has_u: bool, normalize: bool) -> None:
    r"""A layer that does not normalise the graph itself cannot compute the
    eigenvector ``"spectral"`` deflates: it must be passed in."""
    if spectral and not has_u and not normalize:
        raise ValueError(
            "center='spectral' with normalize=False needs the dominant "
            "eigenvector of the normalised graph: pass "
            "u=gcn_degree(edge_index, ...).sqrt() to forward, or use "
            "normalize=True")


def check_beta(beta: float) -> None:
    if not 0.0 <= float(beta) <= 1.0:
        raise ValueError(f"beta={beta} is outside [0, 1]; beta=0 leaves the "
                         f"aggregation as it is, beta=1 removes the whole "
                         f"dominant component")


def _shape(t: Tensor) -> str:
    # tuple(t.shape) as text, in a form TorchScript compiles.
    sizes = [str(s) for s in t.shape]
    return "(" + ", ".join(sizes) + ("," if len(sizes) == 1 else "") + ")"


def check_batch(batch: OptTensor, num_nodes: int) -> None:
    if batch is None:
        return
    if batch.dim() != 1 or batch.numel() != num_nodes:
        raise ValueError(f"batch has shape {_shape(batch)} but the "
                         f"features have {num_nodes} nodes; pass one graph "
                         f"index per node, shape [{num_nodes}]")


def infer_batch_size(batch: Tensor) -> int:
    r"""The number of graphs a batch vector refers to (a device
    synchronisation; pass ``batch_size`` to avoid it)."""
    return int(batch.max()) + 1 if batch.numel() > 0 else 0


def graph_sum(src: Tensor, batch: OptTensor = None,
              batch_size: Optional[int] = None) -> Tensor:
    r"""Sums ``src`` over the nodes (dim 0) of each graph.

    Returns shape ``[1, *]`` without ``batch`` and ``[batch_size, *]``
    with it. ``batch`` need not be sorted.
    """
    if batch is None:
        return src.sum(dim=0, keepdim=True)
    if batch_size is None:
        batch_size = infer_batch_size(batch)
    return scatter(src, batch, dim=0, dim_size=batch_size, reduce="sum")


def graph_mean(src: Tensor, batch: OptTensor = None,
               batch_size: Optional[int] = None) -> Tensor:
    r"""Means of ``src`` over the nodes (dim 0) of each graph, shaped as
    :func:`graph_sum`'s result; an empty graph has a zero row."""
    if batch is None:
        return src.mean(dim=0, keepdim=True)
    if batch_size is None:
        batch_size = infer_batch_size(batch)
    count = graph_sum(src.new_ones(src.size(0)), batch, batch_size)
    total = graph_sum(src, batch, batch_size)
    return total / _unsqueeze_like(count.clamp(min=1), total)


def per_node(per_graph: Tensor, batch: OptTensor) -> Tensor:
    r"""Broadcasts per-graph rows (as :func:`graph_sum` returns them) back
    to the nodes of each graph."""
    return per_graph if batch is None else per_graph.index_select(0, batch)


def _unsqueeze_like(vec: Tensor, ref: Tensor) -> Tensor:
    return vec.view([-1] + [1] * (ref.dim() - 1))


class _MeanCenter(torch.autograd.Function):
    r"""``h - beta * mean(h)`` over the nodes (dim 0) with the backward
    written out: the projection :math:`\mathbf{I} - \tfrac{\beta}{n}
    \mathbf{1}\mathbf{1}^\top` is symmetric, so the gradient is the same
    projection of the incoming gradient. Left to autograd, ``h`` reaches the
    backward by two paths whose gradients must be summed into a fresh
    node-sized buffer, which on CPU made a layer 1.3 to 2 times as slow as
    ``GCNConv``; this form costs a few percent on large graphs."""

    @staticmethod
    def forward(ctx, h: Tensor, beta: Union[float, Tensor]) -> Tensor:
        ctx.beta_is_tensor = isinstance(beta, Tensor)
        if ctx.beta_is_tensor:
            # h only for the gradient of a learned beta (kept as h, not its
            # mean, so that double backward sees the mean's dependence on h).
            ctx.save_for_backward(h, beta)
        else:
            ctx.beta = beta
        return h - beta * h.mean(dim=0, keepdim=True)

    @staticmethod
    def backward(ctx, grad: Tensor):
        if ctx.beta_is_tensor:
            h, beta = ctx.saved_tensors
        else:
            h, beta = None, ctx.beta
        grad_h = grad_beta = None
        if ctx.needs_input_grad[0]:
            grad_h = grad - beta * grad.mean(dim=0, keepdim=True)
        if ctx.beta_is_tensor and ctx.needs_input_grad[1]:
            grad_beta = -(grad * h.mean(dim=0, keepdim=True)).sum() \
                .reshape(beta.shape)
        return grad_h, grad_beta


def center(
    h: Tensor,
    *,
    mode: str = "mean",
    beta: Union[float, Tensor] = 1.0,
    x: OptTensor = None,
    u: OptTensor = None,
    batch: OptTensor = None,
    batch_size: Optional[int] = None,
    node_dim: int = 0,
) -> Tensor:
    r"""Removes the dominant component of an aggregation's output.

    Args:
        h (torch.Tensor): Aggregated node features
            :math:`\hat{\mathbf{A}}\mathbf{X}`, nodes along dim 0, shape
            :math:`(|\mathcal{V}|, *)` (e.g. :math:`(|\mathcal{V}|, H, C)`
            for attention heads, centered per head and channel).
        mode (str): ``"mean"``, ``"uniform"`` or ``"spectral"`` (see the
            module docstring).
        beta (float or torch.Tensor): Strength of the correction in
            :math:`[0, 1]`; ``0`` returns ``h`` unchanged.
        x (torch.Tensor, optional): The aggregation's input
            :math:`\mathbf{X}`, same shape as ``h``. Required by
            ``"uniform"``; used by ``"spectral"`` when given (for a
            symmetric :math:`\hat{\mathbf{A}}`, :math:`\mathbf{u}^\top
            \hat{\mathbf{A}}\mathbf{X} = \mathbf{u}^\top\mathbf{X}`, so
            ``h`` can stand in for it).
        u (torch.Tensor, optional): Dominant eigenvector of
            :math:`\hat{\mathbf{A}}`, shape :math:`(|\mathcal{V}|)`, for
            ``"spectral"``; it need not be normalised.
        batch (torch.Tensor, optional): Graph index of each node, shape
            :math:`(|\mathcal{V}|)`; the correction is then computed per
            graph (or per connected component, given component labels).
        batch_size (int, optional): Number of graphs; inferred from
            ``batch`` when not given (costs a device synchronisation).
        node_dim (int, optional): The dimension of ``h`` (and ``x``) that
            indexes the nodes, e.g. ``-2`` for static graphs of shape
            :math:`(B, |\mathcal{V}|, F)`, each centered on its own.
            (default: ``0``)

    Returns:
        torch.Tensor of the shape of ``h``.
    """
    check_center_mode(mode, allow_none=False)
    if not isinstance(beta, Tensor):
        check_beta(beta)
    check_batch(batch, h.size(node_dim))
    return center_nodes(h, mode, beta, x, u, batch, batch_size, node_dim)


def center_nodes(h: Tensor, mode: str, beta: Union[float, Tensor],
                 x: OptTensor = None, u: OptTensor = None,
                 batch: OptTensor = None, batch_size: Optional[int] = None,
                 node_dim: int = 0) -> Tensor:
    r""":func:`center` with positional arguments and without its checks of
    ``mode``, ``beta`` and ``batch`` (the layers check them once), in a
    form TorchScript compiles."""
    if not isinstance(beta, Tensor):
        if beta == 0.0:
            return h
    if node_dim % h.dim() == 0:
        return _center_dim0(h, mode, beta, x, u, batch, batch_size)
    # Static graphs [B, N, F]: the nodes move to dim 0, each (graph,
    # channel) column is then centered on its own.
    x_first: OptTensor = None
    if x is not None:
        x_first = x.movedim(node_dim, 0)
    out = _center_dim0(h.movedim(node_dim, 0), mode, beta, x_first, u, batch,
                       batch_size)
    return out.movedim(0, node_dim)


def _times(beta: Union[float, Tensor], t: Tensor) -> Tensor:
    # beta * t for either type of beta (TorchScript needs the refinement).
    if isinstance(beta, Tensor):
        return beta * t
    return beta * t


def _over(beta: Union[float, Tensor], t: Tensor) -> Tensor:
    # beta / t for either type of beta.
    if isinstance(beta, Tensor):
        return beta / t
    return beta / t


def _center_dim0(h: Tensor, mode: str, beta: Union[float, Tensor],
                 x: OptTensor, u: OptTensor, batch: OptTensor,
                 batch_size: Optional[int]) -> Tensor:
    if batch is not None and batch_size is None:
        batch_size = infer_batch_size(batch)

    if mode == "mean" or mode == "uniform":
        src = h if mode == "mean" else x
        if src is None:
            raise ValueError("center(mode='uniform') needs the aggregation's "
                             "input x")
        # beta scales the per-graph rows before they are broadcast to the
        # nodes, so the correction costs one pass over h.
        if batch is None:
            if not torch.jit.is_scripting():  # autograd.Function: eager only
                if mode == "mean":
                    return _MeanCenter.apply(h, beta)
                return uniform_center(h, src, beta)
            return h - _times(beta, src.mean(dim=0, keepdim=True))
        if mode == "uniform" and not torch.jit.is_scripting():
            return uniform_center(h, src, beta, batch, batch_size)
        count = graph_sum(src.new_ones(src.size(0)), batch, batch_size)
        correction = graph_sum(src, batch, batch_size)
        correction = correction * _unsqueeze_like(
            _over(beta, count.clamp(min=1)), correction)
        return h - per_node(correction, batch)

    # mode == "spectral":
    if u is None:
        raise ValueError("center(mode='spectral') needs the dominant "
                         "eigenvector u (e.g. gcn_degree(...).sqrt())")
    if u.dim() != 1 or u.numel() != h.size(0):
        raise ValueError(f"u has shape {_shape(u)} but the features "
                         f"have {h.size(0)} nodes; pass one entry per node")
    if not torch.jit.is_scripting():  # hand-written backward, eager only
        return spectral_center(h, x, u, beta, batch, batch_size)
    src = h if x is None else x
    u = u.to(src.dtype)
    if batch is None and h.dim() == 2:
        # One graph: a matrix-vector product for uᵀx and a fused rank-one
        # update h - β u (uᵀx)/(uᵀu), two passes over the features.
        norm = u.dot(u)
        coeff = (u @ src) * _over(beta, torch.where(norm > 0, norm,
                                                    torch.ones_like(norm)))
        return torch.addr(h, u, coeff, alpha=-1)
    u_col = _unsqueeze_like(u, src)
    # Coefficient β (uᵀx)/(uᵀu) per graph; a graph with u = 0 has none.
    norm = graph_sum(u.square(), batch, batch_size)
    coeff = graph_sum(u_col * src, batch, batch_size)
    coeff = coeff * _unsqueeze_like(
        _over(beta, torch.where(norm > 0, norm, torch.ones_like(norm))),
        coeff)
    return h - u_col * per_node(coeff, batch)


def gcn_degree(
    edge_index: Adj,
    edge_weight: OptTensor = None,
    num_nodes: Optional[int] = None,
    improved: bool = False,
    add_self_loops: bool = True,
    flow: str = "source_to_target",
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    r"""The weighted degree :math:`\hat{d}` that PyG's ``gcn_norm`` divides
    by, with the same self-loop rules and arguments, shape
    :math:`(|\mathcal{V}|)`.

    For an undirected graph, :math:`\sqrt{\hat{d}}` is the eigenvector of
    :math:`\hat{\mathbf{D}}^{-1/2}\hat{\mathbf{A}}\hat{\mathbf{D}}^{-1/2}`
    with eigenvalue 1, its largest.
    """
    fill_value = 2. if improved else 1.

    if isinstance(edge_index, SparseTensor):
        adj_t = edge_index
        if not adj_t.has_value():
            adj_t = adj_t.fill_value(1., dtype=dtype)
        if add_self_loops:
            adj_t = torch_sparse.fill_diag(adj_t, fill_value)
        return torch_sparse.sum(adj_t, dim=1)

    if is_torch_sparse_tensor(edge_index):
        adj_t = edge_index
        if add_self_loops:
            adj_t, _ = add_self_loops_fn(adj_t, None, fill_value, num_nodes)
        index, value = to_edge_index(adj_t)
        return scatter(value, index[0], 0, dim_size=num_nodes, reduce="sum")

    num_nodes = maybe_num_nodes(edge_index, num_nodes)
    if add_self_loops:
        edge_index, edge_weight = add_remaining_self_loops(
            edge_index, edge_weight, fill_value, num_nodes)
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), dtype=dtype,
                                 device=edge_index.device)
    idx = edge_index[1] if flow == "source_to_target" else edge_index[0]
    return scatter(edge_weight, idx, dim=0, dim_size=num_nodes, reduce="sum")


def rms_scale(x: Tensor, batch: OptTensor = None,
              batch_size: Optional[int] = None, eps: float = 1e-5) -> Tensor:
    r"""Divides node features by their root-mean-square row norm, per graph:
    :math:`\mathbf{x}_i / \sqrt{\epsilon + \frac{1}{n}\sum_j
    \lVert\mathbf{x}_j\rVert^2}`.

    This is the scaling step of PairNorm without its centering, so that the
    effect of centering (done by the layer) and of rescaling can be measured
    apart. It keeps the overall feature scale from decaying like
    :math:`\lambda_2^k` once the dominant component is removed.
    """
    check_batch(batch, x.size(0))
    if batch is None:
        # One reduction and one scaling pass.
        mean_sq = torch.linalg.vector_norm(x).square() / max(x.size(0), 1)
        return x * (eps + mean_sq).rsqrt()
    sq = x.pow(2).flatten(1).sum(dim=-1)  # squared row norms
    if batch_size is None:
        batch_size = infer_batch_size(batch)
    count = graph_sum(x.new_ones(x.size(0)), batch, batch_size)
    mean_sq = graph_sum(sq, batch, batch_size) / count.clamp(min=1)
    return x * _unsqueeze_like(
        (eps + per_node(mean_sq, batch)).rsqrt(), x)
