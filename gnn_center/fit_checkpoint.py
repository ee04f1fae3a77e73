r"""A file that lets a training run stopped part-way continue where it was.

:class:`FitCheckpoint` is what :func:`gnn_center.train.fit` saves every few
epochs, when a signal stops it and when it ends: the model's and the
optimizer's states, the model selection so far, the random-number states
and the validation accuracy of every epoch. A later :func:`fit` given the
same checkpoint continues from it and ends with what the uninterrupted run
would have given: bit for bit on the CPU, and on CUDA as far as its kernels
repeat themselves (scatter sums in atomics may not). Given the checkpoint
of a finished run, it returns that run's result without training. A
process killed outright (``SIGKILL``, out of memory) loses only the epochs
since the last save.

The checkpoint records what the continuation depends on besides the model:
the training options, the device kind, the thread count (the order of
sums) and the versions of torch and gnn_center; one saved under others is
set aside with a warning, and the run starts over. Writes are atomic and
synced (a new file, then a rename), so a crash during a write leaves the
previous checkpoint whole.
"""
import os
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

import gnn_center

#: Bumped when the saved layout changes, so that an old file is refused
#: with a clear error instead of being misread.
FORMAT = 1


class FitCheckpoint:
    r"""Where one training run keeps its progress.

    Args:
        path: the checkpoint file; its folder is created when needed.
        every: save after every ``every`` epochs (besides saving when the
            run is stopped by a signal and when it ends).
    """

    def __init__(self, path: Union[str, Path], every: int = 20):
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"every={every!r} must be a positive integer")
        self.path, self.every = Path(path), every

    def __repr__(self) -> str:
        return f"FitCheckpoint({str(self.path)!r}, every={self.every})"

    def due(self, epoch: int) -> bool:
        r"""Whether to save after ``epoch`` (counted from 0)."""
        return (epoch + 1) % self.every == 0

    def load(self, device: torch.device) -> Optional[Dict[str, Any]]:
        r"""The saved state on ``device``, or None when there is none."""
        try:
            state = torch.load(self.path, map_location=device,
                               weights_only=True)
        except FileNotFoundError:
            return None  # none saved, or removed by a run that finished
        except Exception as err:
            # torch's own message (chained below) is long and suggests
            # unsafe loading; the fix here is to start over.
            raise ValueError(
                f"{self.path}: not a readable training checkpoint "
                f"({type(err).__name__}); delete it to train this run from "
                f"the start") from err
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(
                f"{self.path}: a training checkpoint of another format "
                f"(expected format {FORMAT}); delete it to train this run "
                f"from the start")
        return state

    def save(self, state: Dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A file of this write's own beside the target (the rename must
        # stay on one file system), synced before it replaces the target,
        # so that a crash leaves the old checkpoint or the new one, whole.
        handle, partial = tempfile.mkstemp(dir=self.path.parent,
                                           prefix=f".{self.path.name}.")
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(dict(state, format=FORMAT), file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, self.path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def snapshot(model, optimizer, best, progress,
             device: torch.device) -> Dict[str, Any]:
    r"""A fit's state: the ``state_dict()`` of the model, the optimizer and
    the model selection (``best``), the ``progress`` dataclass, and the
    random-number states of the CPU and of ``device``."""
    state = dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                 best=best.state_dict(), progress=asdict(progress),
                 rng=torch.get_rng_state())
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def restore(state: Dict[str, Any], model, optimizer, best, progress,
            device: torch.device) -> None:
    r"""Puts back what :func:`snapshot` took."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    best.load_state_dict(state["best"])
    vars(progress).update(state["progress"])
    # Loaded onto the training device; the generators take CPU bytes.
    torch.set_rng_state(state["rng"].cpu())
    if "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)


def fingerprint(options, device: torch.device) -> Dict[str, Any]:
    r"""What must match for a resumed run to equal the uninterrupted one:
    the training options (a dataclass), the device kind, the thread count
    (the order of sums) and the versions."""
    return dict(options=asdict(options), device=device.type,
                threads=torch.get_num_threads(),
                torch=str(torch.__version__),  # a str subclass
                gnn_center=gnn_center.__version__)


class CheckpointSaver:
    r"""A fit's checkpoint (or none, and then it does nothing): loads it if
    it was saved under the same fingerprint, puts the state back, and saves
    it with the time and memory figures up to now (``parts``: the model,
    optimizer, model selection, progress and device of the fit)."""

    def __init__(self, checkpoint, fingerprint, model, optimizer, best,
                 done, device, started: float):
        self.checkpoint, self.fingerprint = checkpoint, fingerprint
        self.parts = (model, optimizer, best, done, device)
        # The time of this part of the run, after that of the parts before.
        self.started, self.elapsed_before = started, 0.0

    def load(self) -> Optional[Dict[str, Any]]:
        if self.checkpoint is None:
            return None
        state = self.checkpoint.load(self.parts[-1])
        if state is not None and state.get("fingerprint") != self.fingerprint:
            saved = state.get("fingerprint") or {}
            changed = sorted(key for key in self.fingerprint
                             if saved.get(key) != self.fingerprint[key])
            warnings.warn(f"{self.checkpoint.path}: saved with other "
                          f"{', '.join(changed)}, so resuming would not give "
                          f"the same run; training from the start")
            return None
        return state

    def restore(self, state) -> None:
        try:
            restore(state, *self.parts)
        except (RuntimeError, KeyError, ValueError) as err:
            raise ValueError(
                f"{self.checkpoint.path}: does not fit this model or "
                f"optimizer ({err}); delete it to train this run from the "
                f"start") from err
        self.elapsed_before = self.parts[3].elapsed

    def stamp(self) -> None:
        done, device = self.parts[3], self.parts[4]
        done.elapsed = self.elapsed_before + time.perf_counter() \
            - self.started
        if device.type == "cuda":
            done.peak_memory_mb = max(
                done.peak_memory_mb or 0.0,
                torch.cuda.max_memory_allocated(device) / 2**20)

    def save(self) -> None:
        if self.checkpoint is not None:
            self.stamp()
            self.checkpoint.save(dict(snapshot(*self.parts),
                                      fingerprint=self.fingerprint))

    def save_result(self, result) -> None:
        if self.checkpoint is not None:
            self.checkpoint.save(dict(
                result=result.summary(), best_state=result.best_state,
                progress=asdict(self.parts[3]), fingerprint=self.fingerprint))
