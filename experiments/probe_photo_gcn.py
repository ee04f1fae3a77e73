"""Why plain GCN is weak on Amazon Photo in the full sweep.

The sweep's ``gcn`` at 2 layers gets 62% on Photo, against about 91% for GCN
in the literature, and stops at the 300-epoch cap with training accuracy
still climbing. This script reruns that cell (same data, split, model and
trainer) changing one setting at a time: a longer budget, features without
row normalisation, and no weight decay.

    python experiments/probe_photo_gcn.py --seeds 0
"""
import argparse

from gnn_center.train import TrainOptions, run

SWEPT = dict(lr=0.01, weight_decay=5e-4, max_epochs=300, patience=100)
PROBES = [("as swept", {}, {}),
          ("1000 epochs", {}, dict(max_epochs=1000)),
          ("raw features", dict(normalize_features=False), {}),
          ("no weight decay", {}, dict(weight_decay=0.0))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None,
                        help="dataset root (default: $GNN_CENTER_DATA)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args()
    for name, data, train in PROBES:
        for seed in args.seeds:
            r = run("photo", "gcn", 2, seed, root=args.root,
                    data_options=dict(split="random", **data),
                    model_options=dict(hidden_channels=64, dropout=0.5),
                    train_options=TrainOptions(**{**SWEPT, **train}),
                    record_layer_metrics=False)
            print(f"{name:16s} seed {seed}: test {100 * r['test_acc']:.1f}, "
                  f"train {100 * r['train_acc']:.1f}, best epoch "
                  f"{r['best_epoch']} of {r['epochs_run']}", flush=True)


if __name__ == "__main__":
    main()
