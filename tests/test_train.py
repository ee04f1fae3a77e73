import math

import pytest
import torch

from conftest import shared_dataset_root
from gnn_center.data import load_dataset
from gnn_center.nn import build_model
from gnn_center.train import TrainOptions, fit, resolve_device, run

FAST = TrainOptions(max_epochs=60, patience=15)
CSBM = dict(num_nodes=300, feature_dim=16)


def test_same_seed_same_numbers():
    a = run("csbm", "centered", 4, seed=3, data_options=CSBM,
            train_options=FAST)
    b = run("csbm", "centered", 4, seed=3, data_options=CSBM,
            train_options=FAST)
    for key in ("best_epoch", "epochs_run", "train_acc", "val_acc",
                "test_acc", "val_loss", "layer_metrics"):
        assert a[key] == b[key], key
    c = run("csbm", "centered", 4, seed=4, data_options=CSBM,
            train_options=FAST)
    assert (c["val_loss"], c["test_acc"]) != (a["val_loss"], a["test_acc"])


def test_record_fields():
    record = run("csbm", "centered-spectral", 3, seed=0, data_options=CSBM,
                 train_options=FAST, model_options=dict(hidden_channels=8))
    for key in ("dataset", "split", "method", "num_layers", "seed",
                "model_options", "train_options", "data_options",
                "best_epoch", "epochs_run", "train_acc", "val_acc",
                "test_acc", "time_per_epoch_s", "activation_memory_mb",
                "peak_memory_mb",
                "status", "layer_metrics", "environment"):
        assert key in record, key
    assert record["model_options"]["hidden_channels"] == 8
    assert record["model_options"]["center"] == "spectral"
    assert record["train_options"]["flush_denormal"] is True
    # What a rerun needs to reproduce a deep run to the last digit.
    env = record["environment"]
    assert env["threads"] == str(torch.get_num_threads())
    assert env["cpu"] and env["torch"] == torch.__version__
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["gpu"] == ("none" if not torch.cuda.is_available()
                          else torch.cuda.get_device_name())
    try:
        import torch_scatter
        assert env["torch_scatter"] == torch_scatter.__version__
    except ImportError:
        assert env["torch_scatter"] == "not installed"
    assert record["status"] == "ok" and record["error"] is None
    assert len(record["layer_metrics"]["dirichlet_energy"]) == 4
    assert 0.0 <= record["test_acc"] <= 1.0
    assert record["time_per_epoch_s"] > 0
    assert record["activation_memory_mb"] > 0


def cpu_flushes_subnormals() -> bool:
    # Independent of the code under test: what this thread makes of a
    # subnormal float32 operand (a quarter of the smallest normal one).
    tiny = torch.tensor([torch.finfo(torch.float32).tiny / 4])
    return (tiny * 1.0).item() == 0.0


@pytest.fixture
def subnormals_kept():
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal numbers")
    yield
    torch.set_flush_denormal(False)


@pytest.mark.parametrize("flush", [True, False])
def test_fit_flushes_subnormals_on_the_cpu_while_it_trains(subnormals_kept,
                                                           flush):
    task = load_dataset("csbm", **CSBM)
    model = build_model("gcn", task.num_features, task.num_classes, 2)
    seen = []
    result = fit(model, task, TrainOptions(
        max_epochs=3, patience=3, device="cpu", flush_denormal=flush),
        on_epoch=lambda epoch, val_acc: seen.append(cpu_flushes_subnormals()))
    assert seen == [flush] * 3
    assert not cpu_flushes_subnormals()  # the caller's mode again
    assert result.epochs_run == 3


def test_fit_leaves_a_flush_the_caller_set(subnormals_kept):
    task = load_dataset("csbm", **CSBM)
    model = build_model("gcn", task.num_features, task.num_classes, 2)
    torch.set_flush_denormal(True)
    fit(model, task, TrainOptions(max_epochs=2, patience=2, device="cpu"))
    assert cpu_flushes_subnormals()


