r"""Node-classification datasets as ready-to-train tasks.

:func:`load_dataset` returns a :class:`NodeTask`: one graph in a
:class:`~torch_geometric.data.Data` object with exactly one train/val/test
split selected, and the task's accuracy metric. Every graph comes out in the
same form, whatever its source:

* ``edge_index`` is undirected, coalesced and free of self-loops. The
  heterophily benchmarks (WebKB, Wikipedia, Actor) and OGB's citation graphs
  ship directed edges; the standard pipelines symmetrise them, and the
  symmetric normalisation :math:`\mathbf{D}^{-1/2}(\mathbf{A} + \mathbf{I})
  \mathbf{D}^{-1/2}` that GCN-type layers apply needs
  :math:`\mathbf{A} = \mathbf{A}^\top`.
* ``x`` is ``float32`` of shape ``[N, F]``. With ``normalize_features=True``
  the Planetoid, WebKB, Wikipedia, Actor, Amazon and Coauthor features are
  row-normalised by PyG's :class:`~torch_geometric.transforms.
  NormalizeFeatures`: :math:`\mathbf{x}_i \leftarrow (\mathbf{x}_i - m) /
  \max(1, \sum_j (x_{ij} - m))` with :math:`m = \min_{ij} x_{ij}` (0 for
  these non-negative features), so rows of 0/1 features sum to 1.
* ``y`` is ``long`` of shape ``[N]``; ``train_mask``, ``val_mask`` and
  ``test_mask`` are ``bool`` of shape ``[N]``.

Where the files come from: a dataset root in PyTorch Geometric's folder
layout (``<root>/Planetoid/Cora/raw/ind.cora.x``, ``<root>/ogbn_arxiv/raw/
edge.csv.gz``, ...), chosen by :func:`resolve_root`. The root is never
written to, so a read-only shared copy works: the raw files are linked into
a mirror under :func:`cache_dir` and processed there. Without a root, the
cache folder itself is the root and PyG/OGB download into it.
"""
import contextlib
import csv
import functools
import hashlib
import importlib.util
import json
import numbers
import os
import shutil
import socket
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import torch
from torch import Tensor

import torch_geometric.transforms as T
from torch_geometric.data import Data
from torch_geometric.utils import (
    index_to_mask,
    remove_self_loops,
    to_undirected,
)

__all__ = [
    "CSBM_DEFAULTS",
    "DATASETS",
    "DataOptions",
    "DOWNLOAD_TIMEOUT",
    "DatasetNotFoundError",
    "NUM_GEOM_GCN_SPLITS",
    "NodeTask",
    "cache_dir",
    "dataset_status",
    "load_dataset",
    "resolve_root",
]

#: Seconds any single network operation of a download may block before the
#: download is given up (no retries), so that offline machines fail fast.
DOWNLOAD_TIMEOUT = 10.0

DATA_ENV = "GNN_CENTER_DATA"
CACHE_ENV = "GNN_CENTER_CACHE"

# Per-class counts of the random splits of Shchur et al. (2018).
_TRAIN_PER_CLASS = 20
_VAL_PER_CLASS = 30
#: How many fixed splits the geom-gcn datasets have (``split_index`` range).
NUM_GEOM_GCN_SPLITS = 10


class DatasetNotFoundError(FileNotFoundError):
    r"""The files of a dataset are neither in the dataset root nor
    downloadable (offline, or ``download=False``)."""


@dataclass(frozen=True)
class _Source:
    # family: "planetoid", "geom-gcn", "shchur" or "ogbn".
    family: str
    # The name the PyG/OGB class takes ("Cora", "texas", "ogbn-arxiv").
    cls_name: str
    # The dataset's folder relative to the root; "processed/" goes in it.
    folder: str
    # Files that must exist, relative to `folder`.
    files: Tuple[str, ...]
    description: str


def _planetoid(cls_name: str, description: str) -> _Source:
    suffixes = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
    files = tuple(f"raw/ind.{cls_name.lower()}.{s}" for s in suffixes)
    return _Source("planetoid", cls_name, f"Planetoid/{cls_name}", files,
                   description)


def _geom_gcn(cls_name: str, folder: str, file_prefix: str,
              description: str) -> _Source:
    files = ("raw/out1_node_feature_label.txt", "raw/out1_graph_edges.txt")
    files += tuple(f"raw/{file_prefix}_split_0.6_0.2_{i}.npz"
                   for i in range(NUM_GEOM_GCN_SPLITS))
    return _Source("geom-gcn", cls_name, folder, files, description)


def _shchur(cls_name: str, folder: str, file: str,
            description: str) -> _Source:
    return _Source("shchur", cls_name, folder, (f"raw/{file}", ), description)


_HETEROPHILY = "10 geom-gcn splits (split_index 0-9)"
_SHCHUR_SPLIT = "seeded random split 20/30 per class, rest test"

