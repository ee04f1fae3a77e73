"""Why plain GCN is weak on Amazon Photo in the full sweep.

The sweep's ``gcn`` at 2 layers gets 62% on Photo, against about 91% for GCN
in the literature, and stops at the 300-epoch cap with training accuracy
still climbing. This script reruns that cell (same data, split, model and
trainer, read from the sweep's config) changing one setting at a time: a
longer budget, features without row normalisation, and no weight decay.

    OMP_NUM_THREADS=1 python experiments/probe_photo_gcn.py --seeds 0

One thread, as each worker of ``gnn-center sweep --jobs N`` uses, so that
the first line repeats the sweep's record exactly; with more threads the
sums run in another order and test accuracy can move by a few tenths.
"""
import argparse

from gnn_center.config import load_config
from gnn_center.train import TrainOptions, run

PROBES = [("as swept", {}, {}),
          ("1000 epochs", {}, dict(max_epochs=1000)),
          ("raw features", dict(normalize_features=False), {}),
          ("no weight decay", {}, dict(weight_decay=0.0))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None,
                        help="dataset root (default: $GNN_CENTER_DATA)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--config", default="configs/full-photo.yaml",
                        help="the sweep whose photo/gcn cell is probed")
    args = parser.parse_args()
    config = load_config(args.config)
    for name, data, train in PROBES:
        for seed in args.seeds:
            swept_data, model, swept_train = config.options_for(
                "photo", "gcn", seed)
            r = run("photo", "gcn", 2, seed, root=args.root,
                    data_options={**swept_data, **data},
                    model_options=model,
                    train_options=TrainOptions(**{**swept_train, **train}),
                    record_layer_metrics=False)
            print(f"{name:16s} seed {seed}: test {100 * r['test_acc']:.1f}, "
                  f"train {100 * r['train_acc']:.1f}, best epoch "
                  f"{r['best_epoch']} of {r['epochs_run']}", flush=True)


if __name__ == "__main__":
    main()
