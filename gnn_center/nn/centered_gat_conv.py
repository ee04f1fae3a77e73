from typing import Optional, Tuple, Union

from torch import Tensor

from torch_geometric.nn.conv import GATConv
from torch_geometric.typing import Adj, OptPairTensor, OptTensor, Size

from gnn_center.nn.centering import CenteringMixin
from gnn_center.nn.functional import (
    center,
    check_batch,
    check_center_mode,
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
        in_channels (int or tuple): Size of each input sample, as in
            :class:`~torch_geometric.nn.conv.GATConv`.
        out_channels (int): Size of each output sample (per head).
        heads (int, optional): Number of attention heads. (default: :obj:`1`)
        center (str, optional): ``"mean"``, ``"uniform"`` or :obj:`None`.
            (default: ``"mean"``)
        beta (float, optional): Strength of the correction in
            :math:`[0, 1]`, or its initial value when learned.
            (default: :obj:`1.0`)
        learn_beta (bool, optional): If :obj:`True`, :math:`\beta` is a
            learned parameter, projected back into :math:`[0, 1]` before
            each use. (default: :obj:`False`)
        **kwargs (optional): The other arguments of
            :class:`~torch_geometric.nn.conv.GATConv` (``concat``,
            ``negative_slope``, ``dropout``, ``add_self_loops``,
            ``edge_dim``, ``fill_value``, ``bias``, ``residual``, ...).

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
        super().__init__(in_channels, out_channels, heads=heads, **kwargs)
        self._init_centering(center, beta, learn_beta)
        # Set for the duration of one forward call only, so that `update`
        # sees the graph membership GATConv's forward does not pass on:
        self._batch: OptTensor = None
        self._batch_size: Optional[int] = None

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
        if batch is not None:
            if isinstance(x, (tuple, list)):
                if self.center == "uniform":
                    raise ValueError(
                        "batch with bipartite input and center='uniform' is "
                        "ambiguous (the input mean is over source nodes); "
                        "pass a single feature tensor or use center='mean'")
                num_dst = x[1].size(0) if x[1] is not None else x[0].size(0)
            else:
                num_dst = x.size(0)
            check_batch(batch, num_dst)
        self._batch, self._batch_size = batch, batch_size
        try:
            return super().forward(x, edge_index, edge_attr, size,
                                   return_attention_weights)
        finally:
            self._batch, self._batch_size = None, None

    def update(self, inputs: Tensor, x: OptPairTensor) -> Tensor:
        # `inputs` is the aggregation S Z, shape [N_dst, H, C]; `x` is the
        # pair (Z_src, Z_dst) it was computed from.
        if self.center is None:
            return inputs
        return center(inputs, mode=self.center, beta=self.effective_beta(),
                      x=x[0], batch=self._batch, batch_size=self._batch_size)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, "
                f"{self.out_channels}, heads={self.heads}, "
                f"{self._centering_repr()})")
