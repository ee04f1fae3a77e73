r"""Resumable depth sweeps.

Every (dataset, method, depth, seed) cell of a config is one
:func:`gnn_center.train.run`. Each finished run is appended to
``<output_dir>/results.jsonl`` at once (flushed and synced), so a crash or
Ctrl-C loses only the runs in progress. Running the same sweep again skips
the cells whose key (a hash of all their settings) is already in the file;
a line cut short by a crash is ignored. Runs that raise are written to
``errors.jsonl`` and retried on the next invocation. On this machine's
executors a run in progress keeps a checkpoint of its training
(``<output_dir>/checkpoints/runs/<key>.pt``: every 20 epochs, and in
this process also at Ctrl-C or SIGTERM, at the end of the epoch in
progress) until its record is stored, so a rerun continues it where it
stopped, to the same record.

Before the first run, :func:`run_sweep` locks the output folder (one sweep
per folder), checks that it can be written and loads each dataset once.
Storing a record (:class:`Store`) is safe against Ctrl-C; the cells run in
this process (:func:`run_here`), in a local process pool
(:func:`gnn_center.local_pool.run_in_processes`) or as Ray tasks
(:mod:`gnn_center.ray_backend`).
"""
import traceback
from functools import partial
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from tqdm.auto import tqdm

from gnn_center import local_pool
from gnn_center.config import ExperimentConfig
from gnn_center.data import load_dataset
from gnn_center.fit_checkpoint import FitCheckpoint
from gnn_center.interrupts import interrupts_deferred
from gnn_center.records import (  # noqa: F401 - read_records: the API
    CHECKPOINTS_FOLDER, ERRORS_FILE, RESULTS_FILE, Cell, ResultsNotSaved,
    UsageError, append_or_keep, check_writable, lock_folder, read_records)
from gnn_center.train import TrainOptions, run

#: Executors of the cells: processes on this machine, or Ray tasks.
BACKENDS = ("local", "ray")

class DatasetUnavailable(UsageError):
    pass


# One process loads each dataset once; cells are ordered by dataset, so a
# small cache suffices.
_TASKS: "OrderedDict[str, Any]" = OrderedDict()
_TASK_CACHE_SIZE = 2


def _task_for(cell: Cell, root: Optional[str]):
    key = repr((cell.dataset, root, cell.seed,
                sorted(cell.data_options.items())))
    if key not in _TASKS:
        _TASKS[key] = load_dataset(cell.dataset, root, seed=cell.seed,
                                   **cell.data_options)
        while len(_TASKS) > _TASK_CACHE_SIZE:
            _TASKS.popitem(last=False)
    _TASKS.move_to_end(key)
    return _TASKS[key]


def _epoch_reporter(cell: Cell) -> Optional[Callable[[int, float], None]]:
    r"""In a worker of the local pool, reports the epochs of ``cell``'s run
    (see :func:`gnn_center.local_pool.epoch_reporter`)."""
    return local_pool.epoch_reporter(
        cell.key, f"{cell.method} L={cell.num_layers} s{cell.seed}",
        TrainOptions(**cell.train_options).max_epochs)


def _runs_folder(output_dir: Path) -> Path:
    return Path(output_dir) / CHECKPOINTS_FOLDER / "runs"


def run_checkpoint(output_dir: Path, key: str) -> FitCheckpoint:
    r"""Where the run of the cell with ``key`` keeps its progress until its
    record is stored."""
    return FitCheckpoint(_runs_folder(output_dir) / f"{key}.pt")


def drop_stale_checkpoints(output_dir: Path, finished: set) -> None:
    r"""Removes the checkpoints of runs whose record is stored (kept when
    storing it failed, and appended by hand since) and the partial files of
    writes a kill cut short. Call it holding the folder's lock."""
    folder = _runs_folder(output_dir)
    for path in folder.glob("*.pt"):
        if path.stem in finished:
            path.unlink(missing_ok=True)
    for leftover in folder.glob(".*.pt.*"):
        leftover.unlink(missing_ok=True)


