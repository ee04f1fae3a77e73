r"""Which GPU a local worker process uses when a machine has several."""
import os
from typing import Optional


def gpu_for_worker(worker_index: int, device_count: int) -> Optional[int]:
    r"""The position, among the visible GPUs, of the one the
    ``worker_index``-th worker process uses: round robin when there are
    several; ``None`` (CUDA's default device) with one or none."""
    if worker_index < 0:
        raise ValueError(f"worker_index={worker_index} must be at least 0")
    if device_count <= 1:
        return None
    return worker_index % device_count


def use_one_gpu(worker_index: int, device_count: int) -> None:
    r"""Makes this process see only its GPU (as device 0), so that runs on
    ``"cuda"`` need no device index. Call it before the process touches
    CUDA."""
    gpu = gpu_for_worker(worker_index, device_count)
    if gpu is None:
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else list(map(str, range(
        device_count)))
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[gpu].strip()
