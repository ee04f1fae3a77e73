r"""The known sizes of each named dataset, checked on every load, so that a
truncated or otherwise corrupt raw file fails loudly instead of training on
a smaller graph or split.

Where the numbers come from: nodes, features, classes and the Planetoid
public splits are those published with the datasets (and listed in the
shared copy's ``README.md``); PubMed's edges are PyG's count (88648
directed, 44324 undirected pairs). The other edge counts were measured by
loading each dataset of the shared copy once with this package, so they are
counted after its own processing: undirected (both directions counted),
coalesced, without self-loops. The OGB sizes are those of OGB's paper (Hu
et al., 2020); their edge counts after symmetrisation were never measured
here (no copy), so edges are not checked for them.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from gnn_center.data.read import DatasetFileError, check_files_hint
from gnn_center.data.registry import Source


@dataclass(frozen=True)
class Sizes:
    nodes: int
    #: Directed entries of the undirected ``edge_index`` (None: unchecked).
    edges: Optional[int]
    features: int
    classes: int
    #: Train/validation/test sizes of the split the files define (Planetoid
    #: ``public``, OGB ``official``); None where the split is drawn or comes
    #: in numbered variants.
    split: Optional[Tuple[int, int, int]] = None


#: Every file-backed dataset name with its known sizes.
EXPECTED_SIZES: Dict[str, Sizes] = {
    "cora": Sizes(2708, 10556, 1433, 7, (140, 500, 1000)),
    "citeseer": Sizes(3327, 9104, 3703, 6, (120, 500, 1000)),
    "pubmed": Sizes(19717, 88648, 500, 3, (60, 500, 1000)),
    "cornell": Sizes(183, 554, 1703, 5),
    "texas": Sizes(183, 558, 1703, 5),
    "wisconsin": Sizes(251, 900, 1703, 5),
    "chameleon": Sizes(2277, 62742, 2325, 5),
    "squirrel": Sizes(5201, 396706, 2089, 5),
    "actor": Sizes(7600, 53318, 932, 5),
    "photo": Sizes(7650, 238162, 745, 8),
    "computers": Sizes(13752, 491722, 767, 10),
    "cs": Sizes(18333, 163788, 6805, 15),
    "physics": Sizes(34493, 495924, 8415, 5),
    "ogbn-arxiv": Sizes(169343, None, 128, 40, (90941, 29799, 48603)),
    "ogbn-products": Sizes(2449029, None, 100, 47,
                           (196615, 39323, 2213091)),
    "ogbn-papers100m": Sizes(111059956, None, 128, 172,
                             (1207179, 125265, 214338)),
}

# Per family and size: substrings of the files that size comes from, those
# to check first when it is wrong.
_FILES_BEHIND = {
    "planetoid": {
        "nodes": (".allx", ".tx", ".test.index"),
        "edges": (".graph", ),
        "features": (".x", ".allx", ".tx"),
        "classes": (".y", ".ally", ".ty"),
        "train": (".x", ".y"),
        "validation": (".allx", ".ally"),
        "test": (".test.index", ".tx", ".ty"),
    },
    "geom-gcn": {
        "nodes": ("node_feature_label", ),
        "edges": ("graph_edges", ),
        "features": ("node_feature_label", ),
        "classes": ("node_feature_label", ),
    },
    "ogbn": {
        "nodes": ("num-node-list", "node-feat", "node-label"),
        "edges": ("edge.csv", "num-edge-list"),
        "features": ("node-feat", ),
        "classes": ("node-label", ),
        "train": ("/train.", ),
        "validation": ("/valid.", ),
        "test": ("/test.", ),
    },
}

_LABELS = {"train": "training nodes", "validation": "validation nodes",
           "test": "test nodes"}


def check_sizes(name: str, source: Source, root: Path, work: Path, data,
                num_classes: int, split: str) -> None:
    r"""Raises :class:`~gnn_center.data.read.DatasetFileError` naming the
    files to check if the loaded ``data`` of dataset ``name`` (processed:
    undirected, coalesced, no self-loops; masks of ``split``) differs from
    :data:`EXPECTED_SIZES`. Names not in the table are not checked."""
    expected = EXPECTED_SIZES.get(name)
    if expected is None:
        return
    got = {"nodes": data.num_nodes, "edges": data.num_edges,
           "features": data.num_features, "classes": num_classes}
    want = {"nodes": expected.nodes, "edges": expected.edges,
            "features": expected.features, "classes": expected.classes}
    # Planetoid's "full" split keeps the files' validation and test nodes.
    if expected.split is not None and split in ("public", "official",
                                                "full"):
        parts = ("train", "validation", "test")
        masks = ("train_mask", "val_mask", "test_mask")
        for part, mask, size in zip(parts, masks, expected.split):
            if not (split == "full" and part == "train"):
                got[part], want[part] = int(data[mask].sum()), size
    wrong = [key for key in want
             if want[key] is not None and got[key] != want[key]]
    if not wrong:
        return
    behind = _FILES_BEHIND.get(source.family, {})
    files = [file for file in source.files
             if any(part in file for key in wrong
                    for part in behind.get(key, ("", )))]
    described = ", ".join(
        f"{got[key]} {_LABELS.get(key, key)} (expected {want[key]})"
        for key in wrong)
    raise DatasetFileError(
        f"Dataset '{name}' does not have its known sizes: it has "
        f"{described}.\n" +
        check_files_hint(name, source, root, work, files or source.files))
