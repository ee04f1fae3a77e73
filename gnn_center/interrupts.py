r"""Ctrl-C and SIGTERM around the steps that must not be cut in half.

:func:`interrupt_once` makes SIGINT and SIGTERM (``kill <pid>``, or a batch
scheduler at its time limit) stop a command with one
:class:`KeyboardInterrupt` and ignores any later one, so that a second
signal (Ctrl-C twice, ``timeout`` signalling the process and then its
group) cannot cut the clean-up short. :func:`stopping_at_checkpoints`
instead defers both to the next :func:`checkpoint`, for code that an
interrupt must not reach inside a storage write. :func:`sigterm_kept`
keeps the SIGTERM handler across calls that replace it.
:func:`interrupts_deferred` holds both back while a record is written and
counted; :func:`interrupts_ignored` ignores them during a clean-up. All
act only in the main thread, the one Python lets set signal handlers.
"""
import signal
import threading
from contextlib import contextmanager
from typing import Dict, List

_HELD: List[int] = []  # the signals interrupts_deferred holds back
_STOP_REQUESTED = threading.Event()  # see stopping_at_checkpoints
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _hold(signum, frame) -> None:
    _HELD.append(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _interrupt_once(signum, frame) -> None:
    for stopping in _SIGNALS:
        signal.signal(stopping, signal.SIG_IGN)
    raise KeyboardInterrupt


def _request_stop(signum, frame) -> None:
    _STOP_REQUESTED.set()


@contextmanager
def _handlers(handler, signums):
    r"""``handler`` for ``signums`` in the block, then the previous ones."""
    previous: Dict[int, object] = {}
    try:
        for signum in signums:
            previous[signum] = signal.signal(signum, handler)
        yield
    finally:
        for signum, old in previous.items():
            if old is not None:  # None: a handler not set from Python
                signal.signal(signum, old)


def _listened() -> List[int]:
    # A shell starts background jobs with SIGINT ignored; keep it so.
    return [signum for signum in _SIGNALS
            if signal.getsignal(signum) is not signal.SIG_IGN]


@contextmanager
def interrupt_once():
    r"""In the block, the first SIGINT or SIGTERM raises
    :class:`KeyboardInterrupt` and later ones are ignored (a SIGINT that
    was ignored stays so); the previous handlers come back after it."""
    if not _in_main_thread():
        yield
        return
    with _handlers(_interrupt_once, _listened()):
        yield


@contextmanager
def stopping_at_checkpoints():
    r"""In the block, SIGINT and SIGTERM only ask to stop, and
    :func:`checkpoint` raises :class:`KeyboardInterrupt` at the next safe
    point. Raised at any point, the interrupt could cut a write to a
    storage (or a lock held around one) in half."""
    if not _in_main_thread():
        yield
        return
    _STOP_REQUESTED.clear()
    try:
        with _handlers(_request_stop, _listened()):
            yield
    finally:  # also when the block ends by the checkpoint's interrupt
        _STOP_REQUESTED.clear()


def checkpoint() -> None:
    r"""Raises :class:`KeyboardInterrupt` if a signal asked to stop (see
    :func:`stopping_at_checkpoints`)."""
    if _STOP_REQUESTED.is_set():
        raise KeyboardInterrupt


@contextmanager
def sigterm_kept():
    r"""Restores the SIGTERM handler after the block (in the main thread),
    for calls that replace it (``ray.init`` does)."""
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if handler is not None and _in_main_thread():
            signal.signal(signal.SIGTERM, handler)


@contextmanager
def sigint_blocked():
    r"""Blocks SIGINT in this thread for the block. Processes started in it
    inherit the mask, so a Ctrl-C to the process group cannot interrupt
    their start-up (they unblock it when they are ready, if they listen);
    a SIGINT meant for this process waits until the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def unblock_sigint() -> None:
    r"""Ends the block a process inherited from :func:`sigint_blocked`."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _active_signals() -> List[int]:
    r"""The signals that would interrupt now: SIGINT unless it is ignored
    or held, and SIGTERM where a handler of this module raises."""
    active = []
    if signal.getsignal(signal.SIGINT) not in (_hold, signal.SIG_IGN, None):
        active.append(signal.SIGINT)
    if signal.getsignal(signal.SIGTERM) is _interrupt_once:
        active.append(signal.SIGTERM)
    return active


@contextmanager
def interrupts_deferred():
    r"""Holds SIGINT (and a SIGTERM that :func:`interrupt_once` turned
    into an interrupt) back until the block ends, so that a record is
    written and counted, or neither; then delivers it. Inside another such
    block, or outside the main thread, it does nothing."""
    active = _active_signals() if _in_main_thread() else []
    if not active:
        yield
        return
    _HELD.clear()
    with _handlers(_hold, active):
        yield
    if _HELD:
        signal.raise_signal(_HELD[0])


@contextmanager
def interrupts_ignored():
    r"""Ignores SIGINT (and a SIGTERM turned into an interrupt) in the
    block (in the main thread)."""
    if not _in_main_thread():
        yield
        return
    with _handlers(signal.SIG_IGN, _active_signals()):
        yield
