import copy
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from gnn_center import tune as tune_module
from gnn_center import tune_objective
from gnn_center.cli import build_parser, main
from gnn_center.config import ConfigError, config_from_dict, load_config
from gnn_center.data import load_dataset
from gnn_center.nn import build_model
from gnn_center.sweep import RESULTS_FILE, read_records, run_sweep
from gnn_center.train import TrainOptions, fit
from gnn_center.tune import open_storage, study_cells, study_name, tune
from gnn_center.tune_options import tune_options

TINY = dict(
    name="tiny", datasets=["csbm"], methods=["gcn"], depths=[2],
    seeds=[0, 1], layer_metrics=False,
    data=dict(num_nodes=120, feature_dim=8),
    model=dict(hidden_channels=8),
    train=dict(max_epochs=12, patience=12, device="cpu"),
    tune=dict(trials=2, seeds=[0], final_seeds=[0, 1], pruner="none",
              space=dict(lr={"log": [1e-3, 5e-2]},
                         dropout={"float": [0.0, 0.8]})))


def tiny(out, **tune_overrides):
    raw = copy.deepcopy(TINY)
    raw["output_dir"] = str(out)
    raw["tune"].update(tune_overrides)
    return raw


def trials_of(config, cell=None, storage=None):
    options = tune_options(config)
    cell = cell or study_cells(config)[0]
    storage = storage or \
        f"sqlite:///{Path(config.output_dir).resolve() / 'optuna.db'}"
    return optuna.load_study(study_name=study_name(config, options, cell),
                             storage=open_storage(storage)).get_trials()