_SOURCES: Dict[str, _Source] = {
    "cora": _planetoid(
        "Cora", "Planetoid citation graph: 2708 nodes, 1433 features, "
        "7 classes; public split 140/500/1000"),
    "citeseer": _planetoid(
        "CiteSeer", "Planetoid citation graph: 3327 nodes, 3703 features, "
        "6 classes; public split 120/500/1000"),
    "pubmed": _planetoid(
        "PubMed", "Planetoid citation graph: 19717 nodes, 500 features, "
        "3 classes; public split 60/500/1000"),
    "cornell": _geom_gcn(
        "cornell", "WebKB/cornell", "cornell",
        f"WebKB web pages: 183 nodes, 1703 features, 5 classes; "
        f"{_HETEROPHILY}"),
    "texas": _geom_gcn(
        "texas", "WebKB/texas", "texas",
        f"WebKB web pages: 183 nodes, 1703 features, 5 classes; "
        f"{_HETEROPHILY}"),
    "wisconsin": _geom_gcn(
        "wisconsin", "WebKB/wisconsin", "wisconsin",
        f"WebKB web pages: 251 nodes, 1703 features, 5 classes; "
        f"{_HETEROPHILY}"),
    "chameleon": _geom_gcn(
        "chameleon", "WikipediaNetwork/chameleon/geom_gcn", "chameleon",
        f"Wikipedia page network: 2277 nodes, 2325 features, 5 classes; "
        f"{_HETEROPHILY}"),
    "squirrel": _geom_gcn(
        "squirrel", "WikipediaNetwork/squirrel/geom_gcn", "squirrel",
        f"Wikipedia page network: 5201 nodes, 2089 features, 5 classes; "
        f"{_HETEROPHILY}"),
    "actor": _geom_gcn(
        "actor", "Actor", "film",
        f"actor co-occurrence network: 7600 nodes, 932 features, 5 classes; "
        f"{_HETEROPHILY}"),
    "photo": _shchur(
        "Photo", "Amazon/Photo", "amazon_electronics_photo.npz",
        f"Amazon co-purchase graph: 7650 nodes, 745 features, 8 classes; "
        f"{_SHCHUR_SPLIT}"),
    "computers": _shchur(
        "Computers", "Amazon/Computers", "amazon_electronics_computers.npz",
        f"Amazon co-purchase graph: 13752 nodes, 767 features, 10 classes; "
        f"{_SHCHUR_SPLIT}"),
    "cs": _shchur(
        "CS", "Coauthor/CS", "ms_academic_cs.npz",
        f"Coauthor graph: 18333 nodes, 6805 features, 15 classes; "
        f"{_SHCHUR_SPLIT}"),
    "physics": _shchur(
        "Physics", "Coauthor/Physics", "ms_academic_phy.npz",
        f"Coauthor graph: 34493 nodes, 8415 features, 5 classes; "
        f"{_SHCHUR_SPLIT}"),
}

_OGBN_DESCRIPTIONS = {
    "ogbn-arxiv": "OGB arXiv citation graph: 169343 nodes, 128 features, "
    "40 classes; official time split",
    "ogbn-products": "OGB Amazon co-purchase graph: 2449029 nodes, "
    "100 features, 47 classes; official sales-rank split",
    "ogbn-papers100m": "OGB citation graph: 111059956 nodes, 128 features, "
    "172 classes; official time split (about 57 GB)",
}

#: Every dataset name :func:`load_dataset` accepts, with a short description.
DATASETS: Dict[str, str] = {
    **{name: _SOURCES[name].description
       for name in ("cora", "citeseer", "pubmed")},
    **_OGBN_DESCRIPTIONS,
    **{name: source.description
       for name, source in _SOURCES.items()
       if source.family != "planetoid"},
    "csbm": "synthetic contextual stochastic block model generated in "
    "memory (no files): 1000 nodes, 32 features, 2 classes by default; "
    f"{_SHCHUR_SPLIT}",
}

_SPLITS = {
    "planetoid": ("public", "full", "random"),
    "geom-gcn": ("geom-gcn", ),
    "shchur": ("random", ),
    "csbm": ("random", ),
    "ogbn": ("official", ),
}

#: The ``csbm`` options of :func:`load_dataset` and their defaults (``None``:
#: derived from the others, see :func:`load_dataset`).
CSBM_DEFAULTS = dict(num_nodes=1000, num_classes=2, p_intra=None,
                      p_inter=None, feature_dim=32, snr=1.0)


@dataclass(frozen=True)
class DataOptions:
    r"""The options of :func:`load_dataset` besides the name, root and
    seed, validated here once (types and ranges); :meth:`check_for` adds
    the checks that depend on the dataset. ``None`` means "unset": the
    dataset's first split, or the ``csbm`` default of
    :data:`CSBM_DEFAULTS`."""
    split: Optional[str] = None
    #: Which of the 10 geom-gcn splits (those datasets only).
    split_index: int = 0
    normalize_features: bool = True
    download: bool = True
    # ``csbm`` only (see load_dataset):
    num_nodes: Optional[int] = None
    num_classes: Optional[int] = None
    p_intra: Optional[float] = None
    p_inter: Optional[float] = None
    feature_dim: Optional[int] = None
    snr: Optional[float] = None

    def __post_init__(self):
        def is_int(value):
            return isinstance(value, numbers.Integral) and \
                not isinstance(value, bool)

        if self.split is not None and not isinstance(self.split, str):
            raise ValueError(f"split={self.split!r} must be a split name")
        if not (is_int(self.split_index)
                and 0 <= self.split_index < NUM_GEOM_GCN_SPLITS):
            raise ValueError(
                f"split_index={self.split_index!r} is out of range: the "
                f"geom-gcn splits are numbered 0-{NUM_GEOM_GCN_SPLITS - 1}")
        for name in ("normalize_features", "download"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} must be "
                                 f"true or false")
        for name in ("num_nodes", "num_classes", "feature_dim"):
            value = getattr(self, name)
            if value is not None and not (is_int(value) and value >= 1):
                raise ValueError(f"{name}={value!r} must be a positive "
                                 f"integer")
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(f"num_classes={self.num_classes} must be at "
                             f"least 2")
        for name in ("p_intra", "p_inter"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, numbers.Real)
                                          and 0.0 <= value <= 1.0):
                raise ValueError(f"{name}={value!r} is outside [0, 1]")
        if self.snr is not None and not (isinstance(self.snr, numbers.Real)
                                         and self.snr >= 0):
            raise ValueError(f"snr={self.snr!r} must not be negative")

    def csbm_options(self) -> Dict[str, object]:
        r"""The ``csbm`` options that were set."""
        return {key: getattr(self, key) for key in CSBM_DEFAULTS
                if getattr(self, key) is not None}

    def check_for(self, name: str) -> None:
        r"""Raises :class:`ValueError` if these options do not fit dataset
        ``name`` (a split it does not have, ``csbm`` options elsewhere)."""
        key = str(name).strip().lower()
        if key == "csbm":
            allowed = _SPLITS["csbm"]
        else:
            if self.csbm_options():
                raise ValueError(
                    f"option(s) {', '.join(sorted(self.csbm_options()))} "
                    f"only apply to dataset 'csbm', not to '{key}'")
            allowed = _SPLITS[_source(key).family]
        if self.split is not None and self.split not in allowed:
            raise _bad_split(key, self.split, allowed)


