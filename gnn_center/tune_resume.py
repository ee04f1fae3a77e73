r"""Trials that a signal stopped are run again with their own settings and
continue where they stopped.

A trial stopped by Ctrl-C or SIGTERM (a sitting's or a batch job's end) is
marked failed by Optuna. Left at that, the next run would draw fresh
settings in its place; since the trials a time limit cuts are mostly the
slow ones (wide layers), a study run in several parts would then sample
those settings less than one run in a go. So before the workers start,
:func:`resume_stopped` enqueues each stopped trial's settings once, as a
new trial marked ``resumes=<number>``, and the new trial's training runs
continue from the checkpoints the stopped one left
(:func:`trial_checkpoints`, one :class:`~gnn_center.fit_checkpoint.
FitCheckpoint` per tuning seed): a seed that had finished returns its
result at once, the others go on from their last epoch, and each ends with
the value an uninterrupted trial would have had.

The checkpoints are files in the output folder of the machine that ran the
trial; a resumed trial that finds none (another machine, a fresh clone)
trains from the start, with the same settings.
"""
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Dict, Iterable, List

import optuna

from gnn_center.fit_checkpoint import FitCheckpoint
from gnn_center.records import CHECKPOINTS_FOLDER



def study_folder(output_dir: Path, study_name: str) -> Path:
    # A study's name holds colons, which some file systems refuse.
    return Path(output_dir) / CHECKPOINTS_FOLDER / study_name.replace(":", "_")


def trial_checkpoints(output_dir: Path, study_name: str,
                      params: Dict[str, Any], seeds: Iterable[int]):
    r"""The checkpoint of each tuning seed of the trial with ``params``:
    the same files for every trial of the study with the same settings."""
    text = json.dumps(params, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = study_folder(output_dir, study_name)
    return [FitCheckpoint(folder / f"{digest}-seed{seed}.pt")
            for seed in seeds]


def remove_checkpoints(checkpoints) -> None:
    for checkpoint in checkpoints:
        checkpoint.remove()


def remove_study_checkpoints(output_dir: Path, study_name: str) -> None:
    r"""Drops what a complete study's stopped trials left behind."""
    shutil.rmtree(study_folder(output_dir, study_name), ignore_errors=True)


def resume_stopped(study: optuna.Study, parameter_names: Iterable[str],
                   trials: int, heartbeat: bool = True) -> List[int]:
    r"""Enqueues the settings of each trial of ``study`` that a signal
    stopped and no later trial resumes yet, oldest first, as many as the
    study still has open slots for (of ``trials``); returns the numbers of
    the trials resumed. A running trial holds a slot only with a storage
    that has heartbeats (``heartbeat``; without them a killed trial stays
    RUNNING for ever, and the workers do not count it either). Call it
    from one process: two calls at once could enqueue a trial twice."""
    names = set(parameter_names)
    existing = study.get_trials(deepcopy=False)
    resumed = {t.user_attrs.get("resumes") for t in existing}
    holding = _HOLDING_A_SLOT if heartbeat else tuple(
        state for state in _HOLDING_A_SLOT
        if state != optuna.trial.TrialState.RUNNING)
    counted = sum(1 for t in existing if not t.user_attrs.get("surplus")
                  and t.state in holding)
    stopped = [t for t in existing
               if t.user_attrs.get("interrupted") and t.number not in resumed
               # One stopped before its settings were drawn has none.
               and set(t.params) == names]
    chosen = stopped[:max(trials - counted, 0)]
    for trial in chosen:
        study.enqueue_trial(trial.params, user_attrs={"resumes":
                                                      trial.number})
    return [t.number for t in chosen]


_HOLDING_A_SLOT = (optuna.trial.TrialState.COMPLETE,
                   optuna.trial.TrialState.PRUNED,
                   optuna.trial.TrialState.RUNNING,
                   optuna.trial.TrialState.WAITING)
