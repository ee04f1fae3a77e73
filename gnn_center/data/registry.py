r"""The dataset names :func:`~gnn_center.data.load_dataset` accepts: where
each one's files live in a dataset root, which splits it has, and a short
description."""
from dataclasses import dataclass
from typing import Dict, Tuple

#: How many fixed splits the geom-gcn datasets have (``split_index`` range).
NUM_GEOM_GCN_SPLITS = 10

# Per-class counts of the random splits of Shchur et al. (2018).
TRAIN_PER_CLASS = 20
VAL_PER_CLASS = 30


@dataclass(frozen=True)
class Source:
    r"""Where a file-backed dataset lives and how it is read."""
    # family: "planetoid", "geom-gcn", "shchur" or "ogbn".
    family: str
    # The name the PyG/OGB class takes ("Cora", "texas", "ogbn-arxiv").
    cls_name: str
    # The dataset's folder relative to the root; "processed/" goes in it.
    folder: str
    # Files that must exist, relative to `folder`.
    files: Tuple[str, ...]
    description: str


def _planetoid(cls_name: str, description: str) -> Source:
    suffixes = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
    files = tuple(f"raw/ind.{cls_name.lower()}.{s}" for s in suffixes)
    return Source("planetoid", cls_name, f"Planetoid/{cls_name}", files,
                  description)


def _geom_gcn(cls_name: str, folder: str, file_prefix: str,
              description: str) -> Source:
    files = ("raw/out1_node_feature_label.txt", "raw/out1_graph_edges.txt")
    files += tuple(f"raw/{file_prefix}_split_0.6_0.2_{i}.npz"
                   for i in range(NUM_GEOM_GCN_SPLITS))
    return Source("geom-gcn", cls_name, folder, files, description)


def _shchur(cls_name: str, folder: str, file: str,
            description: str) -> Source:
    return Source("shchur", cls_name, folder, (f"raw/{file}", ), description)


_HETEROPHILY = "10 geom-gcn splits (split_index 0-9)"
SHCHUR_SPLIT = "seeded random split 20/30 per class, rest test"

SOURCES: Dict[str, Source] = {
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
        f"{SHCHUR_SPLIT}"),
    "computers": _shchur(
        "Computers", "Amazon/Computers", "amazon_electronics_computers.npz",
        f"Amazon co-purchase graph: 13752 nodes, 767 features, 10 classes; "
        f"{SHCHUR_SPLIT}"),
    "cs": _shchur(
        "CS", "Coauthor/CS", "ms_academic_cs.npz",
        f"Coauthor graph: 18333 nodes, 6805 features, 15 classes; "
        f"{SHCHUR_SPLIT}"),
    "physics": _shchur(
        "Physics", "Coauthor/Physics", "ms_academic_phy.npz",
        f"Coauthor graph: 34493 nodes, 8415 features, 5 classes; "
        f"{SHCHUR_SPLIT}"),
}

_OGBN_DESCRIPTIONS = {
    "ogbn-arxiv": "OGB arXiv citation graph: 169343 nodes, 128 features, "
    "40 classes; official time split",
    "ogbn-products": "OGB Amazon co-purchase graph: 2449029 nodes, "
    "100 features, 47 classes; official sales-rank split",
    "ogbn-papers100m": "OGB citation graph: 111059956 nodes, 128 features, "
    "172 classes; official time split (about 57 GB)",
}

#: Every dataset name :func:`~gnn_center.data.load_dataset` accepts, with a
#: short description.
DATASETS: Dict[str, str] = {
    **{name: SOURCES[name].description
       for name in ("cora", "citeseer", "pubmed")},
    **_OGBN_DESCRIPTIONS,
    **{name: source.description
       for name, source in SOURCES.items()
       if source.family != "planetoid"},
    "csbm": "synthetic contextual stochastic block model generated in "
    "memory (no files): 1000 nodes, 32 features, 2 classes by default; "
    f"{SHCHUR_SPLIT}",
}

#: The splits of each family; the first is the default.
SPLITS = {
    "planetoid": ("public", "full", "random"),
    "geom-gcn": ("geom-gcn", ),
    "shchur": ("random", ),
    "csbm": ("random", ),
    "ogbn": ("official", ),
}


def source(name: str) -> Source:
    r"""The :class:`Source` of lower-case dataset ``name`` (not ``csbm``).

    Raises:
        ValueError: Unknown name (or an OGB task a NodeTask cannot hold).
        ModuleNotFoundError: An ``ogbn-*`` name without the ``ogb`` package.
    """
    if name in SOURCES:
        return SOURCES[name]
    if name.startswith("ogbn-"):
        # Imported here: the OGB module builds on this one's Source.
        from gnn_center.data.ogb import ogbn_source
        return ogbn_source(name)
    raise unknown_name_error(name)


def splits_of(name: str) -> Tuple[str, ...]:
    r"""The splits dataset ``name`` (lower case) has; the first is its
    default."""
    if name == "csbm":
        return SPLITS["csbm"]
    return SPLITS[source(name).family]


def unknown_name_error(name: str) -> ValueError:
    return ValueError(f"Unknown dataset '{name}'. Valid names "
                      f"(case-insensitive): {', '.join(DATASETS)}")


def bad_split_error(name: str, split, allowed: Tuple[str, ...]) -> ValueError:
    return ValueError(f"Unknown split {split!r} for dataset '{name}'; "
                      f"choose one of {', '.join(allowed)} (or None)")
