"""Training-step time of deep models with the layers' sparse aggregation
through :func:`gnn_center.nn.sparse_matmul` (the transposed
adjacency built once per step) against ``torch.sparse.mm``'s own backward
(the transpose converted again in every layer), on the same graph, weights
and input.

Each row is one (method, hidden width) at a given depth on a random
undirected graph with a named dataset's node and edge counts (Amazon
Photo's by default). The two paths run interleaved, one step each in turn
(the order rotating), after a warm-up step of each; the script prints the
median step time of each, the median of the per-repeat ratios with their
10th to 90th percentile, and whether every parameter's gradient is equal
bit for bit between the two paths.

    python experiments/bench_sparse_matmul.py
    python experiments/bench_sparse_matmul.py --size cora --hidden 64 \\
        --methods gcn centered --repeats 10
"""
import argparse
import platform
import statistics
import time
import warnings

import torch
import torch.nn.functional as F

import gnn_center.nn.sparse_aggregation as sparse_aggregation
from gnn_center.nn import build_model
from gnn_center.train import flushing_denormals

from bench_layer import random_graph  # the same random graphs

# name: (nodes, undirected edges)
SIZES = {"cora": (2_708, 5_278), "photo": (7_650, 119_081),
         "pubmed": (19_717, 44_324)}
# Variants as (method, model options); "centered-initial" as in
# configs/tune-64.yaml.
METHODS = {
    "gcn": ("gcn", {}),
    "centered": ("centered", {}),
    "centered-initial": ("centered", dict(residual="initial")),
    "gcnii": ("gcnii", {}),
    "centered-gcnii": ("centered-gcnii", {}),
}
USES_SPARSE_MATMUL = sparse_aggregation.uses_sparse_matmul


def random_task(num_nodes, num_edges, features=64, classes=8, seed=0):
    edge_index = random_graph(num_nodes, num_edges, torch.device("cpu"),
                              seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, features, generator=gen)
    y = torch.randint(0, classes, (num_nodes,), generator=gen)
    return x, edge_index, y


def use_sparse_matmul(on: bool) -> None:
    sparse_aggregation.uses_sparse_matmul = (
        USES_SPARSE_MATMUL if on else (lambda adj: False))


def step(model, x, edge_index, y):
    model.zero_grad()
    loss = F.cross_entropy(model(x, edge_index), y)
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


def spread(values):
    q = statistics.quantiles(values, n=10, method="inclusive")
    return statistics.median(values), q[0], q[-1]


def run_row(method, hidden, depth, task, repeats):
    name, options = METHODS[method]
    torch.manual_seed(0)
    model = build_model(name, task[0].size(1), int(task[2].max()) + 1,
                        depth, hidden_channels=hidden, dropout=0.0,
                        **options)
    times = {True: [], False: []}
    grads = {}
    for on in (True, False):  # warm-up, and the gradients to compare
        use_sparse_matmul(on)
        grads[on] = step(model, *task)
    for repeat in range(repeats):
        for on in ((True, False) if repeat % 2 == 0 else (False, True)):
            use_sparse_matmul(on)
            start = time.perf_counter()
            step(model, *task)
            times[on].append(time.perf_counter() - start)
    use_sparse_matmul(True)
    ratios = [a / b for a, b in zip(times[False], times[True])]
    equal = all(torch.equal(a, b) for a, b in zip(grads[True],
                                                  grads[False]))
    return (statistics.median(times[False]), statistics.median(times[True]),
            spread(ratios), equal)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="photo")
    parser.add_argument("--depth", type=int, default=64)
    parser.add_argument("--hidden", type=int, nargs="+",
                        default=[32, 64, 256])
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS),
                        default=["gcn", "centered-initial", "gcnii"])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 (for the spread)")
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)  # sparse CSR "beta" notice
    task = random_task(*SIZES[args.size])
    print(f"{args.size} size ({task[0].size(0)} nodes, "
          f"{task[1].size(1)} directed edges), {args.depth} layers, "
          f"{args.threads} thread(s), {args.repeats} repeats, torch "
          f"{torch.__version__}, {platform.machine()}")
    print("| method | hidden | torch.sparse.mm s/step | sparse_matmul "
          "s/step | speed-up (10th-90th pct) | gradients equal |")
    print("|---|---:|---:|---:|---:|---|")
    with flushing_denormals():
        for method in args.methods:
            for hidden in args.hidden:
                ref, fast, (ratio, low, high), equal = run_row(
                    method, hidden, args.depth, task, args.repeats)
                print(f"| {method} | {hidden} | {ref:.3f} | {fast:.3f} | "
                      f"{ratio:.2f}x ({low:.2f}-{high:.2f}) | "
                      f"{'yes' if equal else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
