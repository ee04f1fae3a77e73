r"""Sweep cells as Ray tasks, on this machine or on a cluster.

:func:`run_cells` is the executor :func:`gnn_center.sweep.run_sweep` uses
with ``backend="ray"``: each cell is one Ray task (one CPU, plus
``gpus_per_run`` of a GPU when the cell runs on CUDA) that calls
:func:`gnn_center.sweep.run_cell` with one torch thread. The driver alone
writes records, through the sweep's own ``store`` step, as the tasks finish;
so the results file, the cell keys and resuming are those of the local
backend. A task whose worker process or node dies runs again (Ray's task
retries) and is stored once, when it finishes. Ctrl-C cancels the tasks in
flight and keeps every finished record.

What a worker receives: the cell (all its options), the dataset root path
and whether to record per-layer measures. The root must be readable at the
same path on every node; ``gnn_center`` must be installed on every node.
"""
import os
import traceback
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional

from gnn_center.interrupts import interrupts_ignored, sigterm_kept
from gnn_center.records import Cell, ResultsNotSaved

INSTALL = 'pip install -e ".[ray]"'


class RayNotInstalledError(ImportError):
    r"""``backend="ray"`` without Ray installed."""


def import_ray():
    r"""The ``ray`` module, or :class:`RayNotInstalledError` naming the
    extra that installs it."""
    try:
        import ray
    except ImportError as err:
        raise RayNotInstalledError(
            f"backend 'ray' needs Ray, which is not installed ({err}); "
            f"install the extra with: {INSTALL}") from err
    return ray


@dataclass
class RayOptions:
    r"""Where and how the cells run.

    Args:
        address: ``None`` starts a Ray instance on this machine (unless one
            is already connected in this process, which is used as is);
            ``"auto"`` joins the cluster this machine belongs to;
            ``"HOST:PORT"`` joins the cluster whose head is there.
        gpus_per_run: the share of a GPU one run reserves when it runs on
            CUDA, in (0, 1]; 0.5 puts two runs on each GPU.
        max_retries: how many times a task whose worker or node died runs
            again before its cell is recorded as an error.
    """
    address: Optional[str] = None
    gpus_per_run: float = 1.0
    max_retries: int = 3

    def __post_init__(self):
        if self.address is not None and not self.address.strip():
            raise ValueError("address must be 'auto', 'HOST:PORT' or None "
                             "(start Ray on this machine), not empty")
        if not 0 < self.gpus_per_run <= 1:
            raise ValueError(f"gpus_per_run={self.gpus_per_run} must be in "
                             f"(0, 1]: a run uses at most one GPU")
        if self.max_retries < 0:
            raise ValueError(f"max_retries={self.max_retries} must be at "
                             f"least 0")


def runs_on_cuda(cell: Cell, cluster_gpus: float) -> bool:
    r"""Whether ``cell`` trains on CUDA, so that its task needs a GPU:
    ``device="cuda"``, or ``"auto"`` on a cluster with GPUs."""
    device = cell.train_options.get("device", "auto")
    return device == "cuda" or (device == "auto" and cluster_gpus > 0)


def shipped_root(root: Optional[str]) -> Optional[str]:
    r"""The dataset root the workers get: the config's, else the driver's
    ``$GNN_CENTER_DATA``, as an absolute path (a worker's own working
    folder and environment may differ); ``None`` lets each worker use its
    own cache."""
    from gnn_center.data.files import DATA_ENV

    root = root or os.environ.get(DATA_ENV) or None
    if root is None:
        return None
    return os.path.abspath(os.path.expanduser(os.fspath(root)))


def _cell_task(runner: Callable, cell: Cell, root: Optional[str],
               layer_metrics: bool) -> Dict[str, Any]:
    # Runs on a worker. One thread: the task reserves one CPU.
    import torch

    torch.set_num_threads(1)
    return runner(cell, root, layer_metrics)


def _failed_record(cell: Cell, err: BaseException) -> Dict[str, Any]:
    # The task failed outside run_cell (its worker died more often than
    # max_retries allows, say): an error record, retried on the next run.
    return dict(dataset=cell.dataset, method=cell.method,
                base_method=cell.base_method, num_layers=cell.num_layers,
                seed=cell.seed, status="error",
                error=f"{type(err).__name__}: {err}",
                traceback="".join(traceback.format_exception(err)),
                key=cell.key, cell=asdict(cell))


def _connect(ray, address: Optional[str]) -> bool:
    r"""Connects to Ray; True if this call did (and so must disconnect)."""
    if ray.is_initialized():
        return False
    # ray.init sets a SIGTERM handler that exits at once; the command's
    # own keeps finished work, as Ctrl-C does.
    with sigterm_kept():
        if address is None:
            # A new instance for this sweep ("local": not one that `ray
            # start` left on this machine), without a dashboard.
            ray.init(address="local", include_dashboard=False)
        else:
            ray.init(address=address)
    return True


def run_cells(cells: Iterable[Cell], root: Optional[str],
              layer_metrics: bool, store: Callable[[Dict[str, Any]], None],
              options: Optional[RayOptions] = None) -> None:
    r"""Runs ``cells`` as Ray tasks and calls ``store`` with each record as
    its task finishes. On any exception (Ctrl-C included) the tasks in
    flight are cancelled, the records of those already finished are
    stored, and the exception propagates."""
    options = options or RayOptions()
    ray = import_ray()
    cells = list(cells)
    if not cells:  # nothing to run: no need to start or join Ray
        return
    connected_here = _connect(ray, options.address)
    try:
        _dispatch(ray, cells, shipped_root(root), layer_metrics, store,
                  options)
    finally:
        if connected_here:
            with interrupts_ignored():
                ray.shutdown()


def _dispatch(ray, cells: List[Cell], root: Optional[str],
              layer_metrics: bool, store, options: RayOptions) -> None:
    from gnn_center import sweep

    # Looked up now, so that the runner is shipped with each task rather
    # than imported anew on the worker.
    runner = sweep.run_cell
    task = ray.remote(_cell_task)
    gpus = ray.cluster_resources().get("GPU", 0)
    cell_of = {}
    for cell in cells:
        ref = task.options(
            num_cpus=1,
            num_gpus=options.gpus_per_run if runs_on_cuda(cell, gpus) else 0,
            max_retries=options.max_retries,
            name=f"gnn-center {cell}").remote(runner, cell, root,
                                              layer_metrics)
        cell_of[ref] = cell
    pending = list(cell_of)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                store(_record(ray, ref, cell_of[ref]))
    except BaseException:
        # A second SIGINT must not cut the clean-up short.
        with interrupts_ignored():
            _cancel_and_keep_finished(ray, pending, cell_of, store)
        raise


def _record(ray, ref, cell: Cell) -> Dict[str, Any]:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:
        return _failed_record(cell, err)


def _cancel_and_keep_finished(ray, pending, cell_of, store) -> None:
    for ref in pending:
        ray.cancel(ref, force=True)
    if not pending:
        return
    # After cancel, every task is settled: finished ones hold a record,
    # cancelled ones an error that is not a result.
    ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
    for ref in ready:
        try:
            record = ray.get(ref, timeout=0)
        except ray.exceptions.RayError:
            continue
        try:
            store(record)
        except ResultsNotSaved:
            pass  # kept in a fallback file; the first error propagates