def counted(trials):
    return [t for t in trials
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


# --- the tune: schema ------------------------------------------------------

BAD_SECTIONS = [
    (dict(trails=3), "tune.trails: unknown key"),
    (dict(trials=0), "tune.trials: expected a positive integer"),
    (dict(trials="ten"), "tune.trials: expected a positive integer"),
    (dict(seeds=[]), "tune.seeds: must not be empty"),
    (dict(final_seeds=["a"]), "tune.final_seeds[0]: expected int"),
    (dict(sampler_seed=1.5), "tune.sampler_seed: expected int"),
    (dict(space=dict(lr={"log": [5e-2, 1e-3]})),
     "tune.space.lr: log: empty or inverted range"),
    (dict(space=dict(dropout={"float": [0.3, 0.3]})),
     "tune.space.dropout: float: empty or inverted range"),
    (dict(space=dict(lr={"log": [0, 1e-2]})),
     "tune.space.lr: log: range [0.0, 0.01] must be positive"),
    (dict(space=dict(lr={"float": [1e-3]})),
     "tune.space.lr.float: expected [low, high]"),
    (dict(space=dict(lr={"float": [1e-3, "fast"]})),
     "tune.space.lr.float[1]: expected float"),
    (dict(space=dict(lr={"uniform": [1e-3, 1e-2]})),
     "tune.space.lr: unknown distribution 'uniform'"),
    (dict(space=dict(lr=0.01)), "tune.space.lr: expected one of"),
    (dict(space=dict(learning_rate={"log": [1e-3, 1e-2]})),
     "tune.space.learning_rate: unknown parameter 'learning_rate'"),
    (dict(space=dict(max_epochs={"int": [10, 100]})),
     "tune.space.max_epochs: unknown parameter 'max_epochs' (every method "
     "gets the same epoch budget"),
    (dict(space=dict(hidden_channels={"float": [8.0, 64.0]})),
     "tune.space.hidden_channels: float: hidden_channels is not a float "
     "option"),
    (dict(space=dict(center={"choice": []})),
     "tune.space.center: choice: must list at least one value"),
    (dict(space=dict(dropout={"float": [0.0, 1.5]})),
     "tune.space.dropout: 1.5 is not valid for gcn: dropout=1.5 is outside"),
    (dict(space="lr"), "tune.space: expected a mapping"),
    (dict(method_space=dict(gcnii={"alpha": {"float": [0.1, 0.5]}})),
     "tune.method_space.gcnii: not one of this config's methods"),
    (dict(method_space=dict(gcn={"alpha": {"float": [0.5, 0.1]}})),
     "tune.method_space.gcn.alpha: float: empty or inverted range"),
    (dict(pruner="random"), "tune.pruner: unknown pruner 'random'"),
    (dict(pruner={"median": {"warmup": 3}}),
     "tune.pruner: median.warmup: unknown option"),
    (dict(pruner={"hyperband": {"reduction_factor": 0}}),
     "tune.pruner: hyperband.reduction_factor: expected a positive"),
    (dict(pruner=["median"]), "tune.pruner: expected median, hyperband or "
     "none"),
]


@pytest.mark.parametrize("section,message", BAD_SECTIONS,
                         ids=[m.split(":")[0] + str(i)
                              for i, (_, m) in enumerate(BAD_SECTIONS)])
def test_bad_tune_section_names_file_and_key(tmp_path, section, message):
    raw = tiny(tmp_path)
    raw["tune"] = {**dict(trials=2, space=dict(lr={"log": [1e-3, 1e-2]})),
                   **section}
    config = config_from_dict(raw, source="bad.yaml")
    with pytest.raises(ConfigError) as err:
        tune_options(config)
    assert str(err.value).startswith("bad.yaml: ")
    assert message in str(err.value)


def test_tune_section_must_be_a_mapping_and_present(tmp_path):
    raw = tiny(tmp_path)
    raw["tune"] = ["lr"]
    with pytest.raises(ConfigError, match=r"x.yaml: tune: expected a "
                       r"mapping"):
        config_from_dict(raw, source="x.yaml")
    raw.pop("tune")
    config = config_from_dict(raw, source="x.yaml")
    with pytest.raises(ConfigError, match=r"x.yaml: tune: missing"):
        tune_options(config)


def test_methods_must_share_the_epoch_budget(tmp_path):
    raw = tiny(tmp_path)
    raw["methods"] = ["gcn", "pairnorm"]
    raw["method_options"] = {"pairnorm": {"train": {"max_epochs": 50}}}
    with pytest.raises(ConfigError, match=r"c.yaml: tune: every method must "
                       r"get the same epoch budget, but on csbm gcn: "
                       r"max_epochs=12"):
        tune_options(config_from_dict(raw, source="c.yaml"))


def test_a_yaml_file_error_names_the_file(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("datasets: [csbm]\nmethods: [gcn]\ndepths: [2]\n"
                    "tune:\n  trials: 2\n  space:\n"
                    "    lr: {log: [1.0e-2, 1.0e-3]}\n")
    with pytest.raises(ConfigError, match=rf"{path}: tune.space.lr: log: "
                       r"empty or inverted"):
        tune_options(load_config(path))


def test_valid_section_merges_shared_and_method_space(tmp_path):
    raw = tiny(tmp_path)
    raw["methods"] = ["gcn", "centered"]
    raw["tune"]["method_space"] = {"centered": {
        "center": {"choice": ["mean", "spectral"]},
        "lr": {"float": [0.01, 0.02]}}}
    raw["tune"]["pruner"] = {"median": {"n_startup_trials": 1}}
    options = tune_options(config_from_dict(raw))
    assert [p.name for p in options.space_for("gcn")] == ["lr", "dropout"]
    centered = {p.name: p for p in options.space_for("centered")}
    assert set(centered) == {"lr", "dropout", "center"}
    assert centered["lr"].kind == "float"  # the method's entry wins
    assert options.final_seeds == (0, 1) and options.seeds == (0, )
    pruner = options.pruner.build()
    assert isinstance(pruner, optuna.pruners.MedianPruner)


# --- fit's per-epoch callback ---------------------------------------------

def test_fit_calls_on_epoch_and_stops_when_it_raises():
    task = load_dataset("csbm", seed=0, num_nodes=120, feature_dim=8)
    seen = []
    torch.manual_seed(0)
    model = build_model("gcn", task.num_features, task.num_classes, 2,
                        hidden_channels=8)
    result = fit(model, task, TrainOptions(max_epochs=6, patience=6,
                                           device="cpu"),
                 on_epoch=lambda epoch, acc: seen.append((epoch, acc)))
    assert [e for e, _ in seen] == list(range(result.epochs_run))
    assert max(a for _, a in seen) == result.val_acc

    class Stop(Exception):
        pass

    def stop(epoch, acc):
        seen.append(epoch)
        if epoch == 2:
            raise Stop

    seen.clear()
    with pytest.raises(Stop):
        fit(model, task, TrainOptions(max_epochs=6, patience=6,
                                      device="cpu"), on_epoch=stop)
    assert seen == [0, 1, 2]


# --- studies, outputs, resuming --------------------------------------------

def test_tune_selects_on_validation_and_sweep_reproduces_it(tmp_path):
    raw = tiny(tmp_path / "out")
    raw["methods"] = ["gcn", "centered"]
    raw["tune"]["method_space"] = {"centered": {
        "center": {"choice": ["mean", "spectral"]}}}
    path = tmp_path / "tiny.yaml"
    import yaml
    path.write_text(yaml.safe_dump(raw))
    assert main(["tune", str(path), "--quiet"]) == 0
    config = load_config(path)
    records = read_records(tmp_path / "out" / RESULTS_FILE)
    assert len(records) == 2 * 2  # methods x final seeds
    assert {r["method"] for r in records} == {"gcn-tuned", "centered-tuned"}
    for cell in study_cells(config):
        trials = trials_of(config, cell)
        assert len(counted(trials)) == 2
        best = max(counted(trials), key=lambda t: t.value)
        record = next(r for r in records if r["base_method"] == cell.method)
        for name, value in best.params.items():
            section = "train_options" if name == "lr" else "model_options"
            assert record["cell"][section][name] == value
        for trial in trials:  # no trace of test accuracy in the study
            stored = json.dumps([trial.user_attrs, trial.system_attrs])
            assert "test" not in stored
            assert trial.value == pytest.approx(
                trial.user_attrs["val_acc_seed_0"])
    summary = (tmp_path / "out" / "tune.md").read_text()
    assert "same budget: 2 trials" in summary and "up to 12 epochs" in \
        summary

    generated = sorted((tmp_path / "out" / "tuned").glob("*.yaml"))
    assert [p.name for p in generated] == ["csbm-L2.yaml"]
    again = load_config(generated[0])
    assert {c.key for c in again.cells()} == {r["key"] for r in records}
    again.output_dir = tmp_path / "again"
    run_sweep(again, progress=False)
    rerun = {r["key"]: r for r in read_records(tmp_path / "again" /
                                               RESULTS_FILE)}
    for record in records:
        for metric in ("val_acc", "test_acc", "best_epoch"):
            assert rerun[record["key"]][metric] == record[metric]


def test_failed_trial_is_recorded_and_the_study_goes_on(tmp_path,
                                                        monkeypatch):
    calls = []

    def flaky_fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("deliberate failure")
        return fit(*args, **kwargs)

    monkeypatch.setattr(tune_objective, "fit", flaky_fit)
    config = config_from_dict(tiny(tmp_path))
    summary = tune(config, quiet=True)
    trials = trials_of(config)
    assert [t.state for t in trials] == [TrialState.FAIL,
                                         TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    assert len(read_records(tmp_path / RESULTS_FILE)) == 2
    assert not summary.incomplete


def test_ctrl_c_keeps_finished_trials_and_rerun_continues(tmp_path,
                                                          monkeypatch):
    calls = []

    def interrupted_fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return fit(*args, **kwargs)

    monkeypatch.setattr(tune_objective, "fit", interrupted_fit)
    config = config_from_dict(tiny(tmp_path))
    summary = tune(config, quiet=True)
    assert summary.interrupted and not summary.final
    trials = trials_of(config)
    assert [t.state for t in trials] == [TrialState.COMPLETE,
                                         TrialState.FAIL]
    assert not (tmp_path / RESULTS_FILE).exists()

    monkeypatch.setattr(tune_objective, "fit", fit)
    summary = tune(config, quiet=True)
    assert not summary.interrupted
    after = trials_of(config)
    assert after[0].params == trials[0].params
    assert [t.state for t in after[2:]] == [TrialState.COMPLETE]
    assert len(read_records(tmp_path / RESULTS_FILE)) == 2


def test_a_stopped_trial_resumes_with_its_settings_to_the_same_value(
        tmp_path, monkeypatch):
    # Tuned on two seeds; the signal comes in the second seed of the
    # second trial, after its first seed finished.
    calls, found = [], []

    def signalled_fit(*args, **kwargs):
        calls.append(1)
        found.append(kwargs["checkpoint"].path.exists())
        if len(calls) == 4:
            report = kwargs["on_epoch"]

            def signal_then_report(epoch, val_acc):
                if epoch == 5:
                    os.kill(os.getpid(), signal.SIGTERM)
                report(epoch, val_acc)
            kwargs["on_epoch"] = signal_then_report
        return fit(*args, **kwargs)

    monkeypatch.setattr(tune_objective, "fit", signalled_fit)
    config = config_from_dict(tiny(tmp_path / "a", seeds=[0, 1]))
    assert tune(config, quiet=True).interrupted
    stopped = trials_of(config)[1]
    assert stopped.user_attrs["interrupted"] is True
    assert sorted(stopped.intermediate_values)[-1] == 12 + 4

    assert not tune(config, quiet=True).interrupted
    trials = trials_of(config)
    assert [t.state for t in trials] == [TrialState.COMPLETE,
                                         TrialState.FAIL,
                                         TrialState.COMPLETE]
    resumed = trials[2]
    assert resumed.params == stopped.params
    assert resumed.user_attrs["resumes"] == 1
    # Both seeds continued from the stopped trial's checkpoints, which are
    # gone once the study is complete.
    assert found[4:] == [True, True]
    assert not list((tmp_path / "a" / "checkpoints").rglob("*.pt"))

    # The same settings, never stopped, in a study of their own.
    monkeypatch.setattr(tune_objective, "fit", fit)
    alone = config_from_dict(tiny(tmp_path / "b", seeds=[0, 1], trials=1))
    (tmp_path / "b").mkdir()
    study = optuna.create_study(
        study_name=study_name(alone, tune_options(alone),
                              study_cells(alone)[0]),
        storage=f"sqlite:///{tmp_path / 'b' / 'optuna.db'}",
        direction="maximize")
    study.enqueue_trial(stopped.params)
    tune(alone, quiet=True)
    reference = trials_of(alone)[0]
    assert resumed.value == reference.value
    assert resumed.intermediate_values == reference.intermediate_values

    # Rerun once more: nothing is resumed twice.
    tune(config, quiet=True)
    assert len(trials_of(config)) == 3


def test_resume_stopped_fills_open_slots_oldest_first_and_once():
    from gnn_center.tune_resume import resume_stopped
    distributions = {"lr": optuna.distributions.FloatDistribution(
        1e-3, 1e-1, log=True)}
    study = optuna.create_study(direction="maximize")

    def add(state, lr=None, **user_attrs):
        params = {} if lr is None else {"lr": lr}
        study.add_trial(optuna.trial.create_trial(
            state=state, value=0.5 if state == TrialState.COMPLETE else None,
            params=params,
            distributions=distributions if params else {},
            user_attrs=user_attrs))

    add(TrialState.COMPLETE, 0.01)
    add(TrialState.FAIL, interrupted=True)  # stopped before its draw
    add(TrialState.FAIL, 0.02, interrupted=True)
    add(TrialState.FAIL, 0.03)  # an error: not resumed
    add(TrialState.FAIL, 0.04, interrupted=True)
    add(TrialState.FAIL, 0.05, interrupted=True)
    assert resume_stopped(study, ["lr"], trials=3) == [2, 4]
    waiting = study.get_trials(states=(TrialState.WAITING, ))
    # Optuna keeps an enqueued trial's settings until it runs here.
    assert [(t.system_attrs["fixed_params"], t.user_attrs)
            for t in waiting] == [
        ({"lr": 0.02}, {"resumes": 2}), ({"lr": 0.04}, {"resumes": 4})]
    assert resume_stopped(study, ["lr"], trials=3) == []  # no slot left
    assert resume_stopped(study, ["lr"], trials=4) == [5]
    assert resume_stopped(study, ["lr"], trials=9) == []  # each once
    # A running trial holds a slot only where heartbeats can fail it.
    running = optuna.create_study(direction="maximize")
    running.add_trial(optuna.trial.create_trial(
        state=TrialState.FAIL, params={"lr": 0.02},
        distributions=distributions, user_attrs={"interrupted": True}))
    running.enqueue_trial({"lr": 0.03})
    running.ask()  # the enqueued trial, now RUNNING
    assert resume_stopped(running, ["lr"], trials=1) == []
    assert resume_stopped(running, ["lr"], trials=1, heartbeat=False) == [0]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_trial_at_its_next_epoch_as_no_failure(
        tmp_path, monkeypatch, signum):
    calls = []

    def signalled_fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the signal comes in the middle of an epoch
            report = kwargs["on_epoch"]

            def signal_then_report(epoch, val_acc):
                if epoch == 3:
                    os.kill(os.getpid(), signum)
                report(epoch, val_acc)
            kwargs["on_epoch"] = signal_then_report
        return fit(*args, **kwargs)

    monkeypatch.setattr(tune_objective, "fit", signalled_fit)
    config = config_from_dict(tiny(tmp_path, trials=4))
    before = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    summary = tune(config, quiet=True)
    assert summary.interrupted and not summary.final
    trials = trials_of(config)
    assert [t.state for t in trials] == [TrialState.COMPLETE,
                                         TrialState.FAIL]
    # Stopped where it checked, before reporting the signalled epoch.
    assert sorted(trials[1].intermediate_values) == [0, 1, 2]
    assert trials[1].user_attrs["interrupted"] is True
    assert summary.studies[0].counts["FAIL"] == 0  # not the settings' fault
    # The handlers are as they were, and no stop request lingers.
    assert [signal.getsignal(s)
            for s in (signal.SIGINT, signal.SIGTERM)] == before
    assert summary.studies[0].counts["stopped"] == 1
    monkeypatch.setattr(tune_objective, "fit", fit)
    assert not tune(config, quiet=True).interrupted
    # tune.md lists the stopped trial apart from failed ones.
    lines = (tmp_path / "tune.md").read_text().split("\n")
    at = next(i for i, l in enumerate(lines) if l.startswith("| dataset"))
    header, row = lines[at], lines[at + 2]
    columns = dict(zip(header.split("|"), row.split("|")))
    assert columns[" failed "].strip() == "0"
    assert columns[" stopped "].strip() == "1"


# The test plays the other worker with study.ask, which Optuna notes.
@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_beyond_the_count_runs_nothing_and_waits(tmp_path,
                                                         monkeypatch):
    # Two workers asked for the last slot at once: the later trial must not
    # train, and the study waits for the earlier one instead of adding more.
    # Any training would fail.
    monkeypatch.setattr(tune_objective, "fit", None)
    config = config_from_dict(tiny(tmp_path))
    options = tune_options(config)
    cell = study_cells(config)[0]
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name=study_name(config, options, cell),
                                storage=storage, direction="maximize")
    study.tell(study.ask(), 0.5)
    study.ask()  # the other worker's trial, still running
    late = study.ask()
    with pytest.raises(tune_objective.SurplusTrial):
        tune_objective.Objective(config, options, cell, heartbeat=True)(late)
    assert late.params == {}
    study.tell(late, state=TrialState.FAIL)
    assert tune_module._advance_study(config, options, cell, storage, 0,
                                      lambda text: None) is False
    assert len(study.get_trials()) == 3


def test_a_waiting_worker_logs_its_wait_once_not_every_few_seconds():
    lines = []
    log = tune_module._without_repeats(lines.append)
    for text in ["trial 3 complete", "waiting", "waiting", "waiting",
                 "trial 4 complete", "waiting"]:
        log(text)
    assert lines == ["trial 3 complete", "waiting", "trial 4 complete",
                     "waiting"]


def test_pruner_stops_a_hopeless_trial(tmp_path):
    raw = tiny(tmp_path, pruner={"median": {"n_startup_trials": 1}})
    raw["train"].update(max_epochs=30, patience=30)
    raw["tune"]["space"] = {"lr": {"log": [1e-6, 5e-2]}}
    config = config_from_dict(raw)
    options = tune_options(config)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(
        study_name=study_name(config, options, study_cells(config)[0]),
        storage=storage, direction="maximize")
    study.enqueue_trial({"lr": 5e-2})
    study.enqueue_trial({"lr": 1e-6})  # learns nothing in 30 epochs
    tune(config, quiet=True)
    trials = trials_of(config)
    assert [t.state for t in trials] == [TrialState.COMPLETE,
                                         TrialState.PRUNED]
    assert trials[1].params == {"lr": 1e-6}
    assert max(trials[1].intermediate_values) < 29  # stopped early


DRIVER = r"""
import json, os, signal, sys
from gnn_center import records, tune, tune_objective
from gnn_center.config import config_from_dict

kill_at = os.environ.get("KILL_AT", "")
fit, append, calls = tune_objective.fit, records.append_record, []

def fit_then_die(*args, **kwargs):
    # Dies in the first epoch of the second trial: a trial left RUNNING.
    calls.append(1)
    if kill_at == "trial" and len(calls) == 2:
        kwargs["on_epoch"] = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
    return fit(*args, **kwargs)

def append_then_die(path, record):
    append(path, record)
    if kill_at == "final":
        os.kill(os.getpid(), signal.SIGKILL)

tune_objective.fit, records.append_record = fit_then_die, \
    append_then_die
config = config_from_dict(json.loads(sys.argv[1]))
tune.tune(config, quiet=True, heartbeat_s=1)
"""


# Starts three processes (tens of seconds on a loaded machine).
@pytest.mark.slow
def test_killed_study_continues_and_final_runs_are_not_duplicated(
        tmp_path):
    raw = tiny(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]),
               OMP_NUM_THREADS="1")

    def run(kill_at):
        return subprocess.run(
            [sys.executable, "-c", DRIVER, json.dumps(raw)],
            env=dict(env, KILL_AT=kill_at), capture_output=True, text=True,
            timeout=600)

    config = config_from_dict(raw)
    killed = run("trial")
    assert killed.returncode == -9, killed.stderr
    trials = trials_of(config)
    assert [t.state for t in trials] == [TrialState.COMPLETE,
                                         TrialState.RUNNING]
    first = trials[0]
    assert not (tmp_path / RESULTS_FILE).exists()

    killed = run("final")
    assert killed.returncode == -9, killed.stderr
    trials = trials_of(config)
    # The killed trial is failed (its heartbeat stopped) and replaced; the
    # finished one is kept, not rerun.
    assert [t.state for t in trials] == [TrialState.COMPLETE,
                                         TrialState.FAIL,
                                         TrialState.COMPLETE]
    assert trials[0].params == first.params
    assert trials[0].datetime_complete == first.datetime_complete
    assert len(read_records(tmp_path / RESULTS_FILE)) == 1

    done = run("")
    assert done.returncode == 0, done.stderr
    assert len(trials_of(config)) == 3  # nothing more to tune
    records = read_records(tmp_path / RESULTS_FILE)
    assert sorted(r["seed"] for r in records) == [0, 1]
    assert len({r["key"] for r in records}) == 2


