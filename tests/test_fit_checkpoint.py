import os
import signal

import pytest
import torch
from torch_geometric import seed_everything

from gnn_center.data import load_dataset
from gnn_center.fit_checkpoint import FitCheckpoint
from gnn_center.nn import build_model
from gnn_center.train import TrainOptions, fit

OPTIONS = TrainOptions(max_epochs=24, patience=24, device="cpu")
METRICS = ("status", "best_epoch", "epochs_run", "train_acc", "val_acc",
           "test_acc", "val_loss")


@pytest.fixture(scope="module")
def task():
    return load_dataset("csbm", num_nodes=150, feature_dim=8, seed=0)


def model_for(task, method):
    seed_everything(0)
    return build_model(method, task.num_features, task.num_classes, 4,
                       hidden_channels=8, dropout=0.5)


def fit_recording(task, model, seen, **kwargs):
    return fit(model, task, OPTIONS,
               on_epoch=lambda epoch, acc: seen.append((epoch, acc)),
               **kwargs)


class Stop(Exception):
    pass


def stopping_at(epoch_to_stop, seen, error):
    def on_epoch(epoch, val_acc):
        seen.append((epoch, val_acc))
        if epoch == epoch_to_stop:
            raise error
    return on_epoch


def assert_same_run(a, b, model_a, model_b):
    for metric in METRICS:
        assert getattr(a, metric) == getattr(b, metric), metric
    for key, value in a.best_state.items():
        assert torch.equal(value, b.best_state[key]), key
    for key, value in model_a.state_dict().items():
        assert torch.equal(value, model_b.state_dict()[key]), key


# dropedge and dropout draw from the generator every epoch, batchnorm
# keeps running statistics, and every method has Adam's moments: a resume
# that lost any of them would train differently.
@pytest.mark.parametrize("method", ["dropedge", "batchnorm", "centered"])
@pytest.mark.parametrize("stop", ["signal", "signal in a step", "crash"])
def test_a_stopped_fit_continues_to_the_uninterrupted_result(
        tmp_path, task, method, stop):
    whole_seen = []
    whole_model = model_for(task, method)
    whole = fit_recording(task, whole_model, whole_seen)
    assert whole.epochs_run == OPTIONS.max_epochs

    # A signal between epochs saves at once; one inside a training step,
    # where the weights may be half updated, and a crash (a killed
    # process) keep the last save, every 4 epochs.
    checkpoint = FitCheckpoint(tmp_path / "run.pt",
                               every=100 if stop == "signal" else 4)
    error = Stop() if stop == "crash" else KeyboardInterrupt()
    first_seen, model = [], model_for(task, method)
    if stop == "signal in a step":  # in the 10th training step's forward
        forward, steps = model.forward, []

        def stopping_forward(*args, **kwargs):
            steps.append(model.training)
            if sum(steps) == 10:
                raise error
            return forward(*args, **kwargs)
        model.forward = stopping_forward
    with pytest.raises(type(error)):
        fit(model, task, OPTIONS, checkpoint=checkpoint,
            on_epoch=stopping_at(9, first_seen, error))
    saved = checkpoint.load(torch.device("cpu"))
    assert saved["progress"]["next_epoch"] == (10 if stop == "signal" else 8)

    resumed_seen, resumed_model = [], model_for(task, method)
    resumed = fit_recording(task, resumed_model, resumed_seen,
                            checkpoint=checkpoint)
    assert_same_run(whole, resumed, whole_model, resumed_model)
    # The resumed call reports every epoch once, the saved ones first.
    assert resumed_seen == whole_seen
    assert first_seen == whole_seen[:9 if stop == "signal in a step" else 10]


def test_a_run_stopped_at_the_epoch_that_ends_it_ends_when_resumed(
        tmp_path, task):
    # Early stopping: the run's last epoch is the one where patience runs
    # out; stopped right after it, the resumed run must not train on.
    options = TrainOptions(max_epochs=200, patience=5, device="cpu")
    whole_model, whole_seen = model_for(task, "dropedge"), []
    whole = fit(whole_model, task, options,
                on_epoch=lambda e, a: whole_seen.append((e, a)))
    assert whole.epochs_run < options.max_epochs
    checkpoint = FitCheckpoint(tmp_path / "run.pt", every=100)
    with pytest.raises(KeyboardInterrupt):
        fit(model_for(task, "dropedge"), task, options,
            checkpoint=checkpoint, on_epoch=stopping_at(
                whole.epochs_run - 1, [], KeyboardInterrupt()))
    resumed_model, resumed_seen = model_for(task, "dropedge"), []
    resumed = fit(resumed_model, task, options, checkpoint=checkpoint,
                  on_epoch=lambda e, a: resumed_seen.append((e, a)))
    assert_same_run(whole, resumed, whole_model, resumed_model)
    assert resumed_seen == whole_seen


