import os

import pytest
import torch
from torch_geometric.utils import coalesce, to_undirected


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def random_graph(num_nodes: int, num_extra_edges: int, seed: int = 0,
                 weighted: bool = False):
    """A connected undirected graph without self-loops: a path through all
    nodes plus random chords. Returns (edge_index, edge_weight or None)."""
    gen = torch.Generator().manual_seed(seed)
    path = torch.stack([torch.arange(num_nodes - 1),
                        torch.arange(1, num_nodes)])
    extra = torch.randint(0, num_nodes, (2, num_extra_edges), generator=gen)
    extra = extra[:, extra[0] != extra[1]]
    edge_index = coalesce(torch.cat([path, extra], dim=1), num_nodes=num_nodes)
    edge_index = to_undirected(edge_index, num_nodes=num_nodes)
    if not weighted:
        return edge_index, None
    # Symmetric positive weights: derive each weight from its unordered pair.
    lo = torch.minimum(edge_index[0], edge_index[1])
    hi = torch.maximum(edge_index[0], edge_index[1])
    weight = 0.5 + ((lo * 7919 + hi * 104729) % 97).double() / 97.0
    return edge_index, weight


def dense_gcn_operator(edge_index, edge_weight, num_nodes, improved=False,
                       add_self_loops=True, dtype=torch.float64):
    """Â = D^-1/2 (A + fill I) D^-1/2 as a dense matrix, A[i, j] the weight of
    edge j -> i. Test graphs have no self-loops of their own."""
    a = torch.zeros(num_nodes, num_nodes, dtype=dtype)
    w = (torch.ones(edge_index.size(1), dtype=dtype) if edge_weight is None
         else edge_weight.to(dtype))
    a.index_put_((edge_index[1], edge_index[0]), w, accumulate=True)
    if add_self_loops:
        a += (2.0 if improved else 1.0) * torch.eye(num_nodes, dtype=dtype)
    deg = a.sum(dim=1)
    dinv = deg.pow(-0.5)
    dinv[torch.isinf(dinv)] = 0
    return dinv[:, None] * a * dinv[None, :]


@pytest.fixture
def graph():
    torch.manual_seed(0)
    edge_index, _ = random_graph(12, 20, seed=1)
    x = torch.randn(12, 5, dtype=torch.float64)
    return x, edge_index


def shared_dataset_root():
    """The shared dataset copy, reached only through GNN_CENTER_DATA: skip
    when it is not set locally, fail in CI."""
    import os
    from pathlib import Path

    value = os.environ.get("GNN_CENTER_DATA")
    if not value or not Path(value).is_dir():
        message = (f"GNN_CENTER_DATA={value!r} is not a dataset folder; "
                   f"point it, as an absolute path, at a folder in PyG's raw "
                   f"layout (one holding Planetoid/Cora/raw/ind.cora.x)")
        if in_ci():
            pytest.fail(f"CI must run the dataset tests: {message}")
        pytest.skip(message)
    return Path(value)


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """Processed datasets go to a temporary cache, never to ~/.cache."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GNN_CENTER_CACHE", str(path))
        yield path


_LOCK_HOLDER = """
import sys
from gnn_center.records import lock_folder
with lock_folder(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def folder_lock_holder():
    r"""Starts a process that holds a sweep's lock on a folder (as another
    sweep would) until its ``communicate("")``; ended at teardown."""
    import subprocess
    import sys

    holders = []

    def hold(folder):
        holder = subprocess.Popen(
            [sys.executable, "-c", _LOCK_HOLDER, str(folder)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        assert holder.stdout.readline().strip() == "locked"
        return holder

    yield hold
    for holder in holders:
        if holder.poll() is None:
            holder.communicate("")
