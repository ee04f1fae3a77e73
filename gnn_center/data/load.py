r"""Node-classification datasets as ready-to-train tasks: :func:`load_dataset`.

Every graph comes out in the same form, whatever its source:

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

``split_index`` (checked to be 0-9 for every dataset) is used by the geom-gcn
datasets only, and ``seed`` by random splits and ``csbm`` only.
"""
import os
import warnings
from pathlib import Path
from typing import Optional, Tuple, Union

import torch
import torch_geometric.transforms as T
from torch_geometric.data import Data
from torch_geometric.utils import (
    index_to_mask,
    remove_self_loops,
    to_undirected,
)

from gnn_center.data import ogb
from gnn_center.data.csbm import CSBM_DEFAULTS, csbm
from gnn_center.data.files import folder_lock, prepare, resolve_root, work_root
from gnn_center.data.options import DataOptions
from gnn_center.data.read import open_dataset, reading
from gnn_center.data.registry import Source, source as source_of
from gnn_center.data.sizes import check_sizes
from gnn_center.data.splits import per_class_split, per_class_split_name
from gnn_center.data.task import NodeTask


def load_dataset(
    name: str,
    root: Optional[Union[str, os.PathLike]] = None,
    *,
    split: Optional[str] = None,
    split_index: int = 0,
    seed: int = 0,
    normalize_features: bool = True,
    download: bool = True,
    options: Optional[DataOptions] = None,
    **csbm_options,
) -> NodeTask:
    r"""Loads a node-classification dataset as a :class:`NodeTask`.

    The splits of each dataset are listed in the module docstring;
    ``csbm`` and its options are described by
    :func:`~gnn_center.data.csbm.csbm`. The global RNG is left as it was.

    Args:
        name (str): A name of :data:`DATASETS`, in any case.
        root (str or Path, optional): The dataset root (see
            :func:`resolve_root`). It is only read.
        split (str, optional): The split (see the module docstring).
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
        options (DataOptions, optional): All of the options above but
            ``seed`` at once (e.g. a config's ``data:`` section), instead of
            passing them one by one.
        **csbm_options: ``csbm`` only: ``num_nodes`` (1000), ``num_classes``
            (2), ``p_intra``, ``p_inter``, ``feature_dim`` (32), ``snr``
            (1.0); see :func:`~gnn_center.data.csbm.csbm`.

    The options are checked by :class:`DataOptions`, and every loaded graph
    against the dataset's known sizes
    (:data:`~gnn_center.data.sizes.EXPECTED_SIZES`).

    Raises:
        ValueError: Unknown name, split or ``split_index``, or an option out
            of range.
        TypeError: A keyword argument that is no option.
        DatasetNotFoundError: Files missing and not downloadable.
        DatasetFileError: Files there but unreadable, or holding a graph of
            other sizes than the dataset's (truncated or corrupt); the error
            names the files to check.
    """
    key = str(name).strip().lower()
    if options is None:
        options = _options(split, split_index, normalize_features, download,
                           csbm_options)
    elif not isinstance(options, DataOptions):
        raise TypeError(f"options= must be a DataOptions, not "
                        f"{type(options).__name__}")
    elif (split, split_index, normalize_features, download,
          csbm_options) != (None, 0, True, True, {}):
        raise TypeError("load_dataset() takes either options= or the "
                        "options one by one, not both")
    options.check_for(key)
    if key == "csbm":
        return csbm(seed=seed, **{**CSBM_DEFAULTS, **options.csbm_options()})

    source, root = source_of(key), resolve_root(root)
    work, split = work_root(root), options.split_for(key)
    # Parallel sweep workers load the same dataset at once: one at a time
    # links, downloads and processes it.
    with folder_lock(work / source.folder):
        prepare(key, source, root, work, options.download)
        with reading(key, source, root, work):
            dataset = _open_seeded(source, work, split, seed)
    with reading(key, source, root, work):
        data, num_classes, split_name = _SELECT[source.family](
            dataset, split, options.split_index, seed)
    data = _standard_form(data, options.normalize_features
                          and source.family != "ogbn")
    check_sizes(key, source, root, work, data, num_classes, split)
    return NodeTask(name=key, data=data, num_features=data.x.size(1),
                    num_classes=num_classes, split=split_name,
                    ogb_name=source.cls_name if source.family == "ogbn"
                    else None)


def _options(split, split_index, normalize_features, download,
             csbm_options) -> DataOptions:
    unknown = sorted(set(csbm_options) - set(CSBM_DEFAULTS))
    if unknown:
        raise TypeError(
            f"load_dataset() got unexpected keyword argument(s) "
            f"{', '.join(unknown)}; the only options besides the named ones "
            f"are those of 'csbm': {', '.join(CSBM_DEFAULTS)}")
    return DataOptions(split=split, split_index=split_index,
                       normalize_features=normalize_features,
                       download=download, **csbm_options)


def _open_seeded(source: Source, work: Path, split: str, seed: int):
    if source.family == "planetoid" and split == "random":
        # Planetoid draws its random split from the global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return open_dataset(source, work, split)
    return open_dataset(source, work, split)


# Per family: (dataset, split, split_index, seed) -> (data with the split's
# masks, number of classes, the split's name for NodeTask.split).
Selected = Tuple[Data, int, str]


def _planetoid(dataset, split: str, split_index: int,
               seed: int) -> Selected:
    if split == "random":  # PyG's default counts.
        split = f"random(20 per class/500/1000, seed={seed})"
    return dataset[0], dataset.num_classes, split


def _geom_gcn(dataset, split: str, split_index: int, seed: int) -> Selected:
    data, split_index = dataset[0], int(split_index)
    for key in ("train_mask", "val_mask", "test_mask"):
        data[key] = data[key][:, split_index].clone()
    return data, dataset.num_classes, f"geom-gcn:{split_index}"


def _shchur(dataset, split: str, split_index: int, seed: int) -> Selected:
    data = dataset[0]
    generator = torch.Generator().manual_seed(seed)
    data.train_mask, data.val_mask, data.test_mask = per_class_split(
        data.y, dataset.num_classes, generator)
    return data, dataset.num_classes, per_class_split_name(seed)


def _ogbn(dataset, split: str, split_index: int, seed: int) -> Selected:
    data, meta = dataset[0], ogb.master()[dataset.name]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*NumPy array is not writable")
        idx = dataset.get_idx_split()
    data.y = data.y.view(-1)
    data.train_mask = index_to_mask(idx["train"], data.num_nodes)
    data.val_mask = index_to_mask(idx["valid"], data.num_nodes)
    data.test_mask = index_to_mask(idx["test"], data.num_nodes)
    return data, int(meta["num classes"]), f"official:{meta['split']}"


_SELECT = {"planetoid": _planetoid, "geom-gcn": _geom_gcn,
           "shchur": _shchur, "ogbn": _ogbn}


def _standard_form(data: Data, normalize_features: bool) -> Data:
    # Functional forms rather than transforms: PyG's attribute heuristics
    # could take a node attribute for an edge one when N equals E.
    edge_index, edge_attr = remove_self_loops(data.edge_index,
                                              data.edge_attr)
    if edge_attr is None:
        data.edge_index = to_undirected(edge_index, num_nodes=data.num_nodes)
    else:
        data.edge_index, data.edge_attr = to_undirected(
            edge_index, edge_attr, num_nodes=data.num_nodes)
    if normalize_features:
        data = T.NormalizeFeatures()(data)
    data.x = data.x.to(torch.float32)
    data.y = data.y.to(torch.long)
    return data
