r"""Which datasets load without a download, and from where."""
import os
from typing import List, Optional, Tuple, Union

from gnn_center.data.files import missing_files, resolve_root, work_root
from gnn_center.data.registry import DATASETS
from gnn_center.data.registry import source as source_of


def dataset_status(
    root: Optional[Union[str, os.PathLike]] = None,
) -> List[Tuple[str, bool, str]]:
    r"""For each name of :data:`DATASETS`: ``(name, available, where)``,
    ``available`` telling whether it loads without a download and ``where``
    the folder its files are in, or what is missing where. Nothing is
    written."""
    root = resolve_root(root)
    work = work_root(root)
    out = []
    for name in DATASETS:
        if name == "csbm":
            out.append((name, True, "generated in memory (no files)"))
            continue
        try:
            source = source_of(name)
        except ModuleNotFoundError as err:  # an ogbn-* name without `ogb`
            out.append((name, False, str(err)))
            continue
        in_root = missing_files(source, root / source.folder)
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
