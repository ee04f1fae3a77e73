r"""Equal-budget hyperparameter tuning on Optuna, then final runs.

:func:`tune` runs one Optuna study per (dataset, method, depth) cell of a
config with a ``tune:`` section (:mod:`gnn_center.tune_options`): a seeded
TPE sampler proposes settings from the search space, each trial trains on
the tuning seeds and returns the mean *validation* accuracy (test accuracy
is never read, nor stored in the study), and the pruner stops trials whose
per-epoch validation accuracy falls behind. Every study of a config runs
the same number of trials with the same epoch budget.

The studies live in an Optuna storage (``sqlite:///<output_dir>/optuna.db``
by default), where each trial is saved as it ends: rerunning the command
continues every study to its trial count (complete and pruned trials
count; failed ones do not), and several processes (``jobs``) or machines
(an RDB URL, or a journal file) share the studies. With an RDB storage,
trials send heartbeats, so a trial whose process was killed is marked
failed and its slot run again, and parallel workers never run more trials
than the count. A journal storage has no heartbeats: a killed trial stays
RUNNING (and is not counted), and parallel workers may run up to
``jobs - 1`` trials beyond the count.

When the tuning is done, the selected settings of each complete study are
written as variants of a generated sweep config per (dataset, depth),
``<output_dir>/tuned/<dataset>-L<depth>.yaml``, and that config is run with
:func:`gnn_center.sweep.run_sweep` over the final seeds: the final records
go to ``<output_dir>/results.jsonl`` in the sweep's format, resumable and
without duplicates, and ``gnn-center sweep`` on the generated file
reproduces them (same cell keys).
"""
import hashlib
import json
import logging
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import optuna
from optuna.trial import TrialState
from torch_geometric import seed_everything

from gnn_center.config import ExperimentConfig, load_config
from gnn_center.data import load_dataset
from gnn_center.interrupts import checkpoint, stopping_at_checkpoints
from gnn_center.nn import build_model
from gnn_center.sweep import run_sweep
from gnn_center.train import TrainOptions, fit
from gnn_center.tune_options import TuneOptions, tune_options
from gnn_center.tune_outputs import (StudyCell, StudyResult,
                                     summary_markdown, tuned_name,
                                     write_generated)
from gnn_center.worker_processes import run_worker_processes

STORAGE_FILE = "optuna.db"
SUMMARY_FILE = "tune.md"
#: Seconds between a running trial's heartbeats (RDB storages); a trial
#: silent for twice as long is taken as killed.
HEARTBEAT_S = 30


class SurplusTrial(Exception):
    r"""Raised in a trial that another worker's trials made unneeded: the
    study already has its trial count, so nothing is run."""


def study_cells(config: ExperimentConfig) -> List[StudyCell]:
    return [StudyCell(d, m, depth) for d in config.datasets
            for depth in config.depths for m in config.methods]


def study_name(config: ExperimentConfig, options: TuneOptions,
               cell: StudyCell) -> str:
    r"""Names a study by its cell and a hash of what the trials see, so
    that a changed search space or option starts a new study (a changed
    trial count continues the same one)."""
    settings = dict(space=[asdict(p) for p in options.space_for(cell.method)],
                    seeds=options.seeds,
                    options=[config.options_for(cell.dataset, cell.method, s)
                             for s in options.seeds],
                    base=config.base_method(cell.method))
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True,
                                       default=str).encode()).hexdigest()
    return f"{config.name}:{cell.dataset}:{cell.method}:L{cell.depth}:" \
           f"{digest[:8]}"


def open_storage(url: str, heartbeat_s: int = HEARTBEAT_S):
    r"""An Optuna storage: an RDB URL (``sqlite:///...``,
    ``postgresql://...``) with heartbeats, or else a journal file path."""
    if "://" not in url:
        from optuna.storages.journal import JournalFileBackend
        return optuna.storages.JournalStorage(JournalFileBackend(url))
    # SQLite locks the whole file per write: wait for other workers
    # instead of failing at once.
    engine = {"connect_args": {"timeout": 120}} \
        if url.startswith("sqlite") else None
    with _experimental_ok():
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine, heartbeat_interval=heartbeat_s,
            grace_period=2 * heartbeat_s)