def test_early_stopping_and_model_selection():
    task = load_dataset("csbm", **CSBM)
    torch.manual_seed(0)
    model = build_model("gcn", task.num_features, task.num_classes, 2)
    options = TrainOptions(max_epochs=1000, patience=10, lr=0.05)
    result = fit(model, task, options)
    assert result.epochs_run < 1000
    assert result.epochs_run == result.best_epoch + 1 + options.patience
    # The reported metrics are those of the restored best weights.
    model.load_state_dict(result.best_state)
    model.eval()
    with torch.no_grad():
        out = model(task.data.x, task.data.edge_index)
    assert task.evaluate(out, task.data.val_mask) == result.val_acc
    assert task.evaluate(out, task.data.test_mask) == result.test_acc


class BlowsUp(torch.nn.Module):
    """A classifier whose output turns NaN from the fourth training step."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.lin = torch.nn.Linear(in_channels, out_channels)
        self.steps = 0

    def forward(self, x, edge_index, edge_weight=None):
        out = self.lin(x)
        if self.training:
            self.steps += 1
            if self.steps > 3:
                out = out * float("nan")
        return out


def test_nan_loss_stops_with_a_recorded_failure():
    task = load_dataset("csbm", **CSBM)
    result = fit(BlowsUp(task.num_features, task.num_classes), task, FAST)
    assert result.status == "diverged"
    assert "nan at epoch 3" in result.error
    assert result.epochs_run == 3
    assert result.best_epoch is not None and result.best_epoch < 3
    assert result.test_acc is not None and not math.isnan(result.test_acc)


def test_conv_weight_decay_groups():
    task = load_dataset("csbm", **CSBM)
    model = build_model("gcnii", task.num_features, task.num_classes, 2)
    from gnn_center.train import _optimizer
    opt = _optimizer(model, TrainOptions(conv_weight_decay=0.01))
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays == [5e-4, 0.01]
    conv_params = {id(p) for p in model.convs.parameters()}
    group = next(g for g in opt.param_groups if g["weight_decay"] == 0.01)
    assert {id(p) for p in group["params"]} == conv_params


def test_device_errors():
    with pytest.raises(ValueError, match="Unknown device='tpu'"):
        TrainOptions(device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="patience=0 must be positive"):
        TrainOptions(patience=0)
    with pytest.raises(ValueError, match="lr=nan must be positive"):
        TrainOptions(lr=float("nan"))


def test_trains_cora_to_a_sensible_accuracy():
    root = shared_dataset_root()
    record = run("cora", "gcn", 2, seed=0, root=str(root),
                 train_options=TrainOptions(max_epochs=200, patience=50),
                 record_layer_metrics=False)
    assert record["status"] == "ok"
    assert record["test_acc"] > 0.70, record["test_acc"]


class NanWhenEvaluated(BlowsUp):
    """Finite training loss, but NaN outputs in eval mode from the fourth
    step: as if a step had made the weights non-finite."""

    def forward(self, x, edge_index, edge_weight=None):
        out = self.lin(x)
        if self.training:
            self.steps += 1
        elif self.steps > 3:
            out = out * float("nan")
        return out


def test_non_finite_weights_are_never_selected():
    task = load_dataset("csbm", **CSBM)
    result = fit(NanWhenEvaluated(task.num_features, task.num_classes), task,
                 FAST)
    assert result.status == "diverged"
    assert "validation loss became nan at epoch 3" in result.error
    assert result.best_epoch < 3
    assert all(torch.isfinite(v).all() for v in result.best_state.values())


def test_learned_beta_has_no_weight_decay():
    from gnn_center.train import _optimizer
    model = build_model("centered", 8, 2, 3, learn_beta=True)
    opt = _optimizer(model, TrainOptions(weight_decay=0.1))
    betas = {id(c.beta) for c in model.convs}
    for group in opt.param_groups:
        ids = {id(p) for p in group["params"]}
        if ids & betas:
            assert ids == betas and group["weight_decay"] == 0.0
        else:
            assert group["weight_decay"] == 0.1


def test_checkpointing_saves_activation_memory():
    task = load_dataset("csbm", **CSBM)
    sizes = []
    for checkpoint in (False, True):
        torch.manual_seed(0)
        model = build_model("centered", task.num_features, task.num_classes,
                            16, checkpoint=checkpoint)
        result = fit(model, task, TrainOptions(max_epochs=1, patience=1))
        sizes.append(result.activation_memory_mb)
    assert sizes[1] < 0.5 * sizes[0]