def run_cell(cell: Cell, root: Optional[str] = None,
             layer_metrics: bool = True, progress: bool = False,
             output_dir: Optional[Path] = None) -> Dict[str, Any]:
    r"""Runs one cell; an exception becomes a record with
    ``status="error"`` instead of ending the sweep. With ``output_dir``,
    the run continues from the checkpoint a stopped run of the same cell
    left there (:func:`run_checkpoint`)."""
    try:
        record = run(cell.dataset, cell.base_method, cell.num_layers,
                     cell.seed,
                     root=root, data_options=cell.data_options,
                     model_options=cell.model_options,
                     train_options=TrainOptions(**cell.train_options),
                     record_layer_metrics=layer_metrics, progress=progress,
                     task=_task_for(cell, root),
                     on_epoch=_epoch_reporter(cell),
                     checkpoint=None if output_dir is None
                     else run_checkpoint(output_dir, cell.key))
    except Exception as err:  # noqa: BLE001 - recorded, not swallowed
        record = dict(dataset=cell.dataset, method=cell.method,
                      num_layers=cell.num_layers, seed=cell.seed,
                      status="error", error=f"{type(err).__name__}: {err}",
                      traceback=traceback.format_exc())
    record["method"] = cell.method
    record["base_method"] = cell.base_method
    record["key"] = cell.key
    record["cell"] = asdict(cell)
    return record


def check_datasets(cells: List[Cell], root: Optional[str]) -> None:
    r"""Loads each dataset of ``cells`` once (with the options of its first
    cell); raises :class:`DatasetUnavailable` with the first failure."""
    for dataset in dict.fromkeys(cell.dataset for cell in cells):
        first = next(cell for cell in cells if cell.dataset == dataset)
        try:
            _task_for(first, root)
        except Exception as err:  # noqa: BLE001 - re-raised, named
            runs = sum(cell.dataset == dataset for cell in cells)
            raise DatasetUnavailable(
                f"cannot load dataset {dataset!r}, needed by {runs} run(s); "
                f"nothing was run. {type(err).__name__}: {err}") from err


@dataclass
class SweepSummary:
    total: int
    skipped: int
    finished: int
    errors: int
    diverged: int
    interrupted: bool
    results_path: Path

    def __str__(self) -> str:
        done = self.skipped + self.finished
        text = (f"{done}/{self.total} runs in {self.results_path} "
                f"({self.finished} new, {self.skipped} already there"
                f"{f', {self.diverged} diverged' if self.diverged else ''})")
        if self.errors:
            text += (f"; {self.errors} failed with an error (see "
                     f"{self.results_path.parent / ERRORS_FILE}; re-run to "
                     f"retry)")
        if self.interrupted:
            text += "; interrupted: re-run the same command to resume"
        return text


class Store:
    r"""Appends each record to the results (or, for a run that raised, the
    errors) file and counts it in ``summary``; a SIGINT waits until both
    are done. A record the file cannot take is kept in a fallback file and
    :class:`ResultsNotSaved` says where."""

    def __init__(self, config_name: str, summary: SweepSummary,
                 bar: Optional[tqdm] = None):
        self.config_name, self.summary, self.bar = config_name, summary, bar
        self.output_dir = summary.results_path.parent
        self.kept: Dict[Path, Path] = {}  # fallback file -> its target
        self.error: Optional[OSError] = None

    def __call__(self, record: Dict[str, Any]) -> None:
        with interrupts_deferred():
            self._store(record)
        if self.kept:
            raise ResultsNotSaved(self.not_saved_message())

    def _store(self, record: Dict[str, Any]) -> None:
        summary = self.summary
        record["config_name"] = self.config_name
        error = record.get("status") == "error"
        if not error:
            record.pop("traceback", None)
        path = summary.results_path
        if error:
            path = path.parent / ERRORS_FILE
        kept, err = append_or_keep(path, record)
        if kept is not None:
            self.kept[kept] = path
            self.error = err
        if error:
            summary.errors += 1
            tqdm.write(f"error in {record['dataset']} {record['method']} "
                       f"L={record['num_layers']} seed={record['seed']}: "
                       f"{record['error']}")
        else:
            summary.finished += 1
            summary.diverged += record.get("status") == "diverged"
            if kept is None:  # stored: its run will not be resumed
                run_checkpoint(self.output_dir, record["key"]).remove()
        if self.bar is not None:
            self.bar.update()

    def not_saved_message(self) -> str:
        copy = "; ".join(f"cat {kept} >> {path}"
                         for kept, path in self.kept.items())
        return (f"could not write to {self.summary.results_path.parent}: "
                f"{self.error}. The sweep stopped; its finished runs are "
                f"kept: once the folder is writable, run `{copy}` and "
                f"re-run the sweep to resume")


