r"""Ctrl-C and SIGTERM around the steps that must not be cut in half.

:func:`sigterm_as_sigint` makes SIGTERM (``kill <pid>``, or a batch
scheduler at its time limit) stop a command the way Ctrl-C does, raising
:class:`KeyboardInterrupt` (:func:`sigterm_kept` keeps that handler
across calls that replace it); in a worker process,
:func:`stop_at_checkpoints` defers both to the worker's next
:func:`checkpoint`.
:func:`interrupts_deferred` holds both back while a record is written and
counted; :func:`interrupts_ignored` keeps a second signal from cutting a
clean-up short. All act only in the main thread, the one Python lets set
signal handlers.
"""
import signal
import threading
from contextlib import contextmanager
from typing import List

_HELD: List[int] = []  # the signals interrupts_deferred holds back
_STOP_REQUESTED = threading.Event()  # see stop_at_checkpoints


def _hold(signum, frame) -> None:
    _HELD.append(signum)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def sigterm_as_sigint() -> None:
    r"""From now on SIGTERM raises :class:`KeyboardInterrupt` (in the main
    thread), so that it keeps finished work as Ctrl-C does instead of
    killing the process at once."""
    if _in_main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


@contextmanager
def sigterm_kept():
    r"""Restores the SIGTERM handler after the block (in the main thread),
    for calls that replace it (``ray.init`` does)."""
    if not _in_main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if handler is not None:  # None: not set from Python
            signal.signal(signal.SIGTERM, handler)


def _request_stop(signum, frame) -> None:
    _STOP_REQUESTED.set()


def stop_at_checkpoints() -> None:
    r"""For a worker process: SIGINT and SIGTERM only ask it to stop, and
    :func:`checkpoint` raises :class:`KeyboardInterrupt` at the next safe
    point. Raised at any point, the interrupt could cut a write to a
    storage (or a lock held around one) in half and leave the worker
    stuck."""
    if _in_main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _request_stop)


def checkpoint() -> None:
    r"""Raises :class:`KeyboardInterrupt` if a signal asked this process to
    stop (see :func:`stop_at_checkpoints`)."""
    if _STOP_REQUESTED.is_set():
        raise KeyboardInterrupt


def _active_signals() -> List[int]:
    r"""The signals that would interrupt now: SIGINT unless it is ignored
    or held, and SIGTERM where :func:`sigterm_as_sigint` set it."""
    active = []
    if signal.getsignal(signal.SIGINT) not in (_hold, signal.SIG_IGN, None):
        active.append(signal.SIGINT)
    if signal.getsignal(signal.SIGTERM) is _interrupt:
        active.append(signal.SIGTERM)
    return active


@contextmanager
def interrupts_deferred():
    r"""Holds SIGINT (and a SIGTERM that :func:`sigterm_as_sigint` turned
    into an interrupt) back until the block ends, so that a record is
    written and counted, or neither; then delivers it. Inside another such
    block, or outside the main thread, it does nothing."""
    active = _active_signals() if _in_main_thread() else []
    if not active:
        yield
        return
    _HELD.clear()
    handlers = {signum: signal.signal(signum, _hold) for signum in active}
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    if _HELD:
        signal.raise_signal(_HELD[0])


@contextmanager
def interrupts_ignored():
    r"""Ignores SIGINT (and a SIGTERM turned into an interrupt) in the
    block (in the main thread)."""
    if not _in_main_thread():
        yield
        return
    handlers = {signum: signal.signal(signum, signal.SIG_IGN)
                for signum in _active_signals()}
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
