r"""The seeded random split of Shchur et al. (2018), shared by the Amazon and
Coauthor datasets and ``csbm``."""
from typing import Tuple

import torch
from torch import Tensor

from gnn_center.data.registry import TRAIN_PER_CLASS, VAL_PER_CLASS


def per_class_split(y: Tensor, num_classes: int,
                    generator: torch.Generator) -> Tuple[Tensor, ...]:
    r"""Per class, 20 random nodes for training and 30 for validation; all
    other nodes are test nodes. Returns the boolean train, validation and
    test masks."""
    num_nodes = y.size(0)
    train_mask = torch.zeros(num_nodes, dtype=torch.bool)
    val_mask = torch.zeros(num_nodes, dtype=torch.bool)
    for c in range(num_classes):
        idx = (y == c).nonzero().view(-1)
        if idx.numel() <= TRAIN_PER_CLASS + VAL_PER_CLASS:
            raise ValueError(
                f"Class {c} has {idx.numel()} nodes, too few for a split "
                f"with {TRAIN_PER_CLASS} training and {VAL_PER_CLASS} "
                f"validation nodes per class and test nodes left over")
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        train_mask[idx[:TRAIN_PER_CLASS]] = True
        val_mask[idx[TRAIN_PER_CLASS:TRAIN_PER_CLASS + VAL_PER_CLASS]] = True
    test_mask = ~(train_mask | val_mask)
    return train_mask, val_mask, test_mask


def per_class_split_name(seed: int) -> str:
    r"""How :attr:`NodeTask.split` names the split drawn with ``seed``."""
    return f"random({TRAIN_PER_CLASS}/{VAL_PER_CLASS} per class, seed={seed})"
