import os
import signal
import threading
import time
from pathlib import Path

import pytest

from gnn_center import sweep
from gnn_center.config import config_from_dict

SLOW_PID_FILE = "GNN_CENTER_TEST_SLOW_PID_FILE"


def _fake_cell(cell, root=None, layer_metrics=True, progress=False):
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
    r"""Runs ``action`` once the slow run has started (and, if
    ``after_record``, once the quick run is stored), then waits for the
    sweep to return; if it does not within a minute, the sweep is waiting
    for the slow run, which is then killed so the test fails fast."""

    def __init__(self, tmp_path, monkeypatch, action=None,
                 after_record=False):
        self.pid_file = tmp_path / "slow.pid"
        monkeypatch.setenv(SLOW_PID_FILE, str(self.pid_file))
        monkeypatch.setattr(sweep, "run_cell", _fake_cell)
        self.results = tmp_path / "out" / sweep.RESULTS_FILE
        self.action, self.after_record = action, after_record
        self.returned = threading.Event()
        self.slow_pid, self.had_to_kill = None, False
        self.thread = threading.Thread(target=self._watch)

    def _ready(self):
        started = self.pid_file.exists() and self.pid_file.read_text()
        stored = self.results.exists() and self.results.read_text()
        return started and (stored or not self.after_record)

    def _watch(self):
        deadline = time.time() + 120
        while not self._ready():
            if time.time() > deadline or self.returned.is_set():
                return
            time.sleep(0.05)
        self.slow_pid = int(self.pid_file.read_text())
        if self.action is not None:
            self.action()
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


def test_interrupt_keeps_finished_runs_and_stops_runs_in_flight(
        tmp_path, monkeypatch):
    # A SIGINT that reaches the sweep's process alone (not its workers, as
    # with `kill -INT <pid>`) must not wait for the runs in flight.
    interrupt = lambda: os.kill(os.getpid(), signal.SIGINT)  # noqa: E731
    with SlowRunWatch(tmp_path, monkeypatch, interrupt,
                      after_record=True) as watch:
        summary = sweep.run_sweep(two_cell_config(tmp_path), jobs=2,
                                  progress=False)
    assert summary.interrupted and summary.finished == 1
    assert [r["seed"] for r in sweep.read_records(watch.results)] == [0]
    assert "interrupted: re-run the same command to resume" in str(summary)


def test_an_error_in_the_sweep_stops_runs_in_flight(tmp_path, monkeypatch):
    # A failure in the sweep's own process (here: the results file cannot
    # be written) is raised, after the workers are stopped.
    def disk_full(path, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sweep, "append_record", disk_full)
    with SlowRunWatch(tmp_path, monkeypatch):
        with pytest.raises(OSError, match="No space left"):
            sweep.run_sweep(two_cell_config(tmp_path), jobs=2,
                            progress=False)
