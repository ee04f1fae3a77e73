"""Epoch time and peak memory of full models against depth and graph size.

Two studies, each printed as a Markdown table:

* depth: Cora-sized random graph (or a real dataset with --dataset), depths
  2 to 128, centered models against plain GCN and the baselines, with and
  without activation checkpointing;
* size: one depth, nodes and edges doubling from --base-nodes.

Every measurement runs in a fresh process, so that peak memory belongs to
that configuration alone: on CUDA, the allocator's peak; on CPU, the growth
of the process's peak resident memory over its size before the first epoch
(``ru_maxrss``), plus, on both, the bytes autograd saves for the backward
pass in one training step (what checkpointing reduces). Epoch time is the
median of the timed training steps (forward, loss, backward, Adam step),
after warm-up steps.

    python experiments/bench_depth.py                  # both studies
    python experiments/bench_depth.py --study depth --methods gcn centered
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
import torch_geometric

DEPTH_METHODS = ["gcn", "centered", "centered-spectral", "pairnorm",
                 "residual", "gcnii", "batchnorm", "dropedge"]


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def random_task(num_nodes, num_edges, num_features, num_classes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    edge_index = torch_geometric.utils.to_undirected(
        torch_geometric.utils.remove_self_loops(edge_index)[0],
        num_nodes=num_nodes)
    x = torch.randn(num_nodes, num_features, generator=gen)
    y = torch.randint(0, num_classes, (num_nodes, ), generator=gen)
    return x, edge_index, y


def measure(spec: dict) -> dict:
    """One configuration, in this process."""
    from gnn_center.data import load_dataset
    from gnn_center.nn import build_model
    from gnn_center.train import SavedMemory, model_input

    device = torch.device(spec["device"])
    if spec.get("dataset"):
        task = load_dataset(spec["dataset"])
        x, edge_index, y = task.data.x, task.data.edge_index, task.data.y
    else:
        x, edge_index, y = random_task(spec["nodes"], spec["edges"],
                                       spec["features"], 7)
    torch.manual_seed(0)
    model = build_model(spec["method"], x.size(1), int(y.max()) + 1,
                        spec["layers"], hidden_channels=spec["hidden"],
                        checkpoint=spec["checkpoint"]).to(device)
    x = model_input(model, x.to(device))
    edge_index, y = edge_index.to(device), y.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    def train_step():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x, edge_index), y)
        loss.backward()
        optimizer.step()

    # Memory autograd keeps for backward in one step.
    model.train()
    optimizer.zero_grad()
    with SavedMemory() as saved:
        loss = F.cross_entropy(model(x, edge_index), y)
    loss.backward()

    base_rss = current_rss_mb()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base_cuda = torch.cuda.memory_allocated(device)
    for _ in range(spec["warmup"]):
        train_step()
    times = []
    for _ in range(spec["steps"]):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        tic = time.perf_counter()
        train_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - tic)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base_cuda) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 \
            - base_rss
    return dict(spec, epoch_ms=1000 * statistics.median(times),
                peak_mb=max(peak, 0.0), saved_mb=saved.total / 2**20)


def measure_in_subprocess(spec: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--one",
                           json.dumps(spec)], capture_output=True, text=True)
    if done.returncode != 0:
        return dict(spec, error=done.stderr.strip().splitlines()[-1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def fmt(result: dict) -> str:
    if "error" in result:
        return "error"
    return (f"{result['epoch_ms']:.1f} ms, {result['peak_mb']:.0f} MB "
            f"({result['saved_mb']:.0f})")


def depth_study(args, device):
    depths = args.depths
    print(f"## Epoch time and memory against depth "
          f"({args.dataset or f'random graph, {args.nodes:,} nodes'}, "
          f"hidden {args.hidden})\n")
    print("Each cell: median epoch time, peak memory growth (MB saved for "
          "backward in parentheses).\n")
    print("| method | checkpoint | " + " | ".join(f"L={d}" for d in depths)
          + " |")
    print("|---|---|" + "---:|" * len(depths))
    for method in args.methods:
        for checkpoint in (False, True):
            cells = []
            for depth in depths:
                spec = dict(method=method, layers=depth, hidden=args.hidden,
                            checkpoint=checkpoint, device=str(device),
                            dataset=args.dataset, nodes=args.nodes,
                            edges=args.nodes * 2, features=args.features,
                            warmup=args.warmup, steps=args.steps)
                cells.append(fmt(measure_in_subprocess(spec)))
            print(f"| {method} | {'yes' if checkpoint else 'no'} | " +
                  " | ".join(cells) + " |", flush=True)
    print()


def size_study(args, device):
    sizes = [args.base_nodes * 2**k for k in range(args.doublings + 1)]
    print(f"## Epoch time and memory against graph size ({args.size_depth} "
          f"layers, hidden {args.hidden}, average degree 4 before "
          f"symmetrising)\n")
    print("| method | " + " | ".join(f"{n:,} nodes" for n in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for method in args.size_methods:
        cells = []
        for n in sizes:
            spec = dict(method=method, layers=args.size_depth,
                        hidden=args.hidden, checkpoint=False,
                        device=str(device), dataset=None, nodes=n,
                        edges=2 * n, features=args.features,
                        warmup=args.warmup, steps=args.steps)
            cells.append(fmt(measure_in_subprocess(spec)))
        print(f"| {method} | " + " | ".join(cells) + " |", flush=True)
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--study", choices=["depth", "size", "both"],
                        default="both")
    parser.add_argument("--methods", nargs="+", default=DEPTH_METHODS)
    parser.add_argument("--depths", nargs="+", type=int,
                        default=[2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--dataset", default=None,
                        help="a dataset name instead of a random graph")
    parser.add_argument("--nodes", type=int, default=2708)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--size-methods", nargs="+",
                        default=["gcn", "centered", "centered-spectral"])
    parser.add_argument("--size-depth", type=int, default=16)
    parser.add_argument("--base-nodes", type=int, default=10_000)
    parser.add_argument("--doublings", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="auto",
                        choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()

    if args.one:
        print(json.dumps(measure(json.loads(args.one))))
        return
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if args.device == "auto" else args.device)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"{platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads")
    print(f"# bench_depth: {device.type} ({name}), torch {torch.__version__}, "
          f"PyG {torch_geometric.__version__}\n")
    if args.study in ("depth", "both"):
        depth_study(args, device)
    if args.study in ("size", "both"):
        size_study(args, device)


if __name__ == "__main__":
    main()
