import io
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tqdm import tqdm

from gnn_center import local_pool, records, sweep
from gnn_center.config import config_from_dict
from gnn_center.interrupts import interrupt_once
from gnn_center.records import ERRORS_FILE, RESULTS_FILE, read_records

SLOW_PID_FILE = "GNN_CENTER_TEST_SLOW_PID_FILE"


def _fake_cell(cell, root=None, layer_metrics=True, progress=False,
               output_dir=None):
    # Runs in a worker process (imported from this module by reference).
    # Seed 1 stands for a run of many minutes; seed 0 finishes once seed 1
    # is running, so that one run is always in flight.
    pid_file = Path(os.environ[SLOW_PID_FILE])
    if cell.seed == 1:
        pid_file.write_text(str(os.getpid()))
        time.sleep(300)
    deadline = time.time() + 120
    while not (pid_file.exists() and pid_file.read_text()):
        if time.time() > deadline:
            raise TimeoutError("the slow run never started")
        time.sleep(0.05)
    return dict(dataset=cell.dataset, method=cell.method,
                base_method=cell.base_method, num_layers=cell.num_layers,
                seed=cell.seed, status="ok", test_acc=0.5, key=cell.key)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class SlowRunWatch:
    r"""Guards a sweep with a slow run: once that run has started, waits
    for the sweep to return; if it does not within a minute, the sweep is
    waiting for the slow run, which is then killed so the test fails
    fast. On exit, checks that the slow run was stopped."""

    def __init__(self, tmp_path, monkeypatch):
        self.pid_file = tmp_path / "slow.pid"
        monkeypatch.setenv(SLOW_PID_FILE, str(self.pid_file))
        monkeypatch.setattr(sweep, "run_cell", _fake_cell)
        self.results = tmp_path / "out" / RESULTS_FILE
        self.returned = threading.Event()
        self.slow_pid, self.had_to_kill = None, False
        self.thread = threading.Thread(target=self._watch)

    def _watch(self):
        deadline = time.time() + 120
        while not (self.pid_file.exists() and self.pid_file.read_text()):
            if time.time() > deadline or self.returned.is_set():
                return
            time.sleep(0.05)
        self.slow_pid = int(self.pid_file.read_text())
        if not self.returned.wait(60):
            self.had_to_kill = True
            os.kill(self.slow_pid, signal.SIGKILL)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.returned.set()
        self.thread.join()
        assert self.slow_pid is not None, "the slow run never started"
        assert not self.had_to_kill, "the sweep waited for the run in flight"
        deadline = time.time() + 10
        while _alive(self.slow_pid) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(self.slow_pid), "the slow run was not stopped"


def two_cell_config(tmp_path):
    return config_from_dict(dict(
        datasets=["csbm"], methods=["gcn"], depths=[2], seeds=[0, 1],
        output_dir=str(tmp_path / "out")))


def interrupt_in_store(monkeypatch, when, signum=signal.SIGINT):
    r"""Sends ``signum`` to this process from inside the store step, just
    before or just after the record is written: the moments where an
    interrupt could drop a finished run or leave it uncounted."""
    write = sweep.append_or_keep

    def write_and_interrupt(path, record):
        if when == "before write":
            os.kill(os.getpid(), signum)
        kept = write(path, record)
        if when == "after write":
            os.kill(os.getpid(), signum)
        return kept

    monkeypatch.setattr(sweep, "append_or_keep", write_and_interrupt)


@pytest.mark.parametrize("when", ["before write", "after write"])
def test_interrupt_keeps_finished_runs_and_stops_runs_in_flight(
        tmp_path, monkeypatch, when):
    # A SIGINT that reaches the sweep's process alone (not its workers, as
    # with `kill -INT <pid>`) must not wait for the runs in flight, and
    # must neither lose nor miscount the run being stored. The quick run
    # ends only once the slow one is running, so the signal always finds
    # one run in flight.
    interrupt_in_store(monkeypatch, when)
    with SlowRunWatch(tmp_path, monkeypatch) as watch:
        summary = sweep.run_sweep(two_cell_config(tmp_path), jobs=2,
                                  progress=False)
    assert summary.interrupted and summary.finished == 1
    assert [r["seed"] for r in read_records(watch.results)] == [0]
    assert "interrupted: re-run the same command to resume" in str(summary)