@contextmanager
def _experimental_ok():
    r"""Silences Optuna's notices that heartbeats and the constant liar are
    experimental (there since Optuna 2.9 and 2.8)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _has_heartbeat(storage) -> bool:
    return getattr(storage, "heartbeat_interval", None) is not None


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
            result = fit(net, task, train_options, on_epoch=report)
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


def _sampler(options: TuneOptions, name: str, trial_count: int,
             worker: int) -> optuna.samplers.TPESampler:
    r"""A TPE sampler seeded by the study, the number of trials so far and
    the worker, so that a resumed or parallel study does not replay the
    draws of earlier trials."""
    text = f"{options.sampler_seed}:{name}:{trial_count}:{worker}"
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    with _experimental_ok():
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _counts(study: optuna.Study) -> Dict[str, int]:
    r"""Trials by state, leaving out the surplus ones. Those stopped by a
    signal (failed by Optuna, and run again) count as ``stopped``, apart
    from ``FAIL``, so that they never make a study give up."""
    counts = {state.name: 0 for state in TrialState}
    counts["stopped"] = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get("surplus"):
            continue
        if trial.user_attrs.get("interrupted"):
            counts["stopped"] += 1
        else:
            counts[trial.state.name] += 1
    counts["done"] = counts["COMPLETE"] + counts["PRUNED"]
    return counts


def _advance_study(config, options, cell, storage, worker: int,
                   log) -> Optional[bool]:
    r"""Runs trials of one study while it needs some and no other worker
    holds its remaining slots. True: complete; False: wait for others;
    None: given up (too many failed trials)."""
    name = study_name(config, options, cell)
    heartbeat = _has_heartbeat(storage)
    objective = Objective(config, options, cell, heartbeat)
    while True:
        study = optuna.create_study(
            study_name=name, storage=storage, direction="maximize",
            load_if_exists=True, pruner=options.pruner.build())
        with _experimental_ok():
            optuna.storages.fail_stale_trials(study)
        study.sampler = _sampler(options, name, len(study.get_trials(
            deepcopy=False)), worker)
        counts = _counts(study)
        if counts["done"] >= options.trials:
            return True
        if counts["FAIL"] >= 2 * options.trials:
            log(f"{cell}: {counts['FAIL']} failed trials; giving up on this "
                f"cell (see the study {name!r} for the errors)")
            return None
        if heartbeat and counts["done"] + counts["RUNNING"] \
                >= options.trials:
            log(f"{cell}: waiting for {counts['RUNNING']} running trial(s) "
                f"of other workers, or of a killed run (failed after "
                f"{storage.grace_period} s without a heartbeat)")
            return False
        study.optimize(objective, n_trials=1, catch=(Exception, ),
                       callbacks=[_log_trial(cell, log)])
        if objective.surplus:  # others hold the last slots: wait for them
            return False


def _log_trial(cell: StudyCell, log):
    def callback(study, trial) -> None:
        if trial.user_attrs.get("surplus"):
            return
        value = "" if trial.value is None else f", val {trial.value:.4f}"
        log(f"{cell}: trial {trial.number} {trial.state.name.lower()}"
            f"{value} {trial.params}")
    return callback


class _InterruptWithoutTraceback(logging.Filter):
    r"""Keeps Optuna's line on a trial failed by Ctrl-C or SIGTERM but
    drops its traceback, which says nothing about the trial."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1],
                                          KeyboardInterrupt):
            record.exc_info = None
        return True


_INTERRUPT_WITHOUT_TRACEBACK = _InterruptWithoutTraceback()


