"""A leaky (continuous-time style) tanh RNN, stacked over members."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dynamo_lightning.population.architectures import RecurrentArchitecture


class LeakyTanhRNN(RecurrentArchitecture):
    """``h' = (1 - α) h + α tanh(W_ih x + b_ih + W_hh h + b_hh)``.

    The Euler discretisation of ``τ dh/dt = -h + tanh(...)`` with ``α = dt / τ``; ``α = 1``
    is the vanilla tanh RNN. Slow leaks (small ``α``) give long memory without gates.

    Options:
        alpha: leak rate in (0, 1] (default 0.2).
    """

    gates = 1

    def __init__(self, input_size: int, output_size: int, hidden_size: int, num_members: int = 1,
                 seeds: Sequence[int] | None = None, alpha: float = 0.2) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"LeakyTanhRNN: alpha must be in (0, 1], got {alpha!r}")
        super().__init__(input_size, output_size, hidden_size, num_members, seeds,
                         alpha=float(alpha))

    def cell(self, h: Tensor, u: Tensor) -> Tensor:
        return torch.lerp(h, torch.tanh(u + self.recurrent_input(h)), self.options["alpha"])