@dataclass
class NodeTask:
    r"""A node-classification task: one graph, one selected split and the
    metric to report.

    Args:
        name (str): The canonical lower-case dataset name.
        data (torch_geometric.data.Data): The graph with ``x`` ``[N, F]``,
            undirected ``edge_index``, ``y`` ``[N]`` and the boolean masks
            ``train_mask``, ``val_mask``, ``test_mask`` ``[N]``.
        num_features (int): ``F``.
        num_classes (int): The number of classes.
        split (str): Which split the masks hold, e.g. ``"public"``,
            ``"geom-gcn:3"`` or ``"random(20/30 per class, seed=0)"``.
        metric (str): ``"accuracy"``.
    """
    name: str
    data: Data
    num_features: int
    num_classes: int
    split: str
    metric: str = "accuracy"
    # OGB's name for its Evaluator ("ogbn-arxiv"); None for the others.
    ogb_name: Optional[str] = field(default=None, repr=False)

    def evaluate(self, logits_or_pred: Tensor, mask: Tensor) -> float:
        r"""The accuracy :math:`\frac{1}{|M|} \sum_{i \in M}
        [\hat{y}_i = y_i]` over the nodes :math:`M` selected by ``mask``.

        Args:
            logits_or_pred (torch.Tensor): Scores ``[N, C]`` (the prediction
                is their arg-max) or integer class predictions ``[N]``, for
                all ``N`` nodes.
            mask (torch.Tensor): Boolean ``[N]``, e.g. ``data.test_mask``.

        For ``ogbn-*`` tasks the number is computed by OGB's official
        :class:`ogb.nodeproppred.Evaluator`.
        """
        num_nodes = self.data.num_nodes
        pred = logits_or_pred.detach().cpu()
        if pred.dim() == 2:
            pred = pred.argmax(dim=-1)
        elif pred.dim() != 1 or pred.is_floating_point():
            raise ValueError(
                f"evaluate() expects scores of shape [N, C] or integer class "
                f"predictions of shape [N] (N = {num_nodes}); got a "
                f"{pred.dtype} tensor of shape {tuple(pred.shape)}")
        mask = mask.detach().cpu()
        if mask.dtype != torch.bool or mask.shape != (num_nodes, ):
            raise ValueError(
                f"evaluate() expects a boolean mask of shape [{num_nodes}]; "
                f"got a {mask.dtype} tensor of shape {tuple(mask.shape)}")
        if pred.size(0) != num_nodes:
            raise ValueError(
                f"evaluate() expects predictions for all {num_nodes} nodes; "
                f"got {pred.size(0)}")
        if not bool(mask.any()):
            raise ValueError("evaluate() got a mask that selects no nodes")

        # On the CPU: `data` may have been moved to another device.
        y_true, y_pred = self.data.y.detach().cpu()[mask], pred[mask]
        if self.ogb_name is not None:
            out = _ogb_evaluator(self.ogb_name).eval({
                "y_true": y_true.view(-1, 1),
                "y_pred": y_pred.view(-1, 1),
            })
            return float(out["acc"])
        return float((y_pred == y_true).float().mean())


# Roots ######################################################################


def cache_dir() -> Path:
    r"""The writable folder for processed datasets and downloads:
    ``$GNN_CENTER_CACHE`` if set, else ``$XDG_CACHE_HOME/gnn-center``, else
    ``~/.cache/gnn-center``. It is created when first written to."""
    if os.environ.get(CACHE_ENV):
        path = Path(os.environ[CACHE_ENV])
    elif os.environ.get("XDG_CACHE_HOME"):
        path = Path(os.environ["XDG_CACHE_HOME"]) / "gnn-center"
    else:
        path = Path("~/.cache/gnn-center")
    return path.expanduser().resolve()


def resolve_root(root: Optional[Union[str, os.PathLike]] = None) -> Path:
    r"""The dataset root: the ``root`` argument if given, else
    ``$GNN_CENTER_DATA`` if set, else :func:`cache_dir`."""
    if root is None:
        root = os.environ.get(DATA_ENV) or None
    if root is None:
        return cache_dir()
    return Path(os.fspath(root)).expanduser().resolve()


def _work_root(root: Path) -> Path:
    # The root is read-only to us unless it is the cache itself: everything
    # PyG/OGB write goes into a per-root mirror with the same layout.
    cache = cache_dir()
    if root == cache:
        return root
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return cache / "mirrors" / f"{root.name or 'root'}-{digest}"


# Dataset names ##############################################################


