r"""The result of :func:`~gnn_center.data.load_dataset`: a graph with one
selected split and its metric."""
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor
from torch_geometric.data import Data

from gnn_center.data import ogb


@dataclass
class NodeTask:
    r"""A node-classification task: one graph, one selected split and the
    metric to report.

    Args:
        name (str): The canonical lower-case dataset name.
        data (torch_geometric.data.Data): The graph with ``x`` ``[N, F]``,
            undirected ``edge_index``, ``y`` ``[N]`` and the boolean masks
            ``train_mask``, ``val_mask``, ``test_mask`` ``[N]``.
        num_features (int): ``F``.
        num_classes (int): The number of classes.
        split (str): Which split the masks hold, e.g. ``"public"``,
            ``"geom-gcn:3"`` or ``"random(20/30 per class, seed=0)"``.
        metric (str): ``"accuracy"``.
    """
    name: str
    data: Data
    num_features: int
    num_classes: int
    split: str
    metric: str = "accuracy"
    # OGB's name for its Evaluator ("ogbn-arxiv"); None for the others.
    ogb_name: Optional[str] = field(default=None, repr=False)

    def evaluate(self, logits_or_pred: Tensor, mask: Tensor) -> float:
        r"""The accuracy :math:`\frac{1}{|M|} \sum_{i \in M}
        [\hat{y}_i = y_i]` over the nodes :math:`M` selected by ``mask``.

        Args:
            logits_or_pred (torch.Tensor): Scores ``[N, C]`` (the prediction
                is their arg-max) or integer class predictions ``[N]``, for
                all ``N`` nodes.
            mask (torch.Tensor): Boolean ``[N]``, e.g. ``data.test_mask``.

        For ``ogbn-*`` tasks the number is computed by OGB's official
        :class:`ogb.nodeproppred.Evaluator`.
        """
        num_nodes = self.data.num_nodes
        pred = logits_or_pred.detach().cpu()
        if pred.dim() == 2:
            pred = pred.argmax(dim=-1)
        elif pred.dim() != 1 or pred.is_floating_point():
            raise ValueError(
                f"evaluate() expects scores of shape [N, C] or integer class "
                f"predictions of shape [N] (N = {num_nodes}); got a "
                f"{pred.dtype} tensor of shape {tuple(pred.shape)}")
        mask = mask.detach().cpu()
        if mask.dtype != torch.bool or mask.shape != (num_nodes, ):
            raise ValueError(
                f"evaluate() expects a boolean mask of shape [{num_nodes}]; "
                f"got a {mask.dtype} tensor of shape {tuple(mask.shape)}")
        if pred.size(0) != num_nodes:
            raise ValueError(
                f"evaluate() expects predictions for all {num_nodes} nodes; "
                f"got {pred.size(0)}")
        if not bool(mask.any()):
            raise ValueError("evaluate() got a mask that selects no nodes")

        # On the CPU: `data` may have been moved to another device.
        y_true, y_pred = self.data.y.detach().cpu()[mask], pred[mask]
        if self.ogb_name is not None:
            out = ogb.evaluator(self.ogb_name).eval({
                "y_true": y_true.view(-1, 1),
                "y_pred": y_pred.view(-1, 1),
            })
            return float(out["acc"])
        return float((y_pred == y_true).float().mean())
