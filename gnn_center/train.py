r"""Full-batch training of node classifiers, and one experiment run as a
record.

:func:`fit` trains any model called as ``model(x, edge_index)`` that
returns logits: Adam, early stopping on the validation metric (ties broken
by the lower validation loss) with patience, model selection at the best
validation epoch. A NaN or infinite loss stops training and is recorded
(``status="diverged"``), with the metrics of the best epoch before it.

:func:`run` is one cell of a depth sweep: it seeds everything, loads the
dataset, builds a :class:`~gnn_center.nn.DeepGNN`, fits it and returns a
JSON-serialisable record with the per-layer oversmoothing measures of the
selected model.
"""
import contextlib
import copy
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch_geometric import seed_everything
from tqdm.auto import tqdm

from gnn_center.data import NodeTask, load_dataset
from gnn_center.denormals import flushing_denormals
from gnn_center.environment import environment
from gnn_center.fit_checkpoint import (CheckpointSaver, FitCheckpoint,
                                      fingerprint)
from gnn_center.interrupts import interrupts_deferred
from gnn_center.metrics import layer_metrics
from gnn_center.nn import build_model
from gnn_center.saved_memory import SavedMemory

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainOptions:
    r"""Optimisation settings, with their defaults in one place."""
    lr: float = 0.01
    weight_decay: float = 5e-4
    #: Weight decay of the message-passing layers, if different (GCNII uses
    #: 0.01 there and 5e-4 on the linear layers).
    conv_weight_decay: Optional[float] = None
    max_epochs: int = 500
    patience: int = 100
    device: str = "auto"
    #: On the CPU, flush subnormal floats (below 1.2e-38) to zero while
    #: training: a deep stack's gradients fall there, and x86 CPUs compute
    #: on them many times slower (experiments/bench_denormal.py).
    flush_denormal: bool = True

    def __post_init__(self):
        _check_device(self.device)
        for name in ("lr", "max_epochs", "patience"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value} must be positive")
        for name in ("weight_decay", "conv_weight_decay"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value)
                                          and value >= 0):
                raise ValueError(f"{name}={value} must not be negative")


@dataclass
class FitResult:
    status: str  # "ok" or "diverged"
    error: Optional[str]
    best_epoch: Optional[int]
    epochs_run: int
    train_acc: Optional[float]
    val_acc: Optional[float]
    test_acc: Optional[float]
    val_loss: Optional[float]
    time_per_epoch_s: float
    total_time_s: float
    #: Memory autograd keeps for the backward pass of one training step
    #: (what grows with depth and what checkpointing saves), any device.
    activation_memory_mb: Optional[float]
    #: The CUDA allocator's peak during training; None on the CPU, where
    #: no per-run figure exists inside a long-lived process (see
    #: experiments/bench_depth.py for peak memory measured per process).
    peak_memory_mb: Optional[float]
    device: str
    best_state: Optional[Dict[str, torch.Tensor]] = field(default=None,
                                                          repr=False)

    def summary(self) -> Dict[str, Any]:
        out = asdict(self)
        out.pop("best_state")
        return out


def _check_device(device: str) -> None:
    if device not in DEVICES:
        raise ValueError(f"Unknown device={device!r}; choose one of "
                         f"{', '.join(DEVICES)}")


def resolve_device(device: str = "auto") -> torch.device:
    _check_device(device)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA device is available; "
                         "use device='cpu' or 'auto'")
    return torch.device(device)


