"""The 2-layer GCN of Kipf & Welling (2017), trained by the project's trainer.

The sweeps' ``gcn`` at ``num_layers=2`` is the project's skeleton
(input Linear -> 2 x GCNConv -> output Linear, hidden 64), which is not the
model of the GCN paper (GCNConv(in, 16) -> ReLU -> GCNConv(16, classes)). This
script trains the paper's model on the same data, split, trainer and budget
(Adam, lr 0.01, weight decay 5e-4, up to 300 epochs, patience 100, the
best validation epoch; the paper decays only the first layer and stops on
validation loss after 200 epochs), so that a gap to published
numbers can be told apart from a gap caused by the skeleton.

    OMP_NUM_THREADS=1 python experiments/reference_gcn.py --datasets cora citeseer --seeds 0 1 2
"""
import argparse
import statistics

import torch
import torch.nn.functional as F
from torch_geometric import seed_everything
from torch_geometric.nn import GCNConv

from gnn_center.data import load_dataset
from gnn_center.train import TrainOptions, fit


class PaperGCN(torch.nn.Module):
    """GCNConv -> ReLU -> dropout -> GCNConv, dropout on the input too."""
    def __init__(self, in_channels: int, hidden_channels: int,
                 out_channels: int, dropout: float = 0.5):
        super().__init__()
        self.conv1 = GCNConv(in_channels, hidden_channels, cached=True)
        self.conv2 = GCNConv(hidden_channels, out_channels, cached=True)
        self.dropout = dropout

    def forward(self, x, edge_index, edge_weight=None):
        x = F.dropout(x, p=self.dropout, training=self.training)
        x = F.relu(self.conv1(x, edge_index, edge_weight))
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.conv2(x, edge_index, edge_weight)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["cora", "citeseer"])
    parser.add_argument("--root", default=None,
                        help="dataset root (default: $GNN_CENTER_DATA)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--hidden", nargs="+", type=int, default=[16, 64])
    args = parser.parse_args()

    options = TrainOptions(lr=0.01, weight_decay=5e-4, max_epochs=300,
                           patience=100)
    for name in args.datasets:
        for hidden in args.hidden:
            accs = []
            for seed in args.seeds:
                seed_everything(seed)
                task = load_dataset(name, args.root, split="public")
                seed_everything(seed)
                model = PaperGCN(task.num_features, hidden, task.num_classes)
                accs.append(100 * fit(model, task, options).test_acc)
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            print(f"{name:10s} paper GCN, hidden {hidden:3d}: "
                  f"{statistics.mean(accs):.1f} ± {std:.1f} "
                  f"over {len(accs)} seed(s)", flush=True)


if __name__ == "__main__":
    main()
