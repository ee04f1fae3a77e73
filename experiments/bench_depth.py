"""Training-step time and peak memory of deep models against depth and graph
size, with and without activation checkpointing, eager and compiled.

Each configuration (method, graph size, depth, checkpointing) is one row.
It runs in a fresh process, so that its peak memory is its own: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the process's peak resident set
(``ru_maxrss``, everything the process touched, interpreter and graph
included) and, beside it, the bytes autograd saves for the backward pass in
one step (what checkpointing reduces). Step time is the median of the timed
training steps (forward, loss, backward, Adam step) after warm-up steps.
With ``--compile`` a second fresh process runs ``torch._dynamo.explain`` on
the model (graph breaks in all, and in the centering op) and times the step
with the model under ``torch.compile``.

Graphs are random with the node and edge counts of a named dataset (e.g.
ogbn-arxiv: 169,343 nodes, 1,166,243 edges, made undirected) or ``N``
nodes and 2N edges for a number ``N``. Before it starts a configuration the
script estimates its peak memory and skips it when the estimate exceeds
``--max-gb`` (a deep model on a large graph without checkpointing needs
tens of GB).

    # issue 22's study: 128 layers at ogbn-arxiv size (by the estimate below
    # 14 to 30 GB without checkpointing, about 6.5 GB with it)
    python experiments/bench_depth.py --sizes arxiv --depths 128 \
        --checkpoint both --compile --max-gb 60
    # depth on a Cora-sized graph
    python experiments/bench_depth.py --sizes cora --depths 2 8 32 128
    # size at 16 layers
    python experiments/bench_depth.py --sizes 10000 20000 40000 80000 \
        160000 --depths 16 --checkpoint no
"""
import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
import torch_geometric

METHODS = ["centered", "centered-uniform", "centered-spectral", "gcn",
           "gcnii", "pairnorm"]

# name: (nodes, edges before making them undirected)
SIZES = {
    "cora": (2_708, 5_278),
    "pubmed": (19_717, 44_324),
    "arxiv": (169_343, 1_166_243),
}

# Node-by-hidden tensors autograd keeps per layer without checkpointing,
# rounded up from the saved-for-backward figures at Cora size in
# experiments/results/benchmarks.md (2 for the centered presets, 3 for gcn,
# 5 for pairnorm); with checkpointing each layer keeps its input only.
SAVED_PER_LAYER = {"centered": 2.5, "centered-uniform": 2.5,
                   "centered-spectral": 2.5, "gcn": 3.5, "gcnii": 3.5,
                   "pairnorm": 5.5}


PEAK = {"cuda": "max_memory_allocated (base: allocated after imports)",
        "cpu": "peak resident set of the process (base: after imports)"}


def parse_size(name: str):
    if name in SIZES:
        return SIZES[name]
    if name.isdigit() and int(name) > 1:
        return int(name), 2 * int(name)
    raise argparse.ArgumentTypeError(
        f"unknown size {name!r}; use one of {', '.join(SIZES)} or a number "
        f"of nodes")


def estimate_gb(method, layers, nodes, edges, hidden, features,
                checkpoint) -> float:
    """Rough peak memory of one training step: saved activations, a layer's
    working set, the input, the graph (edge lists, normalised CSR copy) and
    the interpreter. Errs high."""
    node_tensor = nodes * hidden * 4
    per_layer = 1.0 if checkpoint else SAVED_PER_LAYER.get(method, 4.0)
    activations = node_tensor * (per_layer * layers + 8)
    inputs = nodes * features * 4 * 2
    graph = (2 * edges + nodes) * 48
    return (activations + inputs + graph) / 2**30 + 0.5


