r"""Worker processes that stop cleanly on Ctrl-C or SIGTERM.

:func:`run_worker_processes` runs a function in several spawned processes
and waits for them. A worker stops at its next
:func:`~gnn_center.interrupts.checkpoint` after a SIGINT or SIGTERM (not at
an arbitrary point, which could cut a storage write in half), raising
:class:`KeyboardInterrupt` there so that the code it runs can clean up.
When the parent is interrupted, it signals every worker at once (the
signal may have reached the parent alone, as with ``kill <pid>``).
"""
import multiprocessing
import sys
import time
from typing import Callable, List, Sequence

import torch

from gnn_center.interrupts import (interrupts_ignored, sigint_blocked,
                                  stopping_at_checkpoints, unblock_sigint)

STOP_GRACE_S = 30  # how long signalled workers may take to clean up


def _worker_main(target: Callable, args: tuple) -> None:
    torch.set_num_threads(1)
    try:
        with stopping_at_checkpoints():
            unblock_sigint()  # blocked while this process started
            target(*args)
    except KeyboardInterrupt:
        sys.exit(130)


def stop_processes(processes, grace_s: float) -> None:
    r"""Sends SIGTERM to every started process of ``processes``, waits up
    to ``grace_s`` seconds for them all (one deadline, not one each), then
    kills those still running."""
    started = [process for process in processes if process.pid is not None]
    for process in started:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + grace_s
    for process in started:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        if process.is_alive():  # stuck: nothing to save any more
            process.kill()
            process.join()


def run_worker_processes(target: Callable,
                         worker_args: Sequence[tuple]) -> List[int]:
    r"""Runs ``target(*args)`` for each ``args`` of ``worker_args``, each in
    a spawned process with one torch thread, and returns their exit
    statuses (130: stopped by a signal). ``target`` must be importable by
    name, as spawning requires."""
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker_main, args=(target, args))
               for args in worker_args]
    try:
        with sigint_blocked():  # no Ctrl-C in a worker's start-up
            for process in workers:
                process.start()
        for process in workers:
            process.join()
    except BaseException:
        # SIGTERM makes each worker stop at its next checkpoint.
        with interrupts_ignored():  # a second signal must not cut this
            stop_processes(workers, STOP_GRACE_S)
        raise
    return [process.exitcode for process in workers]
