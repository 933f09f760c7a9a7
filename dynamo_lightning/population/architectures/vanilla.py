"""Vanilla tanh RNN (``torch.nn.RNN`` with tanh), stacked."""

from __future__ import annotations

import torch
from torch import Tensor

from dynamo_lightning.population.architectures.recurrent import RecurrentArchitecture
from dynamo_lightning.population.architectures.registry import register_architecture


@register_architecture("vanilla")
class VanillaRNN(RecurrentArchitecture):
    """``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``."""

    gates = 1
    fused_cell = "tanh"

    def cell(self, h: Tensor, u: Tensor) -> Tensor:
        return torch.tanh(u + self.recurrent_input(h))
