from typing import Optional, Tuple

from torch import Tensor

from torch_geometric.nn.conv import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.typing import (
    Adj,
    OptPairTensor,
    OptTensor,
    SparseTensor,
)

from gnn_center.nn.centering import CenteringMixin
from gnn_center.nn.functional import (
    center_nodes,
    check_batch,
    check_center_mode,
    check_spectral_u,
    gcn_degree,
)
from gnn_center.nn.sparse_aggregation import SparseMatmulMixin


class CenteredGCNConv(CenteringMixin, SparseMatmulMixin, GCNConv):
    r"""The graph convolutional operator of PyG's
    :class:`~torch_geometric.nn.conv.GCNConv` with a centering correction
    applied after the sparse aggregation and before the bias:

    .. math::
        \mathbf{X}^{\prime} = \mathcal{C}_\beta\left(\hat{\mathbf{A}}
        \mathbf{X} \mathbf{\Theta}\right) + \mathbf{b},
        \qquad \hat{\mathbf{A}} = \mathbf{\hat{D}}^{-1/2}
        (\mathbf{A} + \mathbf{I}) \mathbf{\hat{D}}^{-1/2},

    where, per graph of :math:`n` nodes and with
    :math:`\mathbf{Z} = \mathbf{X}\mathbf{\Theta}`,

    * ``center="mean"``: :math:`\mathcal{C}_\beta(\hat{\mathbf{A}}\mathbf{Z})
      = (\mathbf{I} - \tfrac{\beta}{n}\mathbf{1}\mathbf{1}^\top)
      \hat{\mathbf{A}}\mathbf{Z}`, zero column means at :math:`\beta = 1`;
    * ``center="uniform"``: :math:`(\hat{\mathbf{A}} - \tfrac{\beta}{n}
      \mathbf{1}\mathbf{1}^\top)\mathbf{Z}`, the paper's form;
    * ``center="spectral"``: :math:`(\hat{\mathbf{A}} - \beta\,
      \mathbf{u}\mathbf{u}^\top / \mathbf{u}^\top\mathbf{u})\mathbf{Z}` with
      :math:`\mathbf{u} = \sqrt{\hat{d}}`, the dominant eigenvector of
      :math:`\hat{\mathbf{A}}` for an undirected graph;
    * ``center=None``: exactly :class:`~torch_geometric.nn.conv.GCNConv`.

    See :mod:`gnn_center.nn.functional` for the maths and references.

    Args:
        in_channels (int): Size of each input sample, or :obj:`-1` to derive
            the size from the first input(s) to the forward method.
        out_channels (int): Size of each output sample.
        improved (bool, optional): If :obj:`True`, :math:`\hat{\mathbf{A}}`
            uses :math:`\mathbf{A} + 2\mathbf{I}`. (default: :obj:`False`)
        cached (bool, optional): If :obj:`True`, caches the normalised graph
            and the eigenvector the ``"spectral"`` mode needs on first
            execution (transductive learning only). (default: :obj:`False`)
        add_self_loops (bool, optional): Whether to add self-loops; defaults
            to the value of :obj:`normalize`. (default: :obj:`None`)
        normalize (bool, optional): Whether to add self-loops and compute
            the symmetric normalisation on the fly. Without it,
            ``"spectral"`` needs the eigenvector ``u`` in the forward call.
            (default: :obj:`True`)
        bias (bool, optional): Whether to learn an additive bias.
            (default: :obj:`True`)
        center (str, optional): ``"mean"``, ``"uniform"``, ``"spectral"`` or
            :obj:`None`; keyword-only, as are ``beta`` and ``learn_beta``
            (the positional arguments are GCNConv's). (default: ``"mean"``)
        beta (float, optional): Strength of the correction in
            :math:`[0, 1]`, or its initial value when learned.
            (default: :obj:`1.0`)
        learn_beta (bool, optional): If :obj:`True`, :math:`\beta` is a
            learned parameter, clamped into :math:`[0, 1]` where it is used
            (see :class:`~gnn_center.nn.centering.CenteringMixin`); no
            parameter with ``center=None``. (default: :obj:`False`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`(B, |\mathcal{V}|, F_{in})` for :math:`B` static graphs on
          one edge set (each centered on its own),
          edge indices :math:`(2, |\mathcal{E}|)`
          or sparse matrix :math:`(|\mathcal{V}|, |\mathcal{V}|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*,
          batch vector :math:`(|\mathcal{V}|)` *(optional)*,
          dominant eigenvector :math:`(|\mathcal{V}|)` *(optional; for
          a graph normalised outside the layer, e.g. by a model that
          normalises once for all its layers)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})` or
          :math:`(B, |\mathcal{V}|, F_{out})`

    The layer compiles with :func:`torch.jit.script` in every mode.
    """
    # TorchScript reads the annotations of the class itself only, so
    # GCNConv's are repeated here:
    _cached_edge_index: Optional[OptPairTensor]
    _cached_adj_t: Optional[SparseTensor]
    _cached_u: Optional[Tensor]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        improved: bool = False,
        cached: bool = False,
        add_self_loops: Optional[bool] = None,
        normalize: bool = True,
        bias: bool = True,
        *,
        center: Optional[str] = "mean",
        beta: float = 1.0,
        learn_beta: bool = False,
        **kwargs,
    ):
        check_center_mode(center)
        super().__init__(in_channels, out_channels, improved=improved,
                         cached=cached, add_self_loops=add_self_loops,
                         normalize=normalize, bias=bias, **kwargs)
        self._init_centering(center, beta, learn_beta)
        self._cached_u = None

    def reset_parameters(self):
        super().reset_parameters()
        self._reset_beta()
        self._cached_u = None

    def forward(self, x: Tensor, edge_index: Adj,
                edge_weight: OptTensor = None, batch: OptTensor = None,
                batch_size: Optional[int] = None,
                u: OptTensor = None) -> Tensor:

        if isinstance(x, (tuple, list)):
            raise ValueError(f"'{self.__class__.__name__}' received a tuple "
                             f"of node features as input while this layer "
                             f"does not support bipartite message passing")
        check_batch(batch, x.size(self.node_dim))

        mode = self.center
        spectral = False
        if mode is not None:  # (TorchScript: no `==` on an Optional[str])
            spectral = mode == "spectral"
        check_spectral_u(spectral, u is not None, self.normalize)
        graph_u: OptTensor = None
        if self.normalize:
            if isinstance(edge_index, Tensor):
                edge_index, edge_weight, graph_u = self._normalized(
                    edge_index, edge_weight, x, spectral)
            elif isinstance(edge_index, SparseTensor):
                edge_index, graph_u = self._normalized_adj_t(
                    edge_index, x, spectral)
        if u is None:
            u = graph_u

        x = self.lin(x)

        # propagate_type: (x: Tensor, edge_weight: OptTensor)
        out = self.propagate(edge_index, x=x, edge_weight=edge_weight)

        if mode is not None:
            # Over the nodes (node_dim), per graph of a batch of static
            # graphs [B, N, F] as well.
            out = center_nodes(out, mode, self.effective_beta(), x, u, batch,
                               batch_size, self.node_dim)

        if self.bias is not None:
            out = out + self.bias

        return out

    # The eigenvector comes from the same degrees as the normalisation
    # (computed after gcn_norm, which rejects unsupported layouts) and is
    # cached with it; a `u` passed to forward takes precedence.
    def _normalized(self, edge_index: Tensor, edge_weight: OptTensor,
                    x: Tensor, spectral: bool
                    ) -> Tuple[Tensor, OptTensor, OptTensor]:
        cache = self._cached_edge_index
        if cache is not None:
            return cache[0], cache[1], self._cached_u
        norm_index, norm_weight = gcn_norm(  # yapf: disable
            edge_index, edge_weight, x.size(self.node_dim),
            self.improved, self.add_self_loops, self.flow, x.dtype)
        graph_u: OptTensor = None
        if spectral:
            graph_u = self._dominant_eigenvector(edge_index, edge_weight, x)
        if self.cached:
            self._cached_edge_index = (norm_index, norm_weight)
            self._cached_u = graph_u
        return norm_index, norm_weight, graph_u

    def _normalized_adj_t(self, adj_t: SparseTensor, x: Tensor,
                          spectral: bool) -> Tuple[SparseTensor, OptTensor]:
        cache = self._cached_adj_t
        if cache is not None:
            return cache, self._cached_u
        norm_adj_t = gcn_norm(  # yapf: disable
            adj_t, None, x.size(self.node_dim),
            self.improved, self.add_self_loops, self.flow, x.dtype)
        graph_u: OptTensor = None
        if spectral:
            graph_u = self._dominant_eigenvector(adj_t, None, x)
        if self.cached:
            self._cached_adj_t = norm_adj_t
            self._cached_u = graph_u
        return norm_adj_t, graph_u

    def _dominant_eigenvector(self, edge_index: Adj, edge_weight: OptTensor,
                              x: Tensor) -> Tensor:
        deg = gcn_degree(edge_index, edge_weight, x.size(self.node_dim),
                         self.improved, self.add_self_loops, self.flow,
                         x.dtype)
        return deg.clamp(min=0).sqrt()

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, "
                f"{self.out_channels}, {self._centering_repr()})")
