r"""The methods of the comparison and the options of
:class:`~gnn_center.nn.models.DeepGNN`: :data:`METHODS`,
:class:`ModelOptions` and :func:`resolve_options`."""
from dataclasses import dataclass, fields, replace
from typing import Optional, Tuple

from torch_geometric.nn.resolver import activation_resolver

from gnn_center.nn.conv_kinds import CONV_KINDS, ConvKind
from gnn_center.nn.functional import CENTER_MODES, check_beta

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
    # GCNII's skeleton as it is (its dropout, no rescaling), the correction
    # on each layer's aggregation: the one change measured against gcnii.
    "centered-gcnii": dict(conv="centered-gcnii", center="mean"),
    # One centered configuration for homophilous and heterophilous graphs
    # alike (issue 20; experiments/results/centered-preset.md): GCNII's
    # skeleton, mean centering whose strength each layer learns from 0.5,
    # an initial-residual weight each layer learns from alpha (a GCNII
    # skeleton with a fixed alpha = 0.1 stays below 53% on Chameleon),
    # rescaling after each layer, and GCNII's Chameleon lambda (1.5), with
    # the default dropout 0.5 and weight decay 5e-4 (GCNII's Cora
    # regularisation costs ~13 points on Chameleon). Chosen on the mean
    # validation accuracy of Cora and Chameleon at 64 layers.
    "centered-gcnii-adaptive": dict(
        conv="centered-gcnii", center="mean", beta=0.5, learn_beta=True,
        learn_alpha=True, rescale=True, theta=1.5),
    "batchnorm": dict(conv="gcn", norm="batchnorm"),
    "meansub": dict(conv="gcn", norm="meansub"),
}

NORMS = ("none", "pairnorm", "batchnorm", "meansub")
RESIDUALS = ("none", "residual", "initial")
JK_MODES = ("last", "cat", "max")
PAIRNORM_MODES = ("PN", "PN-SI")
DROPOUT_PLACEMENTS = ("every", "io")
INITS = ("glorot", "orthogonal", "identity")

#: The value an option left unset takes when its method does not set it.
#: After :func:`resolve_options` no option is unset: ``None`` remains only
#: as ``center=None``, no centering, as in the layers.
NEUTRAL = dict(dropout_placement="every", rescale=False, norm="none",
               residual="none", dropedge=0.0, jk="last", beta=1.0,
               learn_beta=False, learn_alpha=False, theta=0.5)


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {name}={value!r}; choose one of "
                         f"{', '.join(repr(c) for c in choices)}")


def _in_range(name: str, value: float, low: float, high: float,
              closed: bool = True) -> None:
    inside = low <= value <= high if closed else low <= value < high
    if not inside:
        raise ValueError(f"{name}={value} is outside [{low:g}, {high:g}"
                         f"{']' if closed else ')'}")


