"""Why deep centered stacks do or do not train: per-layer measurements.

For each variant (a method plus model options), at initialisation and after
training (the weights of the best validation epoch), this records through a
deep stack on one dataset:

* the feature norm per node, the relative Dirichlet energy and the effective
  rank of each hidden state (gnn_center.metrics.layer_metrics), and
* the gradient norm of each layer's weight for one training step,

and writes a JSON file and one PNG per measure (one line per variant, init
dashed, trained solid).

    python experiments/deep_training.py --dataset cora --layers 64 \\
        --out experiments/results/deep_training
"""
import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from gnn_center.data import load_dataset
from gnn_center.metrics import layer_metrics
from gnn_center.nn import build_model
from gnn_center.train import TrainOptions, fit, model_input

# name: (method, model options). Every flag is spelled out because the
# centered presets switch rescaling on by default.
VARIANTS = {
    "gcn": ("gcn", {"rescale": False}),
    "mean": ("centered", {"rescale": False}),
    "uniform": ("centered-uniform", {"rescale": False}),
    "spectral": ("centered-spectral", {"rescale": False}),
    "gcn+rescale": ("gcn", {"rescale": True}),
    "mean+rescale": ("centered", {"rescale": True}),
    "spectral+rescale": ("centered-spectral", {"rescale": True}),
    "res+rescale": ("residual", {"rescale": True}),
    "res+rescale+spectral": ("centered-spectral",
                             {"rescale": True, "residual": "residual"}),
}


def measure(model, task, x):
    """Per-layer hidden-state measures and per-layer weight gradient norms
    for one training step of the model as it is."""
    data = task.data
    model.eval()
    with torch.no_grad():
        _, hidden = model(x, data.edge_index, return_hidden=True)
    metrics = layer_metrics(hidden, data.edge_index, mad_max_nodes=512)
    model.train()
    model.zero_grad()
    out = model(x, data.edge_index)
    F.cross_entropy(out[data.train_mask], data.y[data.train_mask]).backward()
    grads = []
    for conv in model.convs:
        weight = model._hidden_weight(conv)
        grads.append(0.0 if weight.grad is None else
                     float(weight.grad.norm()))
    model.zero_grad()
    return dict(norm=metrics["norm"],
                relative_energy=metrics["relative_energy"],
                effective_rank=metrics["effective_rank"],
                grad_norm=grads)


def plot(results, measure_name, path, layers):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, result) in enumerate(results.items()):
        colour = f"C{i % 10}"
        for stage, style in (("init", "--"), ("trained", "-")):
            values = result[stage][measure_name]
            start = 1 if measure_name == "grad_norm" else 0
            ax.plot(range(start, start + len(values)),
                    [max(v, 1e-30) for v in values], style, color=colour,
                    label=f"{name} ({stage})" if stage == "trained" else None)
    ax.set_yscale("log")
    ax.set_xlabel("layer (0 = input embedding)")
    ax.set_ylabel(measure_name.replace("_", " "))
    ax.set_title(f"{measure_name.replace('_', ' ')} through {layers} layers "
                 f"(dashed: at init, solid: trained)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cora")
    parser.add_argument("--root", default=None)
    parser.add_argument("--layers", type=int, default=64)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS),
                        choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=100)
    parser.add_argument("--dropout-placement", default="io")
    parser.add_argument("--out", default="experiments/results/deep_training")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = load_dataset(args.dataset, args.root)
    results = {}
    for name in args.variants:
        method, options = VARIANTS[name]
        torch.manual_seed(args.seed)
        model = build_model(method, task.num_features, task.num_classes,
                            args.layers,
                            dropout_placement=args.dropout_placement,
                            **options)
        x = model_input(model, task.data.x)
        init = measure(model, task, x)
        fitted = fit(model, task, TrainOptions(max_epochs=args.epochs,
                                               patience=args.patience))
        model.load_state_dict(fitted.best_state)
        trained = measure(model, task, x)
        results[name] = dict(method=method, options=options, init=init,
                             trained=trained, test_acc=fitted.test_acc,
                             val_acc=fitted.val_acc,
                             best_epoch=fitted.best_epoch)
        print(f"{name:>20}: test {100 * fitted.test_acc:.1f}  "
              f"|h_L| init {init['norm'][-1]:.2e} trained "
              f"{trained['norm'][-1]:.2e}  erank_L init "
              f"{init['effective_rank'][-1]:.2f} trained "
              f"{trained['effective_rank'][-1]:.2f}", flush=True)
    stem = f"{args.dataset}_L{args.layers}"
    (out / f"diagnosis_{stem}.json").write_text(json.dumps(
        dict(args=vars(args), results=results), indent=1))
    for measure_name in ("norm", "relative_energy", "effective_rank",
                         "grad_norm"):
        plot(results, measure_name, out / f"{measure_name}_{stem}.png",
             args.layers)
    print(f"wrote {out}/diagnosis_{stem}.json and plots")


if __name__ == "__main__":
    main()