def test_a_signal_inside_a_step_stops_the_run_at_the_epoch_end(
        tmp_path, task):
    # The signal comes in the forward pass of the 10th training step (epoch
    # 9): it is held back until that epoch ends, and the state is saved.
    whole_model = model_for(task, "dropedge")
    whole = fit(whole_model, task, OPTIONS)
    model, steps = model_for(task, "dropedge"), []
    forward = model.forward

    def signalled_forward(*args, **kwargs):
        steps.append(model.training)
        if sum(steps) == 10 and model.training:
            os.kill(os.getpid(), signal.SIGINT)
        return forward(*args, **kwargs)

    model.forward = signalled_forward
    checkpoint = FitCheckpoint(tmp_path / "run.pt", every=100)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        fit(model, task, OPTIONS, checkpoint=checkpoint,
            on_epoch=lambda e, a: seen.append(e))
    assert seen == list(range(9))  # on_epoch(9) never came
    saved = checkpoint.load(torch.device("cpu"))
    assert saved["progress"]["next_epoch"] == 10
    resumed_model = model_for(task, "dropedge")
    resumed = fit(resumed_model, task, OPTIONS, checkpoint=checkpoint)
    assert_same_run(whole, resumed, whole_model, resumed_model)


def test_a_checkpoint_of_other_options_is_set_aside(tmp_path, task):
    checkpoint = FitCheckpoint(tmp_path / "run.pt", every=100)
    with pytest.raises(KeyboardInterrupt):
        fit(model_for(task, "dropedge"), task, OPTIONS,
            checkpoint=checkpoint,
            on_epoch=stopping_at(9, [], KeyboardInterrupt()))
    other = TrainOptions(max_epochs=24, patience=24, device="cpu", lr=0.05)
    fresh_model = model_for(task, "dropedge")
    fresh = fit(fresh_model, task, other)
    model = model_for(task, "dropedge")
    with pytest.warns(UserWarning, match=r"run.pt: saved with other "
                      r"options, so resuming would not give the same run; "
                      r"training from the start"):
        result = fit(model, task, other, checkpoint=checkpoint)
    assert_same_run(fresh, result, fresh_model, model)


def test_a_finished_checkpoint_returns_its_result_without_training(
        tmp_path, task):
    checkpoint = FitCheckpoint(tmp_path / "run.pt")
    first_seen, model = [], model_for(task, "centered")
    first = fit_recording(task, model, first_seen, checkpoint=checkpoint)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    again_model = model_for(task, "centered")
    again_model.forward = no_training
    again_seen = []
    again = fit_recording(task, again_model, again_seen,
                          checkpoint=checkpoint)
    for metric in METRICS + ("total_time_s", "activation_memory_mb"):
        assert getattr(again, metric) == getattr(first, metric), metric
    for key, value in first.best_state.items():
        assert torch.equal(value, again.best_state[key])
    assert again_seen == first_seen


def test_checkpoint_errors_name_the_file_and_the_fix(tmp_path, task):
    with pytest.raises(ValueError, match="every=0 must be a positive"):
        FitCheckpoint(tmp_path / "run.pt", every=0)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"{broken}: not a readable training "
                       f"checkpoint .*delete it to train this run from the "
                       f"start"):
        fit(model_for(task, "gcn"), task, OPTIONS,
            checkpoint=FitCheckpoint(broken))
    other = tmp_path / "other.pt"
    torch.save({"format": 0}, other)
    with pytest.raises(ValueError, match=f"{other}: a training checkpoint "
                       f"of another format"):
        fit(model_for(task, "gcn"), task, OPTIONS,
            checkpoint=FitCheckpoint(other))


def test_a_killed_write_leaves_the_previous_checkpoint_whole(
        tmp_path, monkeypatch):
    checkpoint = FitCheckpoint(tmp_path / "run.pt")
    checkpoint.save({"progress": {"next_epoch": 3}})

    def killed_rename(*args):
        raise OSError("killed during the write")

    monkeypatch.setattr("gnn_center.fit_checkpoint.os.replace",
                        killed_rename)
    with pytest.raises(OSError):
        checkpoint.save({"progress": {"next_epoch": 5}})
    monkeypatch.undo()
    saved = checkpoint.load(torch.device("cpu"))
    assert saved["progress"]["next_epoch"] == 3
    # The partial file of the failed write is gone.
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]
