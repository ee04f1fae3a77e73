r"""One tuning trial: the mean validation accuracy of the settings it
draws, over the tuning seeds, reported each epoch to the pruner."""
import json
from typing import Any, Dict

import optuna
from optuna.trial import TrialState
from torch_geometric import seed_everything

from gnn_center.config import ExperimentConfig
from gnn_center.data import load_dataset
from gnn_center.interrupts import checkpoint
from gnn_center.nn import build_model
from gnn_center.train import TrainOptions, fit
from gnn_center.tune_options import TuneOptions
from gnn_center.tune_outputs import StudyCell
from gnn_center.tune_resume import remove_checkpoints, trial_checkpoints


class SurplusTrial(Exception):
    r"""Raised in a trial that another worker's trials made unneeded: the
    study already has its trial count, so nothing is run."""


class Objective:
    r"""One trial: the mean validation accuracy of the suggested settings
    over the tuning seeds, reported each epoch to the pruner."""

    def __init__(self, config: ExperimentConfig, options: TuneOptions,
                 cell: StudyCell, heartbeat: bool):
        self.config, self.options, self.cell = config, options, cell
        self.heartbeat = heartbeat
        self.tasks: Dict[str, Any] = {}
        self.surplus = False  # whether the last trial was beyond the count

    def _task(self, seed: int, data: Dict[str, Any]):
        key = json.dumps([seed, data], sort_keys=True)
        if key not in self.tasks:
            self.tasks[key] = load_dataset(self.cell.dataset,
                                           self.config.root, seed=seed,
                                           **data)
        return self.tasks[key]

    def _check_needed(self, trial: optuna.Trial) -> None:
        states = (TrialState.COMPLETE, TrialState.PRUNED) + (
            (TrialState.RUNNING, ) if self.heartbeat else ())
        ahead = [t for t in trial.study.get_trials(deepcopy=False,
                                                   states=states)
                 if t.number < trial.number]
        self.surplus = len(ahead) >= self.options.trials
        if self.surplus:
            trial.set_user_attr("surplus", True)
            raise SurplusTrial("the study already has its trials; this "
                               "one was not run")

    def __call__(self, trial: optuna.Trial) -> float:
        self._check_needed(trial)
        params = [(p.section, p.name, p.suggest(trial))
                  for p in self.options.space_for(self.cell.method)]
        checkpoints = trial_checkpoints(
            self.config.output_dir, trial.study.study_name,
            {name: value for _, name, value in params}, self.options.seeds)
        try:
            value = self._evaluate(trial, params, checkpoints)
        except KeyboardInterrupt:
            raise  # the checkpoints stay for the trial that resumes it
        except BaseException:
            remove_checkpoints(checkpoints)
            raise
        remove_checkpoints(checkpoints)
        return value

    def _evaluate(self, trial, params, checkpoints) -> float:
        scores = []
        for index, seed in enumerate(self.options.seeds):
            data, model, train = self.config.options_for(
                self.cell.dataset, self.cell.method, seed)
            for section, name, value in params:
                (model if section == "model" else train)[name] = value
            train_options = TrainOptions(**train)
            # One step per epoch of each seed, so that the pruner compares
            # trials at the same point of the same run.
            offset = index * train_options.max_epochs

            def report(epoch: int, val_acc: float) -> None:
                _stop_if_asked(trial)
                trial.report(val_acc, offset + epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"epoch {epoch}: validation "
                                             f"accuracy {val_acc:.3f}")

            task = self._task(seed, data)
            seed_everything(seed)
            net = build_model(self.config.base_method(self.cell.method),
                              task.num_features, task.num_classes,
                              self.cell.depth, **model)
            # A resumed trial's finished seeds return at once, and its
            # others continue from their last epoch.
            result = fit(net, task, train_options, on_epoch=report,
                         checkpoint=checkpoints[index])
            _stop_if_asked(trial)
            # Validation only: the selection never reads test accuracy.
            val_acc = result.val_acc or 0.0
            trial.set_user_attr(f"val_acc_seed_{seed}", val_acc)
            trial.set_user_attr(f"status_seed_{seed}", result.status)
            scores.append(val_acc)
        return sum(scores) / len(scores)


def _stop_if_asked(trial: optuna.Trial) -> None:
    r"""Stops the trial if a signal asked to; Optuna then marks it failed,
    and the mark keeps it out of the count of failures that makes a study
    give up (repeated time limits are no fault of the settings)."""
    try:
        checkpoint()
    except KeyboardInterrupt:
        trial.set_user_attr("interrupted", True)
        raise
