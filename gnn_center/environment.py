r"""What software and machine a run used, for its record."""
import platform
import sys
from typing import Dict

import torch
import torch_geometric

import gnn_center


def environment() -> Dict[str, str]:
    # The thread count and processor model are here because deep stacks
    # amplify rounding: the same cell gives different figures with a
    # different summation order.
    scatter = "not installed"
    if torch_geometric.typing.WITH_TORCH_SCATTER:  # PyG's own check
        import torch_scatter
        scatter = torch_scatter.__version__
    return dict(gnn_center=gnn_center.__version__,
                torch=torch.__version__,
                torch_geometric=torch_geometric.__version__,
                torch_scatter=scatter,
                python=sys.version.split()[0],
                machine=platform.machine(),
                processor=platform.processor() or platform.machine(),
                cpu=_cpu_model(),
                # The instruction set torch's CPU kernels were picked for.
                cpu_capability=torch.backends.cpu.get_cpu_capability(),
                threads=str(torch.get_num_threads()),
                gpu=(torch.cuda.get_device_name()
                     if torch.cuda.is_available() else "none"))


def _cpu_model() -> str:
    # platform.processor() only gives the architecture on Linux.
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
