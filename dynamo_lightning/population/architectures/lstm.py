"""Long short-term memory (``torch.nn.LSTM``'s equations), stacked; the state is [h, c]."""

from __future__ import annotations

import torch
from torch import Tensor

from dynamo_lightning.population.architectures.recurrent import RecurrentArchitecture
from dynamo_lightning.population.architectures.registry import register_architecture


@register_architecture("lstm")
class LSTM(RecurrentArchitecture):
    """Gates i, f, g, o in torch's order. The state vector is ``[h, c]`` (size 2H), so
    trajectories, fixed points and Jacobians see the whole dynamical state; the readout
    sees ``h`` only. The forget-gate bias starts at 1 (Jozefowicz et al. 2015)."""

    gates = 4
    fused_cell = "lstm"
    # Fused where a stack's ``fused`` flag is set: ``fused_recurrence.FASTER_UP_TO["lstm"]``
    # is the widest H the trainer and the data module fuse (measured faster up to there).

    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size

    def init_member(self, generator: torch.Generator) -> dict[str, Tensor]:
        params = super().init_member(generator)
        size = self.hidden_size
        params["bias_ih"][size : 2 * size] += 1.0
        return params

    def cell(self, h: Tensor, u: Tensor) -> Tensor:
        size = self.hidden_size
        units, memory = h[..., :size], h[..., size:]
        gates = u + self.recurrent_input(units)
        ifo = torch.sigmoid(torch.cat([gates[..., : 2 * size], gates[..., 3 * size :]], dim=-1))
        i, f, o = ifo[..., :size], ifo[..., size : 2 * size], ifo[..., 2 * size :]
        g = torch.tanh(gates[..., 2 * size : 3 * size])
        memory = torch.addcmul(f * memory, i, g)
        return torch.cat([o * torch.tanh(memory), memory], dim=-1)
