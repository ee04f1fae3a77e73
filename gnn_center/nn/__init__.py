"""Layers, the centering op and deep models. Knows nothing of datasets or
configs."""
from gnn_center.nn.functional import (
    CENTER_MODES,
    center,
    gcn_degree,
    graph_sum,
    rms_scale,
)
from gnn_center.nn.sparse_aggregation import sparse_matmul
from gnn_center.nn.centered_gcn_conv import CenteredGCNConv
from gnn_center.nn.centered_gcn2_conv import CenteredGCN2Conv
from gnn_center.nn.centered_gat_conv import CenteredGATConv
from gnn_center.nn.models import (
    METHODS,
    DeepGNN,
    ModelOptions,
    build_model,
)

__all__ = [
    "CENTER_MODES",
    "METHODS",
    "CenteredGATConv",
    "CenteredGCN2Conv",
    "CenteredGCNConv",
    "DeepGNN",
    "ModelOptions",
    "build_model",
    "center",
    "gcn_degree",
    "graph_sum",
    "rms_scale",
    "sparse_matmul",
]