@dataclass(frozen=True)
class ModelOptions:
    r"""Every option of :class:`~gnn_center.nn.models.DeepGNN` with its
    default, in one place, checked on construction.

    ``None`` means *unset*: the option takes the method's value from
    :data:`METHODS`, or the neutral value of :data:`NEUTRAL` (no norm, no
    residual, no DropEdge, no rescaling, dropout before every layer, the
    last layer's output, full centering strength, nothing learned) when the
    method does not set it. The strings
    ``"none"`` of ``norm`` and ``residual`` are values: "no norm" even for
    a method that has one.
    """
    hidden_channels: int = 64
    dropout: float = 0.5
    #: ``"every"``: before each layer; ``"io"``: input and output only.
    dropout_placement: Optional[str] = None
    activation: str = "relu"
    #: Centering mode for the centered methods (mean, uniform, spectral).
    center: Optional[str] = None
    #: Centering strength (its start when learned); unset: 1.
    beta: Optional[float] = None
    #: Learn beta per layer; unset: no (a preset may learn it).
    learn_beta: Optional[bool] = None
    #: Divide by the RMS row norm after each layer (PairNorm's scaling).
    rescale: Optional[bool] = None
    norm: Optional[str] = None
    pairnorm_mode: str = "PN"
    pairnorm_scale: float = 1.0
    residual: Optional[str] = None
    #: Weight of h_0 in initial residual connections and GCNII.
    alpha: float = 0.1
    #: GCNII's theta (lambda in the paper); unset: 0.5, its Cora value.
    theta: Optional[float] = None
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
    #: Apply the correction again after the activation (which moves the
    #: features off the centre), with the fixed ``beta``: ``spectral``
    #: deflation for ``center="spectral"``, mean subtraction otherwise.
    #: Off by default: at 64 layers it lowered validation accuracy in every
    #: run measured (experiments/results/centered-preset.md, probe p3).
    center_after_activation: bool = False
    #: Learn each layer's initial-residual weight ``alpha`` (started at
    #: ``alpha``, kept in (0, 1) by a sigmoid); centered GCNII only.
    learn_alpha: Optional[bool] = None

    def __post_init__(self):
        for name, choices in (("dropout_placement", DROPOUT_PLACEMENTS),
                              ("center", CENTER_MODES), ("norm", NORMS),
                              ("residual", RESIDUALS), ("jk", JK_MODES)):
            if getattr(self, name) is not None:
                _choice(name, getattr(self, name), choices)
        _choice("pairnorm_mode", self.pairnorm_mode, PAIRNORM_MODES)
        _choice("init", self.init, INITS)
        if self.beta is not None:
            check_beta(self.beta)
        _in_range("dropout", self.dropout, 0.0, 1.0, closed=False)
        if self.dropedge is not None:
            _in_range("dropedge", self.dropedge, 0.0, 1.0, closed=False)
        _in_range("alpha", self.alpha, 0.0, 1.0)
        for name in ("hidden_channels", "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be "
                                 f"positive")
        if self.checkpoint and self.norm == "batchnorm":
            # Recomputing a BatchNorm layer in the backward pass would
            # update its running statistics twice per step.
            raise ValueError("checkpoint=True cannot be combined with "
                             "norm='batchnorm'; use checkpoint=False")
        activation_resolver(self.activation)  # raises on an unknown name


def _check_method(method: str, kind: ConvKind, opts: ModelOptions) -> None:
    r"""The checks that depend on the method's kind of layer."""
    if kind.centered:
        _choice("center", opts.center, kind.center_modes)
    elif opts.center is not None:
        raise ValueError(f"center={opts.center!r} only applies to the "
                         f"centered methods, not to method {method!r}")
    for name in ("center_components", "center_after_activation"):
        if getattr(opts, name) and not kind.centered:
            raise ValueError(f"{name} only applies to the centered "
                             f"methods, not to method {method!r}")
    if opts.learn_alpha and not (kind.centered and kind.initial_residual):
        raise ValueError(f"learn_alpha only applies to the centered GCNII "
                         f"methods, not to method {method!r}")
    if opts.learn_alpha and not 0.0 < opts.alpha < 1.0:
        raise ValueError(f"learn_alpha=True needs alpha strictly inside "
                         f"(0, 1); got alpha={opts.alpha}")
    if kind.attention and opts.hidden_channels % opts.heads != 0:
        raise ValueError(f"hidden_channels={opts.hidden_channels} must be a "
                         f"multiple of heads={opts.heads}")
    if kind.initial_residual and opts.residual != "none":
        raise ValueError(f"{method} has its own initial residual "
                         f"connection; leave residual unset")


def resolve_options(method: str, num_layers: int,
                    **options) -> Tuple[ConvKind, ModelOptions]:
    r"""Validates a method name, depth and options, and fills the options
    left unset with the method's values (then :data:`NEUTRAL`). Returns
    the method's kind of layer and the full options."""
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
    kind = CONV_KINDS[preset.pop("conv")]
    opts = ModelOptions(**options)
    unset = {**NEUTRAL, **preset}
    opts = replace(opts, **{key: value for key, value in unset.items()
                            if getattr(opts, key) is None})
    _check_method(method, kind, opts)
    return kind, opts
