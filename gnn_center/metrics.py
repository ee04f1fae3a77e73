r"""Oversmoothing measures of node features, computed from the hidden states
a model returns.

* :func:`dirichlet_energy`: with :math:`\tilde{d}_i = 1 + d_i`,

  .. math::
      E(\mathbf{X}) = \frac{1}{N} \sum_{(i,j) \in \mathcal{E}}
      \left\lVert \frac{\mathbf{x}_i}{\sqrt{\tilde{d}_i}} -
      \frac{\mathbf{x}_j}{\sqrt{\tilde{d}_j}} \right\rVert^2

  summed over directed edges (each undirected edge twice), divided by the
  number of nodes :math:`N`. ``relative=True`` divides by
  :math:`\lVert\mathbf{X}\rVert_F^2 / N` instead, a Rayleigh quotient that
  does not change when the features are rescaled; both are zero for
  features constant on each connected component (after the degree
  weighting, i.e. :math:`\mathbf{x}_i \propto \sqrt{\tilde d_i}`).
* :func:`mean_average_distance` (MAD, Chen et al., AAAI 2020): the mean
  over nodes of the mean cosine distance :math:`1 - \cos(\mathbf{x}_i,
  \mathbf{x}_j)` to the other nodes, counting only non-zero distances as
  in the paper; zero when all features point the same way.
* :func:`numerical_rank` and :func:`effective_rank` (Roy and Vetterli,
  2007: :math:`\exp` of the entropy of the normalised singular values) of
  the feature matrix; 1 for rank-one (e.g. constant) features.
"""
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.utils import degree


def dirichlet_energy(x: Tensor, edge_index: Tensor, relative: bool = False,
                     num_nodes: Optional[int] = None) -> float:
    r"""Degree-normalised Dirichlet energy per node (see module docstring);
    ``edge_index`` without self-loops, each undirected edge in both
    directions."""
    num_nodes = x.size(0) if num_nodes is None else num_nodes
    x = x.detach().double()
    deg = degree(edge_index[0], num_nodes, dtype=x.dtype) + 1.0
    scaled = x / deg.sqrt().unsqueeze(-1)
    diff = scaled[edge_index[0]] - scaled[edge_index[1]]
    energy = diff.pow(2).sum()
    if relative:
        total = x.pow(2).sum()
        return float(energy / total) if total > 0 else 0.0
    return float(energy / num_nodes)


def mean_average_distance(x: Tensor, max_nodes: Optional[int] = 2048,
                          seed: int = 0) -> float:
    r"""MAD over all node pairs, or over the pairs of a seeded random
    sample of ``max_nodes`` nodes when the graph is larger (its cost is
    quadratic in the number of nodes)."""
    x = x.detach().double()
    if max_nodes is not None and x.size(0) > max_nodes:
        gen = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(x.size(0), generator=gen)[:max_nodes].to(
            x.device)]
    unit = torch.nn.functional.normalize(x, dim=-1)
    dist = (1.0 - unit @ unit.t()).clamp(min=0.0)
    # Zero rows (all-zero features) have no defined direction: distance 0.
    zero = x.norm(dim=-1) == 0
    dist[zero] = 0.0
    dist[:, zero] = 0.0
    dist = torch.where(dist > 1e-12, dist, torch.zeros_like(dist))
    counts = (dist > 0).sum(dim=1)
    row_mean = dist.sum(dim=1) / counts.clamp(min=1)
    nonzero_rows = (row_mean > 0).sum()
    if nonzero_rows == 0:
        return 0.0
    return float(row_mean.sum() / nonzero_rows)


def _singular_values(x: Tensor) -> Tensor:
    return torch.linalg.svdvals(x.detach().double())


def numerical_rank(x: Tensor, rtol: Optional[float] = None) -> int:
    r"""Rank of the feature matrix: singular values above
    ``rtol * max(s)`` (default ``rtol = max(N, F) * eps`` of the input's
    floating-point type, as in ``torch.linalg.matrix_rank``)."""
    s = _singular_values(x)
    if s.numel() == 0 or s[0] == 0:
        return 0
    if rtol is None:
        rtol = max(x.shape) * torch.finfo(x.dtype).eps
    return int((s > rtol * s[0]).sum())


def effective_rank(x: Tensor) -> float:
    r""":math:`\exp(-\sum_k p_k \log p_k)` with :math:`p_k = s_k / \sum s`,
    between 1 (rank one) and :math:`\min(N, F)`; 0 for all-zero
    features."""
    s = _singular_values(x)
    total = s.sum()
    if total == 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def layer_metrics(hidden: Sequence[Tensor], edge_index: Tensor,
                  mad_max_nodes: Optional[int] = 2048
                  ) -> Dict[str, List[float]]:
    r"""Each measure for each hidden state (index 0: the input embedding,
    index l: the output of layer l). Returns lists keyed
    ``dirichlet_energy``, ``relative_energy``, ``mad``, ``rank``,
    ``effective_rank``, ``norm`` (root-mean-square row norm,
    :math:`\lVert\mathbf{H}\rVert_F / \sqrt{N}`)."""
    out: Dict[str, List[float]] = {
        "dirichlet_energy": [],
        "relative_energy": [],
        "mad": [],
        "rank": [],
        "effective_rank": [],
        "norm": [],
    }
    for h in hidden:
        out["dirichlet_energy"].append(dirichlet_energy(h, edge_index))
        out["relative_energy"].append(
            dirichlet_energy(h, edge_index, relative=True))
        out["mad"].append(mean_average_distance(h, mad_max_nodes))
        out["rank"].append(numerical_rank(h))
        out["effective_rank"].append(effective_rank(h))
        out["norm"].append(float(h.detach().double().norm() /
                                 max(h.size(0), 1)**0.5))
    return out
