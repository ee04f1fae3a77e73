import os
import signal
import threading
import time
from pathlib import Path

from gnn_center import sweep
from gnn_center.config import config_from_dict

SLOW_PID_FILE = "GNN_CENTER_TEST_SLOW_PID_FILE"


def _fake_cell(cell, root=None, layer_metrics=True, progress=False):
    # Runs in a worker process (imported from this module by reference):
    # seed 0 finishes at once, seed 1 stands for a run of many minutes.
    if cell.seed == 1:
        Path(os.environ[SLOW_PID_FILE]).write_text(str(os.getpid()))
        time.sleep(300)
    return dict(dataset=cell.dataset, method=cell.method,
                base_method=cell.base_method, num_layers=cell.num_layers,
                seed=cell.seed, status="ok", test_acc=0.5, key=cell.key)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_interrupt_keeps_finished_runs_and_stops_runs_in_flight(
        tmp_path, monkeypatch):
    # A SIGINT that reaches the sweep's process alone (not its workers, as
    # with `kill -INT <pid>`) must not wait for the runs in flight.
    pid_file = tmp_path / "slow.pid"
    monkeypatch.setenv(SLOW_PID_FILE, str(pid_file))
    monkeypatch.setattr(sweep, "run_cell", _fake_cell)
    config = config_from_dict(dict(
        datasets=["csbm"], methods=["gcn"], depths=[2], seeds=[0, 1],
        output_dir=str(tmp_path / "out")))
    results = tmp_path / "out" / sweep.RESULTS_FILE
    returned = threading.Event()
    watch = dict(interrupted=False, had_to_kill=False, slow_pid=None)

    def interrupt_when_one_run_is_stored():
        deadline = time.time() + 120
        while time.time() < deadline and not (
                pid_file.exists() and pid_file.read_text()
                and results.exists() and results.read_text()):
            time.sleep(0.1)
        if not pid_file.exists() or not pid_file.read_text():
            return
        watch["slow_pid"] = int(pid_file.read_text())
        os.kill(os.getpid(), signal.SIGINT)
        watch["interrupted"] = True
        # A sweep that waits for the slow run would hang the test for
        # minutes; end that run here and report it instead.
        if not returned.wait(60):
            watch["had_to_kill"] = True
            os.kill(watch["slow_pid"], signal.SIGKILL)

    watcher = threading.Thread(target=interrupt_when_one_run_is_stored)
    watcher.start()
    try:
        summary = sweep.run_sweep(config, jobs=2, progress=False)
    finally:
        returned.set()
        watcher.join()

    assert watch["interrupted"], "the slow run never started"
    assert not watch["had_to_kill"], "the sweep waited for the run in flight"
    assert summary.interrupted and summary.finished == 1
    records = sweep.read_records(results)
    assert [r["seed"] for r in records] == [0]
    assert "interrupted: re-run the same command to resume" in str(summary)
    deadline = time.time() + 10
    while _alive(watch["slow_pid"]) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(watch["slow_pid"])