def _ogb_master() -> Dict[str, Dict[str, str]]:
    # OGB's table of node tasks, read without importing `ogb` (whose import
    # starts a PyPI version check, see `_import_ogb`).
    spec = importlib.util.find_spec("ogb")
    if spec is None or not spec.submodule_search_locations:
        raise _ogb_missing_error()
    path = Path(list(spec.submodule_search_locations)[0])
    path = path / "nodeproppred" / "master.csv"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    names = rows[0][1:]
    return {
        name: {row[0]: row[1 + i]
               for row in rows[1:]}
        for i, name in enumerate(names)
    }


def _ogbn_source(name: str) -> _Source:
    # `name` is lower-case; OGB spells some names with capitals.
    master = {key.lower(): (key, meta) for key, meta in _ogb_master().items()}
    if name not in master:
        raise _unknown_name_error(name)
    ogb_name, meta = master[name]
    if meta["is hetero"] == "True":
        raise ValueError(
            f"Dataset '{name}' is a heterogeneous graph, which a NodeTask "
            f"(one node type, one edge type) cannot hold. Valid names: "
            f"{', '.join(DATASETS)}")
    if meta["task type"] != "multiclass classification":
        raise ValueError(
            f"Dataset '{name}' is a {meta['task type']} task scored by "
            f"{meta['eval metric']}, not single-label classification scored "
            f"by accuracy, which is what a NodeTask holds. Valid names: "
            f"{', '.join(DATASETS)}")

    if meta["binary"] == "True":
        raw = ["data.npz", "node-label.npz"]
    else:
        raw = ["edge", "num-node-list", "num-edge-list", "node-label"]
        if meta["has_node_attr"] == "True":
            raw.append("node-feat")
        if meta["has_edge_attr"] == "True":
            raw.append("edge-feat")
        for key in ("additional node files", "additional edge files"):
            if meta[key] != "None":
                raw += meta[key].split(",")
        raw = [f"{file}.csv.gz" for file in raw]
    files = tuple(f"raw/{file}" for file in raw)
    files += tuple(f"split/{meta['split']}/{part}.csv.gz"
                   for part in ("train", "valid", "test"))
    return _Source("ogbn", ogb_name, ogb_name.replace("-", "_"), files,
                   DATASETS.get(name, f"OGB node task {ogb_name}"))


def _ogb_missing_error() -> ModuleNotFoundError:
    # `ogb` is a requirement, but an environment set up by hand (or with
    # --no-deps) may lack it; without this the ogbn-* names read as unknown.
    return ModuleNotFoundError(
        "The OGB datasets (ogbn-*) need the `ogb` package, which this Python "
        "environment lacks: install it with pip install 'ogb>=1.3.6' (a "
        "requirement of gnn-center).", name="ogb")


def _unknown_name_error(name: str) -> ValueError:
    return ValueError(f"Unknown dataset '{name}'. Valid names "
                      f"(case-insensitive): {', '.join(DATASETS)}")


def _source(name: str) -> _Source:
    if name in _SOURCES:
        return _SOURCES[name]
    if name.startswith("ogbn-"):
        return _ogbn_source(name)
    raise _unknown_name_error(name)


# Files: mirror, check, download #############################################


def _fingerprint(folder: Path, files: Tuple[str, ...]) -> Dict[str, list]:
    out = {}
    for file in files:
        if (folder / file).is_file():
            stat = (folder / file).stat()
            out[file] = [stat.st_size, stat.st_mtime_ns]
    return out


def _link(src: Path, dst: Path) -> None:
    if dst.is_symlink() and Path(os.readlink(dst)) == src:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    # Build the link under a temporary name and rename it into place, so a
    # concurrent process never sees a half-made entry.
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        os.symlink(src, tmp)
    except OSError:  # No symlinks here (some file systems): copy instead.
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _mirror(source: _Source, root: Path, work: Path) -> None:
    src, dst = root / source.folder, work / source.folder
    for file in source.files:
        if (src / file).is_file():
            _link((src / file).resolve(), dst / file)
        elif (dst / file).is_symlink():
            # A link to a file the root no longer has: remove it, or a
            # download would write through it into the root.
            (dst / file).unlink()

    # Processed files are only as fresh as the raw files they came from:
    # when those changed in the root, process again.
    record = dst / ".gnn_center_source.json"
    current = {"root": str(root),
               "files": _fingerprint(src, source.files)}
    try:
        previous = json.loads(record.read_text())
    except (OSError, ValueError):
        previous = None
    if previous != current and (current["files"] or dst.exists()):
        shutil.rmtree(dst / "processed", ignore_errors=True)
        dst.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(current))


def _missing(source: _Source, folder: Path) -> List[str]:
    return [file for file in source.files if not (folder / file).is_file()]


