from typing import Optional, Union

import torch
from torch import Tensor
from torch.nn import Parameter

from gnn_center.nn.functional import check_beta


class CenteringMixin:
    r"""The options both centered layers share: the centering mode and its
    strength :math:`\beta`, fixed or learned.

    A learned :math:`\beta` is kept in :math:`[0, 1]` by projection: each
    forward pass first clamps the parameter into range in place, then uses
    it as it is, so the optimiser takes plain gradient steps and a step out
    of range is undone before the next use (projected gradient descent).
    """
    center: Optional[str]
    beta: Union[float, Parameter]

    def _init_centering(self, center: Optional[str], beta: float,
                        learn_beta: bool) -> None:
        check_beta(beta)
        self.center = center
        self.beta_init = float(beta)
        self.learn_beta = learn_beta
        if learn_beta:
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
        r"""The :math:`\beta` the forward pass uses."""
        if isinstance(self.beta, Tensor):
            with torch.no_grad():
                self.beta.clamp_(0.0, 1.0)
        return self.beta

    def _centering_repr(self) -> str:
        beta = "learned" if self.learn_beta else self.beta
        return f"center={self.center}, beta={beta}"
