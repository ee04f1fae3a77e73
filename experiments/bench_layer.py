"""What the centering costs: forward+backward time of CenteredGCNConv against
PyG's GCNConv on the same graph and weights.

Both layers are cached (the normalised graph, and for spectral centering the
eigenvector, are computed once). Variants run interleaved, one repeat of each
in turn (the order rotating from repeat to repeat), and each variant's time
is divided by the plain layer's time of the same repeat; the script prints
the median of these ratios and, beside it, their 10th to 90th percentile, so
that the machine's noise shows in the table. Graphs are random with a given
number of nodes and edges (Cora's size up to ogbn-arxiv's: 169,343 nodes,
1,166,243 edges). "batched" splits the graph into 64 graphs by a batch
vector (per-graph sums through ``torch_geometric.utils.scatter``).

    python experiments/bench_layer.py                 # all sizes, CPU/CUDA
    python experiments/bench_layer.py --sizes cora --hidden 64 --repeats 3
"""
import argparse
import platform
import statistics
import time

import torch
import torch_geometric
from torch_geometric.nn import GCNConv

from gnn_center.nn import CenteredGCNConv

# name: (nodes, undirected edges, default repeats). Small layers take a
# millisecond and need many repeats for a stable median; never fewer than
# 30 for the figures the project quotes.
SIZES = {
    "cora": (2_708, 5_278, 300),
    "pubmed": (19_717, 44_324, 60),
    "arxiv": (169_343, 1_166_243, 30),
}


def random_graph(num_nodes, num_edges, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    edge_index = torch_geometric.utils.to_undirected(edge_index,
                                                     num_nodes=num_nodes)
    return edge_index.to(device)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step(layer, x, edge_index, grad, batch=None, batch_size=None):
    kwargs = {} if batch is None else dict(batch=batch,
                                           batch_size=batch_size)
    out = layer(x, edge_index, **kwargs)
    out.backward(grad)


def spread(ratios):
    """Median and 10th/90th percentiles of a list of ratios."""
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    deciles = statistics.quantiles(ratios, n=10, method="inclusive")
    return statistics.median(ratios), deciles[0], deciles[-1]


def make_variants(hidden, device, compiled):
    plain = GCNConv(hidden, hidden, cached=True).to(device)
    variants = {"plain": plain}
    for mode in ("mean", "uniform", "spectral"):
        layer = CenteredGCNConv(hidden, hidden, cached=True,
                                center=mode).to(device)
        layer.load_state_dict(plain.state_dict())
        variants[mode] = layer
    if compiled:
        # Each compiled layer beside its eager self, against the same eager
        # GCNConv (dynamic=False: one graph size per run).
        for name in list(variants):
            variants[f"{name}+compile"] = torch.compile(variants[name],
                                                        dynamic=False)
    return variants


def bench(num_nodes, num_edges, hidden, device, repeats, batched,
          compiled=False):
    edge_index = random_graph(num_nodes, num_edges, device)
    x = torch.randn(num_nodes, hidden, device=device)
    grad = torch.randn(num_nodes, hidden, device=device)
    batch = batch_size = None
    if batched:
        batch_size = 64
        batch = torch.arange(num_nodes, device=device) * batch_size \
            // num_nodes
    variants = make_variants(hidden, device, compiled)

    def run(name):
        if name.startswith("plain"):  # GCNConv takes no batch vector
            step(variants[name], x, edge_index, grad)
        else:
            step(variants[name], x, edge_index, grad, batch, batch_size)

    for name in variants:  # warm up, fill caches, compile
        for _ in range(3):
            run(name)
    times = {name: [] for name in variants}
    names = list(variants)
    for repeat in range(repeats):
        # Rotate the order each repeat: whichever variant runs right after
        # another pays for what the previous one left (freed memory, cold
        # caches), and that must not fall on one variant every time.
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            tic = time.perf_counter()
            run(name)
            synchronize(device)
            times[name].append(time.perf_counter() - tic)
    ratios = {
        name: spread([t / p for t, p in zip(ts, times["plain"])])
        for name, ts in times.items() if name != "plain"
    }
    return statistics.median(times["plain"]), ratios


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES),
                        choices=list(SIZES))
    parser.add_argument("--hidden", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--repeats", type=int, default=None,
                        help="repeats per configuration (default: 300 for "
                        "cora, 60 for pubmed, 30 for arxiv)")
    parser.add_argument("--batched", choices=["no", "yes", "both"],
                        default="both",
                        help="one graph, 64 graphs by a batch vector, or "
                        "both tables")
    parser.add_argument("--compile", action="store_true",
                        help="also time each layer under torch.compile")
    parser.add_argument("--device", default="auto",
                        choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if args.device == "auto" else args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"{platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads")
    print(f"# bench_layer: {device.type} ({name}), torch {torch.__version__}, "
          f"PyG {torch_geometric.__version__}")
    print("Forward+backward time relative to GCNConv (cached, eager): "
          "median over interleaved repeats, 10th-90th percentile of the "
          "per-repeat ratios in brackets; 1.00 = no overhead.\n")
    for batched in {"no": [False], "yes": [True],
                    "both": [False, True]}[args.batched]:
        print("Per-graph centering of 64 graphs (batch vector):" if batched
              else "One graph (full batch):")
        header = None
        for size in args.sizes:
            num_nodes, num_edges, repeats = SIZES[size]
            repeats = args.repeats or repeats
            for hidden in args.hidden:
                plain_s, ratios = bench(num_nodes, num_edges, hidden, device,
                                        repeats, batched, args.compile)
                if header is None:
                    header = list(ratios)
                    print("\n| graph | hidden | repeats | GCNConv ms | " +
                          " | ".join(header) + " |")
                    print("|---|---:|---:|---:|" + "---:|" * len(header))
                cells = [f"{m:.3f} ({lo:.2f}-{hi:.2f})"
                         for m, lo, hi in (ratios[h] for h in header)]
                print(f"| {size} ({num_nodes:,} nodes) | {hidden} | "
                      f"{repeats} | {1000 * plain_s:.2f} | " +
                      " | ".join(cells) + " |", flush=True)
        print()


if __name__ == "__main__":
    main()