@pytest.fixture
def sigterm_interrupts():
    r"""SIGINT and SIGTERM as the command sets them, then as before."""
    with interrupt_once():
        yield


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("when", ["before write", "after write"])
def test_interrupt_while_storing_in_one_process(
        tmp_path, monkeypatch, sigterm_interrupts, when, signum):
    monkeypatch.setattr(sweep, "run_cell", _quick_cell)
    interrupt_in_store(monkeypatch, when, signum)
    config = two_cell_config(tmp_path)
    summary = sweep.run_sweep(config, jobs=1, progress=False)
    assert summary.interrupted and summary.finished == 1
    assert [r["seed"] for r in read_records(
        tmp_path / "out" / RESULTS_FILE)] == [0]


def _quick_cell(cell, root=None, layer_metrics=True, progress=False,
                output_dir=None):
    return dict(dataset=cell.dataset, method=cell.method,
                base_method=cell.base_method, num_layers=cell.num_layers,
                seed=cell.seed, status="ok", test_acc=0.5, key=cell.key)


def test_a_failed_write_keeps_the_record_and_stops_runs_in_flight(
        tmp_path, monkeypatch):
    # The results file stops taking records after the check at the start
    # (a full disk): the sweep stops its workers and says where the
    # finished run is kept.
    write = records.append_record
    results = tmp_path / "out" / RESULTS_FILE

    def disk_full(path, record):
        if Path(path) == results:
            raise OSError(28, "No space left on device")
        write(path, record)

    monkeypatch.setattr(records, "append_record", disk_full)
    with SlowRunWatch(tmp_path, monkeypatch):
        with pytest.raises(sweep.ResultsNotSaved) as info:
            sweep.run_sweep(two_cell_config(tmp_path), jobs=2,
                            progress=False)
    message = str(info.value)
    assert "No space left on device" in message
    kept = records.fallback_path(results)
    assert str(kept) in message
    assert [r["seed"] for r in read_records(kept)] == [0]
    kept.unlink()


def fail_if_run(cell, *args, **kwargs):
    raise AssertionError(f"{cell} ran although the sweep could not start")


def test_unwritable_results_stop_before_the_first_run(tmp_path,
                                                      monkeypatch):
    # (As root, permissions do not stop a write; a folder where the
    # results file should be does, for everyone.)
    monkeypatch.setattr(sweep, "run_cell", fail_if_run)
    (tmp_path / "out" / RESULTS_FILE).mkdir(parents=True)
    with pytest.raises(records.NotWritable,
                       match="cannot write the results to .*results.jsonl"):
        sweep.run_sweep(two_cell_config(tmp_path), jobs=1, progress=False)


def test_a_dataset_that_cannot_load_stops_before_the_first_run(
        tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "run_cell", fail_if_run)
    config = config_from_dict(dict(
        datasets=["cora"], methods=["gcn", "centered"], depths=[2],
        seeds=[0, 1], root=str(tmp_path / "empty"),
        output_dir=str(tmp_path / "out")))
    with pytest.raises(sweep.DatasetUnavailable) as info:
        sweep.run_sweep(config, jobs=2, progress=False)
    assert "cannot load dataset 'cora', needed by 4 run(s)" in str(
        info.value)
    assert not (tmp_path / "out" / ERRORS_FILE).exists()


def test_a_second_sweep_on_the_same_folder_stops(tmp_path, monkeypatch,
                                                 folder_lock_holder):
    monkeypatch.setattr(sweep, "run_cell", fail_if_run)
    out = tmp_path / "out"
    holder = folder_lock_holder(out)
    with pytest.raises(records.FolderLocked) as info:
        sweep.run_sweep(two_cell_config(tmp_path), jobs=1, progress=False)
    assert f"process {holder.pid}" in str(info.value)
    assert str(out) in str(info.value)
    assert "--wait-for-lock" in str(info.value)
    holder.communicate("")  # ends the holder, which frees the lock
    # Now free: the same process can take it (and does not take it twice).
    with records.lock_folder(out):
        with pytest.raises(records.FolderLocked):
            with records.lock_folder(out):
                pass


def test_a_second_sweep_can_wait_for_the_first(tmp_path, monkeypatch,
                                               folder_lock_holder):
    # With wait_for_lock the second sweep waits instead of stopping, and
    # reads the results only once the first has ended, so that it skips
    # the runs the first finished meanwhile.
    monkeypatch.setattr(sweep, "run_cell", _quick_cell)
    out = tmp_path / "out"
    config = two_cell_config(tmp_path)
    seed0 = next(cell for cell in config.cells() if cell.seed == 0)
    holder = folder_lock_holder(out)
    waited = []

    def first_sweep_finishes(message):
        waited.append(message)
        records.append_record(out / RESULTS_FILE, dict(
            _quick_cell(seed0), test_acc=0.25))
        holder.communicate("")  # the first sweep ends

    monkeypatch.setattr(records, "_print_waiting", first_sweep_finishes)
    summary = sweep.run_sweep(config, jobs=1, progress=False,
                              wait_for_lock=True)
    assert len(waited) == 1
    assert f"{out} is in use by another sweep (process {holder.pid})" \
        in waited[0]
    assert (summary.skipped, summary.finished) == (1, 1)
    results = read_records(out / RESULTS_FILE)
    assert [(r["seed"], r["test_acc"]) for r in results] == \
        [(0, 0.25), (1, 0.5)]


