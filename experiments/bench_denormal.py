"""Epoch time of a deep model on the CPU with subnormal floats kept and
flushed to zero (``TrainOptions.flush_denormal``, on by default).

A deep stack's gradients shrink below float32's smallest normal number
(1.2e-38) as training goes on; x86 CPUs compute on such subnormal numbers
many times slower, so each epoch gets slower the longer a run trains. The
script trains the same model from the same seed twice with
:func:`gnn_center.train.fit`, first keeping subnormals, then flushing them,
and prints the time per epoch (training step and validation pass) early
and late in training, the ratio of the two settings measured in the same
run, and the best validation accuracy of each (the flushed values are too
small to move an Adam update, so the two should be close, not equal).

The default case is the tuned 64-layer `centered-initial` setting on
Chameleon split 0 (experiments/results/tuned/64/tune.md), whose final runs
slowed from about 1 s to over 10 s per epoch on one core.

    python experiments/bench_denormal.py --epochs 60
    python experiments/bench_denormal.py --threads 2 --epochs 60
"""
import argparse
import os
import statistics
import time

import torch
from torch_geometric import seed_everything

from gnn_center.data import load_dataset
from gnn_center.nn import build_model
from gnn_center.train import TrainOptions, fit

# The selected trial of the Chameleon centered-initial study.
MODEL = dict(residual="initial", alpha=0.50, beta=0.67, center="mean",
             dropout=0.55, hidden_channels=256)
TRAIN = dict(lr=4.4e-2, weight_decay=3.6e-6)


def timed_fit(task, args, flush: bool):
    seed_everything(0)
    model = build_model(args.method, task.num_features, task.num_classes,
                        args.layers, **MODEL)
    stamps = [time.perf_counter()]
    result = fit(model, task, TrainOptions(
        max_epochs=args.epochs, patience=args.epochs, device="cpu",
        flush_denormal=flush, **TRAIN),
        on_epoch=lambda epoch, val_acc: stamps.append(time.perf_counter()))
    epochs = [b - a for a, b in zip(stamps, stamps[1:])]
    return epochs, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="chameleon")
    parser.add_argument("--root", default=os.environ.get("GNN_CENTER_DATA"))
    parser.add_argument("--method", default="centered")
    parser.add_argument("--layers", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    # Before any parallel kernel, so that every thread torch starts sees
    # the mode fit sets (threads started earlier keep their own).
    torch.set_num_threads(args.threads)
    data_options = dict(split_index=0) if args.dataset == "chameleon" else {}
    task = load_dataset(args.dataset, args.root, seed=0, **data_options)
    print(f"{args.dataset}, {args.method}, {args.layers} layers, "
          f"{MODEL}, {TRAIN}, {args.epochs} epochs, {args.threads} "
          f"thread(s), torch {torch.__version__}, "
          f"{torch.backends.cpu.get_cpu_capability()}")
    late = max(args.epochs // 3, 1)
    rows = {}
    for flush in (False, True):
        epochs, result = timed_fit(task, args, flush)
        rows[flush] = (statistics.mean(epochs[:10]),
                       statistics.mean(epochs[-late:]), sum(epochs))
        print(f"subnormals {'flushed' if flush else 'kept   '}: "
              f"{rows[flush][0]:.2f} s/epoch in epochs 1-10, "
              f"{rows[flush][1]:.2f} in the last {late}, "
              f"{rows[flush][2]:.0f} s in all; best val "
              f"{result.val_acc:.3f} at epoch {result.best_epoch}")
    print(f"kept / flushed: {rows[False][0] / rows[True][0]:.2f}x in epochs "
          f"1-10, {rows[False][1] / rows[True][1]:.2f}x in the last {late}, "
          f"{rows[False][2] / rows[True][2]:.2f}x in all")


if __name__ == "__main__":
    main()
