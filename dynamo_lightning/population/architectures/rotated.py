"""Vanilla tanh RNN whose state is written in a rotated basis, stacked.

An orthogonal change of basis ``s = h Q`` of a tanh RNN is not a tanh RNN in the new
coordinates (the tanh acts unit-wise on ``h``, not on ``s``), so no ``vanilla`` member can
hold it. This architecture can: it carries the basis ``Q`` as an extra per-member parameter
and runs the vanilla cell in the original coordinates. It exists so that a rotated copy of a
network (``analysis.rotated_copy``) can join a population and test that the DYNAMO map is
blind to reparameterisation. It is not listed among the architectures to choose from
(``architectures.names()``), but loads wherever a population holds one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dynamo_lightning.population.architectures.registry import register_architecture
from dynamo_lightning.population.architectures.vanilla import VanillaRNN


@register_architecture("vanilla_rotated", listed=False)
class RotatedVanillaRNN(VanillaRNN):
    """Vanilla cell in rotated coordinates: ``h = s Qᵀ``, ``s' = tanh(u + h W_hh + b_hh) Q``.

    Row-vector convention (states are rows, ``u = x W_ih + b_ih``); the readout is
    ``y = (s Qᵀ) W_o + b_o``. Per-member parameters are the vanilla ones plus ``basis [H, H]``
    (Q), which must be orthogonal: its transpose is used as its inverse. The state, the
    trajectory and ``step`` all live in the rotated coordinates ``s``.
    A fresh member draws the vanilla initialisation from its generator and takes ``Q = I``,
    so it equals the ``vanilla`` member of the same seed.
    """

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        size = self.hidden_size
        return {**super().parameter_shapes(), "basis": (size, size)}

    def init_member(self, generator: torch.Generator) -> dict[str, Tensor]:
        # The vanilla parameters come first in parameter_shapes(), so they are drawn exactly
        # as for a vanilla member of the same seed; the draw for the basis is replaced.
        params = super().init_member(generator)
        params["basis"] = torch.eye(self.hidden_size)
        return params

    def unrotate(self, s: Tensor) -> Tensor:
        """Hidden units ``h = s Qᵀ`` of rotated states ``s [G, B, H]`` (one bmm)."""
        return torch.bmm(s, self.basis.transpose(1, 2))

    def cell(self, h: Tensor, u: Tensor) -> Tensor:
        units = torch.tanh(u + self.recurrent_input(self.unrotate(h)))
        return torch.bmm(units, self.basis)

    def readout(self, h: Tensor) -> Tensor:
        """Outputs ``[G, ..., O]`` from rotated states ``h [G, ..., H]``."""
        flat = h.reshape(self.num_members, -1, self.hidden_size)
        out = super().readout(self.unrotate(flat))
        return out.reshape(*h.shape[:-1], self.output_size)
