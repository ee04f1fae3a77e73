r"""The Ray backend of sweeps, on real Ray (a local instance, and a two-node
cluster on this machine), and the GPU assignment of local workers.

Tests synchronise with Ray's workers through files in a folder named by
$GNN_CENTER_TEST_RAY_SYNC, never through sleeps; timeouts are safety nets.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from gnn_center import gpus, ray_backend, sweep
from gnn_center.config import config_from_dict
from gnn_center.interrupts import interrupt_once

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SYNC_ENV = "GNN_CENTER_TEST_RAY_SYNC"
REAL_RUN_CELL = sweep.run_cell
SAFETY_S = 180  # a safety net only: every wait ends on a file or an event
COMPARED = ("status", "best_epoch", "epochs_run", "train_acc", "val_acc",
            "test_acc", "val_loss", "num_parameters", "split")


def tiny_config(out, seeds=(0, 1), methods=("gcn", "centered")):
    return config_from_dict(dict(
        name="tiny", datasets=["csbm"], methods=list(methods), depths=[2],
        seeds=list(seeds), data=dict(num_nodes=200, feature_dim=8),
        model=dict(hidden_channels=16),
        train=dict(max_epochs=5, device="cpu"), layer_metrics=False,
        output_dir=str(out)))


def read_results(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _wait_for(ready, what):
    deadline = time.monotonic() + SAFETY_S
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# Runners shipped to Ray's workers in place of sweep.run_cell #################


def _seed1_stalls_once(cell, root=None, layer_metrics=True, progress=False):
    r"""Seed 1's first attempt writes its pid and waits (to be killed or
    cancelled); every other run is the real one."""
    sync = Path(os.environ[SYNC_ENV])
    if cell.seed == 1:
        with open(sync / "attempts", "a") as f:
            f.write(f"{os.getpid()}\n")
        if len((sync / "attempts").read_text().split()) == 1:
            tmp = sync / "stalled.pid.tmp"
            tmp.write_text(str(os.getpid()))
            tmp.rename(sync / "stalled.pid")
            _wait_for(lambda: False, "this worker to be stopped")
    return REAL_RUN_CELL(cell, root, layer_metrics, progress)


def _on_both_nodes(cell, root=None, layer_metrics=True, progress=False):
    r"""Each run notes its node and waits until runs have started on two
    nodes: with one CPU per node, both nodes then run cells."""
    import ray

    sync = Path(os.environ[SYNC_ENV])
    node = ray.get_runtime_context().get_node_id()
    (sync / f"node-{node}").touch()
    _wait_for(lambda: len(list(sync.glob("node-*"))) >= 2, "a second node")
    return REAL_RUN_CELL(cell, root, layer_metrics, progress)


# Fixtures ####################################################################


@pytest.fixture(scope="module")
def ray_module(tmp_path_factory):
    ray = pytest.importorskip(
        "ray", reason='Ray is not installed: pip install -e ".[ray]"')
    # Workers inherit this environment: they find the sync folder, this
    # module (for the runners above) and the package under test.
    sync = tmp_path_factory.mktemp("ray-sync")
    saved = {k: os.environ.get(k) for k in (SYNC_ENV, "PYTHONPATH",
                                            "RAY_AUTH_MODE")}
    os.environ[SYNC_ENV] = str(sync)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), str(TESTS)] + ([saved["PYTHONPATH"]]
                                   if saved["PYTHONPATH"] else []))
    # The clusters below live for one test on the loopback address.
    os.environ["RAY_AUTH_MODE"] = "disabled"
    try:
        yield ray
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def sync_dir(ray_module):
    sync = Path(os.environ[SYNC_ENV])
    for path in sync.iterdir():
        path.unlink()
    return sync


@pytest.fixture
def local_ray(ray_module, sync_dir):
    r"""A local Ray of two CPUs, shared by the tests that use it."""
    if not ray_module.is_initialized():
        ray_module.init(address="local", num_cpus=2,
                        include_dashboard=False)
    return ray_module


def _records_by_key(path):
    records = read_results(path)
    by_key = {r["key"]: r for r in records}
    assert len(by_key) == len(records), "a cell was recorded twice"
    return by_key


def _assert_same_records(ray_results, local_results):
    ray_records = _records_by_key(ray_results)
    local_records = _records_by_key(local_results)
    assert ray_records.keys() == local_records.keys()
    for key, local in local_records.items():
        got = ray_records[key]
        assert got.keys() == local.keys()
        assert got["cell"] == local["cell"]
        assert got["environment"]["threads"] == "1"
        for field in COMPARED:
            assert got[field] == local[field], (field, got["cell"])


def _local_sweep_one_thread(config):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return sweep.run_sweep(config, progress=False)
    finally:
        torch.set_num_threads(threads)


# Without Ray #################################################################


def test_gpu_for_worker_round_robin():
    assert [gpus.gpu_for_worker(i, 3) for i in range(7)] == [
        0, 1, 2, 0, 1, 2, 0]
    assert [gpus.gpu_for_worker(i, 2) for i in range(4)] == [0, 1, 0, 1]
    # One GPU or none: CUDA's default, as without this assignment.
    assert {gpus.gpu_for_worker(i, n) for i in range(4)
            for n in (0, 1)} == {None}
    with pytest.raises(ValueError, match="worker_index"):
        gpus.gpu_for_worker(-1, 2)


def test_a_worker_sees_its_gpu_alone(monkeypatch):
    # Worker 4 of a pool over three visible GPUs (out of more) takes the
    # second of them, which CUDA then numbers 0 in that worker.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    gpus.use_one_gpu(4, 3)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    gpus.use_one_gpu(3, 2)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    gpus.use_one_gpu(3, 1)  # one GPU: left as it is
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_without_ray_the_backend_names_the_extra(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(dict(
        datasets=["csbm"], methods=["gcn"], depths=[2], seeds=[0],
        output_dir=str(tmp_path / "out"))))
    code = ("import sys; sys.modules['ray'] = None\n"
            "from gnn_center.cli import main\n"
            f"sys.exit(main(['sweep', {str(config)!r}, '--backend', 'ray', "
            f"'--quiet']))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=SAFETY_S, env=env)
    assert done.returncode == 2, done.stderr
    assert 'pip install -e ".[ray]"' in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / sweep.RESULTS_FILE).exists()


def test_ray_options_are_checked():
    from gnn_center.ray_backend import RayOptions

    for bad in (0, 1.5, -0.5):
        with pytest.raises(ValueError, match="gpus_per_run"):
            RayOptions(gpus_per_run=bad)
    with pytest.raises(ValueError, match="address"):
        RayOptions(address=" ")
    with pytest.raises(ValueError, match="backend"):
        sweep.run_sweep(tiny_config("unused"), backend="dask")
    with pytest.raises(ValueError, match="address"):
        sweep.run_sweep(tiny_config("unused"), address="auto")


# On a local Ray ##############################################################


def test_local_ray_records_equal_the_local_backend(tmp_path, local_ray):
    config = tiny_config(tmp_path / "local")
    local = _local_sweep_one_thread(config)
    config.output_dir = tmp_path / "ray"
    summary = sweep.run_sweep(config, progress=False, backend="ray")
    assert (summary.finished, summary.errors) == (4, 0)
    assert local.finished == 4
    _assert_same_records(summary.results_path, local.results_path)
    assert not (tmp_path / "ray" / sweep.ERRORS_FILE).exists()
    # Resuming skips every finished cell, as with the local backend.
    again = sweep.run_sweep(config, progress=False, backend="ray")
    assert (again.skipped, again.finished) == (4, 0)
    assert len(read_results(summary.results_path)) == 4


def test_a_killed_worker_reruns_its_cell_once(tmp_path, local_ray, sync_dir,
                                               monkeypatch):
    monkeypatch.setattr(sweep, "run_cell", _seed1_stalls_once)
    config = tiny_config(tmp_path / "out", seeds=(0, 1, 2), methods=("gcn",))
    killed = []

    def kill_the_stalled_worker():
        _wait_for((sync_dir / "stalled.pid").exists, "the stalled run")
        pid = int((sync_dir / "stalled.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_the_stalled_worker, daemon=True)
    killer.start()
    summary = sweep.run_sweep(config, progress=False, backend="ray")
    killer.join(SAFETY_S)
    assert killed, "the stalled run never started"
    assert (summary.finished, summary.errors) == (3, 0)
    records = _records_by_key(summary.results_path)
    assert records.keys() == {cell.key for cell in config.cells()}
    attempts = (sync_dir / "attempts").read_text().split()
    assert len(attempts) == 2 and int(attempts[0]) == killed[0]


def test_interrupt_cancels_runs_in_flight_and_keeps_finished(
        tmp_path, local_ray, sync_dir, monkeypatch):
    monkeypatch.setattr(sweep, "run_cell", _seed1_stalls_once)
    config = tiny_config(tmp_path / "out", seeds=(0, 1), methods=("gcn",))
    results = tmp_path / "out" / sweep.RESULTS_FILE

    def interrupt_once_seed0_is_stored():
        _wait_for(lambda: ((sync_dir / "stalled.pid").exists()
                           and results.exists() and results.read_text()),
                  "seed 0's record while seed 1 runs")
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_once_seed0_is_stored,
                                   daemon=True)
    interrupter.start()
    summary = sweep.run_sweep(config, progress=False, backend="ray")
    interrupter.join(SAFETY_S)
    assert summary.interrupted
    assert summary.finished == 1
    [record] = read_results(results)
    assert record["seed"] == 0
    stalled = int((sync_dir / "stalled.pid").read_text())
    # ray.cancel(force=True) ends the worker; it is not started again.
    _wait_for(lambda: not _alive(stalled), "the cancelled worker to end")
    assert len((sync_dir / "attempts").read_text().split()) == 1
    # The next run resumes with seed 1 alone.
    monkeypatch.setattr(sweep, "run_cell", REAL_RUN_CELL)
    again = sweep.run_sweep(config, progress=False, backend="ray")
    assert (again.skipped, again.finished, again.errors) == (1, 1, 0)


# On a two-node cluster on this machine #######################################


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_node(args):
    r"""``ray start ... --block``, returned once the node is up; stopping
    the process (SIGTERM) stops that node's processes alone."""
    process = subprocess.Popen(
        ["ray", "start", "--num-cpus=1", "--node-ip-address=127.0.0.1",
         "--disable-usage-stats", "--block", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=os.environ.copy())
    output = []
    for line in process.stdout:  # ends if the process exits
        output.append(line)
        if "block forever" in line:
            # Keep draining, so a full pipe never blocks the node.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process
    process.wait()
    raise RuntimeError("ray start failed:\n" + "".join(output))


def _stop_node(process):
    process.terminate()
    try:
        process.wait(SAFETY_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_two_node_cluster_records_equal_the_local_backend(
        tmp_path, ray_module, sync_dir, monkeypatch):
    if ray_module.is_initialized():  # the local instance of other tests
        ray_module.shutdown()
    config = tiny_config(tmp_path / "local")
    local = _local_sweep_one_thread(config)
    port = _free_port()
    nodes = []
    try:
        nodes.append(_start_node(["--head", f"--port={port}",
                                  "--include-dashboard=false"]))
        nodes.append(_start_node([f"--address=127.0.0.1:{port}"]))
        monkeypatch.setattr(sweep, "run_cell", _on_both_nodes)
        config.output_dir = tmp_path / "ray"
        summary = sweep.run_sweep(config, progress=False, backend="ray",
                                  address=f"127.0.0.1:{port}")
    finally:
        for process in reversed(nodes):
            _stop_node(process)
    assert not ray_module.is_initialized()
    assert (summary.finished, summary.errors) == (4, 0)
    assert len(list(sync_dir.glob("node-*"))) == 2
    _assert_same_records(summary.results_path, local.results_path)


def test_connecting_keeps_the_commands_sigterm_handler():
    # ray.init replaces the driver's SIGTERM handler with sys.exit (its
    # documented behaviour); the sweep's own handler, which stops it as
    # Ctrl-C does, must survive connecting.
    class FakeRay:
        @staticmethod
        def is_initialized():
            return False

        @staticmethod
        def init(**kwargs):
            signal.signal(signal.SIGTERM, lambda *a: sys.exit(15))

    with interrupt_once():
        ours = signal.getsignal(signal.SIGTERM)
        assert ray_backend._connect(FakeRay, None) is True
        assert signal.getsignal(signal.SIGTERM) is ours