def test_workers_report_the_epochs_of_runs_in_flight():
    from gnn_center.train import run

    epochs = queue.Queue()
    cell = next(config_from_dict(dict(
        datasets=["csbm"], methods=["gcn"], depths=[2],
        train=dict(max_epochs=7, patience=7))).cells())
    monkey = local_pool.EPOCHS_QUEUE
    local_pool.EPOCHS_QUEUE = epochs
    try:
        report = sweep._epoch_reporter(cell)
    finally:
        local_pool.EPOCHS_QUEUE = monkey
    seen = []
    run("csbm", "gcn", 2, 0, data_options=dict(num_nodes=120, feature_dim=4),
        train_options=sweep.TrainOptions(max_epochs=7, patience=7),
        record_layer_metrics=False,
        on_epoch=lambda e, acc: (seen.append(e), report(e, acc)))
    assert seen == list(range(7))
    # Throttled, but the first and the last epoch always arrive.
    messages = [epochs.get_nowait() for _ in range(epochs.qsize())]
    assert messages[0][2:] == (1, 7) and messages[-1][2:] == (7, 7)

    text = io.StringIO()
    bar = tqdm(total=2, file=text, mininterval=0)
    shown = local_pool.InFlight(epochs, bar)
    epochs.put((cell.key, "gcn L=2 s0", 3, 7))
    shown.update()
    assert "gcn L=2 s0 3/7" in text.getvalue()
    shown.end(cell.key)
    epochs.put((cell.key, "gcn L=2 s0", 7, 7))  # late: the run has ended
    shown.update()
    assert shown.epochs == {}
    bar.close()


def test_a_stopped_run_continues_from_its_checkpoint_to_the_same_record(
        tmp_path, monkeypatch):
    import torch

    from gnn_center import train

    def config(folder):
        return config_from_dict(dict(
            datasets=["csbm"], methods=["dropedge"], depths=[3],
            seeds=[0, 1], layer_metrics=False, output_dir=str(folder),
            data=dict(num_nodes=120, feature_dim=8),
            model=dict(hidden_channels=8),
            train=dict(max_epochs=30, patience=30, device="cpu")))

    sweep.run_sweep(config(tmp_path / "whole"), progress=False)
    whole = read_records(tmp_path / "whole" / RESULTS_FILE)

    fit, calls = train.fit, []

    def stopped_fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C after epoch 12 of the second run

            def stop(epoch, val_acc):
                if epoch == 12:
                    raise KeyboardInterrupt
            kwargs["on_epoch"] = stop
        return fit(*args, **kwargs)

    monkeypatch.setattr(train, "fit", stopped_fit)
    stopped = config(tmp_path / "stopped")
    summary = sweep.run_sweep(stopped, progress=False)
    assert summary.interrupted and summary.finished == 1

    found = []

    def resumed_fit(*args, **kwargs):
        state = kwargs["checkpoint"].load(torch.device("cpu"))
        found.append(state and state["progress"]["next_epoch"])
        return fit(*args, **kwargs)

    monkeypatch.setattr(train, "fit", resumed_fit)
    assert sweep.run_sweep(stopped, progress=False).finished == 1
    assert found == [13]
    rerun = read_records(tmp_path / "stopped" / RESULTS_FILE)
    for a, b in zip(whole, rerun):
        for key in ("key", "best_epoch", "epochs_run", "val_acc",
                    "test_acc", "val_loss"):
            assert a[key] == b[key], key
    # Each checkpoint goes once its record is stored.
    assert not list((tmp_path / "stopped").rglob("*.pt*"))
    # What a failed store and a killed write leave behind goes at the next
    # sweep's start.
    folder = sweep.run_checkpoint(tmp_path / "stopped", "x").path.parent
    left = [folder / f"{whole[0]['key']}.pt", folder / ".abc.pt.x1y2"]
    unfinished = folder / "0123456789abcdef.pt"
    for path in left + [unfinished]:
        path.write_bytes(b"")
    sweep.run_sweep(stopped, progress=False)
    assert list(folder.iterdir()) == [unfinished]
