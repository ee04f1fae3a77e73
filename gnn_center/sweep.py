r"""Resumable depth sweeps.

Every (dataset, method, depth, seed) cell of a config is one
:func:`gnn_center.train.run`. Each finished run is appended to
``<output_dir>/results.jsonl`` at once (flushed and synced), so a crash or
Ctrl-C loses only the runs in progress. Running the same sweep again skips
the cells whose key (a hash of all their settings) is already in the file;
a line cut short by a crash is ignored. Runs that raise are written to
``errors.jsonl`` and retried on the next invocation.
"""
import json
import multiprocessing
import os
import signal
import threading
import traceback
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from tqdm.auto import tqdm

from gnn_center.config import Cell, ExperimentConfig
from gnn_center.data import load_dataset
from gnn_center.train import TrainOptions, run

RESULTS_FILE = "results.jsonl"
ERRORS_FILE = "errors.jsonl"
#: Executors of the cells: processes on this machine, or Ray tasks.
BACKENDS = ("local", "ray")


def read_records(path: os.PathLike) -> List[Dict[str, Any]]:
    r"""The records of a JSON-lines file; a line that does not parse (cut
    short by a crash) is skipped with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    records, bad = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                bad += 1
    if bad:
        warnings.warn(f"{path}: ignored {bad} incomplete line(s), e.g. from "
                      f"an interrupted run", stacklevel=2)
    return records


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


# One process loads each dataset once; cells are ordered by dataset, so a
# small cache suffices.
_TASKS: "OrderedDict[str, Any]" = OrderedDict()
_TASK_CACHE_SIZE = 2


def _task_for(cell: Cell, root: Optional[str]):
    key = json.dumps([cell.dataset, root, cell.seed, cell.data_options],
                     sort_keys=True)
    if key not in _TASKS:
        _TASKS[key] = load_dataset(cell.dataset, root, seed=cell.seed,
                                   **cell.data_options)
        while len(_TASKS) > _TASK_CACHE_SIZE:
            _TASKS.popitem(last=False)
    _TASKS.move_to_end(key)
    return _TASKS[key]


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
                     task=_task_for(cell, root))
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


def gpu_for_worker(worker_index: int, device_count: int) -> Optional[int]:
    r"""The position, among the visible GPUs, of the one the
    ``worker_index``-th worker process uses: round robin when there are
    several; ``None`` (CUDA's default device) with one or none."""
    if worker_index < 0:
        raise ValueError(f"worker_index={worker_index} must be at least 0")
    if device_count <= 1:
        return None
    return worker_index % device_count


def _use_one_gpu(worker_index: int, device_count: int) -> None:
    # Before this process touches CUDA: it then sees its GPU alone, as
    # device 0, so that runs on "cuda" need no device index.
    gpu = gpu_for_worker(worker_index, device_count)
    if gpu is None:
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else list(map(str, range(
        device_count)))
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[gpu].strip()


def _init_worker(threads: int, counter=None, device_count: int = 0) -> None:
    torch.set_num_threads(threads)
    if counter is not None:
        with counter.get_lock():
            index, counter.value = counter.value, counter.value + 1
        _use_one_gpu(index, device_count)
    # Ctrl-C reaches the whole process group; the parent alone handles it
    # (see _stop_workers), so a worker is not left half-way through a queue.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Workers draw no progress bars; a thread lock spares each the named
    # semaphore tqdm would create, which leaks (with a warning at exit)
    # when _stop_workers terminates the worker.
    tqdm.set_lock(threading.RLock())


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


def run_sweep(config: ExperimentConfig, jobs: int = 1,
              progress: bool = True, backend: str = "local",
              address: Optional[str] = None,
              gpus_per_run: float = 1.0) -> SweepSummary:
    r"""Runs every cell of ``config`` not yet in its results file, ``jobs``
    at a time in separate processes (each with ``cpu_count // jobs``
    threads), appending each record as it finishes.

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
    out.mkdir(parents=True, exist_ok=True)
    results_path, errors_path = out / RESULTS_FILE, out / ERRORS_FILE
    finished = {r.get("key") for r in read_records(results_path)}
    cells = list(config.cells())
    todo = [cell for cell in cells if cell.key not in finished]
    summary = SweepSummary(total=len(cells), skipped=len(cells) - len(todo),
                           finished=0, errors=0, diverged=0,
                           interrupted=False, results_path=results_path)
    bar = tqdm(total=len(todo), desc=config.name, disable=not progress,
               dynamic_ncols=True)

    def store(record: Dict[str, Any]) -> None:
        record["config_name"] = config.name
        if record.get("status") == "error":
            append_record(errors_path, record)
            summary.errors += 1
            tqdm.write(f"error in {record['cell']['dataset']} "
                       f"{record['method']} L={record['num_layers']} seed="
                       f"{record['seed']}: {record['error']}")
        else:
            record.pop("traceback", None)
            append_record(results_path, record)
            summary.finished += 1
            summary.diverged += record.get("status") == "diverged"
            test = record.get("test_acc")
            bar.set_postfix_str(
                f"{record['dataset']} {record['method']} "
                f"L={record['num_layers']}: test "
                f"{'n/a' if test is None else f'{100 * test:.1f}'}")
        bar.update()

    try:
        if backend == "ray":
            ray_backend.run_cells(todo, config.root, config.layer_metrics,
                                  store, ray_options)
        elif jobs == 1:
            for cell in todo:
                store(run_cell(cell, config.root, config.layer_metrics,
                               progress=progress))
        else:
            threads = max(1, (os.cpu_count() or 1) // jobs)
            context = multiprocessing.get_context("spawn")
            # Each worker takes the next index, hence its GPU.
            counter = context.Value("i", 0)
            pool = ProcessPoolExecutor(
                jobs, mp_context=context, initializer=_init_worker,
                initargs=(threads, counter, torch.cuda.device_count()))
            futures, done = set(), set()
            try:
                futures = {pool.submit(run_cell, cell, config.root,
                                       config.layer_metrics) for cell in todo}
                while futures:
                    done, futures = wait(futures, return_when=FIRST_COMPLETED)
                    while done:
                        store(done.pop().result())
            except BaseException:
                # Stop the runs in flight at once (leaving the pool the usual
                # way would wait for them, minutes each at depth, only to
                # discard them), then keep every run that finished. A second
                # SIGINT (Ctrl-C twice, or `timeout` signalling the process
                # and then its group) must not cut this short.
                with _sigint_ignored():
                    try:
                        _stop_workers(pool)
                    finally:
                        for future in done | futures:
                            if (future.done() and not future.cancelled()
                                    and future.exception() is None):
                                store(future.result())
                raise
            pool.shutdown()
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
    return summary
