r"""Deep node-classification GNNs: one skeleton, every method of the
comparison a change of one part of it.

The skeleton, for ``num_layers`` message-passing layers:

.. code-block:: text

    x -> dropout -> Linear(in, hidden) -> act                  =: h_0
    for l in 1..num_layers:
        z = conv_l(dropout(h_{l-1}), graph)   # centered conv: correction
                                              # before its bias
        z = norm(z)                           # pairnorm/batchnorm/meansub
        z = rms_scale(z)                      # if rescale
        z = act(z)
        z = C(z)                              # if center_after_activation
        h_l = z | h_{l-1} + z | (1 - alpha) z + alpha h_0   # residual
    out = Linear(hidden, out)(dropout(JK(h_1..h_L) or h_L))

With ``dropout_placement="io"`` only the input and output dropouts remain.
The graph is normalised once per forward pass, shared by all layers (and
resampled first by DropEdge in training).

Where each correction sits, so that comparisons are exact:

================== ========================================================
method             operation in each layer
================== ========================================================
gcn                :math:`\hat{A} h W + b`, PyG ``GCNConv``
centered           :math:`(I - \tfrac{1}{n}11^\top)\hat{A} h W + b`, then
                   ``rms_scale``; dropout at input and output only
centered-uniform   :math:`(\hat{A} - \tfrac{1}{n}11^\top) h W + b`, same
centered-spectral  :math:`(\hat{A} - uu^\top/u^\top u) h W + b`,
                   :math:`u = \sqrt{\hat{d}}`, same
pairnorm           PyG ``PairNorm`` on :math:`\hat{A} h W + b` (centering
                   *after* the bias, then scaling), before the activation
meansub            PyG ``MeanSubtractionNorm`` on :math:`\hat{A} h W + b`
                   (after the bias; the bias cancels), before the activation
batchnorm          ``BatchNorm1d`` on :math:`\hat{A} h W + b`
dropedge           ``dropout_edge`` (undirected) resampled every training
                   forward pass, normalisation recomputed on the kept edges
residual           :math:`h + \sigma(\hat{A} h W + b)`
initial-residual   :math:`(1-\alpha)\sigma(\hat{A} h W + b) + \alpha h_0`
gcnii              PyG ``GCN2Conv`` (initial residual and identity mapping,
                   :math:`\beta_l = \log(\theta / l + 1)`)
centered-gcnii     ``CenteredGCN2Conv`` (``mean``): :math:`((1-\alpha)(I -
                   \tfrac{1}{n}11^\top)\hat{A} h + \alpha h_0)((1-\beta_l)I
                   + \beta_l W)`, GCNII's skeleton otherwise
gat / centered-gat PyG ``GATConv`` / ``CenteredGATConv`` (``uniform``)
================== ========================================================

Options combine and override a method's own: e.g.
``build_model("centered-spectral", ..., residual="residual")`` or
``build_model("centered", ..., rescale=False, dropout_placement="every")``
for the bare layer. The GCN-type layers (PyG's and the centered ones)
aggregate through :func:`~gnn_center.nn.sparse_aggregation.sparse_matmul`, the
same values and gradients as ``torch.sparse.mm`` with one transpose per
forward pass instead of one per layer. The methods and options live in
:mod:`gnn_center.nn.model_options`, the kinds of layer (how each is built
and called) in :mod:`gnn_center.nn.conv_kinds`.
"""
import warnings
from dataclasses import asdict
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint as checkpoint_fn

from torch_geometric.nn import JumpingKnowledge, MeanSubtractionNorm, PairNorm
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.nn.resolver import activation_resolver
from torch_geometric.typing import OptTensor
from torch_geometric.utils import (
    dropout_edge,
    remove_self_loops,
    to_torch_csr_tensor,
)

from gnn_center.nn.conv_kinds import CONV_KINDS, ConvKind, LayerContext
from gnn_center.nn.functional import (
    center,
    gcn_degree,
    infer_batch_size,
    rms_scale,
)
from gnn_center.nn.model_options import (  # noqa: F401 (re-exported)
    METHODS,
    ModelOptions,
    resolve_options,
)


