"""Gated recurrent unit (Cho et al. 2014; ``torch.nn.GRU``'s equations), stacked."""

from __future__ import annotations

import torch
from torch import Tensor

from dynamo_lightning.population.architectures.recurrent import RecurrentArchitecture
from dynamo_lightning.population.architectures.registry import register_architecture


@register_architecture("gru")
class GRU(RecurrentArchitecture):
    """Gates r, z, n in torch's order; ``h' = (1 - z) * n + z * h``."""

    gates = 3
    fused_cell = "gru"

    def cell(self, h: Tensor, u: Tensor) -> Tensor:
        hh = self.recurrent_input(h)
        size = self.hidden_size
        rz = torch.sigmoid(u[..., : 2 * size] + hh[..., : 2 * size])
        r, z = rz[..., :size], rz[..., size:]
        n = torch.tanh(torch.addcmul(u[..., 2 * size :], r, hh[..., 2 * size :]))
        return torch.lerp(n, h, z)