def _not_found(name: str, source: _Source, root: Path, work: Path,
               missing: List[str], reason: str) -> DatasetNotFoundError:
    folder = root / source.folder
    where = f"{folder}"
    if work != root:
        where += f" (nor in the cache mirror {work / source.folder})"
    expected = "\n".join(f"  {source.folder}/{file}" for file in missing)
    return DatasetNotFoundError(
        f"Dataset '{name}' not found: {len(missing)} of {len(source.files)} "
        f"expected files are missing from {where}; {reason}.\n"
        f"Expected under the dataset root {root}:\n{expected}\n"
        f"Fix: set the environment variable {DATA_ENV} (or pass root=...) "
        f"to a folder that holds these files in PyTorch Geometric's layout, "
        f"or load with download=True on a machine with internet access.")


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    # An advisory lock on a file beside the folder, held while the block
    # runs; released when the process ends, whatever happens. The name marks
    # it as the project's own, never mistaken for a dataset file.
    import fcntl
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = folder.parent / f".gnn_center_{folder.name}.lock"
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _prepare(name: str, source: _Source, root: Path, work: Path,
             download: bool) -> None:
    r"""Makes all files of ``source`` present under ``work``: linked from
    the root, or downloaded into ``work`` when allowed."""
    if work != root:
        _mirror(source, root, work)
    dst = work / source.folder
    if source.family == "ogbn":
        _write_ogb_release(dst, source)

    missing = _missing(source, dst)
    if not missing:
        return
    if not download:
        raise _not_found(name, source, root, work, missing,
                         "downloading is disabled (download=False)")
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT):
            _download(source, work, missing)
    except Exception as exc:
        if not _missing(source, dst):
            raise  # Downloaded fine, failed later: not a missing-file issue.
        for file in missing:  # Partial downloads would pass as complete.
            if (dst / file).is_file() and not (dst / file).is_symlink():
                (dst / file).unlink()
        raise _not_found(
            name, source, root, work, missing,
            f"downloading them failed ({type(exc).__name__}: {exc})") from exc
    missing = _missing(source, dst)
    if missing:
        raise _not_found(name, source, root, work, missing,
                         "the download did not provide them")


def _download(source: _Source, work: Path, missing: List[str]) -> None:
    from torch_geometric.data import download_url
    from torch_geometric.datasets import Planetoid

    dst = work / source.folder
    if source.family == "planetoid":
        # PyG's Planetoid downloads through fsspec's HTTP file system, which
        # needs `aiohttp` (not a dependency) and ignores socket timeouts.
        for file in missing:
            url = f"{Planetoid.url}/{Path(file).name}"
            download_url(url, str(dst / Path(file).parent), log=False)
    elif source.family == "ogbn":
        _download_ogb(source, work)
    else:
        _open(source, work)  # The PyG class downloads, then processes.


# OGB ########################################################################


@functools.lru_cache(maxsize=None)
def _ogb_evaluator(name: str):
    # Built once per task name: the constructor reads OGB's master table,
    # and evaluate() runs on every epoch.
    return _import_ogb().Evaluator(name)


def _import_ogb():
    r"""Imports :mod:`ogb.nodeproppred` without its PyPI version check.

    ``import ogb`` starts a (non-daemon) thread that asks PyPI for the latest
    version through the ``outdated`` package, and offline it may keep the
    interpreter from exiting. OGB skips the check when ``outdated`` cannot be
    imported, so it is hidden for the duration of the first import."""
    try:
        if "ogb" not in sys.modules:
            missing = object()
            previous = sys.modules.get("outdated", missing)
            sys.modules["outdated"] = None  # type: ignore  # -> ImportError
            try:
                import ogb  # noqa: F401
            finally:
                if previous is missing:
                    del sys.modules["outdated"]
                else:
                    sys.modules["outdated"] = previous
        import ogb.nodeproppred
    except ImportError as err:
        if err.name not in ("ogb", "ogb.nodeproppred"):
            raise  # one of ogb's own requirements: its message says which
        raise _ogb_missing_error() from err
    return ogb.nodeproppred


def _write_ogb_release(folder: Path, source: _Source) -> None:
    # OGB asks "Will you update the dataset now? (y/N)" via input() when a
    # dataset folder lacks RELEASE_v<version>.txt (as a linked mirror does).
    version = _ogb_master()[source.cls_name]["version"]
    release = folder / f"RELEASE_v{version}.txt"
    if not release.exists():
        folder.mkdir(parents=True, exist_ok=True)
        release.write_text(f"{source.cls_name} version {version}, "
                           f"set up by gnn_center.data\n")


def _download_ogb(source: _Source, work: Path) -> None:
    # OGB's own `download()` asks for confirmation via input() above 1 GB and
    # calls exit(-1) when declined; its URL helpers do neither.
    from ogb.utils.url import download_url, extract_zip

    meta = _ogb_master()[source.cls_name]
    dst = work / source.folder
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=work))
    try:
        path = download_url(meta["url"], str(tmp))
        extract_zip(path, str(tmp))
        unpacked = tmp / meta["download_name"]
        for file in sorted(unpacked.rglob("*")):
            target = dst / file.relative_to(unpacked)
            if file.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(file), str(target))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _ogb_safe_globals() -> list:
    # OGB's `torch.load` of its processed file runs with weights_only=True
    # since torch 2.6; these are the PyG classes in that pickle which PyG
    # does not allow-list itself. Allowed only while OGB loads.
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage
    return [DataEdgeAttr, DataTensorAttr, GlobalStorage]


# Loading ####################################################################


def _open(source: _Source, work: Path, split: str = "public"):
    from torch_geometric.datasets import (
        Actor,
        Amazon,
        Coauthor,
        Planetoid,
        WebKB,
        WikipediaNetwork,
    )

    family, cls_name = source.family, source.cls_name
    if family == "planetoid":
        return Planetoid(str(work / "Planetoid"), cls_name, split=split)
    if family == "shchur":
        cls = Amazon if source.folder.startswith("Amazon") else Coauthor
        return cls(str(work / source.folder.split("/")[0]), cls_name)
    if family == "geom-gcn":
        if cls_name == "actor":
            return Actor(str(work / "Actor"))
        if cls_name in ("chameleon", "squirrel"):
            return WikipediaNetwork(str(work / "WikipediaNetwork"), cls_name,
                                    geom_gcn_preprocess=True)
        return WebKB(str(work / "WebKB"), cls_name)
    if family == "ogbn":
        ogb = _import_ogb()
        # torch < 2.5 has no `safe_globals` and loads with weights_only=False.
        allow = getattr(torch.serialization, "safe_globals", None)
        allow = contextlib.nullcontext() if allow is None else allow(
            _ogb_safe_globals())
        with allow, warnings.catch_warnings():
            # OGB turns read-only numpy arrays into tensors; harmless here.
            warnings.filterwarnings("ignore", ".*NumPy array is not writable")
            return ogb.PygNodePropPredDataset(cls_name, root=str(work))
    raise AssertionError(family)


