"""Train a deep centered GCN on a synthetic two-community graph.

A self-contained example of the layer in a plain PyG model, no dataset
needed:

    python experiments/example_deep_centered_gcn.py --layers 32
"""
import argparse

import torch
import torch.nn.functional as F
from torch_geometric.utils import stochastic_blockmodel_graph

from gnn_center.nn import CenteredGCNConv


class DeepGCN(torch.nn.Module):
    def __init__(self, in_channels, hidden, out_channels, layers, center):
        super().__init__()
        self.lin_in = torch.nn.Linear(in_channels, hidden)
        self.convs = torch.nn.ModuleList(
            CenteredGCNConv(hidden, hidden, cached=True, center=center)
            for _ in range(layers))
        self.lin_out = torch.nn.Linear(hidden, out_channels)

    def forward(self, x, edge_index):
        x = self.lin_in(x)
        for conv in self.convs:
            x = conv(x, edge_index).relu()
        return self.lin_out(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--center", default="spectral",
                        help="mean, uniform, spectral or none")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    center = None if args.center == "none" else args.center

    torch.manual_seed(0)
    n = 400
    edge_index = stochastic_blockmodel_graph([n // 2, n // 2],
                                             [[0.05, 0.005], [0.005, 0.05]])
    y = torch.arange(n) // (n // 2)
    x = torch.randn(n, 16) + 0.5 * y[:, None].float()
    train = torch.rand(n) < 0.2

    model = DeepGCN(16, 32, 2, args.layers, center)
    opt = torch.optim.Adam(model.parameters(), lr=0.005)
    for epoch in range(args.epochs):
        model.train()
        opt.zero_grad()
        loss = F.cross_entropy(model(x, edge_index)[train], y[train])
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x, edge_index).argmax(-1) == y)[~train].float().mean()
    print(f"{args.layers} layers, center={center}: loss {loss.item():.3f}, "
          f"held-out accuracy {acc.item():.3f}")


if __name__ == "__main__":
    main()
