"""Dispatch overhead of the Ray backend: the wall time of one small sweep on
the local backend (``--jobs N``) and on a Ray started on this machine with
the same number of CPUs, in the same run.

Each round runs the sweep once per backend into a fresh temporary folder,
the backends alternating so that a change in the machine's load falls on
both; the wall time includes starting the workers (and Ray). Prints a
Markdown table and the ratio Ray / local of the summed times.

    GNN_CENTER_DATA=../shared/datasets python experiments/bench_ray.py
    python experiments/bench_ray.py --config configs/quick-cora.yaml --rounds 1
"""
import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from gnn_center.config import config_from_dict, load_config
from gnn_center.sweep import run_sweep

# Cora (public split), four methods at three depths: a dozen runs of a few
# seconds to half a minute each on one thread.
SMALL = dict(
    name="bench-ray", datasets=["cora"], depths=[2, 8, 16], seeds=[0],
    methods=["gcn", "centered", "centered-spectral", "pairnorm"],
    data=dict(split="public"), model=dict(hidden_channels=64, dropout=0.5),
    train=dict(max_epochs=100, patience=100, device="cpu"),
    layer_metrics=False)


def timed_sweep(config, out: Path, backend: str, jobs: int) -> float:
    r"""Wall time of the sweep into ``out``; on Ray, starting Ray (with
    ``jobs`` CPUs, as the local pool has ``jobs`` processes) is included,
    as the command line pays it once per sweep."""
    import ray

    config.output_dir = out
    start = time.perf_counter()
    if backend == "ray":
        ray.init(address="local", num_cpus=jobs, include_dashboard=False)
    try:
        summary = run_sweep(config, jobs=jobs, progress=False,
                            backend=backend)
    finally:
        if backend == "ray":
            ray.shutdown()
    elapsed = time.perf_counter() - start
    if summary.errors or summary.finished != summary.total:
        sys.exit(f"{backend}: {summary}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="a sweep config (default: a small "
                        "Cora sweep defined here)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="local processes, and Ray's CPUs (default: the "
                        "machine's cores)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    config = (load_config(args.config) if args.config
              else config_from_dict(SMALL, source="bench_ray.py"))
    times = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for backend in ("local", "ray"):
                out = Path(tmp) / f"{backend}-{round_}"
                elapsed = timed_sweep(config, out, backend, args.jobs)
                times[backend].append(elapsed)
                print(f"round {round_ + 1} {backend}: {elapsed:.1f} s",
                      flush=True)
    cells = len(list(config.cells()))
    print(f"\n{config.name}: {cells} runs, --jobs {args.jobs}, "
          f"{platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores\n")
    print("| backend | " + " | ".join(f"round {i + 1}" for i in
                                      range(args.rounds)) + " | total |")
    print("|---" * (args.rounds + 2) + "|")
    for backend, values in times.items():
        print(f"| {backend} | " + " | ".join(f"{v:.1f} s" for v in values)
              + f" | {sum(values):.1f} s |")
    ratio = sum(times["ray"]) / sum(times["local"])
    print(f"\nray / local: {ratio:.3f} ({100 * (ratio - 1):+.1f}%)")


if __name__ == "__main__":
    main()
