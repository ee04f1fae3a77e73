"""Does weight decay on the learned initial-residual weight hurt the preset?

``centered-gcnii-adaptive`` learns α = sigmoid(a) per layer, a started at
logit(0.1). The trainer exempts only parameters named ``beta`` from weight
decay, so ``a`` gets the ordinary decay (5e-4), which pulls it towards 0,
α towards 0.5. This script reruns preset cells of the committed depth
tables (same config, data, model and trainer) as they are and with ``a``
exempt from decay, and prints accuracy and the learned α at the selected
epoch.

    OMP_NUM_THREADS=1 python experiments/probe_alpha_decay.py \\
        --dataset cora --seeds 0 1 2

One thread, as each worker of ``gnn-center sweep --jobs N`` uses, so that
the "as swept" line repeats the committed record exactly.
"""
import argparse
import statistics

import torch

import gnn_center.train as train_module
from gnn_center.config import load_config
from gnn_center.data import load_dataset
from gnn_center.nn import build_model
from gnn_center.train import TrainOptions, fit
from torch_geometric import seed_everything

METHOD = "centered-gcnii-adaptive"
ordinary_optimizer = train_module._optimizer


def alpha_logits(model):
    return [p for n, p in model.named_parameters()
            if n.endswith("alpha_logit")]


def alpha_exempt_optimizer(model, options):
    r"""The trainer's optimizer, with each ``alpha_logit`` moved to a group
    without weight decay."""
    optimizer = ordinary_optimizer(model, options)
    logits = alpha_logits(model)
    exempt = {id(p) for p in logits}
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in exempt]
    optimizer.add_param_group(dict(params=logits, weight_decay=0.0))
    return optimizer


def one_run(dataset, depth, seed, config, root, exempt):
    data, model_options, train = config.options_for(dataset, METHOD, seed)
    seed_everything(seed)
    task = load_dataset(dataset, root or config.root, seed=seed, **data)
    seed_everything(seed)  # as gnn_center.train.run does
    model = build_model(METHOD, task.num_features, task.num_classes, depth,
                        **model_options)
    train_module._optimizer = alpha_exempt_optimizer if exempt \
        else ordinary_optimizer
    try:
        result = fit(model, task, TrainOptions(**train))
    finally:
        train_module._optimizer = ordinary_optimizer
    model.load_state_dict(result.best_state)
    alphas = torch.sigmoid(torch.stack(alpha_logits(model)).detach())
    return result.val_acc, result.test_acc, alphas


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cora")
    parser.add_argument("--depth", type=int, default=64)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--root", default=None,
                        help="dataset root (default: $GNN_CENTER_DATA)")
    args = parser.parse_args()
    config = load_config(f"configs/centered-preset-{args.dataset}.yaml")
    for name, exempt in (("as swept", False), ("alpha without decay", True)):
        tests = []
        for seed in args.seeds:
            val, test, alphas = one_run(args.dataset, args.depth, seed,
                                        config, args.root, exempt)
            tests.append(100 * test)
            print(f"{args.dataset} L={args.depth} seed {seed} {name}: "
                  f"val {100 * val:.1f} test {100 * test:.1f}  α mean "
                  f"{alphas.mean():.3f} min {alphas.min():.3f} max "
                  f"{alphas.max():.3f}", flush=True)
        spread = statistics.stdev(tests) if len(tests) > 1 else 0.0
        print(f"{args.dataset} L={args.depth} {name}: test "
              f"{statistics.mean(tests):.1f} ± {spread:.1f}", flush=True)


if __name__ == "__main__":
    main()
