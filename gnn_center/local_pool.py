r"""The local executor of a sweep: its cells in a pool of worker processes.

:func:`run_in_processes` runs the cells ``jobs`` at a time in spawned
processes and hands each record to the sweep's store as it comes; on
Ctrl-C or any other exception it stops the runs in flight at once and
stores every finished one first. Workers report the epochs of their runs
(:func:`epoch_reporter`) to a queue that :class:`InFlight` shows beside
the sweep's progress bar.
"""
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from queue import Empty
from typing import Any, Callable, Dict, List, Optional

import torch
from tqdm.auto import tqdm

from gnn_center.gpus import use_one_gpu
from gnn_center.interrupts import (interrupts_deferred, interrupts_ignored,
                                  sigint_blocked)
from gnn_center.records import UsageError
from gnn_center.worker_processes import stop_processes

# In a worker: where epoch_reporter sends epochs (see _init_worker).
EPOCHS_QUEUE = None


def epoch_reporter(key: str, label: str, max_epochs: int
                   ) -> Optional[Callable[[int, float], None]]:
    r"""For :func:`~gnn_center.train.fit`'s ``on_epoch``: in a worker,
    sends ``(key, label, epochs run, max_epochs)`` to the sweep's process,
    at most twice a second and at the last epoch; elsewhere ``None``."""
    queue = EPOCHS_QUEUE
    if queue is None:
        return None
    last = [0.0]

    def report(epoch: int, val_acc: float) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5 or epoch + 1 == max_epochs:
            last[0] = now
            queue.put((key, label, epoch + 1, max_epochs))
    return report


def _init_worker(threads: int, epochs_queue, counter=None,
                 device_count: int = 0) -> None:
    global EPOCHS_QUEUE
    torch.set_num_threads(threads)
    if counter is not None:  # each worker takes the next index, its GPU
        with counter.get_lock():
            index, counter.value = counter.value, counter.value + 1
        use_one_gpu(index, device_count)
    EPOCHS_QUEUE = epochs_queue
    if epochs_queue is not None:  # never wait at exit for unread epochs
        epochs_queue.cancel_join_thread()
    # Ctrl-C reaches the whole process group; the parent alone handles it
    # (see stop_workers), so a worker is not left half-way through a queue.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Workers draw no progress bars; a thread lock spares each the named
    # semaphore tqdm would create, which leaks (with a warning at exit)
    # when stop_workers terminates the worker.
    tqdm.set_lock(threading.RLock())


def stop_workers(pool: ProcessPoolExecutor) -> None:
    r"""Shuts ``pool`` down without waiting for the tasks it is running."""
    # Before Python 3.14 (terminate_workers) the pool has no public way to
    # stop a running task, so its worker processes are terminated.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    stop_processes(processes, grace_s=10)
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


def run_in_processes(run_cell: Callable, cells: List, store: Callable,
                     root: Optional[str], layer_metrics: bool, jobs: int,
                     bar: Optional[tqdm] = None) -> None:
    r"""Runs ``run_cell(cell, root, layer_metrics)`` for each cell, ``jobs``
    at a time in worker processes (each with ``cpu_count // jobs``
    threads), calling ``store`` with each record as it comes. On any
    exception (Ctrl-C included) the runs in flight are stopped at once and
    every finished run is stored before it propagates."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")
    epochs = context.Queue() if bar is not None and not bar.disable else None
    in_flight = InFlight(epochs, bar)
    pool = ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_init_worker,
        initargs=(threads, epochs, context.Value("i", 0),
                  torch.cuda.device_count()))
    futures: Dict[Any, Any] = {}
    stored: set = set()

    def take(future) -> None:
        # Stored and marked together, so that neither a SIGINT here nor
        # the clean-up below can drop or repeat a finished run.
        with interrupts_deferred():
            if future not in stored:
                stored.add(future)
                in_flight.end(futures[future].key)
                store(future.result())

    try:
        # The workers start here (they ignore SIGINT once started).
        with sigint_blocked():
            futures = {pool.submit(run_cell, cell, root, layer_metrics):
                       cell for cell in cells}
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
        with interrupts_ignored():
            try:
                stop_workers(pool)
            finally:
                _store_finished(futures, take)
        raise
    finally:
        if epochs is not None:
            epochs.cancel_join_thread()
            epochs.close()
    pool.shutdown()


def _store_finished(futures, take) -> None:
    for future in futures:
        if (future.done() and not future.cancelled()
                and future.exception() is None):
            try:
                take(future)
            except UsageError:
                pass  # a record kept elsewhere; the first error propagates