def _per_class_split(y: Tensor, num_classes: int,
                     generator: torch.Generator) -> Tuple[Tensor, ...]:
    r"""Shchur et al. (2018): per class, 20 random nodes for training and 30
    for validation; all other nodes are test nodes."""
    num_nodes = y.size(0)
    train_mask = torch.zeros(num_nodes, dtype=torch.bool)
    val_mask = torch.zeros(num_nodes, dtype=torch.bool)
    for c in range(num_classes):
        idx = (y == c).nonzero().view(-1)
        if idx.numel() <= _TRAIN_PER_CLASS + _VAL_PER_CLASS:
            raise ValueError(
                f"Class {c} has {idx.numel()} nodes, too few for a split "
                f"with {_TRAIN_PER_CLASS} training and {_VAL_PER_CLASS} "
                f"validation nodes per class and test nodes left over")
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        num_train, num_val = _TRAIN_PER_CLASS, _VAL_PER_CLASS
        train_mask[idx[:num_train]] = True
        val_mask[idx[num_train:num_train + num_val]] = True
    test_mask = ~(train_mask | val_mask)
    return train_mask, val_mask, test_mask


def _shchur_split_name(seed: int) -> str:
    return (f"random({_TRAIN_PER_CLASS}/{_VAL_PER_CLASS} per class, "
            f"seed={seed})")


