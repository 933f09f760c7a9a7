"""Shared machinery of the stacked recurrent architectures.

Input projections for all time steps and members are one einsum; the recurrence is one
batched matmul per step (``baddbmm`` over the member axis). ``step`` and ``forward`` both go
through ``cell``, so the single-step map agrees with the sequence forward by construction.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from dynamo_lightning.population.architectures.base import Architecture, fan_in_bound, uniform


class RecurrentArchitecture(Architecture):
    """Stacked single-layer RNN with a linear readout of the hidden units.

    Per-member parameters: ``weight_ih [I, gH]``, ``weight_hh [H, gH]``, ``bias_ih [gH]``,
    ``bias_hh [gH]``, ``readout_weight [H, O]``, ``readout_bias [O]``, where ``g`` is the
    number of gate blocks (``gates``). Weights are stored input-major (``x @ W``), i.e. the
    transpose of ``torch.nn.RNN``'s layout; gate blocks follow torch's order.
    """

    recurrent: ClassVar[bool] = True
    gates: ClassVar[int] = 1

    @property
    def state_size(self) -> int:
        return self.hidden_size

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        i, h, o = self.input_size, self.hidden_size, self.output_size
        gh = self.gates * h
        return {"weight_ih": (i, gh), "weight_hh": (h, gh), "bias_ih": (gh,), "bias_hh": (gh,),
                "readout_weight": (h, o), "readout_bias": (o,)}

    def init_member(self, generator: torch.Generator) -> dict[str, Tensor]:
        bound = fan_in_bound(self.hidden_size)
        return {name: uniform(shape, bound, generator)
                for name, shape in self.parameter_shapes().items()}

    @abstractmethod
    def cell(self, h: Tensor, u: Tensor) -> Tensor:
        """Next state from ``h [G, B, state]`` and projected input ``u [G, B, gH]``."""

    def project_inputs(self, x: Tensor) -> Tensor:
        """``x [B,T,I]`` or ``[G,B,T,I]`` → ``W_ih x + b_ih`` as ``[T, G, B, gH]``."""
        x, shared = self._input_batch(x)
        x = x.to(self.weight_ih.dtype)
        pattern = "bti,gij->tgbj" if shared else "gbti,gij->tgbj"
        return torch.einsum(pattern, x, self.weight_ih) + self.bias_ih[None, :, None, :]

    def recurrent_input(self, h: Tensor) -> Tensor:
        """``W_hh h + b_hh`` for ``h [G, B, H]``, one batched matmul."""
        return torch.baddbmm(self.bias_hh.unsqueeze(1), h, self.weight_hh)

    def initial_state(self, batch_size: int) -> Tensor:
        """Zero state ``[G, B, state]``."""
        return self.weight_hh.new_zeros(self.num_members, batch_size, self.state_size)

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        """One step for all members: ``h [G,B,state]``, ``x [B,I]`` (shared) or ``[G,B,I]``."""
        u = self.project_inputs(x.unsqueeze(-2))[0]
        return self.cell(h, u)

    def readout(self, h: Tensor) -> Tensor:
        """Outputs ``[G, ..., O]`` from states ``h [G, ..., state]`` (hidden units only)."""
        units = h[..., : self.hidden_size]
        flat = units.reshape(self.num_members, -1, self.hidden_size)
        out = torch.baddbmm(self.readout_bias.unsqueeze(1), flat, self.readout_weight)
        return out.reshape(*units.shape[:-1], self.output_size)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u = self.project_inputs(x)
        h = self.initial_state(u.shape[2])
        states = []
        for u_t in u:
            h = self.cell(h, u_t)
            states.append(h)
        hidden = torch.stack(states, dim=2)
        return self.readout(hidden), hidden
