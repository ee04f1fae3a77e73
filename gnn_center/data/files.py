r"""Where dataset files are and how they get there: the dataset root and the
writable cache, the cache's mirror of a read-only root, a lock per dataset
folder, and downloads that give up quickly offline."""
import contextlib
import hashlib
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

from gnn_center.data import ogb
from gnn_center.data.read import open_dataset
from gnn_center.data.registry import Source

#: Seconds any single network operation of a download may block before the
#: download is given up (no retries), so that offline machines fail fast.
DOWNLOAD_TIMEOUT = 10.0

DATA_ENV = "GNN_CENTER_DATA"
CACHE_ENV = "GNN_CENTER_CACHE"


class DatasetNotFoundError(FileNotFoundError):
    r"""The files of a dataset are neither in the dataset root nor
    downloadable (offline, or ``download=False``)."""


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


def work_root(root: Path) -> Path:
    # The root is read-only to us unless it is the cache itself: everything
    # PyG/OGB write goes into a per-root mirror with the same layout.
    cache = cache_dir()
    if root == cache:
        return root
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return cache / "mirrors" / f"{root.name or 'root'}-{digest}"


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


def mirror(source: Source, root: Path, work: Path) -> None:
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


def missing_files(source: Source, folder: Path) -> List[str]:
    return [file for file in source.files if not (folder / file).is_file()]


def _not_found(name: str, source: Source, root: Path, work: Path,
               missing: List[str], reason: str) -> DatasetNotFoundError:
    folder = root / source.folder
    where = f"{folder}"
    if work != root:
        where += f" (nor in the cache mirror {work / source.folder})"
    expected = "\n".join(f"  {source.folder}/{file}" for file in missing)
    example = f"{source.folder}/{source.files[0]}"
    return DatasetNotFoundError(
        f"Dataset '{name}' not found: {len(missing)} of {len(source.files)} "
        f"expected files are missing from {where}; {reason}.\n"
        f"Expected under the dataset root {root}:\n{expected}\n"
        f"Fix: choose as dataset root a folder that holds these files in "
        f"PyTorch Geometric's layout, i.e. one that contains "
        f"<root>/{example}. Give it as an absolute path, e.g. "
        f"/data/gnn-datasets (so that /data/gnn-datasets/{example} exists): "
        f"on the command line with --root /data/gnn-datasets, in Python "
        f"with load_dataset(..., root='/data/gnn-datasets'), or for both "
        f"with the environment variable {DATA_ENV}=/data/gnn-datasets. "
        f"Or, on a machine with internet access, let the files be "
        f"downloaded into the cache (download=True in Python, the "
        f"default).")


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
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


def prepare(name: str, source: Source, root: Path, work: Path,
             download: bool) -> None:
    r"""Makes all files of ``source`` present under ``work``: linked from
    the root, or downloaded into ``work`` when allowed."""
    if work != root:
        mirror(source, root, work)
    dst = work / source.folder
    if source.family == "ogbn":
        ogb.write_release(dst, source)

    missing = missing_files(source, dst)
    if not missing:
        return
    if not download:
        raise _not_found(name, source, root, work, missing,
                         "downloading is disabled (download=False)")
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT):
            _download(source, work, missing)
    except Exception as exc:
        if not missing_files(source, dst):
            raise  # Downloaded fine, failed later: not a missing-file issue.
        for file in missing:  # Partial downloads would pass as complete.
            if (dst / file).is_file() and not (dst / file).is_symlink():
                (dst / file).unlink()
        raise _not_found(
            name, source, root, work, missing,
            f"downloading them failed ({type(exc).__name__}: {exc})") from exc
    missing = missing_files(source, dst)
    if missing:
        raise _not_found(name, source, root, work, missing,
                         "the download did not provide them")


def _download(source: Source, work: Path, missing: List[str]) -> None:
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
        ogb.download(source, work)
    else:
        open_dataset(source, work)  # The PyG class downloads, then processes.
