from typing import Optional, Union

import torch
from torch import Tensor
from torch.nn import Parameter

from gnn_center.nn.functional import check_beta


class CenteringMixin:
    r"""The options both centered layers share: the centering mode and its
    strength :math:`\beta`, fixed or learned.

    A learned :math:`\beta` is a free parameter ``beta`` that the forward
    pass reads through a straight-through clamp,
    :math:`\beta_{\text{eff}} = \beta + \operatorname{sg}(\operatorname{clamp}
    (\beta, 0, 1) - \beta)`: the value used is in :math:`[0, 1]`, and the
    gradient is that of :math:`\beta` itself, so a step that leaves the range
    can be undone by the next ones. Nothing is changed in place, so the layer
    can run several times before ``backward()`` (weight sharing) and passes
    ``gradcheck``. A plain out-of-place clamp would have a zero gradient
    outside the range, leaving :math:`\beta` stuck there; a sigmoid of a free
    parameter cannot start at the default :math:`\beta = 1` (nor at 0).
    With ``center=None`` there is no :math:`\beta` to learn and no parameter.
    """
    center: Optional[str]
    beta: Union[float, Tensor]

    def _init_centering(self, center: Optional[str], beta: float,
                        learn_beta: bool) -> None:
        check_beta(beta)
        self.center = center
        self.beta_init = float(beta)
        self.learn_beta = learn_beta and center is not None
        if self.learn_beta:
            self.beta = Parameter(torch.tensor(float(beta)))
        else:
            self.beta = float(beta)

    def _reset_beta(self) -> None:
        # Called from reset_parameters, which PyG runs before
        # _init_centering has set beta.
        if isinstance(getattr(self, "beta", None), Parameter):
            with torch.no_grad():
                self.beta.fill_(self.beta_init)

    def effective_beta(self) -> Union[float, Tensor]:
        r"""The :math:`\beta` the forward pass uses, in :math:`[0, 1]`."""
        beta = self.beta
        if isinstance(beta, Tensor):
            return beta + (beta.clamp(0.0, 1.0) - beta).detach()
        return beta

    def _centering_repr(self) -> str:
        beta = "learned" if self.learn_beta else self.beta
        return f"center={self.center}, beta={beta}"
