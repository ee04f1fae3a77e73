"""Where a centered layer's extra time goes: torch.profiler over forward +
backward steps of PyG's GCNConv and CenteredGCNConv (cached, same graph and
weights), profiled in alternating rounds; per operator, the median over
rounds of the self CPU time per step, and what the centered layer spends
beyond the plain one. Operators the centered layer calls more often are its
own work; the rest of the gap is operators both call equally often, whose
time drifts with the machine (the "same calls" line).

    python experiments/profile_layer.py --size cora --hidden 64
"""
import argparse
import statistics

import torch
from torch.profiler import ProfilerActivity, profile
from torch_geometric.nn import GCNConv

from bench_layer import SIZES, random_graph, step
from gnn_center.nn import CenteredGCNConv


def self_times(layer, x, edge_index, grad, steps):
    r"""Self CPU microseconds and calls per step of every operator."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step(layer, x, edge_index, grad)
    return {e.key: (e.self_cpu_time_total / steps, e.count / steps)
            for e in prof.key_averages()}


def median_times(layers, x, edge_index, grad, steps, rounds):
    r"""Per layer: operator -> (median self us per step, calls per step),
    the layers profiled in turn, ``rounds`` times."""
    for layer in layers:  # warm-up, caches filled
        for _ in range(10):
            step(layer, x, edge_index, grad)
    runs = [[] for _ in layers]
    for _ in range(rounds):
        for layer, run in zip(layers, runs):
            run.append(self_times(layer, x, edge_index, grad, steps))
    merged = []
    for run in runs:
        keys = set().union(*run)
        merged.append({k: (statistics.median(r.get(k, (0, 0))[0] for r in run),
                           run[0].get(k, (0, 0))[1]) for k in keys})
    return merged


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="cora")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    nodes, edges, _ = SIZES[args.size]
    device = torch.device("cpu")
    edge_index = random_graph(nodes, edges, device)
    x = torch.randn(nodes, args.hidden, requires_grad=True)
    grad = torch.randn(nodes, args.hidden)
    torch.manual_seed(0)
    plain = GCNConv(args.hidden, args.hidden, cached=True)
    centered = []
    for mode in ("mean", "uniform", "spectral"):
        layer = CenteredGCNConv(args.hidden, args.hidden, cached=True,
                                center=mode)
        layer.load_state_dict(plain.state_dict(), strict=False)
        centered.append((mode, layer))
    base, *others = median_times([plain] + [c for _, c in centered], x,
                                 edge_index, grad, args.steps, args.rounds)
    base_total = sum(t for t, _ in base.values())
    print(f"# profile_layer: {args.size}, hidden {args.hidden}, "
          f"{args.rounds} rounds of {args.steps} steps, torch "
          f"{torch.__version__}")
    print(f"GCNConv: {base_total:.0f} us of operator self time per step")
    for (mode, _), times in zip(centered, others):
        total = sum(t for t, _ in times.values())
        extra = {k: (t - base.get(k, (0, 0))[0], n - base.get(k, (0, 0))[1])
                 for k, (t, n) in times.items()}
        own = {k: v for k, v in extra.items() if v[1] > 0}
        drift = sum(t for t, n in extra.values() if n == 0)
        print(f"\n{mode}: {total:.0f} us per step, {total - base_total:+.0f} "
              f"us ({total / base_total:.3f}x): operators called more often "
              f"{sum(t for t, _ in own.values()):+.0f} us, same calls "
              f"{drift:+.0f} us")
        for key, (micros, calls) in sorted(own.items(), key=lambda kv:
                                           -abs(kv[1][0]))[:args.top]:
            print(f"  {micros:+8.1f} us  {calls:+.0f} calls  {key}")


if __name__ == "__main__":
    main()