def model_input(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    r"""Node features as the model takes them fastest: sparse CSR when
    fewer than 10% are non-zero and the model accepts it (the numbers are
    the same), else as they are."""
    if (getattr(model, "supports_sparse_features", False)
            and x.layout == torch.strided and x.numel() > 0
            and torch.count_nonzero(x).item() < 0.1 * x.numel()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "beta" notice
            return x.to_sparse_csr()
    return x


def _optimizer(model: torch.nn.Module,
               options: TrainOptions) -> torch.optim.Optimizer:
    r"""Adam with weight decay on the weights; the message-passing layers
    may have their own decay, and a learned centering strength (a
    parameter named ``beta``) has none, so that it does not drift to 0."""
    convs = getattr(model, "convs", None)
    conv_ids = set() if options.conv_weight_decay is None or convs is None \
        else {id(p) for p in convs.parameters()}
    groups = {"beta": [], "conv": [], "other": []}
    for name, param in model.named_parameters():
        if name.split(".")[-1] == "beta":
            groups["beta"].append(param)
        elif id(param) in conv_ids:
            groups["conv"].append(param)
        else:
            groups["other"].append(param)
    decay = dict(beta=0.0, conv=options.conv_weight_decay,
                 other=options.weight_decay)
    return torch.optim.Adam([
        dict(params=params, weight_decay=decay[key])
        for key, params in groups.items() if params
    ], lr=options.lr)


class _BestEpoch:
    r"""Model selection: the epoch of the highest validation accuracy, ties
    broken by the lower validation loss, with its metrics and weights; and
    the epochs since it, for early stopping."""

    def __init__(self):
        self.val_acc, self.val_loss, self.epoch = -math.inf, math.inf, None
        self.state: Optional[Dict[str, torch.Tensor]] = None
        self.metrics: Dict[str, Optional[float]] = dict(
            train_acc=None, val_acc=None, test_acc=None, val_loss=None)
        self.bad_epochs = 0

    def consider(self, epoch: int, val_acc: float, val_loss: float,
                 model: torch.nn.Module, task: NodeTask, data,
                 out: torch.Tensor) -> None:
        if val_acc > self.val_acc or (val_acc == self.val_acc
                                      and val_loss < self.val_loss):
            self.val_acc, self.val_loss, self.epoch = val_acc, val_loss, epoch
            self.state = copy.deepcopy(model.state_dict())
            self.metrics = dict(
                train_acc=task.evaluate(out, data.train_mask),
                val_acc=val_acc, test_acc=task.evaluate(out, data.test_mask),
                val_loss=val_loss)
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1

    def state_dict(self) -> Dict[str, Any]:
        return dict(vars(self))

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        vars(self).update(state)


@dataclass
class _Progress:
    r"""What a fit has done besides its weights, optimizer and model
    selection: the rest of what a checkpoint restores."""
    next_epoch: int = 0
    epochs_run: int = 0  # epochs whose training step ran
    train_time: float = 0.0
    elapsed: float = 0.0
    saved_bytes: int = 0
    peak_memory_mb: Optional[float] = None  # CUDA's, over every part
    #: The validation accuracy of every epoch so far, which a resumed fit
    #: passes to ``on_epoch`` again (a tuner's pruner needs them all).
    val_accs: List[float] = field(default_factory=list)


def _train_step(model: torch.nn.Module, optimizer, inputs, data,
                saving) -> torch.Tensor:
    r"""One full-batch step; returns the training loss, and steps only when
    it is finite. ``saving`` wraps the forward pass (see
    :class:`SavedMemory`)."""
    model.train()
    optimizer.zero_grad()
    with saving:
        out = model(*inputs)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
    if torch.isfinite(loss):
        loss.backward()
        optimizer.step()
    return loss


def _validation_pass(model: torch.nn.Module, inputs, data):
    r"""The logits in evaluation mode and the validation loss."""
    model.eval()
    with torch.no_grad():
        out = model(*inputs)
        return out, F.cross_entropy(out[data.val_mask], data.y[data.val_mask])


def fit(model: torch.nn.Module, task: NodeTask,
        options: Optional[TrainOptions] = None, progress: bool = False,
        desc: Optional[str] = None,
        on_epoch: Optional[Callable[[int, float], None]] = None,
        checkpoint: Optional[FitCheckpoint] = None) -> FitResult:
    r"""Trains ``model`` on ``task`` full-batch and returns the metrics at
    the best validation epoch; ``result.best_state`` holds its weights.
    The model is called as ``model(x, edge_index, edge_weight)`` and returns
    logits (``edge_weight`` is the data's, usually None). Seeding is the
    caller's job (see :func:`run`). ``on_epoch(epoch, val_acc)``, if
    given, is called after each epoch's evaluation (``epoch`` counts from
    0), e.g. to show progress elsewhere; an exception it raises (a tuner
    pruning the trial) stops training and propagates. On the CPU it
    flushes subnormal floats to zero while it trains, unless
    ``options.flush_denormal`` is False (see :func:`flushing_denormals`).

    With a ``checkpoint`` (:class:`~gnn_center.fit_checkpoint.
    FitCheckpoint`), the run saves its progress there every
    ``checkpoint.every`` epochs, when Ctrl-C or SIGTERM stops it (at the
    end of the epoch in progress) and when it ends; called again with the
    same model, task, options and checkpoint, it first calls ``on_epoch``
    for every epoch already run, then continues to the result the
    uninterrupted run would have had (bit for bit on the CPU). For a
    finished run it returns the saved result at once, and ``model`` keeps
    the weights it came with (load ``result.best_state``)."""
    options = options or TrainOptions()
    device = resolve_device(options.device)
    with flushing_denormals(device.type == "cpu" and options.flush_denormal):
        return _fit(model, task, options, device, progress, desc, on_epoch,
                    checkpoint)


def _fit(model, task, options, device, progress, desc, on_epoch,
         checkpoint) -> FitResult:
    start = time.perf_counter()
    data = task.data.to(device)
    model = model.to(device)
    optimizer = _optimizer(model, options)
    best, done = _BestEpoch(), _Progress()
    saver = CheckpointSaver(checkpoint, fingerprint(options, device),
                            model, optimizer, best, done, device, start)
    state = saver.load()
    if state is not None:
        for epoch, val_acc in enumerate(state["progress"]["val_accs"]):
            if on_epoch is not None:
                on_epoch(epoch, val_acc)
        if "result" in state:  # a finished run; the model is not trained
            return FitResult(**state["result"],
                             best_state=state["best_state"])
        saver.restore(state)
        del state  # before the peak memory is measured
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    status, error = _epochs(model, task, options, device, optimizer, data,
                            best, done, progress, desc, on_epoch, saver)
    saver.stamp()
    result = FitResult(
        status=status, error=error, best_epoch=best.epoch,
        epochs_run=done.epochs_run,
        time_per_epoch_s=done.train_time / max(done.epochs_run, 1),
        total_time_s=done.elapsed,
        activation_memory_mb=done.saved_bytes / 2**20 or None,
        peak_memory_mb=done.peak_memory_mb, device=str(device),
        best_state=best.state, **best.metrics)
    saver.save_result(result)
    return result


def _epochs(model, task, options, device, optimizer, data, best, done,
            progress, desc, on_epoch, saver):
    r"""The training loop from ``done.next_epoch``; returns the status and
    the error. With a checkpoint, a Ctrl-C or SIGTERM inside an epoch waits
    for its end, and stops the run with the state saved."""
    bar = tqdm(range(done.next_epoch, options.max_epochs), desc=desc,
               initial=done.next_epoch, total=options.max_epochs,
               # Epoch bars only on a terminal (disable=None): in logs
               # they would repeat a line per refresh.
               disable=None if progress else True, leave=False,
               dynamic_ncols=True)
    inputs = (model_input(model, data.x), data.edge_index,
              getattr(data, "edge_weight", None))
    holding = interrupts_deferred if saver.checkpoint is not None \
        else contextlib.nullcontext
    whole = True  # whether the state is that of a finished epoch
    try:
        for epoch in bar:
            # Checked first, so that a run saved at the epoch that ended
            # it ends when resumed too.
            if best.bad_epochs >= options.patience:
                break
            whole = False
            with holding():
                status, error, loss = _epoch(model, task, device, optimizer,
                                             inputs, data, best, done, epoch)
                whole = True  # a signal held back is raised after this
            if status != "ok":
                return status, error
            if saver.checkpoint is not None \
                    and saver.checkpoint.due(epoch):
                saver.save()
            if on_epoch is not None:
                on_epoch(epoch, done.val_accs[-1])
            if progress:
                bar.set_postfix(loss=f"{loss.item():.3f}",
                                val=f"{done.val_accs[-1]:.3f}",
                                best=f"{best.val_acc:.3f}@{best.epoch}")
    except KeyboardInterrupt:
        if whole:  # not raised inside a step (only signals are held back)
            saver.save()
        raise
    finally:
        bar.close()
    return "ok", None


def _epoch(model, task, device, optimizer, inputs, data, best, done,
           epoch: int):
    r"""One epoch: a training step, the evaluation, the model selection;
    returns the status, the error and the training loss (a tensor, read
    only for the progress bar: reading it waits for a GPU)."""
    tic = time.perf_counter()
    # Count what the forward pass saves for backward (checkpointed blocks
    # save their inputs only), once.
    memory = SavedMemory() if not done.saved_bytes else None
    loss = _train_step(model, optimizer, inputs, data,
                       memory or contextlib.nullcontext())
    if memory is not None:
        done.saved_bytes = memory.total
    if not torch.isfinite(loss):
        return "diverged", _diverged("training", loss, epoch), loss
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    done.train_time += time.perf_counter() - tic
    done.epochs_run = epoch + 1
    out, val_loss = _validation_pass(model, inputs, data)
    if not torch.isfinite(val_loss):
        # The step made the weights non-finite: never select them.
        return "diverged", _diverged("validation", val_loss, epoch), loss
    val_acc = task.evaluate(out, data.val_mask)
    best.consider(epoch, val_acc, val_loss.item(), model, task, data, out)
    done.next_epoch = epoch + 1
    done.val_accs.append(val_acc)
    return "ok", None, loss


def _diverged(which: str, loss: torch.Tensor, epoch: int) -> str:
    return (f"{which} loss became {loss.item()} at epoch {epoch}; the "
            f"metrics are those of the best epoch before it. Try a lower "
            f"learning rate or a normalisation.")


def run(dataset: str, method: str, num_layers: int, seed: int = 0, *,
        root: Optional[str] = None, data_options: Optional[dict] = None,
        model_options: Optional[dict] = None,
        train_options: Optional[TrainOptions] = None,
        record_layer_metrics: bool = True, progress: bool = False,
        task: Optional[NodeTask] = None,
        on_epoch: Optional[Callable[[int, float], None]] = None,
        checkpoint: Optional[FitCheckpoint] = None) -> Dict[str, Any]:
    r"""One (dataset, method, depth, seed) run. Returns a record with the
    settings, the metrics at the best validation epoch, cost figures and,
    unless ``record_layer_metrics=False``, the per-layer oversmoothing
    measures of the selected model. ``task`` skips loading when the caller
    already holds the dataset (it must match ``dataset`` and
    ``data_options``). ``on_epoch`` and ``checkpoint`` go to :func:`fit`."""
    data_options = dict(data_options or {})
    model_options = dict(model_options or {})
    train_options = train_options or TrainOptions()

    seed_everything(seed)
    if task is None:
        task = load_dataset(dataset, root, seed=seed, **data_options)
    # Seed again so that the weights do not depend on how the data came.
    seed_everything(seed)
    model = build_model(method, task.num_features, task.num_classes,
                        num_layers, **model_options)
    result = fit(model, task, train_options, progress=progress,
                 desc=f"{task.name} {method} L={num_layers} seed={seed}",
                 on_epoch=on_epoch, checkpoint=checkpoint)

    record: Dict[str, Any] = dict(
        dataset=task.name, split=task.split, method=method,
        num_layers=num_layers, seed=seed,
        model_options=asdict(model.options),
        train_options=asdict(train_options), data_options=data_options,
        num_parameters=sum(p.numel() for p in model.parameters()))
    record.update(result.summary())
    if record_layer_metrics and result.best_state is not None:
        model.load_state_dict(result.best_state)
        model.eval()
        data = task.data
        with torch.no_grad():
            _, hidden = model(data.x, data.edge_index,
                              getattr(data, "edge_weight", None),
                              return_hidden=True)
        record["layer_metrics"] = layer_metrics(
            [h.cpu() for h in hidden], data.edge_index.cpu(),
            mad_max_nodes=512)
    record["environment"] = environment()
    record["finished_at"] = datetime.now(timezone.utc).isoformat(
        timespec="seconds")
    return record

