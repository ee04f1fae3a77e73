from typing import Optional, Tuple, Union

from torch import Tensor

from torch_geometric.nn.conv import GATConv
from torch_geometric.typing import Adj, OptPairTensor, OptTensor, Size

from gnn_center.nn.centering import CenteringMixin
from gnn_center.nn.functional import (
    check_batch,
    check_center_mode,
    graph_mean,
    infer_batch_size,
    per_node,
)

GAT_CENTER_MODES = ("mean", "uniform")


class CenteredGATConv(CenteringMixin, GATConv):
    r"""The graph attentional operator of PyG's
    :class:`~torch_geometric.nn.conv.GATConv` with the attention-weighted
    aggregation centered per head, before heads are concatenated or averaged
    and before the residual and bias:

    .. math::
        \mathbf{x}^{\prime}_i = \big\Vert_{h=1}^{H}
        \mathcal{C}_\beta\Big(\sum_{j \in \mathcal{N}(i) \cup \{ i \}}
        \alpha^{h}_{i,j}\mathbf{\Theta}^{h}\mathbf{x}_{j}\Big) + \mathbf{b},

    where, per graph of :math:`n` nodes, with the attention matrix
    :math:`\mathbf{S}^h` (row-stochastic) and
    :math:`\mathbf{Z}^h = \mathbf{X}\mathbf{\Theta}^h`,

    * ``center="mean"``: :math:`(\mathbf{I} - \tfrac{\beta}{n}\mathbf{1}
      \mathbf{1}^\top)\mathbf{S}^h\mathbf{Z}^h`;
    * ``center="uniform"``: :math:`(\mathbf{S}^h - \tfrac{\beta}{n}
      \mathbf{1}\mathbf{1}^\top)\mathbf{Z}^h`, i.e.
      :math:`\mathrm{softmax}(\cdot) - 1/n` over the attended set, the
      form of "Centered Self-Attention Layers" (Ali, Galanti, Wolf, 2023).
      Where :math:`\mathbf{S}^h\mathbf{1} = \mathbf{1}`, this equals
      :math:`\mathbf{S}^h(\mathbf{I} - \tfrac{1}{n}\mathbf{1}\mathbf{1}^\top)
      \mathbf{Z}^h` and removes the eigenvalue-1 mode exactly (rows stop
      summing to one under attention dropout in training, or for nodes
      without incoming edges when ``add_self_loops=False``);
    * ``center=None``: exactly :class:`~torch_geometric.nn.conv.GATConv`.

    ``"spectral"`` is not offered: the dominant right eigenvector of a
    row-stochastic matrix is the constant vector, which ``"uniform"``
    already deflates.

    Args:
        in_channels, out_channels, heads, concat, negative_slope, dropout,
            add_self_loops, edge_dim, fill_value, bias, residual: The
            arguments of :class:`~torch_geometric.nn.conv.GATConv`, in its
            order and with its defaults (``out_channels`` per head).
        center (str, optional): ``"mean"``, ``"uniform"`` or :obj:`None`;
            keyword-only. (default: ``"mean"``)
        beta (float, optional): Strength of the correction in
            :math:`[0, 1]`, or its initial value when learned; keyword-only.
            (default: :obj:`1.0`)
        learn_beta (bool, optional): If :obj:`True`, :math:`\beta` is a
            learned parameter, clamped into :math:`[0, 1]` where it is used
            (see :class:`~gnn_center.nn.centering.CenteringMixin`);
            keyword-only. (default: :obj:`False`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    The forward call takes :class:`~torch_geometric.nn.conv.GATConv`'s
    arguments plus ``batch`` (graph index of each destination node) and
    ``batch_size``. The correction is computed from GATConv's output: it is
    constant over the nodes of a graph, so it commutes with concatenating or
    averaging the heads, and the residual and bias are taken out of the
    per-graph mean it subtracts.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V_s}|, F_{s}), (|\mathcal{V_t}|, F_{t}))`
          if bipartite,
          edge indices :math:`(2, |\mathcal{E}|)`,
          edge features :math:`(|\mathcal{E}|, D)` *(optional)*,
          batch vector :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, H * F_{out})` or
          :math:`(|\mathcal{V}_t|, H * F_{out})` if bipartite.
          If :obj:`return_attention_weights=True`, then
          :math:`((|\mathcal{V}|, H * F_{out}),
          ((2, |\mathcal{E}|), (|\mathcal{E}|, H)))`
    """
    def __init__(
        self,
        in_channels: Union[int, Tuple[int, int]],
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        add_self_loops: bool = True,
        edge_dim: Optional[int] = None,
        fill_value: Union[float, Tensor, str] = "mean",
        bias: bool = True,
        residual: bool = False,
        *,
        center: Optional[str] = "mean",
        beta: float = 1.0,
        learn_beta: bool = False,
        **kwargs,
    ):
        if center == "spectral":
            raise ValueError(
                "center='spectral' is not defined for attention: the "
                "dominant eigenvector of a row-stochastic attention matrix "
                "is constant, which center='uniform' removes exactly")
        check_center_mode(center, GAT_CENTER_MODES)
        super().__init__(in_channels, out_channels, heads, concat,
                         negative_slope, dropout, add_self_loops, edge_dim,
                         fill_value, bias, residual, **kwargs)
        self._init_centering(center, beta, learn_beta)

    def reset_parameters(self):
        super().reset_parameters()
        self._reset_beta()

    def forward(  # noqa: D102
        self,
        x: Union[Tensor, OptPairTensor],
        edge_index: Adj,
        edge_attr: OptTensor = None,
        size: Size = None,
        return_attention_weights: Optional[bool] = None,
        batch: OptTensor = None,
        batch_size: Optional[int] = None,
    ):
        x_src, x_dst = (x, x) if isinstance(x, Tensor) else x
        if batch is not None:
            if not isinstance(x, Tensor) and self.center == "uniform":
                raise ValueError(
                    "batch with bipartite input and center='uniform' is "
                    "ambiguous (the input mean is over source nodes); "
                    "pass a single feature tensor or use center='mean'")
            if x_dst is not None:
                num_dst = x_dst.size(0)
            elif size is not None:
                num_dst = size[1]
            else:
                num_dst = x_src.size(0)
            check_batch(batch, num_dst)
        result = super().forward(x, edge_index, edge_attr, size,
                                 return_attention_weights)
        if self.center is None or (isinstance(self.beta, float)
                                   and self.beta == 0.0):
            return result
        if isinstance(result, tuple):
            out = result[0] - self._correction(result[0], x_src, x_dst,
                                               batch, batch_size)
            return out, result[1]
        return result - self._correction(result, x_src, x_dst, batch,
                                         batch_size)

    def _correction(self, out: Tensor, x_src: Tensor, x_dst: OptTensor,
                    batch: OptTensor, batch_size: Optional[int]) -> Tensor:
        # The per-head correction, computed on GATConv's output: it is
        # constant over the nodes of a graph and linear, so it commutes
        # with concatenating or averaging the heads; the residual and bias
        # that GATConv adds after the aggregation are taken out of the
        # per-graph mean. Nothing of the call is kept on the layer.
        if batch is not None and batch_size is None:
            batch_size = infer_batch_size(batch)
        if self.center == "mean":
            rows = graph_mean(out, batch, batch_size)
            if self.bias is not None:
                rows = rows - self.bias
            if self.res is not None and x_dst is not None:
                rows = rows - self.res(graph_mean(x_dst, batch, batch_size))
        else:  # "uniform": the mean of Z = X Θ is Θ applied to mean(X).
            lin = self.lin if self.lin is not None else self.lin_src
            z_mean = lin(graph_mean(x_src, batch, batch_size))
            z_mean = z_mean.view(-1, self.heads, self.out_channels)
            rows = z_mean.flatten(1) if self.concat else z_mean.mean(dim=1)
        beta = self.effective_beta()
        return per_node(beta * rows, batch)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, "
                f"{self.out_channels}, heads={self.heads}, "
                f"{self._centering_repr()})")
