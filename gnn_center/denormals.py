r"""Subnormal floats flushed to zero on the CPU, where they are slow."""
import contextlib

import torch


def _subnormals_flushed() -> bool:
    tiny = torch.tensor([torch.finfo(torch.float32).tiny / 4])
    return (tiny * 1.0).item() == 0.0


@contextlib.contextmanager
def flushing_denormals(on: bool = True):
    r"""Flushes subnormal floats to zero on the CPU in the block
    (:func:`torch.set_flush_denormal`), then restores the mode found. Like
    that call, it sets the calling thread and the threads torch starts
    later; with several threads started earlier, their share of
    elementwise kernels still sees subnormals (the sweep and tune workers
    on a 2-core machine run one thread each)."""
    turn_on = on and not _subnormals_flushed()
    if turn_on and not torch.set_flush_denormal(True):
        turn_on = False  # a CPU without the mode: nothing to undo
    try:
        yield
    finally:
        if turn_on:
            torch.set_flush_denormal(False)