class DeepGNN(torch.nn.Module):
    r"""A deep node-classification GNN of ``num_layers`` message-passing
    layers (2 to 128) between an input and an output linear layer; see the
    module docstring for the skeleton and :data:`METHODS` for the methods.

    Args:
        in_channels (int): Number of input features.
        out_channels (int): Number of classes.
        num_layers (int): Number of message-passing layers, 2 to 128.
        method (str): One of :data:`METHODS`. (default: ``"gcn"``)
        **options: Fields of :class:`ModelOptions`.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})`, dense
          or sparse CSR (faster for sparse bag-of-words features), edge
          indices :math:`(2, |\mathcal{E}|)` of an undirected graph without
          normalisation, edge weights :math:`(|\mathcal{E}|)` *(optional)*,
          batch vector :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** logits :math:`(|\mathcal{V}|, F_{out})`, and with
          ``return_hidden=True`` also the list of the ``num_layers + 1``
          hidden states :math:`(|\mathcal{V}|, \text{hidden})`: the input
          embedding :math:`h_0` and the output of every layer.
    """
    #: The trainer may pass node features as a sparse CSR tensor.
    supports_sparse_features = True

    def __init__(self, in_channels: int, out_channels: int, num_layers: int,
                 method: str = "gcn", **options):
        super().__init__()
        _, self.options = resolve_options(method, num_layers, **options)
        self.method = method
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_layers = num_layers
        opts = self.options
        hidden = opts.hidden_channels

        self.lin_in = torch.nn.Linear(in_channels, hidden)
        self.act = activation_resolver(opts.activation)
        self.convs = torch.nn.ModuleList(
            self.kind.build(opts, layer) for layer in range(1, num_layers + 1))
        self.norms = torch.nn.ModuleList(
            self._make_norm() for _ in range(num_layers))
        self.jk = None
        jk_channels = hidden
        if opts.jk != "last":  # "last" is the plain skeleton
            self.jk = JumpingKnowledge(opts.jk)
            if opts.jk == "cat":
                jk_channels = hidden * num_layers
        self.lin_out = torch.nn.Linear(jk_channels, out_channels)
        self._components = None
        self.reset_parameters()

    def _make_norm(self) -> torch.nn.Module:
        opts = self.options
        if opts.norm == "pairnorm":
            return PairNorm(scale=opts.pairnorm_scale,
                            scale_individually=opts.pairnorm_mode == "PN-SI")
        if opts.norm == "batchnorm":
            return torch.nn.BatchNorm1d(opts.hidden_channels)
        if opts.norm == "meansub":
            return MeanSubtractionNorm()
        return torch.nn.Identity()

    def reset_parameters(self):
        self.lin_in.reset_parameters()
        for module in list(self.convs) + list(self.norms):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        if self.jk is not None:
            self.jk.reset_parameters()
        self.lin_out.reset_parameters()
        if self.options.init != "glorot":
            with torch.no_grad():
                for conv in self.convs:
                    self._init_weight(self._hidden_weight(conv))

    def _hidden_weight(self, conv: torch.nn.Module) -> Tensor:
        return self.kind.hidden_weight(conv)

    def _init_weight(self, weight: Tensor) -> None:
        if self.options.init == "orthogonal":
            torch.nn.init.orthogonal_(weight)
        else:  # identity plus noise of 10% of the glorot scale
            noise = torch.randn_like(weight) * (0.1 / weight.size(0)**0.5)
            weight.copy_(torch.eye(*weight.shape, dtype=weight.dtype,
                                   device=weight.device) + noise)

    @property
    def conv_kind(self) -> str:
        r"""The name of the method's kind of layer in
        :data:`~gnn_center.nn.conv_kinds.CONV_KINDS`."""
        return METHODS[self.method]["conv"]

    @property
    def kind(self) -> ConvKind:
        # Looked up, not stored: the table's functions do not pickle.
        return CONV_KINDS[self.conv_kind]

    @property
    def normalizes_graph(self) -> bool:
        return self.kind.normalizes_graph

    def drop_edges(self, edge_index: Tensor, edge_weight: OptTensor = None
                   ) -> Tuple[Tensor, OptTensor]:
        r"""DropEdge: keeps each undirected edge with probability
        ``1 - dropedge`` (both directions together) and its weight with
        it."""
        # dropout_edge(force_undirected=True) would double self-loops.
        edge_index, edge_weight = remove_self_loops(edge_index, edge_weight)
        edge_index, kept = dropout_edge(edge_index, p=self.options.dropedge,
                                        force_undirected=True)
        if edge_weight is not None:
            edge_weight = edge_weight[kept]
        return edge_index, edge_weight

    def prepare_graph(self, num_nodes: int, edge_index: Tensor,
                      edge_weight: OptTensor = None, dtype=None):
        r"""The graph all layers share in one forward pass: DropEdge (in
        training), then the GCN normalisation and, for spectral centering,
        the dominant eigenvector :math:`\sqrt{\hat{d}}`. Returns
        ``(graph, edge_weight, u)``: for GCN-type layers the graph is the
        normalised adjacency as a sparse CSR matrix (and ``edge_weight`` is
        None); for attention the (kept) ``edge_index``."""
        if self.options.dropedge > 0 and self.training:
            edge_index, edge_weight = self.drop_edges(edge_index, edge_weight)
        if not self.normalizes_graph:
            return edge_index, edge_weight, None
        u = None
        if self.options.center == "spectral":
            u = gcn_degree(edge_index, edge_weight, num_nodes,
                           dtype=dtype).sqrt()
        edge_index, edge_weight = gcn_norm(edge_index, edge_weight, num_nodes,
                                           dtype=dtype)
        # As a sparse CSR adjacency (rows = targets), the layers aggregate
        # with one sparse-dense product instead of gather and scatter:
        # 1.4-1.7x faster per layer on CPU here. One tensor for all layers,
        # so that sparse_matmul builds its transpose once per pass.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "beta" notice
            adj_t = to_torch_csr_tensor(edge_index.flip(0), edge_weight,
                                        size=(num_nodes, num_nodes))
        return adj_t, None, u

    def component_labels(self, num_nodes: int,
                         edge_index: Tensor) -> Tuple[Tensor, int]:
        r"""Connected-component label of each node and the number of
        components, cached for the graph last seen (the same tensor,
        unmodified)."""
        cache = self._components
        if (cache is None or cache[0] is not edge_index
                or cache[1] != (edge_index._version, num_nodes)):
            import numpy as np
            import scipy.sparse
            from scipy.sparse.csgraph import connected_components
            index = edge_index.cpu().numpy()
            adj = scipy.sparse.coo_matrix(
                (np.ones(index.shape[1]), (index[0], index[1])),
                shape=(num_nodes, num_nodes))
            count, labels = connected_components(adj, directed=False)
            labels = torch.from_numpy(labels).long().to(edge_index.device)
            self._components = (edge_index, (edge_index._version, num_nodes),
                                labels, int(count))
        return self._components[2], self._components[3]

    def _layer(self, index: int, h: Tensor, context: LayerContext) -> Tensor:
        opts = self.options
        z = h
        if opts.dropout_placement == "every":
            z = F.dropout(z, p=opts.dropout, training=self.training)
        z = self.kind.call(self.convs[index], z, context)
        norm = self.norms[index]
        if opts.norm in ("pairnorm", "meansub"):
            z = norm(z, context.batch, context.batch_size)
        else:
            z = norm(z)
        if opts.rescale:
            z = rms_scale(z, context.batch, context.batch_size)
        z = self.act(z)
        if opts.center_after_activation:
            z = center(z, mode="spectral" if opts.center == "spectral" else
                       "mean", beta=opts.beta, u=context.u,
                       batch=context.center_batch,
                       batch_size=context.center_batch_size)

        if opts.residual == "residual":
            z = h + z
        elif opts.residual == "initial":
            z = (1 - opts.alpha) * z + opts.alpha * context.h0
        return z

    def _embed(self, x: Tensor) -> Tensor:
        p = self.options.dropout
        if x.layout != torch.sparse_csr:
            return self.lin_in(F.dropout(x, p=p, training=self.training))
        # Bag-of-words features are ~1% non-zero: dropping out only the
        # stored values (dropout leaves zeros zero) and a sparse product
        # are an order of magnitude faster than the dense path.
        values = F.dropout(x.values(), p=p, training=self.training)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "beta" notice
            x = torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(),
                                        values, x.shape,
                                        check_invariants=False)
        return torch.sparse.mm(x, self.lin_in.weight.t()) + self.lin_in.bias

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_weight: OptTensor = None,
        batch: OptTensor = None,
        batch_size: Optional[int] = None,
        return_hidden: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, List[Tensor]]]:
        if edge_weight is not None and not self.normalizes_graph:
            raise ValueError(f"method {self.method!r} (attention) does not "
                             f"use edge weights; pass edge_weight=None")
        if batch is not None and batch_size is None:
            batch_size = infer_batch_size(batch)
        # Graphs (or components) the centering treats apart; norms and
        # rescaling always work per graph of the batch.
        center_batch, center_batch_size = batch, batch_size
        if self.options.center_components:
            center_batch, center_batch_size = self.component_labels(
                x.size(0), edge_index)
        graph, edge_weight, u = self.prepare_graph(
            x.size(0), edge_index, edge_weight, x.dtype)

        opts = self.options
        h0 = h = self.act(self._embed(x))
        context = LayerContext(graph, edge_weight, u, h0, batch, batch_size,
                               center_batch, center_batch_size)
        hidden = [h0]
        for index in range(self.num_layers):
            if opts.checkpoint and self.training and torch.is_grad_enabled():
                h = checkpoint_fn(self._layer, index, h, context,
                                  use_reentrant=False)
            else:
                h = self._layer(index, h, context)
            hidden.append(h)

        if self.jk is not None:
            h = self.jk(hidden[1:])
        h = F.dropout(h, p=opts.dropout, training=self.training)
        out = self.lin_out(h)
        return (out, hidden) if return_hidden else out

    def extra_repr(self) -> str:
        changed = {
            k: v
            for k, v in asdict(self.options).items()
            if v != getattr(ModelOptions, k, None)
        }
        return (f"method={self.method!r}, num_layers={self.num_layers}, "
                f"options={changed}")


def build_model(method: str, in_channels: int, out_channels: int,
                num_layers: int, **options) -> DeepGNN:
    r"""Builds a :class:`DeepGNN`; see there and :class:`ModelOptions`."""
    return DeepGNN(in_channels, out_channels, num_layers, method=method,
                   **options)
