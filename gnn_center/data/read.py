r"""Reading a dataset's files with its PyG or OGB class, and naming those
files when reading fails."""
import contextlib
from pathlib import Path
from typing import Iterator

from gnn_center.data import ogb
from gnn_center.data.registry import Source


class DatasetFileError(ValueError):
    r"""The files of a dataset are there but cannot be right: reading them
    failed, or the graph they hold does not have the dataset's known sizes
    (a truncated or otherwise corrupt file)."""


def open_dataset(source: Source, work: Path, split: str = "public"):
    r"""The PyG (or OGB) dataset object of ``source`` with its folder under
    ``work``; the class processes the raw files on first use (and downloads
    those missing, which :func:`~gnn_center.data.files.prepare` relies
    on)."""
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
        return ogb.open_dataset(source, work)
    raise AssertionError(family)


def check_files_hint(name: str, source: Source, root: Path, work: Path,
                     files) -> str:
    r"""The advice that ends every :class:`DatasetFileError` of dataset
    ``name``: which of its files to check, and where."""
    listed = "\n".join(f"  {file}" for file in files)
    hint = (f"Check these files of '{name}' in {root / source.folder} "
            f"(truncated or corrupt? compare them with a fresh copy, e.g. "
            f"by their sha256 sums):\n{listed}")
    if work == root:
        # No mirror records the raw files' state, so nothing notices that
        # they were replaced: the stale processed files must go by hand.
        hint += (f"\nAfter replacing them, delete "
                 f"{work / source.folder / 'processed'} so that they are "
                 f"read again.")
    return hint


@contextlib.contextmanager
def reading(name: str, source: Source, root: Path,
            work: Path) -> Iterator[None]:
    r"""Re-raises an error of the block, which reads (and may process) the
    files of dataset ``name``, as a :class:`DatasetFileError` that names
    those files, chained to the original. A missing package stays what it
    is: no file is to blame."""
    try:
        yield
    except (ImportError, DatasetFileError):
        raise
    except Exception as exc:
        raise DatasetFileError(
            f"Dataset '{name}': reading its files failed "
            f"({type(exc).__name__}: {exc}).\n" +
            check_files_hint(name, source, root, work, source.files)) \
            from exc
