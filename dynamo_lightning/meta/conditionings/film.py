"""``film``: θ → per-unit gain γ(θ) and bias β(θ) on the gate pre-activations.

Feature-wise linear modulation (Perez et al. 2018) of the recurrence: every gate's
pre-activation ``a`` is replaced by ``γ(θ) ⊙ a + β(θ)`` just before its nonlinearity. For
GRU this is, exactly (``x_* = W_i* x + b_i*``, ``h_* = W_h* h + b_h*``)::

    r  = σ(γ_r ⊙ (x_r + h_r) + β_r)
    z  = σ(γ_z ⊙ (x_z + h_z) + β_z)
    n  = tanh(γ_n ⊙ (x_n + r ⊙ h_n) + β_n)
    h' = (1 − z) ⊙ n + z ⊙ h

For LSTM all four pre-activations ``i, f, g, o`` are modulated; for vanilla,
``h' = tanh(γ ⊙ (x + h) + β)``. A gain scales each unit's effective input and recurrent
weights together, so θ can move the dynamics between regimes (e.g. contracting vs.
expanding), which a pure additive bias cannot.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from dynamo_lightning.checks import positive_real
from dynamo_lightning.meta.conditionings.base import LoopConditioning
from dynamo_lightning.meta.conditionings.registry import register


@register("film")
class FiLM(LoopConditioning):
    """Gain and bias from one linear map of θ: ``[γ − 1, β] = W_film θ + b_film``.

    ``b_film`` starts at 0 and ``W_film`` at ``N(0, init_scale²/d)``, so at initialisation
    ``γ ≈ 1`` and ``β ≈ 0`` (exactly at θ = 0): the cell starts as an ordinary RNN and θ's
    influence grows as training needs it.

    Args:
        init_scale: standard deviation of ``W_film θ`` for ``‖θ‖ ≈ √d`` at init (default 0.1).
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, embedding_dim: int,
                 init_scale: float = 0.1) -> None:
        super().__init__(cell, input_size, hidden_size, embedding_dim)
        self.init_scale = positive_real("init_scale", init_scale, "film conditioning")
        self.film = nn.Linear(embedding_dim, 2 * self.gate_size)
        with torch.no_grad():
            self.film.weight.normal_(0.0, self.init_scale / math.sqrt(embedding_dim))
            self.film.bias.zero_()

    def options(self) -> dict[str, Any]:
        return {"init_scale": self.init_scale}

    def modulation(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """``(γ, β)``, each ``[B, gH]``, for ``theta [B, d]``."""
        gain, bias = self.film(theta).chunk(2, dim=-1)
        return gain + 1.0, bias
