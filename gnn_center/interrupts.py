r"""Ctrl-C around the steps that must not be cut in half.

:func:`sigint_deferred` holds SIGINT back while a record is written and
counted; :func:`sigint_ignored` keeps a second Ctrl-C from cutting a
clean-up short. Both act only in the main thread, the one Python lets set
signal handlers.
"""
import signal
import threading
from contextlib import contextmanager
from typing import List

_HELD: List[int] = []  # the SIGINTs sigint_deferred holds back


def _hold(signum, frame) -> None:
    _HELD.append(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def sigint_deferred():
    r"""Holds SIGINT back until the block ends (so that a record is written
    and counted, or neither), then delivers it. Inside another such block,
    where SIGINT is ignored, or outside the main thread, it does nothing."""
    previous = signal.getsignal(signal.SIGINT)
    if previous in (_hold, signal.SIG_IGN, None) or not _in_main_thread():
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
def sigint_ignored():
    r"""Ignores SIGINT in the block (in the main thread)."""
    if not _in_main_thread():
        yield
        return
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