def random_task(num_nodes, num_edges, num_features, num_classes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    edge_index = torch_geometric.utils.to_undirected(
        torch_geometric.utils.remove_self_loops(edge_index)[0],
        num_nodes=num_nodes)
    x = torch.randn(num_nodes, num_features, generator=gen)
    y = torch.randint(0, num_classes, (num_nodes, ), generator=gen)
    return x, edge_index, y


def build(spec: dict, device: torch.device):
    from gnn_center.data import load_dataset
    from gnn_center.nn import build_model
    from gnn_center.train import model_input

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
    return model, x, edge_index.to(device), y.to(device)


def explain(model, x, edge_index) -> dict:
    """Graph breaks when dynamo traces the model's forward pass: all, and
    those inside the centering op (the rest sit in the graph preparation:
    self-loops, sparse adjacency, and around the sparse aggregation)."""
    from gnn_center.nn.compile_check import graph_breaks
    breaks = graph_breaks(model, x, edge_index)
    in_center = breaks.in_centering
    torch._dynamo.reset()
    return dict(graph_breaks=breaks.explanation.graph_break_count,
                breaks_in_center=len(in_center),
                center_break_reasons=[m[:300] for m in in_center])


def measure(spec: dict) -> dict:
    """One configuration, in this process."""
    from gnn_center.train import SavedMemory

    device = torch.device(spec["device"])
    # What the interpreter and libraries hold before any data (KiB).
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model, x, edge_index, y = build(spec, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    result = dict(spec)
    forward = model
    model.train()
    if spec["compile"]:
        result.update(explain(model, x, edge_index))
        forward = torch.compile(model)
    else:
        # Memory autograd keeps for backward in one step (also a warm-up).
        optimizer.zero_grad()
        with SavedMemory() as saved:
            loss = F.cross_entropy(model(x, edge_index), y)
        loss.backward()
        result["saved_mb"] = saved.total / 2**20
        del loss

    def train_step():
        optimizer.zero_grad()
        loss = F.cross_entropy(forward(x, edge_index), y)
        loss.backward()
        optimizer.step()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if device.type == "cuda":
        sync()
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(spec["warmup"]):
        train_step()
    times = []
    for _ in range(spec["steps"]):
        sync()
        tic = time.perf_counter()
        train_step()
        sync()
        times.append(time.perf_counter() - tic)
    result["step_ms"] = 1000 * statistics.median(times)
    result["base_mb"] = base_kib / 1024
    if device.type == "cuda":
        result["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:  # ru_maxrss is in KiB on Linux
        result["peak_mb"] = resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def measure_in_subprocess(spec: dict, timeout=None) -> dict:
    try:
        done = subprocess.run([sys.executable, __file__, "--one",
                               json.dumps(spec)], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(spec, error=f"timeout after {timeout} s")
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [
            f"exit status {done.returncode} (killed: out of memory?)"]
        return dict(spec, error=lines[-1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_grid(args, device):
    columns = ["method", "graph", "layers", "checkpoint", "est. GB",
               "step ms", "peak MB (base)", "saved MB"]
    if args.compile:
        columns += ["compiled step ms", "graph breaks (in center)"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---:|---|" + "---:|" * (len(columns) - 4))
    checkpoints = {"no": [False], "yes": [True],
                   "both": [False, True]}[args.checkpoint]
    for size in args.sizes:
        nodes, edges = parse_size(size)
        label = size if size in SIZES else "random"
        label = f"{label} ({nodes:,} nodes)"
        for layers in args.depths:
            for method in args.methods:
                for checkpoint in checkpoints:
                    spec = dict(method=method, layers=layers,
                                hidden=args.hidden, checkpoint=checkpoint,
                                device=str(device), dataset=args.dataset,
                                nodes=nodes, edges=edges,
                                features=args.features, warmup=args.warmup,
                                steps=args.steps, compile=False)
                    print(row(args, spec, label), flush=True)
    print()


def row(args, spec, label) -> str:
    est = estimate_gb(spec["method"], spec["layers"], spec["nodes"],
                      spec["edges"], spec["hidden"], spec["features"],
                      spec["checkpoint"])
    cells = [spec["method"], label, str(spec["layers"]),
             "yes" if spec["checkpoint"] else "no", f"{est:.1f}"]
    width = 5 if args.compile else 3
    if args.max_gb is not None and est > args.max_gb:
        return "| " + " | ".join(
            cells + [f"skipped (estimate over --max-gb {args.max_gb})"] +
            [""] * (width - 1)) + " |"
    eager = measure_in_subprocess(spec, args.timeout)
    if "error" in eager:
        cells += [f"error: {eager['error'][:120]}"] + [""] * 2
    else:
        cells += [f"{eager['step_ms']:.1f}",
                  f"{eager['peak_mb']:.0f} ({eager['base_mb']:.0f})",
                  f"{eager['saved_mb']:.0f}"]
    if args.compile:
        compiled = measure_in_subprocess(dict(spec, compile=True),
                                         args.timeout)
        if "error" in compiled:
            cells += [f"error: {compiled['error'][:120]}", ""]
        else:
            cells += [f"{compiled['step_ms']:.1f}",
                      f"{compiled['graph_breaks']} "
                      f"({compiled['breaks_in_center']})"]
            for reason in compiled["center_break_reasons"]:
                print(f"<!-- break in center: {reason} -->",
                      file=sys.stderr)
    return "| " + " | ".join(cells) + " |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", nargs="+", default=["arxiv"],
                        help=f"named sizes ({', '.join(SIZES)}) or numbers "
                        f"of nodes (2 edges per node)")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--depths", nargs="+", type=int, default=[128])
    parser.add_argument("--checkpoint", choices=["no", "yes", "both"],
                        default="both")
    parser.add_argument("--compile", action="store_true",
                        help="also explain and time the model under "
                        "torch.compile")
    parser.add_argument("--dataset", default=None,
                        help="a dataset name instead of a random graph "
                        "(its sizes replace --sizes' nodes and edges)")
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--max-gb", type=float, default=6.0,
                        help="skip configurations estimated to need more "
                        "(default 6; raise it on a machine with room)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per configuration and process")
    parser.add_argument("--device", default="auto",
                        choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()

    if args.one:
        print(json.dumps(measure(json.loads(args.one))))
        return
    for size in args.sizes:
        try:
            parse_size(size)
        except argparse.ArgumentTypeError as error:
            parser.error(str(error))
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if args.device == "auto" else args.device)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"{platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads")
    print(f"# bench_depth: {device.type} ({name}), torch {torch.__version__}, "
          f"PyG {torch_geometric.__version__}\n")
    print(f"One training step (median of {args.steps} after {args.warmup} "
          f"warm-up), hidden {args.hidden}, {args.features} input features; "
          f"peak MB: {PEAK[device.type]}; saved MB: saved for backward in "
          f"one step.\n")
    run_grid(args, device)


if __name__ == "__main__":
    main()
