r"""``csbm``: a contextual stochastic block model generated in memory."""
from typing import List, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

from gnn_center.data.registry import TRAIN_PER_CLASS, VAL_PER_CLASS
from gnn_center.data.splits import per_class_split, per_class_split_name
from gnn_center.data.task import NodeTask

#: The ``csbm`` options of :func:`~gnn_center.data.load_dataset` and their
#: defaults (``None``: derived from the others, see :func:`csbm`).
CSBM_DEFAULTS = dict(num_nodes=1000, num_classes=2, p_intra=None,
                     p_inter=None, feature_dim=32, snr=1.0)


def _sample_distinct(total: int, count: int,
                     generator: torch.Generator) -> Tensor:
    # A uniformly random `count`-subset of range(total) without materialising
    # range(total): draw, drop repeats, draw what is missing. By symmetry the
    # result is uniform over all subsets of that size.
    out = torch.empty(0, dtype=torch.long)
    while out.numel() < count:
        draw = torch.randint(total, (count - out.numel(), ),
                             generator=generator)
        out = torch.cat([out, draw]).unique()
    return out


def _sbm_edges(sizes: List[int], p_intra: float, p_inter: float,
               generator: torch.Generator) -> Tensor:
    r"""An undirected stochastic block model: each pair of distinct nodes is
    joined independently with probability ``p_intra`` within a block and
    ``p_inter`` across blocks. Per pair of blocks, the edge count is drawn
    from its binomial law and then that many distinct node pairs uniformly,
    which is the same law in time and memory linear in the edges."""
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    rows, cols = [], []
    for a, (n_a, o_a) in enumerate(zip(sizes, offsets)):
        for b in range(a, len(sizes)):
            n_b, o_b = sizes[b], offsets[b]
            p = p_intra if a == b else p_inter
            # Pairs (i, j) over the full n_a x n_b grid; within a block only
            # i < j is kept, so each unordered pair is still one trial.
            total = n_a * n_b
            count = torch.binomial(
                torch.tensor(float(total), dtype=torch.float64),
                torch.tensor(float(p), dtype=torch.float64),
                generator=generator)
            cell = _sample_distinct(total, int(count), generator)
            row, col = cell // n_b, cell % n_b
            if a == b:
                keep = row < col
                row, col = row[keep], col[keep]
            rows.append(row + o_a)
            cols.append(col + o_b)
    edge_index = torch.stack([torch.cat(rows), torch.cat(cols)])
    return to_undirected(edge_index, num_nodes=sum(sizes))


def csbm(
    *,
    num_nodes: int,
    num_classes: int,
    p_intra: Optional[float],
    p_inter: Optional[float],
    feature_dim: int,
    snr: float,
    seed: int,
) -> NodeTask:
    r"""A contextual stochastic block model (no files, no download).

    The ``num_nodes`` nodes fall into ``num_classes`` blocks of (nearly)
    equal size :math:`n_c`; ``y`` is the block. Two distinct nodes are
    joined with probability ``p_intra`` in the same block and ``p_inter``
    across blocks, so with :math:`n/C` nodes per block the expected degree is
    :math:`p_\mathrm{intra}(n/C - 1) + p_\mathrm{inter}(n - n/C)` and the
    expected edge homophily (share of edges within a block) is
    :math:`p_\mathrm{intra}(n/C - 1)` over that. The defaults,
    :math:`p_\mathrm{intra} = 8/(n/C - 1)` and
    :math:`p_\mathrm{inter} = 2/(n - n/C)`, give degree 10 and homophily
    0.8.

    Features: :math:`\mathbf{x}_i = \boldsymbol{\mu}_{y_i} +
    \boldsymbol{\varepsilon}_i`, :math:`\boldsymbol{\varepsilon}_i \sim
    \mathcal{N}(\mathbf{0}, \mathbf{I})`, where the class means
    :math:`\boldsymbol{\mu}_c = \mathrm{snr} \cdot \mathbf{u}_c` have
    uniformly random unit directions :math:`\mathbf{u}_c` in
    :math:`\mathbb{R}^{F}` (``F = feature_dim``).

    The split is that of the Amazon/Coauthor datasets (20/30 per class, rest
    test). Graph, features and split come from one :class:`torch.Generator`
    seeded with ``seed``: the same arguments give the same task, and the
    global RNG is not used.
    """
    n, num_classes = int(num_nodes), int(num_classes)
    if num_classes < 2:
        raise ValueError(f"csbm needs num_classes >= 2 (got {num_classes})")
    min_nodes = (TRAIN_PER_CLASS + VAL_PER_CLASS + 1) * num_classes
    if n < min_nodes:
        raise ValueError(
            f"csbm with num_classes={num_classes} needs num_nodes >= "
            f"{min_nodes} for its 20/30-per-class split (got {n})")
    if int(feature_dim) < 1 or snr < 0:
        raise ValueError(f"csbm needs feature_dim >= 1 and snr >= 0 (got "
                         f"feature_dim={feature_dim}, snr={snr})")
    block = n / num_classes
    p_intra = 8.0 / (block - 1) if p_intra is None else float(p_intra)
    p_inter = 2.0 / (n - block) if p_inter is None else float(p_inter)
    for key, p in (("p_intra", p_intra), ("p_inter", p_inter)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"csbm needs 0 <= {key} <= 1 (got {p})")

    generator = torch.Generator().manual_seed(int(seed))
    sizes = [(n + c) // num_classes for c in range(num_classes)]
    y = torch.repeat_interleave(torch.arange(num_classes),
                                torch.tensor(sizes))
    edge_index = _sbm_edges(sizes, p_intra, p_inter, generator)
    means = torch.randn(num_classes, int(feature_dim), generator=generator)
    means = snr * means / means.norm(dim=1, keepdim=True)
    x = means[y] + torch.randn(n, int(feature_dim), generator=generator)
    train_mask, val_mask, test_mask = per_class_split(y, num_classes,
                                                       generator)
    data = Data(x=x, edge_index=edge_index, y=y, train_mask=train_mask,
                val_mask=val_mask, test_mask=test_mask)
    return NodeTask(name="csbm", data=data, num_features=int(feature_dim),
                    num_classes=num_classes, split=per_class_split_name(seed))
