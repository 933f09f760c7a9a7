"""ReLU RNN (``torch.nn.RNN`` with ``nonlinearity="relu"``), stacked."""

from __future__ import annotations

import torch
from torch import Tensor

from dynamo_lightning.population.architectures.recurrent import RecurrentArchitecture
from dynamo_lightning.population.architectures.registry import register_architecture


@register_architecture("relu")
class ReLURNN(RecurrentArchitecture):
    """``h' = relu(W_ih x + b_ih + W_hh h + b_hh)``.

    ReLU is positively homogeneous, so rescaling the units by any positive diagonal matrix
    (``analysis.rescaled_copy``) gives a network with the same outputs: a reparameterisation
    that changes every weight while leaving the computation unchanged.
    """

    gates = 1
    fused_cell = "relu"

    def cell(self, h: Tensor, u: Tensor) -> Tensor:
        return torch.relu(u + self.recurrent_input(h))
