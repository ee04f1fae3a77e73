r"""The message-passing layers a :class:`~gnn_center.nn.models.DeepGNN` can
stack, one :class:`ConvKind` each: how to build the layer, how to call it
with what every layer of a forward pass shares (:class:`LayerContext`),
and the facts the model and the option checks need about it."""
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, Optional, Tuple

from torch import Tensor
from torch.nn import Module

from torch_geometric.nn import GATConv
from torch_geometric.typing import Adj, OptTensor

from gnn_center.nn.centered_gat_conv import GAT_CENTER_MODES, CenteredGATConv
from gnn_center.nn.centered_gcn2_conv import CenteredGCN2Conv
from gnn_center.nn.centered_gcn_conv import CenteredGCNConv
from gnn_center.nn.functional import CENTER_MODES
from gnn_center.nn.sparse_aggregation import (
    SparseMatmulGCN2Conv,
    SparseMatmulGCNConv,
)

if TYPE_CHECKING:  # the options module imports this one
    from gnn_center.nn.model_options import ModelOptions


@dataclass(frozen=True)
class LayerContext:
    r"""What every layer of one forward pass shares.

    ``graph`` is the normalised adjacency (sparse CSR) for the kinds that
    normalise the graph, and the (kept) ``edge_index`` for attention, with
    ``edge_weight`` beside it; ``u`` the dominant eigenvector for spectral
    centering. Norms and rescaling work per graph of ``batch``; the
    centering per group of ``center_batch`` (the graphs, or their connected
    components)."""
    graph: Adj
    edge_weight: OptTensor
    u: OptTensor
    h0: Tensor
    batch: OptTensor = None
    batch_size: Optional[int] = None
    center_batch: OptTensor = None
    center_batch_size: Optional[int] = None


@dataclass(frozen=True)
class ConvKind:
    r"""One kind of message-passing layer.

    Args:
        build: ``(options, layer) -> module``, ``layer`` counted from 1.
        call: ``(conv, h, context) -> h'``.
        hidden_weight: the layer's square hidden-to-hidden weight, which the
            ``init`` option initialises.
        normalizes_graph: GCN-type layers get the graph normalised once by
            the model; attention layers get the raw ``edge_index``.
        center_modes: the centering modes the layer offers; empty for a
            layer without centering.
        initial_residual: the layer mixes in :math:`h_0` itself (GCNII).
    """
    build: Callable[["ModelOptions", int], Module]
    call: Callable[[Module, Tensor, LayerContext], Tensor]
    hidden_weight: Callable[[Module], Tensor]
    normalizes_graph: bool = True
    center_modes: Tuple[str, ...] = ()
    initial_residual: bool = False

    @property
    def centered(self) -> bool:
        return bool(self.center_modes)

    @property
    def attention(self) -> bool:
        return not self.normalizes_graph


def _centering(opts: "ModelOptions") -> dict:
    return dict(center=opts.center, beta=opts.beta,
                learn_beta=opts.learn_beta)


def _gcnii_args(opts: "ModelOptions", layer: int) -> dict:
    return dict(alpha=opts.alpha, theta=opts.theta, layer=layer,
                shared_weights=True, normalize=False)


def _per_head(opts: "ModelOptions") -> tuple:
    return opts.hidden_channels, opts.hidden_channels // opts.heads


def _lin_weight(conv: Module) -> Tensor:
    return conv.lin.weight


def _weight1(conv: Module) -> Tensor:
    return conv.weight1  # GCN2Conv's square weight


CONV_KINDS: Dict[str, ConvKind] = {
    "gcn": ConvKind(
        build=lambda o, _: SparseMatmulGCNConv(
            o.hidden_channels, o.hidden_channels, normalize=False),
        call=lambda conv, h, c: conv(h, c.graph, c.edge_weight),
        hidden_weight=_lin_weight),
    "centered": ConvKind(
        build=lambda o, _: CenteredGCNConv(
            o.hidden_channels, o.hidden_channels, normalize=False,
            **_centering(o)),
        call=lambda conv, h, c: conv(
            h, c.graph, c.edge_weight, batch=c.center_batch,
            batch_size=c.center_batch_size, u=c.u),
        hidden_weight=_lin_weight, center_modes=CENTER_MODES),
    "gcnii": ConvKind(
        build=lambda o, layer: SparseMatmulGCN2Conv(
            o.hidden_channels, **_gcnii_args(o, layer)),
        call=lambda conv, h, c: conv(h, c.h0, c.graph, c.edge_weight),
        hidden_weight=_weight1, initial_residual=True),
    "centered-gcnii": ConvKind(
        build=lambda o, layer: CenteredGCN2Conv(
            o.hidden_channels, **_gcnii_args(o, layer), **_centering(o),
            learn_alpha=o.learn_alpha),
        call=lambda conv, h, c: conv(
            h, c.h0, c.graph, c.edge_weight, batch=c.center_batch,
            batch_size=c.center_batch_size, u=c.u),
        hidden_weight=_weight1, center_modes=CENTER_MODES,
        initial_residual=True),
    "gat": ConvKind(
        build=lambda o, _: GATConv(*_per_head(o), heads=o.heads),
        call=lambda conv, h, c: conv(h, c.graph),
        hidden_weight=_lin_weight, normalizes_graph=False),
    "centered-gat": ConvKind(
        build=lambda o, _: CenteredGATConv(
            *_per_head(o), heads=o.heads, **_centering(o)),
        call=lambda conv, h, c: conv(h, c.graph, batch=c.center_batch,
                                     batch_size=c.center_batch_size),
        hidden_weight=_lin_weight, normalizes_graph=False,
        center_modes=GAT_CENTER_MODES),
}