def load_dataset(
    name: str,
    root: Optional[Union[str, os.PathLike]] = None,
    *,
    split: Optional[str] = None,
    split_index: int = 0,
    seed: int = 0,
    normalize_features: bool = True,
    download: bool = True,
    **csbm_options,
) -> NodeTask:
    r"""Loads a node-classification dataset as a :class:`NodeTask`.

    Splits, by dataset (``split=None`` picks the first one listed):

    * ``cora``, ``citeseer``, ``pubmed`` (PyG :class:`Planetoid`):
      ``"public"`` (20 nodes per class for training, 500 validation, 1000
      test), ``"full"`` (all nodes outside validation and test train) or
      ``"random"`` (20 per class, 500, 1000 drawn with ``seed``).
    * ``cornell``, ``texas``, ``wisconsin``, ``chameleon``, ``squirrel``,
      ``actor``: ``"geom-gcn"``, the 10 fixed splits of Pei et al. (2020);
      ``split_index`` (0-9) picks one.
    * ``photo``, ``computers`` (PyG :class:`Amazon`), ``cs``, ``physics``
      (PyG :class:`Coauthor`) and ``csbm``: ``"random"`` as in Shchur et al.
      (2018), 20 training and 30 validation nodes per class, every other
      node a test node, drawn by a :class:`torch.Generator` seeded with
      ``seed`` (the same ``seed`` gives the same split). The whole graph is
      used (no restriction to its largest connected component).
    * ``ogbn-arxiv``, ``ogbn-products``, ``ogbn-papers100m``:
      ``"official"``, OGB's split; accuracy by OGB's evaluator.

    ``split_index`` is ignored by datasets without numbered splits and
    ``seed`` by those without random ones. The global RNG is left as it was.

    ``csbm`` is a contextual stochastic block model made in memory: the
    ``num_nodes`` nodes fall into ``num_classes`` blocks of equal size (up to
    one node), the classes; two distinct nodes are joined with probability
    ``p_intra`` within a block and ``p_inter`` across blocks (defaults
    :math:`8/(n/C - 1)` and :math:`2/(n - n/C)`: expected degree 10, edge
    homophily 0.8); features are :math:`\mathbf{x}_i = \mathrm{snr} \cdot
    \mathbf{u}_{y_i} + \boldsymbol{\varepsilon}_i` with random unit class
    directions :math:`\mathbf{u}_c \in \mathbb{R}^F` and
    :math:`\boldsymbol{\varepsilon}_i \sim \mathcal{N}(\mathbf{0},
    \mathbf{I})`. Graph, features and split come from one
    :class:`torch.Generator` seeded with ``seed``.

    Args:
        name (str): A name of :data:`DATASETS`, in any case.
        root (str or Path, optional): The dataset root (see
            :func:`resolve_root`). It is only read.
        split (str, optional): The split, see above.
        split_index (int): Which geom-gcn split. (default: :obj:`0`)
        seed (int): Seed of random splits and of ``csbm``.
            (default: :obj:`0`)
        normalize_features (bool): Row-normalise the features as PyG's
            :class:`~torch_geometric.transforms.NormalizeFeatures` does (see
            the module docstring; not for ``ogbn-*`` and ``csbm``).
            (default: :obj:`True`)
        download (bool): Download missing files with PyG's/OGB's helpers
            into the cache (the root's mirror in it when a root is given),
            giving up when a network operation blocks for
            :data:`DOWNLOAD_TIMEOUT` seconds (no retries).
            (default: :obj:`True`)
        **csbm_options: ``csbm`` only: ``num_nodes`` (1000), ``num_classes``
            (2), ``p_intra``, ``p_inter``, ``feature_dim`` (32), ``snr``
            (1.0); see above.

    Raises:
        ValueError: Unknown name, split or ``split_index``.
        DatasetNotFoundError: Files missing and not downloadable.
    """
    key = str(name).strip().lower()
    if key == "csbm":
        if split not in (None, "random"):
            raise _bad_split(key, split, _SPLITS["csbm"])
        unknown = sorted(set(csbm_options) - set(CSBM_DEFAULTS))
        if unknown:
            raise TypeError(
                f"Unknown csbm option(s) {', '.join(unknown)}; valid ones "
                f"are {', '.join(CSBM_DEFAULTS)}")
        return _csbm(seed=seed, **{**CSBM_DEFAULTS, **csbm_options})
    if csbm_options:
        raise TypeError(
            f"load_dataset() got unexpected keyword argument(s) "
            f"{', '.join(sorted(csbm_options))}: options other than the "
            f"named ones only apply to 'csbm' ({', '.join(CSBM_DEFAULTS)})")

    source = _source(key)
    allowed = _SPLITS[source.family]
    split = allowed[0] if split is None else split
    if split not in allowed:
        raise _bad_split(key, split, allowed)
    if source.family == "geom-gcn" and not (
            isinstance(split_index, numbers.Integral)
            and 0 <= int(split_index) < NUM_GEOM_GCN_SPLITS):
        raise ValueError(
            f"split_index={split_index!r} is out of range for '{key}': its "
            f"geom-gcn splits are numbered 0-{NUM_GEOM_GCN_SPLITS - 1}")

    root = resolve_root(root)
    work = _work_root(root)
    # Parallel sweep workers load the same dataset at once: one at a time
    # links, downloads and processes it.
    with _folder_lock(work / source.folder):
        _prepare(key, source, root, work, download)
        if source.family == "planetoid" and split == "random":
            # Planetoid draws its random split from the global RNG.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                dataset = _open(source, work, split)
        else:
            dataset = _open(source, work, split)
    data = dataset[0]
    ogb_name = None

    if source.family == "planetoid":
        num_classes = dataset.num_classes
        if split == "random":  # PyG's default counts.
            split = f"random(20 per class/500/1000, seed={seed})"
    elif source.family == "geom-gcn":
        num_classes = dataset.num_classes
        for key_ in ("train_mask", "val_mask", "test_mask"):
            data[key_] = data[key_][:, int(split_index)].clone()
        split = f"geom-gcn:{int(split_index)}"
    elif source.family == "shchur":
        num_classes = dataset.num_classes
        generator = torch.Generator().manual_seed(seed)
        data.train_mask, data.val_mask, data.test_mask = _per_class_split(
            data.y, num_classes, generator)
        split = _shchur_split_name(seed)
    else:  # ogbn
        ogb_name = source.cls_name
        num_classes = int(_ogb_master()[ogb_name]["num classes"])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*NumPy array is not writable")
            idx = dataset.get_idx_split()
        data.y = data.y.view(-1)
        data.train_mask = index_to_mask(idx["train"], data.num_nodes)
        data.val_mask = index_to_mask(idx["valid"], data.num_nodes)
        data.test_mask = index_to_mask(idx["test"], data.num_nodes)
        split = f"official:{_ogb_master()[ogb_name]['split']}"

    # Functional forms rather than transforms: PyG's attribute heuristics
    # could take a node attribute for an edge one when N equals E.
    edge_index, edge_attr = remove_self_loops(data.edge_index,
                                              data.edge_attr)
    if edge_attr is None:
        data.edge_index = to_undirected(edge_index, num_nodes=data.num_nodes)
    else:
        data.edge_index, data.edge_attr = to_undirected(
            edge_index, edge_attr, num_nodes=data.num_nodes)
    if normalize_features and source.family != "ogbn":
        data = T.NormalizeFeatures()(data)
    data.x = data.x.to(torch.float32)
    data.y = data.y.to(torch.long)

    return NodeTask(name=key, data=data, num_features=data.x.size(1),
                    num_classes=num_classes, split=split, ogb_name=ogb_name)


def _bad_split(name: str, split, allowed: Tuple[str, ...]) -> ValueError:
    return ValueError(f"Unknown split {split!r} for dataset '{name}'; "
                      f"choose one of {', '.join(allowed)} (or None)")


# Synthetic data #############################################################


def _sample_distinct(total: int, count: int,
                     generator: torch.Generator) -> Tensor:
    # A uniformly random `count`-subset of range(total) without materialising
    # range(total): draw, drop repeats, draw what is missing. By symmetry the
    # result is uniform over all subsets of that size.
    out = torch.empty(0, dtype=torch.long)
    while out.numel() < count:
        draw = torch.randint(total, (count - out.numel(), ),
                             generator=generator)
        out = torch.cat([out, draw]).unique()
    return out


def _sbm_edges(sizes: List[int], p_intra: float, p_inter: float,
               generator: torch.Generator) -> Tensor:
    r"""An undirected stochastic block model: each pair of distinct nodes is
    joined independently with probability ``p_intra`` within a block and
    ``p_inter`` across blocks. Per pair of blocks, the edge count is drawn
    from its binomial law and then that many distinct node pairs uniformly,
    which is the same law in time and memory linear in the edges."""
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    rows, cols = [], []
    for a, (n_a, o_a) in enumerate(zip(sizes, offsets)):
        for b in range(a, len(sizes)):
            n_b, o_b = sizes[b], offsets[b]
            p = p_intra if a == b else p_inter
            # Pairs (i, j) over the full n_a x n_b grid; within a block only
            # i < j is kept, so each unordered pair is still one trial.
            total = n_a * n_b
            count = torch.binomial(
                torch.tensor(float(total), dtype=torch.float64),
                torch.tensor(float(p), dtype=torch.float64),
                generator=generator)
            cell = _sample_distinct(total, int(count), generator)
            row, col = cell // n_b, cell % n_b
            if a == b:
                keep = row < col
                row, col = row[keep], col[keep]
            rows.append(row + o_a)
            cols.append(col + o_b)
    edge_index = torch.stack([torch.cat(rows), torch.cat(cols)])
    return to_undirected(edge_index, num_nodes=sum(sizes))


