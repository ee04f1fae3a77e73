from typing import Optional

import math

import torch
from torch import Tensor
from torch.nn import Parameter

from torch_geometric.nn.conv import GCN2Conv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.typing import Adj, OptTensor, SparseTensor

from gnn_center.nn.centering import CenteringMixin
from gnn_center.nn.functional import (
    center,
    check_batch,
    check_center_mode,
    check_spectral_u,
    gcn_degree,
)
from gnn_center.nn.sparse_aggregation import SparseMatmulMixin


class CenteredGCN2Conv(CenteringMixin, SparseMatmulMixin, GCN2Conv):
    r"""The GCNII operator of PyG's
    :class:`~torch_geometric.nn.conv.GCN2Conv` (initial residual and
    identity mapping) with a centering correction applied to the
    propagated term, before the initial residual is mixed in:

    .. math::
        \mathbf{X}^{\prime} = \left( (1 - \alpha)\,
        \mathcal{C}_\beta\left(\hat{\mathbf{A}}\mathbf{X}\right) +
        \alpha \mathbf{X^{(0)}}\right) \left( (1 - \gamma) \mathbf{I} +
        \gamma \mathbf{\Theta} \right),
        \qquad \hat{\mathbf{A}} = \mathbf{\hat{D}}^{-1/2}
        (\mathbf{A} + \mathbf{I}) \mathbf{\hat{D}}^{-1/2},

    with :math:`\gamma = \log(\theta / \ell + 1)` the identity-mapping
    strength of layer :math:`\ell` (GCN2Conv's own :math:`\beta`, kept here
    as :attr:`identity_beta`; :math:`\beta` is the centering strength, as in
    the other centered layers). Per graph of :math:`n` nodes,

    * ``center="mean"``: :math:`\mathcal{C}_\beta(\hat{\mathbf{A}}\mathbf{X})
      = (\mathbf{I} - \tfrac{\beta}{n}\mathbf{1}\mathbf{1}^\top)
      \hat{\mathbf{A}}\mathbf{X}`, zero column means at :math:`\beta = 1`;
    * ``center="uniform"``: :math:`(\hat{\mathbf{A}} - \tfrac{\beta}{n}
      \mathbf{1}\mathbf{1}^\top)\mathbf{X}`, the paper's form (the
      aggregation's input is :math:`\mathbf{X}`, not
      :math:`\mathbf{X}^{(0)}`);
    * ``center="spectral"``: :math:`(\hat{\mathbf{A}} - \beta\,
      \mathbf{u}\mathbf{u}^\top / \mathbf{u}^\top\mathbf{u})\mathbf{X}` with
      :math:`\mathbf{u} = \sqrt{\hat{d}}`, the dominant eigenvector of
      :math:`\hat{\mathbf{A}}` for an undirected graph;
    * ``center=None``: exactly :class:`~torch_geometric.nn.conv.GCN2Conv`.

    The initial residual :math:`\mathbf{X}^{(0)}` is left as it is: the
    correction removes the component the repeated aggregation amplifies,
    while the skip carries the input signal, dominant component included.
    See :mod:`gnn_center.nn.functional` for the maths and references.

    Args:
        channels (int): Size of each input and output sample.
        alpha (float): The strength :math:`\alpha` of the initial residual.
        theta (float, optional): :math:`\theta` of the identity mapping
            strength :math:`\gamma = \log(\theta / \ell + 1)`.
            (default: :obj:`None`)
        layer (int, optional): The layer :math:`\ell` in which this module
            is executed. (default: :obj:`None`)
        shared_weights (bool, optional): If :obj:`False`, uses different
            weight matrices for the smoothed representation and the initial
            residual ("GCNII*"). (default: :obj:`True`)
        cached (bool, optional): If :obj:`True`, caches the normalised graph
            and the eigenvector the ``"spectral"`` mode needs on first
            execution (transductive learning only). (default: :obj:`False`)
        add_self_loops (bool, optional): Whether to add self-loops.
            (default: :obj:`True`)
        normalize (bool, optional): Whether to add self-loops and compute
            the symmetric normalisation on the fly. Without it,
            ``"spectral"`` needs the eigenvector ``u`` in the forward call.
            (default: :obj:`True`)
        center (str, optional): ``"mean"``, ``"uniform"``, ``"spectral"`` or
            :obj:`None`; keyword only. (default: ``"mean"``)
        beta (float, optional): Strength of the correction in
            :math:`[0, 1]`, or its initial value when learned; keyword only.
            (default: :obj:`1.0`)
        learn_beta (bool, optional): If :obj:`True`, :math:`\beta` is a
            learned parameter (see
            :class:`~gnn_center.nn.centering.CenteringMixin`); keyword only.
            (default: :obj:`False`)
        learn_alpha (bool, optional): If :obj:`True`, :math:`\alpha` is
            learned, as :math:`\alpha = \sigma(a)` of a free parameter
            ``alpha_logit`` started at :math:`a = \operatorname{logit}
            (\alpha)`, so that it stays in :math:`(0, 1)` (``alpha`` must
            then lie strictly inside); keyword only. (default: :obj:`False`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F)`,
          initial node features :math:`(|\mathcal{V}|, F)`,
          edge indices :math:`(2, |\mathcal{E}|)`
          or sparse matrix :math:`(|\mathcal{V}|, |\mathcal{V}|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*,
          batch vector :math:`(|\mathcal{V}|)` *(optional)*,
          dominant eigenvector :math:`(|\mathcal{V}|)` *(optional; for
          a graph normalised outside the layer)*
        - **output:** node features :math:`(|\mathcal{V}|, F)`
    """
    _cached_u: Optional[Tensor]

    def __init__(
        self,
        channels: int,
        alpha: float,
        theta: Optional[float] = None,
        layer: Optional[int] = None,
        shared_weights: bool = True,
        cached: bool = False,
        add_self_loops: bool = True,
        normalize: bool = True,
        *,
        center: Optional[str] = "mean",
        beta: float = 1.0,
        learn_beta: bool = False,
        learn_alpha: bool = False,
        **kwargs,
    ):
        check_center_mode(center)
        if learn_alpha and not 0.0 < alpha < 1.0:
            raise ValueError(f"learn_alpha=True needs alpha strictly inside "
                             f"(0, 1) (its logit is the free parameter); got "
                             f"alpha={alpha}")
        super().__init__(channels, alpha, theta, layer, shared_weights,
                         cached, add_self_loops, normalize, **kwargs)
        # GCN2Conv names its identity-mapping strength beta; the centering
        # strength takes that name, as in the other centered layers.
        self.identity_beta = float(self.beta)
        self._init_centering(center, beta, learn_beta)
        self.learn_alpha = learn_alpha
        self.alpha_init = float(alpha)
        # GCN2Conv's float alpha stays for the fixed case (bit for bit).
        self.alpha_logit = Parameter(torch.tensor(
            math.log(alpha / (1 - alpha)))) if learn_alpha else None
        self._cached_u = None

    def reset_parameters(self):
        super().reset_parameters()
        self._reset_beta()
        # PyG runs reset_parameters before alpha_logit exists.
        if getattr(self, "alpha_logit", None) is not None:
            a = self.alpha_init
            with torch.no_grad():
                self.alpha_logit.fill_(math.log(a / (1 - a)))
        self._cached_u = None

    def effective_alpha(self):
        r"""The initial-residual strength :math:`\alpha` the forward pass
        uses: the fixed float, or :math:`\sigma(a)` when learned."""
        if self.alpha_logit is None:
            return self.alpha
        return torch.sigmoid(self.alpha_logit)

    def forward(self, x: Tensor, x_0: Tensor, edge_index: Adj,
                edge_weight: OptTensor = None, batch: OptTensor = None,
                batch_size: Optional[int] = None,
                u: OptTensor = None) -> Tensor:
        check_batch(batch, x.size(self.node_dim))
        spectral = self.center == "spectral"
        check_spectral_u(spectral, u is not None, self.normalize)
        if self.normalize:
            edge_index, edge_weight, graph_u = self._normalize(
                edge_index, edge_weight, x, spectral)
            if u is None:
                u = graph_u

        # propagate_type: (x: Tensor, edge_weight: OptTensor)
        h = self.propagate(edge_index, x=x, edge_weight=edge_weight)
        if self.center is not None:
            h = center(h, mode=self.center, beta=self.effective_beta(), x=x,
                       u=u, batch=batch, batch_size=batch_size)

        # GCN2Conv's mixing and identity mapping, operation for operation.
        alpha = self.effective_alpha()
        h = h * (1 - alpha)
        x_0 = alpha * x_0[:h.size(0)]
        gamma = self.identity_beta
        if self.weight2 is None:
            out = h + x_0
            return torch.addmm(out, out, self.weight1, beta=1. - gamma,
                               alpha=gamma)
        out = torch.addmm(h, h, self.weight1, beta=1. - gamma, alpha=gamma)
        return out + torch.addmm(x_0, x_0, self.weight2, beta=1. - gamma,
                                 alpha=gamma)

    def _normalize(self, edge_index: Adj, edge_weight: OptTensor, x: Tensor,
                   spectral: bool):
        r"""GCN normalisation and, for ``"spectral"``, the eigenvector
        :math:`\sqrt{\hat{d}}` from the same degrees, cached together."""
        num_nodes = x.size(self.node_dim)
        if isinstance(edge_index, SparseTensor):
            if self._cached_adj_t is not None:
                return self._cached_adj_t, edge_weight, self._cached_u
        elif self._cached_edge_index is not None:
            cached_index, cached_weight = self._cached_edge_index
            return cached_index, cached_weight, self._cached_u
        graph_u = None
        if spectral:
            graph_u = gcn_degree(edge_index, edge_weight, num_nodes, False,
                                 self.add_self_loops, self.flow,
                                 x.dtype).clamp(min=0).sqrt()
        normalized = gcn_norm(edge_index, edge_weight, num_nodes, False,
                              self.add_self_loops, self.flow, dtype=x.dtype)
        if isinstance(edge_index, SparseTensor):
            edge_index = normalized
            if self.cached:
                self._cached_adj_t = edge_index
        else:
            edge_index, edge_weight = normalized
            if self.cached:
                self._cached_edge_index = (edge_index, edge_weight)
        if self.cached:
            self._cached_u = graph_u
        return edge_index, edge_weight, graph_u

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.channels}, "
                f"alpha={'learned' if self.learn_alpha else self.alpha}, "
                f"identity_beta={self.identity_beta}, "
                f"{self._centering_repr()})")
