import os
import signal
import subprocess
import sys

import pytest

from gnn_center.interrupts import (checkpoint, interrupt_once,
                                   interrupts_deferred, interrupts_ignored,
                                   sigint_blocked, sigterm_kept,
                                   stopping_at_checkpoints)

BOTH = (signal.SIGINT, signal.SIGTERM)


def handlers():
    return [signal.getsignal(signum) for signum in BOTH]


@pytest.mark.parametrize("first", BOTH)
def test_interrupt_once_ignores_a_second_signal_then_restores(first):
    before = handlers()
    with pytest.raises(KeyboardInterrupt):
        with interrupt_once():
            try:
                os.kill(os.getpid(), first)
                signal.getsignal(first)  # any call lets the handler run
                pytest.fail("the first signal did not interrupt")
            except KeyboardInterrupt:
                # The clean-up: a second signal of either kind is ignored.
                for signum in BOTH:
                    os.kill(os.getpid(), signum)
                raise
    assert handlers() == before


def test_interrupt_once_keeps_an_ignored_sigint_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupt_once():
            os.kill(os.getpid(), signal.SIGINT)  # a background job's Ctrl-C
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("signum", BOTH)
def test_a_stop_request_waits_for_the_checkpoint(signum):
    before = handlers()
    with stopping_at_checkpoints():
        os.kill(os.getpid(), signum)
        signal.getsignal(signum)  # no interrupt here
        with pytest.raises(KeyboardInterrupt):
            checkpoint()
    assert handlers() == before
    checkpoint()  # the request ended with the block


@pytest.mark.parametrize("signum", BOTH)
def test_deferred_signal_arrives_after_the_block(signum):
    with interrupt_once():
        with pytest.raises(KeyboardInterrupt):
            with interrupts_deferred():
                os.kill(os.getpid(), signum)
                stored = True  # reached: the signal waited
        assert stored


def test_ignored_then_restored():
    with interrupt_once():
        inside = handlers()
        with interrupts_ignored():
            assert handlers() == [signal.SIG_IGN] * 2
            os.kill(os.getpid(), signal.SIGTERM)
        assert handlers() == inside


def test_sigterm_kept_across_a_replacement():
    with interrupt_once():
        ours = signal.getsignal(signal.SIGTERM)
        with sigterm_kept():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        assert signal.getsignal(signal.SIGTERM) is ours


def _blocked_here() -> bool:
    return signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def test_a_process_started_with_sigint_blocked_inherits_the_block():
    probe = ("import signal; print(signal.SIGINT in "
             "signal.pthread_sigmask(signal.SIG_BLOCK, set()))")
    assert not _blocked_here()
    with sigint_blocked():
        assert _blocked_here()
        child = subprocess.Popen([sys.executable, "-c", probe],
                                 stdout=subprocess.PIPE, text=True)
    assert not _blocked_here()
    assert child.communicate(timeout=60)[0].strip() == "True"


def test_no_stop_request_outlives_the_block_it_ended():
    with pytest.raises(KeyboardInterrupt):
        with stopping_at_checkpoints():
            os.kill(os.getpid(), signal.SIGTERM)
            checkpoint()
    checkpoint()  # a later checkpoint, outside any block: no stop
