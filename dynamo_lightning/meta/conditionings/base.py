"""The conditioning plugin interface: how θ enters the meta-RNN's recurrence.

Division of labour: ``MetaRNN`` owns the cell type (``gru | lstm | vanilla``), the learned
initial state ``H̃₀(θ)`` and the readout; a conditioning owns the recurrent weights and
decides how θ enters them. Every conditioning provides a sequence ``forward`` and a single
``step`` built from the *same* parameters, so that ``step`` iterated from the initial state
reproduces ``forward`` to float tolerance (fixed points and Jacobians are computed on
``step``).

Two bases:

- ``Conditioning``: implement ``forward`` and ``step`` yourself (e.g. ``concat``, which
  hands the whole sequence to a fused ``torch.nn`` RNN).
- ``LoopConditioning``: a step loop over the shared cell equations; override any of
  ``input_gates``, ``recurrent_gates`` and ``modulation`` (``film``, ``lowrank``). ``forward``
  and ``step`` then share one code path by construction.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynamo_lightning.meta import cells


class Conditioning(nn.Module, ABC):
    """A plugin deciding how the embedding θ enters the recurrence.

    Constructed by ``MetaRNN`` as ``cls(cell=..., input_size=..., hidden_size=...,
    embedding_dim=..., **options)``; options must be JSON-serialisable keywords and are
    reported back by ``options()`` so checkpoints can rebuild the meta-model.

    Args:
        cell: ``"gru" | "lstm" | "vanilla"``.
        input_size: I, size of one input step (θ not included).
        hidden_size: H, hidden units (the LSTM state is ``[h, c]``, 2H).
        embedding_dim: d, size of θ.
    """

    registered_name: ClassVar[str] = ""

    def __init__(self, cell: str, input_size: int, hidden_size: int,
                 embedding_dim: int) -> None:
        super().__init__()
        self.cell = cells.check_cell(cell)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.embedding_dim = embedding_dim

    @property
    def gate_size(self) -> int:
        """``gates·H``: width of the gate pre-activations."""
        return cells.GATES[self.cell] * self.hidden_size

    @property
    def state_size(self) -> int:
        """Size of the full state (``2·H`` for LSTM)."""
        return cells.state_size(self.cell, self.hidden_size)

    def options(self) -> dict[str, Any]:
        """The conditioning's own constructor options, defaults resolved (JSON-serialisable)."""
        return {}

    @abstractmethod
    def forward(self, x: Tensor, theta: Tensor, state: Tensor) -> Tensor:
        """Run the recurrence over a sequence.

        Args:
            x: inputs ``[B, T, I]``.
            theta: embeddings ``[B, d]``.
            state: initial state ``[B, state]``.

        Returns:
            The full state after every step, ``[B, T, state]``.
        """

    @abstractmethod
    def step(self, state: Tensor, x: Tensor, theta: Tensor) -> Tensor:
        """One step: ``state [B, state]``, ``x [B, I]``, ``theta [B, d]`` → ``[B, state]``."""


class LoopConditioning(Conditioning):
    """A conditioning run as an explicit step loop over ``cells.cell_update``.

    Holds torch-layout weights ``weight_ih [gH, I]``, ``weight_hh [gH, H]``, ``bias_ih``,
    ``bias_hh [gH]`` initialised like ``torch.nn.GRU`` (uniform ±1/√H). Input projections of
    all time steps are one matmul; the loop only does the recurrent part. Subclasses change
    how θ enters by overriding the three hooks below.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int,
                 embedding_dim: int) -> None:
        super().__init__(cell, input_size, hidden_size, embedding_dim)
        bound = 1.0 / math.sqrt(hidden_size)
        gh = self.gate_size
        self.weight_ih = nn.Parameter(torch.empty(gh, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(gh, hidden_size).uniform_(-bound, bound))
        self.bias_ih = nn.Parameter(torch.empty(gh).uniform_(-bound, bound))
        self.bias_hh = nn.Parameter(torch.empty(gh).uniform_(-bound, bound))

    def input_gates(self, x: Tensor, theta: Tensor) -> Tensor:
        """Input contribution ``[B, T, gH]`` for ``x [B, T, I]``, ``theta [B, d]``."""
        return F.linear(x, self.weight_ih, self.bias_ih)

    def recurrent_gates(self, h: Tensor, theta: Tensor) -> Tensor:
        """Recurrent contribution ``[B, gH]`` for hidden units ``h [B, H]``."""
        return F.linear(h, self.weight_hh, self.bias_hh)

    def modulation(self, theta: Tensor) -> tuple[Tensor, Tensor] | None:
        """Optional per-unit gain and bias ``([B, gH], [B, gH])`` on the pre-activations."""
        return None

    def _update(self, state: Tensor, gx: Tensor, theta: Tensor,
                film: tuple[Tensor, Tensor] | None) -> Tensor:
        gh = self.recurrent_gates(cells.hidden_units(self.cell, state, self.hidden_size), theta)
        gamma, beta = film if film is not None else (None, None)
        return cells.cell_update(self.cell, state, gx, gh, gamma, beta)

    def forward(self, x: Tensor, theta: Tensor, state: Tensor) -> Tensor:
        gx = self.input_gates(x, theta)
        film = self.modulation(theta)
        states = []
        for t in range(gx.shape[1]):
            state = self._update(state, gx[:, t], theta, film)
            states.append(state)
        return torch.stack(states, dim=1)

    def step(self, state: Tensor, x: Tensor, theta: Tensor) -> Tensor:
        gx = self.input_gates(x.unsqueeze(1), theta)[:, 0]
        return self._update(state, gx, theta, self.modulation(theta))


