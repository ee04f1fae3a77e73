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
gat / centered-gat PyG ``GATConv`` / ``CenteredGATConv`` (``uniform``)
================== ========================================================

Options combine and override a method's own: e.g.
``build_model("centered-spectral", ..., residual="residual")`` or
``build_model("centered", ..., rescale=False, dropout_placement="every")``
for the bare layer.
"""
import warnings
from dataclasses import asdict, dataclass, fields
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint as checkpoint_fn

from torch_geometric.nn import (
    GATConv,
    GCN2Conv,
    GCNConv,
    JumpingKnowledge,
    MeanSubtractionNorm,
    PairNorm,
)
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.nn.resolver import activation_resolver
from torch_geometric.typing import OptTensor
from torch_geometric.utils import (
    dropout_edge,
    remove_self_loops,
    to_torch_csr_tensor,
)

from gnn_center.nn.centered_gat_conv import GAT_CENTER_MODES, CenteredGATConv
from gnn_center.nn.centered_gcn_conv import CenteredGCNConv
from gnn_center.nn.functional import (
    CENTER_MODES,
    check_beta,
    gcn_degree,
    infer_batch_size,
    rms_scale,
)

MIN_LAYERS, MAX_LAYERS = 2, 128

# What each method changes in the skeleton; every other option keeps the
# value the user gives or its default below.
_CENTERED = dict(rescale=True, dropout_placement="io")
METHODS = {
    "gcn": dict(conv="gcn"),
    # Centering removes the dominant component, and with it most of the
    # feature scale: the centered GCN methods rescale after each layer and
    # keep dropout to the input and output, the setting the depth ablations
    # support (experiments/results/deep_training.md).
    "centered": dict(conv="centered", center="mean", **_CENTERED),
    "centered-uniform": dict(conv="centered", center="uniform", **_CENTERED),
    "centered-spectral": dict(conv="centered", center="spectral",
                              **_CENTERED),
    "gat": dict(conv="gat"),
    "centered-gat": dict(conv="centered-gat", center="uniform"),
    "pairnorm": dict(conv="gcn", norm="pairnorm"),
    "dropedge": dict(conv="gcn", dropedge=0.3),
    "residual": dict(conv="gcn", residual="residual"),
    "initial-residual": dict(conv="gcn", residual="initial"),
    "gcnii": dict(conv="gcnii"),
    "batchnorm": dict(conv="gcn", norm="batchnorm"),
    "meansub": dict(conv="gcn", norm="meansub"),
}

NORMS = ("none", "pairnorm", "batchnorm", "meansub")
RESIDUALS = ("none", "residual", "initial")
JK_MODES = ("last", "cat", "max")
PAIRNORM_MODES = ("PN", "PN-SI")
DROPOUT_PLACEMENTS = ("every", "io")
INITS = ("glorot", "orthogonal", "identity")


@dataclass
class ModelOptions:
    r"""Every option of :class:`DeepGNN` with its default, in one place.

    Options left at :obj:`None` take the method's value from
    :data:`METHODS`, or the neutral value (no norm, no residual, no
    DropEdge, no rescaling, dropout before every layer) when the method
    does not set them.
    """
    hidden_channels: int = 64
    dropout: float = 0.5
    #: ``"every"``: before each layer; ``"io"``: input and output only.
    dropout_placement: Optional[str] = None
    activation: str = "relu"
    #: Centering mode for the centered methods (mean, uniform, spectral).
    center: Optional[str] = None
    beta: float = 1.0
    learn_beta: bool = False
    #: Divide by the RMS row norm after each layer (PairNorm's scaling).
    rescale: Optional[bool] = None
    norm: Optional[str] = None
    pairnorm_mode: str = "PN"
    pairnorm_scale: float = 1.0
    residual: Optional[str] = None
    #: Weight of h_0 in initial residual connections and GCNII.
    alpha: float = 0.1
    #: GCNII's theta (lambda in the paper).
    theta: float = 0.5
    #: DropEdge rate.
    dropedge: Optional[float] = None
    heads: int = 1
    jk: Optional[str] = None
    #: Recompute layer activations in the backward pass to save memory.
    checkpoint: bool = False
    #: Center each connected component on its own (the graph operator has
    #: one unit eigenvalue per component). The labels come from the graph
    #: (a component never spans two graphs of a batch, so they refine the
    #: batch vector); norms and rescaling keep the batch vector.
    center_components: bool = False
    #: Initialisation of the hidden-to-hidden weight of each layer:
    #: PyG's default (glorot), orthogonal, or identity plus small noise.
    init: str = "glorot"


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {name}={value!r}; choose one of "
                         f"{', '.join(repr(c) for c in choices)}")


def resolve_options(method: str, num_layers: int,
                    **options) -> Tuple[str, ModelOptions]:
    r"""Validates a method name, depth and options, and fills the options
    the method sets. Returns the conv kind and the full options."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of "
                         f"{', '.join(METHODS)}")
    if not isinstance(num_layers, int) or not (MIN_LAYERS <= num_layers
                                               <= MAX_LAYERS):
        raise ValueError(f"num_layers={num_layers!r} is out of range; use "
                         f"an integer from {MIN_LAYERS} to {MAX_LAYERS}")
    known = {f.name for f in fields(ModelOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"Unknown model option(s) {', '.join(unknown)}; "
                         f"valid options: {', '.join(sorted(known))}")

    preset = dict(METHODS[method])
    conv = preset.pop("conv")
    opts = ModelOptions(**options)
    for key, value in preset.items():
        if getattr(opts, key) is None:
            setattr(opts, key, value)
    opts.norm = opts.norm or "none"
    opts.residual = opts.residual or "none"
    opts.dropedge = 0.0 if opts.dropedge is None else opts.dropedge
    opts.rescale = bool(opts.rescale)
    opts.dropout_placement = opts.dropout_placement or "every"

    if conv in ("centered", "centered-gat"):
        allowed = CENTER_MODES if conv == "centered" else GAT_CENTER_MODES
        _choice("center", opts.center, allowed)
    elif opts.center is not None:
        raise ValueError(f"center={opts.center!r} only applies to the "
                         f"centered methods, not to method {method!r}")
    check_beta(opts.beta)
    _choice("norm", opts.norm, NORMS)
    _choice("residual", opts.residual, RESIDUALS)
    _choice("pairnorm_mode", opts.pairnorm_mode, PAIRNORM_MODES)
    _choice("dropout_placement", opts.dropout_placement, DROPOUT_PLACEMENTS)
    _choice("init", opts.init, INITS)
    if opts.center_components and conv not in ("centered", "centered-gat"):
        raise ValueError(f"center_components only applies to the centered "
                         f"methods, not to method {method!r}")
    if opts.checkpoint and opts.norm == "batchnorm":
        # Recomputing a BatchNorm layer in the backward pass would update
        # its running statistics twice per step.
        raise ValueError("checkpoint=True cannot be combined with "
                         "norm='batchnorm'; use checkpoint=False")
    if opts.jk is not None:
        _choice("jk", opts.jk, JK_MODES)
    if not 0.0 <= opts.dropout < 1.0:
        raise ValueError(f"dropout={opts.dropout} is outside [0, 1)")
    if not 0.0 <= opts.dropedge < 1.0:
        raise ValueError(f"dropedge={opts.dropedge} is outside [0, 1)")
    if not 0.0 <= opts.alpha <= 1.0:
        raise ValueError(f"alpha={opts.alpha} is outside [0, 1]")
    if opts.hidden_channels < 1:
        raise ValueError(f"hidden_channels={opts.hidden_channels} must be "
                         f"positive")
    if conv in ("gat", "centered-gat") and (
            opts.heads < 1 or opts.hidden_channels % opts.heads != 0):
        raise ValueError(f"hidden_channels={opts.hidden_channels} must be a "
                         f"multiple of heads={opts.heads}")
    if conv == "gcnii" and opts.residual != "none":
        raise ValueError("gcnii has its own initial residual connection; "
                         "leave residual unset")
    activation_resolver(opts.activation)  # raises on an unknown name
    return conv, opts


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
        self.conv_kind, self.options = resolve_options(method, num_layers,
                                                       **options)
        self.method = method
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_layers = num_layers
        opts = self.options
        hidden = opts.hidden_channels

        self.lin_in = torch.nn.Linear(in_channels, hidden)
        self.act = activation_resolver(opts.activation)
        self.convs = torch.nn.ModuleList(
            self._make_conv(layer) for layer in range(1, num_layers + 1))
        self.norms = torch.nn.ModuleList(
            self._make_norm() for _ in range(num_layers))
        self.jk = None
        jk_channels = hidden
        if opts.jk in ("cat", "max"):  # "last" is the plain skeleton
            self.jk = JumpingKnowledge(opts.jk)
            if opts.jk == "cat":
                jk_channels = hidden * num_layers
        self.lin_out = torch.nn.Linear(jk_channels, out_channels)
        self._components = None
        self.reset_parameters()

    def _make_conv(self, layer: int) -> torch.nn.Module:
        opts, hidden = self.options, self.options.hidden_channels
        # GCN-type layers receive the graph normalised once by the model.
        if self.conv_kind == "gcn":
            return GCNConv(hidden, hidden, normalize=False)
        if self.conv_kind == "centered":
            return CenteredGCNConv(hidden, hidden, normalize=False,
                                   center=opts.center, beta=opts.beta,
                                   learn_beta=opts.learn_beta)
        if self.conv_kind == "gcnii":
            return GCN2Conv(hidden, alpha=opts.alpha, theta=opts.theta,
                            layer=layer, shared_weights=True,
                            normalize=False)
        per_head = hidden // opts.heads
        if self.conv_kind == "gat":
            return GATConv(hidden, per_head, heads=opts.heads)
        return CenteredGATConv(hidden, per_head, heads=opts.heads,
                               center=opts.center, beta=opts.beta,
                               learn_beta=opts.learn_beta)

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

    @staticmethod
    def _hidden_weight(conv: torch.nn.Module) -> Tensor:
        # GCN2Conv keeps its square weight as weight1; the others in lin.
        return conv.weight1 if isinstance(conv, GCN2Conv) else \
            conv.lin.weight

    def _init_weight(self, weight: Tensor) -> None:
        if self.options.init == "orthogonal":
            torch.nn.init.orthogonal_(weight)
        else:  # identity plus noise of 10% of the glorot scale
            noise = torch.randn_like(weight) * (0.1 / weight.size(0)**0.5)
            weight.copy_(torch.eye(*weight.shape, dtype=weight.dtype,
                                   device=weight.device) + noise)

    @property
    def normalizes_graph(self) -> bool:
        return self.conv_kind in ("gcn", "centered", "gcnii")

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
        # 1.4-1.7x faster per layer on CPU here.
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

    def _layer(self, index: int, h: Tensor, h0: Tensor, edge_index: Tensor,
               edge_weight: OptTensor, u: OptTensor, batch: OptTensor,
               batch_size: Optional[int], center_batch: OptTensor,
               center_batch_size: Optional[int]) -> Tensor:
        opts = self.options
        conv, norm = self.convs[index], self.norms[index]
        z = h
        if opts.dropout_placement == "every":
            z = F.dropout(z, p=opts.dropout, training=self.training)

        if self.conv_kind == "gcn":
            z = conv(z, edge_index, edge_weight)
        elif self.conv_kind == "centered":
            z = conv(z, edge_index, edge_weight, batch=center_batch,
                     batch_size=center_batch_size, u=u)
        elif self.conv_kind == "gcnii":
            z = conv(z, h0, edge_index, edge_weight)
        elif self.conv_kind == "gat":
            z = conv(z, edge_index)
        else:
            z = conv(z, edge_index, batch=center_batch,
                     batch_size=center_batch_size)

        if opts.norm in ("pairnorm", "meansub"):
            z = norm(z, batch, batch_size)
        else:
            z = norm(z)
        if opts.rescale:
            z = rms_scale(z, batch, batch_size)
        z = self.act(z)

        if opts.residual == "residual":
            z = h + z
        elif opts.residual == "initial":
            z = (1 - opts.alpha) * z + opts.alpha * h0
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
        edge_index, edge_weight, u = self.prepare_graph(
            x.size(0), edge_index, edge_weight, x.dtype)

        opts = self.options
        h0 = h = self.act(self._embed(x))
        hidden = [h0]
        for index in range(self.num_layers):
            args = (index, h, h0, edge_index, edge_weight, u, batch,
                    batch_size, center_batch, center_batch_size)
            if opts.checkpoint and self.training and torch.is_grad_enabled():
                h = checkpoint_fn(self._layer, *args, use_reentrant=False)
            else:
                h = self._layer(*args)
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