# Starts four processes: two tuning workers, then two for the final runs.
@pytest.mark.slow
def test_two_workers_share_the_studies_without_repeating_a_trial(tmp_path):
    config = config_from_dict(tiny(tmp_path, trials=4))
    tune(config, jobs=2, quiet=True)
    trials = trials_of(config)
    evaluated = [t for t in trials if not t.user_attrs.get("surplus")]
    assert len(counted(trials)) == 4
    assert all(t.state == TrialState.COMPLETE for t in evaluated)
    assert len({t.number for t in evaluated}) == 4
    assert len({json.dumps(t.params, sort_keys=True)
                for t in evaluated}) == 4
    # A surplus trial (a worker that lost the race for the last slot)
    # suggests nothing and runs nothing.
    assert all(not t.params for t in trials if t.user_attrs.get("surplus"))
    assert len(read_records(tmp_path / RESULTS_FILE)) == 2


def test_staged_tune_shares_studies_and_records_with_the_whole(tmp_path):
    raw = tiny(tmp_path / "out")
    raw["methods"] = ["gcn", "centered"]
    # A method left out of the part keeps its own space out of the way.
    raw["tune"]["method_space"] = {"gcn": {
        "hidden_channels": {"choice": [4, 8]}}}
    path = tmp_path / "tiny.yaml"
    import yaml
    path.write_text(yaml.safe_dump(raw))
    assert main(["tune", str(path), "--methods", "centered", "--quiet"]) == 0
    config = load_config(path)
    gcn, centered = study_cells(config)
    first = [t.datetime_start for t in trials_of(config, centered)]
    assert len(first) == 2
    records = read_records(tmp_path / "out" / RESULTS_FILE)
    assert {r["method"] for r in records} == {"centered-tuned"}

    assert main(["tune", str(path), "--methods", "gcn", "--quiet"]) == 0
    # The summary and the generated config describe every study of the
    # config, not only the part just run.
    summary = (tmp_path / "out" / "tune.md").read_text()
    assert "| csbm | gcn |" in summary and "| csbm | centered |" in summary
    generated = load_config(tmp_path / "out" / "tuned" / "csbm-L2.yaml")
    assert generated.methods == ["gcn-tuned", "centered-tuned"]

    assert main(["tune", str(path), "--quiet"]) == 0
    # The staged study is the whole config's: continued, not run again.
    assert [t.datetime_start for t in trials_of(config, centered)] == first
    assert len(counted(trials_of(config, gcn))) == 2
    again = read_records(tmp_path / "out" / RESULTS_FILE)
    assert again[:len(records)] == records
    assert sorted(r["method"] for r in again) == \
        ["centered-tuned"] * 2 + ["gcn-tuned"] * 2