def _tune_studies(config, options, cells, storage_url: str, worker: int,
                  heartbeat_s: int, quiet: bool) -> List[str]:
    r"""A worker: advances every study until each is complete or given
    up; returns the cells given up."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The logger of Optuna's trial loop, which logs each failed trial.
    logging.getLogger("optuna.study._optimize").addFilter(
        _INTERRUPT_WITHOUT_TRACEBACK)
    log = (lambda text: None) if quiet else print  # noqa: E731
    storage = open_storage(storage_url, heartbeat_s)
    pending, given_up = list(cells), []
    while pending:
        for cell in list(pending):
            checkpoint()
            state = _advance_study(config, options, cell, storage, worker,
                                   log)
            if state is not False:
                pending.remove(cell)
            if state is None:
                given_up.append(str(cell))
        if pending:  # other workers hold the last trials: wait for them
            time.sleep(min(heartbeat_s, 5))
            checkpoint()
    return given_up


def _run_workers(config, options, cells, storage_url: str, jobs: int,
                 heartbeat_s: int, quiet: bool) -> None:
    if jobs == 1:
        # As in a worker process: Ctrl-C or SIGTERM stops at the next
        # epoch, never inside a write to the storage.
        with stopping_at_checkpoints():
            _tune_studies(config, options, cells, storage_url, 0,
                          heartbeat_s, quiet)
        return
    # Create the storage's tables once, before the workers race to.
    open_storage(storage_url, heartbeat_s)
    # On Ctrl-C or SIGTERM each worker stops at its next epoch, and Optuna
    # marks its running trial failed.
    codes = run_worker_processes(_tune_studies, [
        (config, options, cells, storage_url, worker, heartbeat_s, quiet)
        for worker in range(jobs)])
    failed = [code for code in codes if code]
    if failed:
        raise RuntimeError(f"{len(failed)} tuning worker(s) failed (exit "
                           f"codes {failed}); the finished trials are in "
                           f"{storage_url}: rerun to continue")


def study_results(config, options, storage) -> List[StudyResult]:
    results = []
    for cell in study_cells(config):
        name = study_name(config, options, cell)
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            results.append(StudyResult(cell, name, {"done": 0}))
            continue
        result = StudyResult(cell, name, _counts(study))
        if result.counts["done"] >= options.trials \
                and result.counts["COMPLETE"]:
            best = study.best_trial
            sections = {p.name: p.section
                        for p in options.space_for(cell.method)}
            result.best_value = best.value
            for key, value in best.params.items():
                result.best.setdefault(sections[key], {})[key] = value
        results.append(result)
    return results


@dataclass
class TuneSummary:
    studies: List[StudyResult]
    generated: List[Path]
    final: list
    interrupted: bool = False

    @property
    def incomplete(self) -> List[StudyResult]:
        return [r for r in self.studies if not r.best]


def tune(config: ExperimentConfig, storage: Optional[str] = None,
         jobs: int = 1, quiet: bool = False,
         heartbeat_s: int = HEARTBEAT_S,
         whole: Optional[ExperimentConfig] = None,
         wait_for_lock: bool = False) -> TuneSummary:
    r"""Tunes every cell of ``config`` (continuing the studies already in
    ``storage``), writes the generated sweep configs and runs them over the
    final seeds. ``storage``: an Optuna RDB URL or a journal file; default
    ``sqlite:///<output_dir>/optuna.db``. When ``config`` is part of a
    larger config (``whole.only(...)``), ``tune.md`` and the generated
    configs describe every study of ``whole``, so that running the parts in
    turn leaves the same files as running the whole. ``wait_for_lock``:
    final runs wait for another sweep or tune writing the same output
    folder to end instead of stopping (two parts tuned side by side)."""
    if jobs < 1:
        raise ValueError(f"jobs={jobs} must be at least 1")
    options = tune_options(config)
    # A part's files describe the whole, whose section is checked here,
    # before any trial runs.
    described = config if whole is None else whole
    described_options = options if whole is None else tune_options(whole)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / STORAGE_FILE).resolve()}"
    summary = TuneSummary([], [], [])
    try:
        _run_workers(config, options, study_cells(config), storage, jobs,
                     heartbeat_s, quiet)
    except KeyboardInterrupt:
        summary.interrupted = True
    studies = study_results(described, described_options,
                            open_storage(storage, heartbeat_s))
    part = set(study_cells(config))
    summary.studies = [r for r in studies if r.cell in part]
    (out / SUMMARY_FILE).write_text(summary_markdown(
        described, described_options, studies))
    summary.generated = write_generated(described, described_options,
                                        studies)
    if summary.interrupted:
        return summary
    chosen = {tuned_name(m) for m in config.methods}
    for path in summary.generated:
        final_config = load_config(path)
        # Only this part's final runs (the files describe the whole).
        kept = [m for m in final_config.methods if m in chosen]
        if not kept or not set(final_config.datasets) & set(config.datasets):
            continue
        final = run_sweep(final_config.only(methods=kept), jobs=jobs,
                          progress=not quiet, wait_for_lock=wait_for_lock)
        summary.final.append(final)
        summary.interrupted |= final.interrupted
        if final.interrupted:
            break
    return summary
