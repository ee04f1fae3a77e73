r"""The OGB node tasks (``ogbn-*``): their sources read from OGB's own table,
and the workarounds that let OGB run unattended and offline (no PyPI version
check, no ``input()`` prompts, safe globals for ``torch.load``)."""
import contextlib
import csv
import functools
import importlib.util
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Dict

import torch

from gnn_center.data.registry import DATASETS, Source, unknown_name_error


def master() -> Dict[str, Dict[str, str]]:
    r"""OGB's table of node tasks (``nodeproppred/master.csv``) as
    ``{name: {column: value}}``, read without importing ``ogb`` (whose import
    starts a PyPI version check, see :func:`import_ogb`)."""
    spec = importlib.util.find_spec("ogb")
    if spec is None or not spec.submodule_search_locations:
        raise missing_error()
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


def ogbn_source(name: str) -> Source:
    r"""The :class:`Source` of OGB node task ``name`` (lower case)."""
    # OGB spells some names with capitals.
    table = {key.lower(): (key, meta) for key, meta in master().items()}
    if name not in table:
        raise unknown_name_error(name)
    ogb_name, meta = table[name]
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
    return Source("ogbn", ogb_name, ogb_name.replace("-", "_"), files,
                  DATASETS.get(name, f"OGB node task {ogb_name}"))


def missing_error() -> ModuleNotFoundError:
    # `ogb` is a requirement, but an environment set up by hand (or with
    # --no-deps) may lack it; without this the ogbn-* names read as unknown.
    return ModuleNotFoundError(
        "The OGB datasets (ogbn-*) need the `ogb` package, which this Python "
        "environment lacks: install it with pip install 'ogb>=1.3.6' (a "
        "requirement of gnn-center).", name="ogb")


@functools.lru_cache(maxsize=None)
def evaluator(name: str):
    r"""OGB's :class:`~ogb.nodeproppred.Evaluator` for task ``name``, built
    once per name: the constructor reads OGB's table, and evaluation runs on
    every epoch."""
    return import_ogb().Evaluator(name)


def import_ogb():
    r"""Imports :mod:`ogb.nodeproppred` without its PyPI version check.

    ``import ogb`` starts a (non-daemon) thread that asks PyPI for the latest
    version through the ``outdated`` package, and offline it may keep the
    interpreter from exiting. OGB skips the check when ``outdated`` cannot be
    imported, so it is hidden for the duration of the first import."""
    try:
        if "ogb" not in sys.modules:
            absent = object()
            previous = sys.modules.get("outdated", absent)
            sys.modules["outdated"] = None  # type: ignore  # -> ImportError
            try:
                import ogb  # noqa: F401
            finally:
                if previous is absent:
                    del sys.modules["outdated"]
                else:
                    sys.modules["outdated"] = previous
        import ogb.nodeproppred
    except ImportError as err:
        if err.name not in ("ogb", "ogb.nodeproppred"):
            raise  # one of ogb's own requirements: its message says which
        raise missing_error() from err
    return ogb.nodeproppred


def write_release(folder: Path, source: Source) -> None:
    r"""Marks ``folder`` as holding the current release of ``source``."""
    # OGB asks "Will you update the dataset now? (y/N)" via input() when a
    # dataset folder lacks RELEASE_v<version>.txt (as a linked mirror does).
    version = master()[source.cls_name]["version"]
    release = folder / f"RELEASE_v{version}.txt"
    if not release.exists():
        folder.mkdir(parents=True, exist_ok=True)
        release.write_text(f"{source.cls_name} version {version}, "
                           f"set up by gnn_center.data\n")


def download(source: Source, work: Path) -> None:
    r"""Downloads and unpacks OGB's archive of ``source`` into ``work``,
    keeping files already there."""
    # OGB's own `download()` asks for confirmation via input() above 1 GB and
    # calls exit(-1) when declined; its URL helpers do neither.
    from ogb.utils.url import download_url, extract_zip

    meta = master()[source.cls_name]
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


def _safe_globals() -> list:
    # OGB's `torch.load` of its processed file runs with weights_only=True
    # since torch 2.6; these are the PyG classes in that pickle which PyG
    # does not allow-list itself. Allowed only while OGB loads.
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage
    return [DataEdgeAttr, DataTensorAttr, GlobalStorage]


def open_dataset(source: Source, work: Path):
    r"""OGB's :class:`~ogb.nodeproppred.PygNodePropPredDataset` of
    ``source`` under ``work`` (processed there on first use)."""
    nodeproppred = import_ogb()
    # torch < 2.5 has no `safe_globals` and loads with weights_only=False.
    allow = getattr(torch.serialization, "safe_globals", None)
    allow = contextlib.nullcontext() if allow is None else allow(
        _safe_globals())
    with allow, warnings.catch_warnings():
        # OGB turns read-only numpy arrays into tensors; harmless here.
        warnings.filterwarnings("ignore", ".*NumPy array is not writable")
        return nodeproppred.PygNodePropPredDataset(source.cls_name,
                                                   root=str(work))
