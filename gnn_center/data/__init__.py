r"""Node-classification datasets as ready-to-train tasks.

:func:`load_dataset` returns a :class:`NodeTask`: one graph in a
:class:`~torch_geometric.data.Data` object with exactly one train/val/test
split selected, and the task's accuracy metric (see :mod:`.load` for the form
every graph comes out in).

Where the files come from: a dataset root in PyTorch Geometric's folder
layout (``<root>/Planetoid/Cora/raw/ind.cora.x``, ``<root>/ogbn_arxiv/raw/
edge.csv.gz``, ...), chosen by :func:`resolve_root`. The root is never
written to, so a read-only shared copy works: the raw files are linked into
a mirror under :func:`cache_dir` and processed there. Without a root, the
cache folder itself is the root and PyG/OGB download into it.

One job per module: :mod:`.registry` (names, sources, splits),
:mod:`.options` (:class:`DataOptions`), :mod:`.files` (roots, cache, mirror,
lock, download), :mod:`.read` (PyG/OGB classes, read errors), :mod:`.sizes`
(known sizes, checked on load), :mod:`.ogb` (OGB workarounds),
:mod:`.csbm` (synthetic graphs), :mod:`.splits` (random per-class splits),
:mod:`.task` (:class:`NodeTask`), :mod:`.load` (:func:`load_dataset`),
:mod:`.status` (:func:`dataset_status`).
"""
from gnn_center.data.csbm import CSBM_DEFAULTS
from gnn_center.data.files import (
    DOWNLOAD_TIMEOUT,
    DatasetNotFoundError,
    cache_dir,
    resolve_root,
)
from gnn_center.data.load import load_dataset
from gnn_center.data.options import DataOptions
from gnn_center.data.read import DatasetFileError
from gnn_center.data.registry import DATASETS, NUM_GEOM_GCN_SPLITS
from gnn_center.data.status import dataset_status
from gnn_center.data.task import NodeTask

__all__ = [
    "CSBM_DEFAULTS",
    "DATASETS",
    "DataOptions",
    "DOWNLOAD_TIMEOUT",
    "DatasetFileError",
    "DatasetNotFoundError",
    "NUM_GEOM_GCN_SPLITS",
    "NodeTask",
    "cache_dir",
    "dataset_status",
    "load_dataset",
    "resolve_root",
]
