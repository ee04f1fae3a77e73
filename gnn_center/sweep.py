r"""Resumable depth sweeps.

Every (dataset, method, depth, seed) cell of a config is one
:func:`gnn_center.train.run`. Each finished run is appended to
``<output_dir>/results.jsonl`` at once (flushed and synced), so a crash or
Ctrl-C loses only the runs in progress. Running the same sweep again skips
the cells whose key (a hash of all their settings) is already in the file;
a line cut short by a crash is ignored. Runs that raise are written to
``errors.jsonl`` and retried on the next invocation.

Before the first run, :func:`run_sweep` locks the output folder (one sweep
per folder), checks that it can be written and loads each dataset once.
Storing a record (:class:`Store`) is safe against Ctrl-C; the cells run in
a local process pool (:func:`run_in_processes`) or in this process
(:func:`run_here`), and another executor can take their place.
"""
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections import OrderedDict
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from queue import Empty
from typing import Any, Callable, Dict, List, Optional

import torch
from tqdm.auto import tqdm

from gnn_center.config import Cell, ExperimentConfig
from gnn_center.data import load_dataset
from gnn_center.gpus import use_one_gpu
from gnn_center.records import (  # noqa: F401 - read_records: the API
    ERRORS_FILE, RESULTS_FILE, UsageError, append_or_keep, check_writable,
    lock_folder, read_records)
from gnn_center.train import TrainOptions, run

#: Executors of the cells: processes on this machine, or Ray tasks.
BACKENDS = ("local", "ray")

class DatasetUnavailable(UsageError):
    pass


class ResultsNotSaved(UsageError):
    pass


# One process loads each dataset once; cells are ordered by dataset, so a
# small cache suffices.
_TASKS: "OrderedDict[str, Any]" = OrderedDict()
_TASK_CACHE_SIZE = 2
# In a worker: where run_cell reports epochs (see _init_worker).
_EPOCHS_QUEUE = None


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
    r"""For :func:`~gnn_center.train.fit`'s ``on_epoch``: sends ``(key,
    label, epochs run, max_epochs)`` to the sweep's process, at most twice
    a second and at the last epoch."""
    queue = _EPOCHS_QUEUE
    if queue is None:
        return None
    label = f"{cell.method} L={cell.num_layers} s{cell.seed}"
    max_epochs = TrainOptions(**cell.train_options).max_epochs
    last = [0.0]

    def report(epoch: int, val_acc: float) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5 or epoch + 1 == max_epochs:
            last[0] = now
            queue.put((cell.key, label, epoch + 1, max_epochs))
    return report


def run_cell(cell: Cell, root: Optional[str] = None,
             layer_metrics: bool = True,
             progress: bool = False) -> Dict[str, Any]:
    r"""Runs one cell; an exception becomes a record with
    ``status="error"`` instead of ending the sweep."""
    try:
        record = run(cell.dataset, cell.base_method, cell.num_layers,
                     cell.seed,
                     root=root, data_options=cell.data_options,
                     model_options=cell.model_options,
                     train_options=TrainOptions(**cell.train_options),
                     record_layer_metrics=layer_metrics, progress=progress,
                     task=_task_for(cell, root),
                     on_epoch=_epoch_reporter(cell))
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


_HELD: List[int] = []  # the SIGINTs _sigint_deferred holds back


def _hold(signum, frame) -> None:
    _HELD.append(signum)


