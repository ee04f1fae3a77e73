import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import shared_dataset_root
from gnn_center.cli import build_parser, main

SMALL = dict(
    datasets=["csbm"], methods=["gcn", "centered"], depths=[2, 4],
    seeds=[0, 1], data=dict(num_nodes=200, feature_dim=8),
    model=dict(hidden_channels=16), train=dict(max_epochs=20, patience=10))


def cli(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "gnn_center.cli", *args],
                          cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


def write_config(tmp_path, **changes):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(dict(SMALL, output_dir=str(
        tmp_path / "out"), **changes)))
    return path


def read_lines(path):
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return records


@pytest.mark.parametrize("command", [[], ["train"], ["sweep"], ["report"],
                                     ["datasets"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(command + ["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: gnn-center")
    if command:
        assert command[0] in out


@pytest.mark.slow
def test_small_sweep_end_to_end(tmp_path):
    config = write_config(tmp_path)
    done = cli("sweep", str(config), "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    records = read_lines(out / "results.jsonl")
    assert len(records) == 8
    cells = {(r["method"], r["num_layers"], r["seed"]) for r in records}
    assert cells == {(m, d, s) for m in ("gcn", "centered")
                     for d in (2, 4) for s in (0, 1)}
    assert all(r["status"] == "ok" for r in records)
    assert "8/8 runs" in done.stdout

    # The report: every (method, depth) row with two seeds, and the plots.
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["method"], r["num_layers"]) for r in rows} == {
        (m, str(d)) for m in ("gcn", "centered") for d in (2, 4)}
    assert all(r["runs"] == "2" for r in rows)
    markdown = (out / "results.md").read_text()
    assert "| centered |" in markdown and "L=4" in markdown
    assert "**" in markdown  # best per depth marked
    assert (out / "accuracy_csbm.png").stat().st_size > 0
    assert (out / "energy_csbm_L4.png").stat().st_size > 0

    # Running it again does nothing new.
    again = cli("sweep", str(config), "--quiet", "--no-report", cwd=tmp_path)
    assert again.returncode == 0
    assert "0 new, 8 already there" in again.stdout
    assert len(read_lines(out / "results.jsonl")) == 8

    # The report subcommand on its own, into another folder.
    report = cli("report", str(out / "results.jsonl"), "--out",
                 str(tmp_path / "rep"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "rep" / "results.md").read_text() == markdown


@pytest.mark.slow
def test_resume_after_a_kill(tmp_path):
    config = write_config(tmp_path, depths=[2, 4, 8],
                          train=dict(max_epochs=150, patience=150))
    results = tmp_path / "out" / "results.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gnn_center.cli", "sweep", str(config),
         "--quiet", "--no-report"], cwd=tmp_path, env=os.environ.copy(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:
        if results.exists() and len(read_lines(results)) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # a crash: no chance to clean up
    proc.wait()
    first = read_lines(results)
    assert 2 <= len(first) < 12, "the sweep should be cut mid-way"
    # A line cut short by the crash must be ignored, not break the resume.
    with open(results, "a") as f:
        f.write('{"dataset": "csbm", "method": "gc')

    # Ten short runs; the generous limit only guards against a hang on a
    # busy machine.
    done = cli("sweep", str(config), "--quiet", "--no-report", cwd=tmp_path,
               timeout=900)
    assert done.returncode == 0, done.stderr
    records = read_lines(results)
    keys = [r["key"] for r in records]
    assert len(keys) == 12 and len(set(keys)) == 12  # each cell once
    # Finished runs were kept, not redone.
    kept = {r["key"]: r["finished_at"] for r in records}
    assert all(kept[r["key"]] == r["finished_at"] for r in first)
    assert f"{12 - len(first)} new, {len(first)} already there" in done.stdout


@pytest.mark.slow
def test_parallel_jobs(tmp_path):
    config = write_config(tmp_path, seeds=[0])
    done = cli("sweep", str(config), "--jobs", "2", "--quiet", "--no-report",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    records = read_lines(tmp_path / "out" / "results.jsonl")
    assert sorted((r["method"], r["num_layers"]) for r in records) == sorted(
        (m, d) for m in ("gcn", "centered") for d in (2, 4))


@pytest.mark.slow
@pytest.mark.parametrize("signum, target", [
    (signal.SIGINT, "process"), (signal.SIGINT, "group"),
    # `kill <pid>`, and what a batch scheduler (SLURM) sends every
    # process of the job at its time limit.
    (signal.SIGTERM, "process"), (signal.SIGTERM, "group")])
def test_parallel_sweep_stops_at_once_on_signal(tmp_path, signum, target):
    # gcn finishes in seconds; "long" would train for many minutes.
    config = write_config(
        tmp_path, methods=["gcn", "long"], depths=[2], seeds=[0],
        variants={"long": {"method": "gcn", "train": {
            "max_epochs": 1000000, "patience": 1000000}}})
    results = tmp_path / "out" / "results.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gnn_center.cli", "sweep", str(config),
         "--jobs", "2", "--quiet", "--no-report"], cwd=tmp_path,
        env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
        # A shell without job control starts background jobs with SIGINT
        # ignored; the sweep must see it as a terminal would send it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while time.time() < deadline and not (results.exists()
                                          and read_lines(results)):
        time.sleep(0.2)
    if target == "group":  # Ctrl-C in a terminal, or a scheduler
        os.killpg(proc.pid, signum)
    else:  # `kill -INT <pid>`: the sweep alone, not its workers
        proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its workers too
        proc.wait()
        pytest.fail("the sweep waited for the run in flight")
    assert proc.returncode == 130, err
    assert [r["method"] for r in read_lines(results)] == ["gcn"]
    assert "interrupted: re-run the same command to resume" in out
    # Neither a traceback nor the resource tracker's leak warning.
    assert "Traceback" not in err and "leaked" not in err, err
    # No worker left behind in the sweep's process group.
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("a worker outlived the sweep")


def test_train_prints_metrics(tmp_path, capsys):
    out = tmp_path / "one.jsonl"
    code = main(["train", "--dataset", "csbm", "--method", "centered",
                 "--layers", "3", "--epochs", "15", "--quiet",
                 "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "csbm" in text and "test" in text and "ms/epoch" in text
    assert read_lines(out)[0]["num_layers"] == 3


def test_train_picks_from_a_config(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["train", "--config", str(config)]) == 2
    assert "lists 2" in capsys.readouterr().err
    assert main(["train", "--config", str(config), "--method", "gcn",
                 "--layers", "2", "--seed", "1", "--quiet"]) == 0


def test_bad_input_gives_a_clear_error(tmp_path, capsys):
    assert main(["train", "--dataset", "csbm", "--method", "gin",
                 "--layers", "2"]) == 2
    assert "unknown method 'gin'" in capsys.readouterr().err.lower()
    assert main(["train", "--dataset", "csbm", "--method", "gcn",
                 "--layers", "300"]) == 2
    assert "num_layers=300 is out of range" in capsys.readouterr().err
    assert main(["train", "--dataset", "csbm", "--method", "gcn",
                 "--layers", "2", "--seed", "-1"]) == 2
    assert "--seed -1 is out of range 0 to 2**32 - 1" in (
        capsys.readouterr().err)
    assert main(["sweep", str(tmp_path / "missing.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "none.jsonl")]) == 2
    assert "no such results file" in capsys.readouterr().err


def test_datasets_lists_availability(capsys):
    root = shared_dataset_root()
    assert main(["datasets", "--root", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    status = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert status["cora"] == "yes"
    assert status["pubmed"] == "no"
    assert status["csbm"] == "yes"


def test_train_runs_a_variant_from_a_config(tmp_path, capsys):
    config = write_config(
        tmp_path, methods=["spec-rs"],
        variants={"spec-rs": {"method": "centered-spectral",
                              "model": {"rescale": True}}})
    out = tmp_path / "one.jsonl"
    assert main(["train", "--config", str(config), "--layers", "2",
                 "--seed", "0", "--quiet", "--out", str(out)]) == 0
    record = read_lines(out)[0]
    assert record["method"] == "spec-rs"
    assert record["base_method"] == "centered-spectral"
    assert record["model_options"]["rescale"] is True
    assert "spec-rs" in capsys.readouterr().out


def test_report_on_a_foreign_record_names_file_and_line(tmp_path, capsys):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(dict(method="gcn", num_layers=2, seed=0,
                                    status="ok", test_acc=0.5)) + "\n")
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}, line 1: the record has no 'dataset' field" in err


def test_datasets_into_a_closed_pipe_ends_quietly(tmp_path):
    # `gnn-center datasets | head`: the reader is gone before the output.
    proc = subprocess.Popen([sys.executable, "-m", "gnn_center.cli",
                             "datasets", "--root", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=os.environ.copy())
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "BrokenPipeError" not in err and "Traceback" not in err, err


def test_train_is_a_shell_over_train_run(tmp_path, monkeypatch, capsys):
    import gnn_center.train

    calls = []
    real_run = gnn_center.train.run

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real_run(*args, **kwargs)

    monkeypatch.setattr(gnn_center.train, "run", spy)
    config = write_config(tmp_path)
    assert main(["train", "--config", str(config), "--method", "centered",
                 "--layers", "2", "--seed", "1", "--epochs", "5",
                 "--hidden", "8", "--quiet"]) == 0
    (args, kwargs), = calls
    assert args == ("csbm", "centered", 2, 1)
    # The config's options, with the flags on top.
    assert kwargs["data_options"] == dict(num_nodes=200, feature_dim=8)
    assert kwargs["model_options"]["hidden_channels"] == 8
    assert kwargs["train_options"].max_epochs == 5
    assert kwargs["train_options"].patience == 10


@pytest.fixture
def sigint_listened():
    # A command leaves SIGINT alone where it started ignored (under nohup,
    # or a shell's `&`); these tests are about a command that listens.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_train_interrupted_ends_without_a_traceback(monkeypatch, capsys,
                                                    sigint_listened, signum):
    import gnn_center.train

    def interrupted_run(*args, **kwargs):
        # Delivered as the real signal, through the command's handler.
        os.kill(os.getpid(), signum)
        time.sleep(5)  # not reached: the handler raises at once
        pytest.fail("the signal did not stop the run")

    monkeypatch.setattr(gnn_center.train, "run", interrupted_run)
    code = main(["train", "--dataset", "csbm", "--method", "gcn",
                 "--layers", "2", "--quiet"])
    assert code == 130
    err = capsys.readouterr().err
    assert "gnn-center train: interrupted" in err
    assert "no record was written" in err


def test_train_interrupted_while_storing_keeps_the_record(tmp_path,
                                                          monkeypatch,
                                                          capsys):
    import gnn_center.cli
    from gnn_center.records import append_record

    def signalled_append(path, record):
        os.kill(os.getpid(), signal.SIGTERM)  # held back until it is stored
        append_record(path, record)

    monkeypatch.setattr(gnn_center.cli, "append_record", signalled_append)
    out = tmp_path / "one.jsonl"
    code = main(["train", "--dataset", "csbm", "--method", "gcn",
                 "--layers", "2", "--epochs", "3", "--quiet",
                 "--out", str(out)])
    assert code == 130
    err = capsys.readouterr().err
    assert f"gnn-center train: interrupted; the record was appended to " \
        f"{out}" in err
    assert "no record was written" not in err
    assert len(read_lines(out)) == 1 and read_lines(out)[0]["num_layers"] \
        == 2


def test_a_staged_sweep_reports_the_whole_config(tmp_path, capsys):
    # Running one method of a config must not leave a report of that
    # method alone in the folder the whole config shares.
    config = write_config(tmp_path, depths=[2], seeds=[0],
                          train=dict(max_epochs=3, patience=3))
    assert main(["sweep", str(config), "--methods", "gcn", "--quiet"]) == 0
    assert main(["sweep", str(config), "--methods", "centered",
                 "--quiet"]) == 0
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert "| gcn |" in markdown and "| centered |" in markdown