def _csbm(
    *,
    num_nodes: int,
    num_classes: int,
    p_intra: Optional[float],
    p_inter: Optional[float],
    feature_dim: int,
    snr: float,
    seed: int,
) -> NodeTask:
    r"""A contextual stochastic block model (no files, no download).

    The ``num_nodes`` nodes fall into ``num_classes`` blocks of (nearly)
    equal size :math:`n_c`; ``y`` is the block. Two distinct nodes are
    joined with probability ``p_intra`` in the same block and ``p_inter``
    across blocks, so with :math:`n/C` nodes per block the expected degree is
    :math:`p_\mathrm{intra}(n/C - 1) + p_\mathrm{inter}(n - n/C)` and the
    expected edge homophily (share of edges within a block) is
    :math:`p_\mathrm{intra}(n/C - 1)` over that. The defaults,
    :math:`p_\mathrm{intra} = 8/(n/C - 1)` and
    :math:`p_\mathrm{inter} = 2/(n - n/C)`, give degree 10 and homophily
    0.8.

    Features: :math:`\mathbf{x}_i = \boldsymbol{\mu}_{y_i} +
    \boldsymbol{\varepsilon}_i`, :math:`\boldsymbol{\varepsilon}_i \sim
    \mathcal{N}(\mathbf{0}, \mathbf{I})`, where the class means
    :math:`\boldsymbol{\mu}_c = \mathrm{snr} \cdot \mathbf{u}_c` have
    uniformly random unit directions :math:`\mathbf{u}_c` in
    :math:`\mathbb{R}^{F}` (``F = feature_dim``).

    The split is that of the Amazon/Coauthor datasets (20/30 per class, rest
    test). Graph, features and split come from one :class:`torch.Generator`
    seeded with ``seed``: the same arguments give the same task, and the
    global RNG is not used.
    """
    n, num_classes = int(num_nodes), int(num_classes)
    if num_classes < 2:
        raise ValueError(f"csbm needs num_classes >= 2 (got {num_classes})")
    min_nodes = (_TRAIN_PER_CLASS + _VAL_PER_CLASS + 1) * num_classes
    if n < min_nodes:
        raise ValueError(
            f"csbm with num_classes={num_classes} needs num_nodes >= "
            f"{min_nodes} for its 20/30-per-class split (got {n})")
    if int(feature_dim) < 1 or snr < 0:
        raise ValueError(f"csbm needs feature_dim >= 1 and snr >= 0 (got "
                         f"feature_dim={feature_dim}, snr={snr})")
    block = n / num_classes
    p_intra = 8.0 / (block - 1) if p_intra is None else float(p_intra)
    p_inter = 2.0 / (n - block) if p_inter is None else float(p_inter)
    for key, p in (("p_intra", p_intra), ("p_inter", p_inter)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"csbm needs 0 <= {key} <= 1 (got {p})")

    generator = torch.Generator().manual_seed(int(seed))
    sizes = [(n + c) // num_classes for c in range(num_classes)]
    y = torch.repeat_interleave(torch.arange(num_classes),
                                torch.tensor(sizes))
    edge_index = _sbm_edges(sizes, p_intra, p_inter, generator)
    means = torch.randn(num_classes, int(feature_dim), generator=generator)
    means = snr * means / means.norm(dim=1, keepdim=True)
    x = means[y] + torch.randn(n, int(feature_dim), generator=generator)
    train_mask, val_mask, test_mask = _per_class_split(y, num_classes,
                                                       generator)
    data = Data(x=x, edge_index=edge_index, y=y, train_mask=train_mask,
                val_mask=val_mask, test_mask=test_mask)
    return NodeTask(name="csbm", data=data, num_features=int(feature_dim),
                    num_classes=num_classes, split=_shchur_split_name(seed))


# Status #####################################################################


def dataset_status(
    root: Optional[Union[str, os.PathLike]] = None,
) -> List[Tuple[str, bool, str]]:
    r"""For each name of :data:`DATASETS`: ``(name, available, where)``,
    ``available`` telling whether it loads without a download and ``where``
    the folder its files are in, or what is missing where. Nothing is
    written."""
    root = resolve_root(root)
    work = _work_root(root)
    out = []
    for name in DATASETS:
        if name == "csbm":
            out.append((name, True, "generated in memory (no files)"))
            continue
        try:
            source = _source(name)
        except ModuleNotFoundError as err:  # an ogbn-* name without `ogb`
            out.append((name, False, str(err)))
            continue
        in_root = _missing(source, root / source.folder)
        if not in_root:
            out.append((name, True, str(root / source.folder)))
            continue
        # Downloaded earlier into the cache mirror?
        in_work = [
            file for file in in_root
            if not (work / source.folder / file).is_file()
        ]
        if work != root and not in_work:
            out.append((name, True, str(work / source.folder)))
            continue
        out.append((name, False,
                    f"{len(in_root)} of {len(source.files)} files missing in "
                    f"{root / source.folder}, e.g. {in_root[0]}"))
    return out