def run_here(cells: List[Cell], store: Store, root: Optional[str],
             layer_metrics: bool, progress: bool) -> None:
    r"""Runs the cells one after the other in this process (with an epoch
    bar on a terminal)."""
    for cell in cells:
        store(run_cell(cell, root, layer_metrics, progress=progress,
                       output_dir=store.output_dir))


def run_sweep(config: ExperimentConfig, jobs: int = 1,
              progress: bool = True, backend: str = "local",
              address: Optional[str] = None,
              gpus_per_run: float = 1.0,
              wait_for_lock: bool = False) -> SweepSummary:
    r"""Runs every cell of ``config`` not yet in its results file, ``jobs``
    at a time in separate processes (each with ``cpu_count // jobs``
    threads), appending each record as it finishes. Raises
    :class:`~gnn_center.records.UsageError` before any run if the output
    folder is in use by another sweep (with ``wait_for_lock``: waits for
    that sweep to end, then skips the runs it finished) or cannot be
    written, or a dataset cannot be loaded.

    With ``backend="ray"`` the cells run as Ray tasks instead (``jobs`` is
    then unused; ``address`` and ``gpus_per_run`` are those of
    :class:`gnn_center.ray_backend.RayOptions`), and this process still
    writes every record."""
    if jobs < 1:
        raise ValueError(f"jobs={jobs} must be at least 1")
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: choose one of "
                         f"{', '.join(BACKENDS)}")
    if backend != "ray" and address is not None:
        raise ValueError(f"address={address!r} is for backend='ray'")
    if backend == "ray":
        from gnn_center import ray_backend
        ray_backend.import_ray()  # fails at once, with the install command
        ray_options = ray_backend.RayOptions(address=address,
                                             gpus_per_run=gpus_per_run)
    out = Path(config.output_dir)
    results_path = out / RESULTS_FILE
    check_writable(out, RESULTS_FILE, ERRORS_FILE)
    with lock_folder(out, wait=wait_for_lock):
        finished = {r.get("key") for r in read_records(results_path)}
        drop_stale_checkpoints(out, finished)
        cells = list(config.cells())
        todo = [cell for cell in cells if cell.key not in finished]
        summary = SweepSummary(total=len(cells),
                               skipped=len(cells) - len(todo), finished=0,
                               errors=0, diverged=0, interrupted=False,
                               results_path=results_path)
        bar = tqdm(total=len(todo), desc=config.name,
                   disable=not progress, dynamic_ncols=True)
        store = Store(config.name, summary, bar)
        try:
            check_datasets(todo, config.root)
            if backend == "ray":
                ray_backend.run_cells(todo, config.root,
                                      config.layer_metrics, store,
                                      ray_options)
            elif jobs == 1:
                run_here(todo, store, config.root, config.layer_metrics,
                         progress)
            else:
                _TASKS.clear()  # the workers load their own
                local_pool.run_in_processes(
                    partial(run_cell, output_dir=out), todo, store,
                                            config.root,
                                            config.layer_metrics, jobs, bar)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
    return summary