def test_staged_tune_runs_only_its_part_final_runs(tmp_path):
    raw = tiny(tmp_path / "out")
    raw["methods"] = ["gcn", "centered"]
    path = tmp_path / "tiny.yaml"
    import yaml
    path.write_text(yaml.safe_dump(raw))
    assert main(["tune", str(path), "--methods", "centered", "--quiet"]) == 0
    (tmp_path / "out" / RESULTS_FILE).unlink()  # centered's finals gone
    assert main(["tune", str(path), "--methods", "gcn", "--quiet"]) == 0
    records = read_records(tmp_path / "out" / RESULTS_FILE)
    assert sorted(r["method"] for r in records) == ["gcn-tuned"] * 2


def test_staged_finals_wait_for_another_part_with_wait_for_lock(
        tmp_path, monkeypatch, folder_lock_holder, capsys):
    # Two parts of one config tuned side by side: the part that reaches
    # its final runs while the other's hold the folder stops, or with
    # --wait-for-lock waits for them and then runs its own.
    from gnn_center import records
    path = tmp_path / "tiny.yaml"
    import yaml
    path.write_text(yaml.safe_dump(tiny(tmp_path / "out")))
    holder = folder_lock_holder(tmp_path / "out")
    assert main(["tune", str(path), "--quiet"]) == 2
    assert "is in use by another sweep" in capsys.readouterr().err
    assert not (tmp_path / "out" / RESULTS_FILE).exists()

    def other_part_ends(message):
        holder.communicate("")

    monkeypatch.setattr(records, "_print_waiting", other_part_ends)
    assert main(["tune", str(path), "--quiet", "--wait-for-lock"]) == 0
    assert holder.returncode == 0  # it was waited for, not bypassed
    records_ = read_records(tmp_path / "out" / RESULTS_FILE)
    assert sorted(r["seed"] for r in records_) == [0, 1]


