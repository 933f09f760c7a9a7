"""``lowrank``: recurrent weights ``W(θ) = W₀ + Σ_i θ_i U_i V_iᵀ``.

θ moves the recurrent connectivity itself along d low-rank directions, the form low-rank
RNN theory (Mastrogiuseppe & Ostojic 2018) ties to changes in the dynamics' geometry. With
``W = weight_hhᵀ [H, gH]`` (so ``gh = h W``), ``U_i [H, rank]`` and ``V_i [gH, rank]``::

    h W(θ) = h W₀ + Σ_i θ_i (h U_i) V_iᵀ

is evaluated right to left, never materialising a ``[B, H, gH]`` weight per sample: two
small einsums, ``O(B·H·d·rank + B·d·rank·gH)`` extra work per step. In torch's layout the
conditioned weight is ``weight_hh(θ) = weight_hh + Σ_i θ_i V_i U_iᵀ``. The input weights do
not depend on θ.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from dynamo_lightning.checks import positive_int, positive_real
from dynamo_lightning.meta.conditionings.base import (
    LoopConditioning,
)
from dynamo_lightning.meta.conditionings.registry import register


@register("lowrank")
class LowRank(LoopConditioning):
    """Recurrent weights shifted by θ along learned low-rank directions.

    Parameters ``U [d, H, rank]`` and ``V [d, gH, rank]`` start small: entries
    ``N(0, σ²)`` with ``σ² = init_scale / √(rank·H)``, so each ``U_i V_iᵀ`` has entries of
    standard deviation ``init_scale/√H``, i.e. ``init_scale`` times the scale of ``W₀``.

    Args:
        rank: rank of each ``U_i V_iᵀ`` (default 1).
        init_scale: size of the θ-dependent part relative to ``W₀`` at init (default 0.1).
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, embedding_dim: int,
                 rank: int = 1, init_scale: float = 0.1) -> None:
        super().__init__(cell, input_size, hidden_size, embedding_dim)
        self.rank = positive_int("rank", rank, "lowrank conditioning")
        self.init_scale = positive_real("init_scale", init_scale, "lowrank conditioning")
        std = math.sqrt(self.init_scale / math.sqrt(rank * hidden_size))
        self.U = nn.Parameter(torch.randn(embedding_dim, hidden_size, rank) * std)
        self.V = nn.Parameter(torch.randn(embedding_dim, self.gate_size, rank) * std)

    def options(self) -> dict[str, Any]:
        return {"rank": self.rank, "init_scale": self.init_scale}

    def recurrent_gates(self, h: Tensor, theta: Tensor) -> Tensor:
        """``h W(θ) + b_hh`` as ``[B, gH]`` for ``h [B, H]``, ``theta [B, d]``."""
        projected = torch.einsum("bh,dhr->bdr", h, self.U) * theta[:, :, None].to(h.dtype)
        shift = torch.einsum("bdr,dgr->bg", projected, self.V)
        return super().recurrent_gates(h, theta) + shift

    def weight_hh_at(self, theta: Tensor) -> Tensor:
        """The explicit conditioned weights ``weight_hh(θ) [..., gH, H]`` for ``theta [..., d]``.

        For checks and analysis only: the forward never builds them.
        """
        delta = torch.einsum("...d,dgr,dhr->...gh", theta, self.V, self.U)
        return self.weight_hh + delta
