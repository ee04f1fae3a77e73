r"""Run records on disk: the ground floor under the sweep, the report and
the command line (no torch here).

A sweep's output folder holds ``results.jsonl`` (one finished run per
line) and ``errors.jsonl`` (runs that raised, retried next time). Records
are appended one line at a time and synced, so a crash cuts at most the
line being written; :func:`read_records` skips such a line. A
:class:`Cell` is one run of a sweep, and :attr:`Cell.key` the key that
identifies its record. :func:`lock_folder` keeps two sweeps from writing
the same folder, :func:`check_writable` finds an unwritable folder before
any run, and :func:`append_or_keep` keeps a record that cannot be written
in a fallback file instead of losing it.
"""
import errno
import fcntl
import hashlib
import json
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

RESULTS_FILE = "results.jsonl"
ERRORS_FILE = "errors.jsonl"
#: Where the runs and trials in progress keep their training checkpoints.
CHECKPOINTS_FOLDER = "checkpoints"
LOCK_FILE = ".sweep.lock"

#: The fields every finished run has (what the report groups by).
REQUIRED_FIELDS = ("dataset", "method", "num_layers")


@dataclass(frozen=True)
class Cell:
    r"""One run of a sweep: a dataset, method, depth and seed with every
    option resolved."""
    dataset: str
    method: str  # a method of gnn_center.nn.METHODS or a variant's name
    num_layers: int
    seed: int
    data_options: Dict[str, Any] = field(hash=False)
    model_options: Dict[str, Any] = field(hash=False)
    train_options: Dict[str, Any] = field(hash=False)
    base_method: str = ""  # the method of METHODS that is built

    def __post_init__(self):
        if not self.base_method:
            object.__setattr__(self, "base_method", self.method)

    @property
    def key(self) -> str:
        r"""Identifies the run: a hash of everything that determines its
        result, so that a changed option is a new run."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __str__(self) -> str:
        return (f"{self.dataset} {self.method} L={self.num_layers} "
                f"seed={self.seed}")



class UsageError(Exception):
    r"""A problem the user can fix; the command line prints its message
    alone, without a traceback."""


class FolderLocked(UsageError):
    pass


class NotWritable(UsageError):
    pass


class BadRecord(UsageError, ValueError):
    pass


class ResultsNotSaved(UsageError):
    r"""Records the results file could not take; the message says where
    they are kept."""


def iter_records(path: os.PathLike) -> Iterator[Tuple[int, Dict[str, Any]]]:
    r"""``(line number, record)`` for each record of a JSON-lines file; a
    line that does not parse (cut short by a crash) is skipped with a
    warning. A missing file has no records."""
    path = Path(path)
    if not path.exists():
        return
    bad = 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(record, dict):
                yield number, record
            else:
                bad += 1
    if bad:
        warnings.warn(f"{path}: ignored {bad} incomplete line(s), e.g. from "
                      f"an interrupted run", stacklevel=3)


def read_records(path: os.PathLike) -> List[Dict[str, Any]]:
    r"""The records of a JSON-lines file, skipping cut lines (see
    :func:`iter_records`)."""
    return [record for _, record in iter_records(path)]


def check_fields(path: os.PathLike, number: int,
                 record: Dict[str, Any]) -> None:
    r"""Raises :class:`BadRecord` naming the file and line when a finished
    run lacks a field the report needs."""
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        raise BadRecord(f"{path}, line {number}: the record has no "
                        f"{', '.join(map(repr, missing))} field; it is not "
                        f"a run record of gnn-center (remove the line or "
                        f"pass another file)")


def append_record(path: os.PathLike, record: Dict[str, Any]) -> None:
    r"""Appends one record as a line and syncs it to disk. If the file ends
    in a partial line, the record starts on a new line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(path, "a+b") as f:
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def fallback_path(path: os.PathLike) -> Path:
    r"""Where :func:`append_or_keep` keeps the records that ``path`` could
    not take: a file of this process in the temporary folder."""
    path = Path(path)
    name = f"gnn-center-unsaved-{path.parent.name}-{path.stem}-{os.getpid()}"
    return Path(tempfile.gettempdir()) / f"{name}.jsonl"


def append_or_keep(path: os.PathLike,
                   record: Dict[str, Any]) -> Tuple[Optional[Path],
                                                    Optional[OSError]]:
    r"""Appends ``record`` to ``path``; if that fails, appends it to
    :func:`fallback_path` instead. Returns ``(None, None)`` when ``path``
    took it, else ``(where it is kept, the error)``; raises only if the
    fallback cannot be written either."""
    try:
        append_record(path, record)
        return None, None
    except OSError as err:
        kept = fallback_path(path)
        append_record(kept, record)
        return kept, err


def check_writable(folder: os.PathLike, *names: str) -> None:
    r"""Raises :class:`NotWritable` unless ``folder`` can be created and
    written (a probe file is written, synced and removed, which also finds
    a full disk) and each existing file ``folder/name`` can be appended
    to."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-") as f:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
        for name in names:
            if (folder / name).exists():
                with open(folder / name, "ab"):
                    pass
    except OSError as err:
        where = err.filename or folder
        raise NotWritable(f"cannot write the results to {where}: "
                          f"{err.strerror or err}; nothing was run. Free "
                          f"space, fix the permissions or choose another "
                          f"folder (--output-dir)") from err


@contextmanager
def lock_folder(folder: os.PathLike, wait: bool = False) -> Iterator[Path]:
    r"""Holds an exclusive lock on ``folder`` (``flock`` on its
    :data:`LOCK_FILE`, released when the process ends however it ends).
    If another process holds it: raises :class:`FolderLocked` naming the
    holder's process id, or with ``wait`` says so on stderr and blocks
    until the lock is free (Ctrl-C still stops the wait)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            busy = (f"{folder} is in use by another sweep (process "
                    f"{holder or 'unknown'})")
            if not wait:
                raise FolderLocked(
                    f"{busy}; wait for it to finish (--wait-for-lock waits "
                    f"for you), or stop it and re-run, or choose another "
                    f"--output-dir") from None
            _print_waiting(f"{busy}: waiting for it to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


def _print_waiting(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
