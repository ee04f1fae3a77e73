r"""A file that lets a training run stopped part-way continue where it was.

:class:`FitCheckpoint` is what :func:`gnn_center.train.fit` saves every few
epochs, when a signal stops it and when it ends: the model's and the
optimizer's states, the model selection so far, the random-number states
and the validation accuracy of every epoch. A later :func:`fit` given the
same checkpoint continues from it and ends with what the uninterrupted run
would have given, bit for bit; given the checkpoint of a finished run, it
returns that run's result without training. A process killed outright
(``SIGKILL``, out of memory) loses only the epochs since the last save.

Writes are atomic (a new file, then a rename), so a kill during a write
leaves the previous checkpoint whole.
"""
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

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
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location=device,
                               weights_only=True)
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
        # A name of this process's own, so that two processes never write
        # the same temporary file.
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        torch.save(dict(state, format=FORMAT), partial)
        os.replace(partial, self.path)

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
