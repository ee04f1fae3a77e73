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
``jobs - 1`` trials beyond the count. A trial that Ctrl-C or SIGTERM
stopped is run again with its own settings, and continues from the
checkpoints of its training runs (:mod:`gnn_center.tune_resume`).

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

import optuna
from optuna.trial import TrialState

from gnn_center.config import ExperimentConfig, load_config
from gnn_center.interrupts import checkpoint, stopping_at_checkpoints
from gnn_center.sweep import run_sweep
from gnn_center.tune_objective import Objective
from gnn_center.tune_options import TuneOptions, tune_options
from gnn_center.tune_outputs import (StudyCell, StudyResult,
                                     summary_markdown, tuned_name,
                                     write_generated)
from gnn_center.tune_resume import remove_study_checkpoints, resume_stopped
from gnn_center.tune_storage import (HEARTBEAT_S, experimental_ok,
                                     has_heartbeat, open_storage)
from gnn_center.worker_processes import run_worker_processes

STORAGE_FILE = "optuna.db"
SUMMARY_FILE = "tune.md"


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


def _sampler(options: TuneOptions, name: str, trial_count: int,
             worker: int) -> optuna.samplers.TPESampler:
    r"""A TPE sampler seeded by the study, the number of trials so far and
    the worker, so that a resumed or parallel study does not replay the
    draws of earlier trials."""
    text = f"{options.sampler_seed}:{name}:{trial_count}:{worker}"
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    with experimental_ok():
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
    heartbeat = has_heartbeat(storage)
    objective = Objective(config, options, cell, heartbeat)
    while True:
        study = optuna.create_study(
            study_name=name, storage=storage, direction="maximize",
            load_if_exists=True, pruner=options.pruner.build())
        with experimental_ok():
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


def _without_repeats(log):
    r"""``log``, but a line the same as the one before is left out (a
    worker waiting for others' trials would repeat it every few seconds,
    for hours)."""
    last = [None]

    def log_new(text: str) -> None:
        if text != last[0]:
            last[0] = text
            log(text)
    return log_new


def _tune_studies(config, options, cells, storage_url: str, worker: int,
                  heartbeat_s: int, quiet: bool) -> List[str]:
    r"""A worker: advances every study until each is complete or given
    up; returns the cells given up."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The logger of Optuna's trial loop, which logs each failed trial.
    logging.getLogger("optuna.study._optimize").addFilter(
        _INTERRUPT_WITHOUT_TRACEBACK)
    log = (lambda text: None) if quiet else _without_repeats(print)
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


def _resume_stopped_trials(config, options, cells, storage,
                           quiet: bool) -> None:
    r"""Enqueues, once, the settings of each trial a signal stopped (see
    :mod:`gnn_center.tune_resume`): from this one process, before any
    worker starts, so that no two enqueue the same trial."""
    for cell in cells:
        name = study_name(config, options, cell)
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:  # not begun
            continue
        with experimental_ok():  # a killed run's trials hold no slot
            optuna.storages.fail_stale_trials(study)
        numbers = resume_stopped(
            study, [p.name for p in options.space_for(cell.method)],
            options.trials, has_heartbeat(storage))
        if numbers and not quiet:
            print(f"{cell}: resuming the stopped trial(s) {numbers} with "
                  f"their settings")


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
        _resume_stopped_trials(config, options, study_cells(config),
                               open_storage(storage, heartbeat_s), quiet)
        _run_workers(config, options, study_cells(config), storage, jobs,
                     heartbeat_s, quiet)
    except KeyboardInterrupt:
        summary.interrupted = True
    studies = study_results(described, described_options,
                            open_storage(storage, heartbeat_s))
    part = set(study_cells(config))
    summary.studies = [r for r in studies if r.cell in part]
    for result in summary.studies:
        if result.best:  # complete: no trial of it will resume
            remove_study_checkpoints(out, result.name)
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
