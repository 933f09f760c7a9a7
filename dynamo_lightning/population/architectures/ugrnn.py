"""Update-gate RNN (Collins, Sohl-Dickstein & Sussillo 2017, "Capacity and trainability
in recurrent neural networks"), stacked."""

from __future__ import annotations

import torch
from torch import Tensor

from dynamo_lightning.population.architectures.recurrent import RecurrentArchitecture
from dynamo_lightning.population.architectures.registry import register_architecture


@register_architecture("ugrnn")
class UGRNN(RecurrentArchitecture):
    """Candidate ``c = tanh(W_c [x, h] + b_c)``, gate ``g = σ(W_g [x, h] + b_g)``,
    ``h' = g * h + (1 - g) * c``. Blocks are ordered (c, g); the gate bias starts at 1 so
    that early training keeps memory, as in the paper's setup."""

    gates = 2

    def init_member(self, generator: torch.Generator) -> dict[str, Tensor]:
        params = super().init_member(generator)
        params["bias_ih"][self.hidden_size :] += 1.0
        return params

    def cell(self, h: Tensor, u: Tensor) -> Tensor:
        pre = u + self.recurrent_input(h)
        size = self.hidden_size
        candidate = torch.tanh(pre[..., :size])
        gate = torch.sigmoid(pre[..., size:])
        return torch.lerp(candidate, h, gate)