@contextmanager
def _sigint_deferred():
    r"""Holds SIGINT back until the block ends (so that a record is written
    and counted, or neither), then delivers it. Inside another such block,
    where SIGINT is ignored, or outside the main thread, it does nothing."""
    previous = signal.getsignal(signal.SIGINT)
    if (previous in (_hold, signal.SIG_IGN, None)
            or threading.current_thread() is not threading.main_thread()):
        yield
        return
    _HELD.clear()
    signal.signal(signal.SIGINT, _hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if _HELD:
        signal.raise_signal(signal.SIGINT)


@contextmanager
def _sigint_ignored():
    r"""Ignores SIGINT in the block (when run in the main thread, the only
    one that may set signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)


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
        self.kept: Dict[Path, Path] = {}  # fallback file -> its target
        self.error: Optional[OSError] = None

    def __call__(self, record: Dict[str, Any]) -> None:
        with _sigint_deferred():
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
        store(run_cell(cell, root, layer_metrics, progress=progress))


def _init_worker(threads: int, epochs_queue, counter=None,
                 device_count: int = 0) -> None:
    global _EPOCHS_QUEUE
    torch.set_num_threads(threads)
    if counter is not None:  # each worker takes the next index, its GPU
        with counter.get_lock():
            index, counter.value = counter.value, counter.value + 1
        use_one_gpu(index, device_count)
    _EPOCHS_QUEUE = epochs_queue
    if epochs_queue is not None:  # never wait at exit for unread epochs
        epochs_queue.cancel_join_thread()
    # Ctrl-C reaches the whole process group; the parent alone handles it
    # (see _stop_workers), so a worker is not left half-way through a queue.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Workers draw no progress bars; a thread lock spares each the named
    # semaphore tqdm would create, which leaks (with a warning at exit)
    # when _stop_workers terminates the worker.
    tqdm.set_lock(threading.RLock())


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    r"""Shuts ``pool`` down without waiting for the tasks it is running."""
    # Before Python 3.14 (terminate_workers) the pool has no public way to
    # stop a running task, so its worker processes are terminated.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
    # The manager thread sees the workers gone, settles their futures and
    # ends; left running, it would keep the interpreter from exiting.
    if manager is not None:
        manager.join(timeout=10)


class InFlight:
    r"""The epochs of the runs in flight, shown after the sweep's bar."""

    def __init__(self, queue, bar: Optional[tqdm]):
        self.queue, self.bar = queue, bar
        self.epochs: Dict[str, str] = {}
        self.ended: set = set()

    def update(self) -> None:
        if self.queue is None:
            return
        changed = False
        while True:
            try:
                key, label, epoch, max_epochs = self.queue.get_nowait()
            except (Empty, OSError, ValueError):
                break
            if key not in self.ended:
                self.epochs[key] = f"{label} {epoch}/{max_epochs}"
                changed = True
        if changed:
            self.show()

    def end(self, key: Optional[str]) -> None:
        self.ended.add(key)
        if self.epochs.pop(key, None) is not None:
            self.show()

    def show(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(", ".join(self.epochs.values()))


def run_in_processes(cells: List[Cell], store: Store, root: Optional[str],
                     layer_metrics: bool, jobs: int,
                     bar: Optional[tqdm] = None) -> None:
    r"""Runs the cells ``jobs`` at a time in worker processes (each with
    ``cpu_count // jobs`` threads), storing each result as it comes. On
    any exception (Ctrl-C included) the runs in flight are stopped at once
    and every finished run is stored before it propagates."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")
    epochs = context.Queue() if bar is not None and not bar.disable else None
    in_flight = InFlight(epochs, bar)
    pool = ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_init_worker,
        initargs=(threads, epochs, context.Value("i", 0),
                  torch.cuda.device_count()))
    futures: Dict[Any, Cell] = {}
    stored: set = set()

    def take(future) -> None:
        # Stored and marked together, so that neither a SIGINT here nor
        # the clean-up below can drop or repeat a finished run.
        with _sigint_deferred():
            if future not in stored:
                stored.add(future)
                in_flight.end(futures[future].key)
                store(future.result())

    try:
        futures = {pool.submit(run_cell, cell, root, layer_metrics): cell
                   for cell in cells}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5,
                                 return_when=FIRST_COMPLETED)
            in_flight.update()
            for future in done:
                take(future)
    except BaseException:
        # Stop the runs in flight at once (leaving the pool the usual way
        # would wait for them, minutes each at depth, only to discard
        # them), then keep every run that finished. A second SIGINT
        # (Ctrl-C twice, or `timeout` signalling the process and then its
        # group) must not cut this short.
        with _sigint_ignored():
            try:
                _stop_workers(pool)
            finally:
                for future in futures:
                    if (future.done() and not future.cancelled()
                            and future.exception() is None):
                        try:
                            take(future)
                        except ResultsNotSaved:
                            pass  # kept; the first error is raised below
        raise
    finally:
        if epochs is not None:
            epochs.cancel_join_thread()
            epochs.close()
    pool.shutdown()


def run_sweep(config: ExperimentConfig, jobs: int = 1,
              progress: bool = True, backend: str = "local",
              address: Optional[str] = None,
              gpus_per_run: float = 1.0) -> SweepSummary:
    r"""Runs every cell of ``config`` not yet in its results file, ``jobs``
    at a time in separate processes (each with ``cpu_count // jobs``
    threads), appending each record as it finishes. Raises
    :class:`~gnn_center.records.UsageError` before any run if the output
    folder is in use by another sweep or cannot be written, or a dataset
    cannot be loaded.

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
    with lock_folder(out):
        finished = {r.get("key") for r in read_records(results_path)}
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
                run_in_processes(todo, store, config.root,
                                 config.layer_metrics, jobs, bar)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
    return summary