def test_staged_tune_checks_the_whole_section_before_any_trial(tmp_path,
                                                               capsys):
    raw = tiny(tmp_path / "out")
    raw["methods"] = ["gcn", "centered"]
    raw["tune"]["method_space"] = {"gcn": {"dropout": {"float": [0.5, 0.1]}}}
    path = tmp_path / "tiny.yaml"
    import yaml
    path.write_text(yaml.safe_dump(raw))
    assert main(["tune", str(path), "--methods", "centered", "--quiet"]) == 2
    assert "tune.method_space.gcn.dropout: float: empty or inverted range" \
        in capsys.readouterr().err
    assert not (tmp_path / "out" / "optuna.db").exists()


def test_cli_rejects_a_method_outside_the_config(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    import yaml
    path.write_text(yaml.safe_dump(tiny(tmp_path / "out")))
    assert main(["tune", str(path), "--methods", "gcnii"]) == 2
    assert "methods: gcnii not in the config; choose among gcn" in \
        capsys.readouterr().err


def test_cli_documents_tune(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tune", "--help"])
    text = capsys.readouterr().out
    for word in ("--storage", "--jobs", "optuna.db", "results.jsonl",
                 "continues every study", "--wait-for-lock"):
        assert word in text.replace("\n", " ").replace("  ", " ")


def test_journal_storage_path(tmp_path):
    config = config_from_dict(tiny(tmp_path))
    journal = str(tmp_path / "journal.log")
    tune(config, storage=journal, quiet=True)
    assert len(counted(trials_of(config, storage=journal))) == 2
    assert not (tmp_path / "optuna.db").exists()


@pytest.mark.parametrize("path", sorted(
    (Path(__file__).parents[1] / "configs").glob("tune-*.yaml")))
def test_shipped_tune_configs_search_every_method(path):
    config = load_config(path)
    options = tune_options(config)
    assert options.trials >= 20 and len(options.final_seeds) >= 5
    for method in config.methods:
        assert options.space_for(method)
    text = path.read_text()
    for method, params in options.method_space.items():
        # Every per-method range says where it comes from.
        block = text[text.index(f"    {method}:\n"):]
        assert block.splitlines()[1].strip().startswith("#")


# Starts three processes; each trial would train for hours.
@pytest.mark.slow
@pytest.mark.parametrize("target", ["process", "group"])
def test_sigterm_fails_the_running_trials_and_stops_at_once(tmp_path,
                                                            target):
    raw = tiny(tmp_path / "out")
    raw["train"].update(max_epochs=10 ** 7, patience=10 ** 7)
    path = tmp_path / "tune.yaml"
    path.write_text(json.dumps(raw))  # JSON is YAML
    proc = subprocess.Popen(
        [sys.executable, "-m", "gnn_center.cli", "tune", str(path),
         "--jobs", "2", "--quiet"], cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    storage = tmp_path / "out" / "optuna.db"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if _states(storage) == {"RUNNING": 2}:
            break
        time.sleep(0.5)
    assert _states(storage) == {"RUNNING": 2}, f"exit status {proc.poll()}"
    if target == "group":  # a batch scheduler at its time limit
        os.killpg(proc.pid, signal.SIGTERM)
    else:  # `kill <pid>`: the command alone, not its workers
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail("tune did not stop its workers")
    assert proc.returncode == 130, err
    assert "interrupted: rerun the same command to continue" in out
    # Failed in the storage at once, not left for the heartbeat to find.
    assert _states(storage) == {"FAIL": 2}, err
    assert "Traceback" not in err, err  # an interrupt is no error


def _states(storage: Path) -> dict:
    r"""The trials' states, read without creating the storage's tables
    (which the command under test does)."""
    try:
        with sqlite3.connect(f"file:{storage}?mode=ro", uri=True) as db:
            return dict(db.execute(
                "SELECT state, COUNT(*) FROM trials GROUP BY state"))
    except sqlite3.OperationalError:  # no file or no table yet
        return {}


def test_generated_config_states_its_own_dataset_budget(tmp_path):
    from gnn_center.tune_outputs import StudyCell, StudyResult, \
        write_generated

    raw = tiny(tmp_path / "out")
    raw["datasets"] = ["csbm", "cora"]
    raw["data"] = {}
    raw["dataset_options"] = {
        "csbm": {"data": dict(num_nodes=120, feature_dim=8)},
        "cora": {"train": dict(max_epochs=30, patience=7)}}
    config = config_from_dict(raw, source="two.yaml")
    results = [StudyResult(StudyCell(d, "gcn", 2), f"study-{d}",
                           {"COMPLETE": 2}, 0.5, {"train": {"lr": 0.01}})
               for d in config.datasets]
    paths = write_generated(config, tune_options(config), results)
    texts = {p.name: p.read_text() for p in paths}
    assert "csbm: up to 12 epochs, patience 12" in texts["csbm-L2.yaml"]
    assert "cora" not in texts["csbm-L2.yaml"]
    assert "cora: up to 30 epochs, patience 7" in texts["cora-L2.yaml"]
    assert "csbm" not in texts["cora-L2.yaml"]
