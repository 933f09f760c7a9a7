"""A feed-forward plugin: a stacked tanh MLP on the whole input, one stage per layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from dynamo_lightning.population.architectures import Architecture
from dynamo_lightning.population.architectures.base import fan_in_bound, uniform


class TanhMLP(Architecture):
    """``a_0 = x`` flattened, ``a_l = tanh(W_l a_{l-1} + b_l)``, logits linear in the last.

    Feed-forward (``recurrent = False``): each layer's activations are one stage of the
    hidden trajectory, ``hidden [G, B, n_layers, hidden_size]``, and there is one output
    ``[G, B, 1, O]``. It reads ``x [B, seq_len, I]`` whole, like the CNN reads an image.

    Options:
        n_layers: hidden layers (default 2).
        seq_len: rows T of the inputs (default 8, the digits' 8 × 8 images).
    """

    recurrent: ClassVar[bool] = False

    def __init__(self, input_size: int, output_size: int, hidden_size: int, num_members: int = 1,
                 seeds: Sequence[int] | None = None, n_layers: int = 2, seq_len: int = 8) -> None:
        if n_layers < 1 or seq_len < 1:
            raise ValueError(f"TanhMLP: n_layers and seq_len must be >= 1, got n_layers="
                             f"{n_layers}, seq_len={seq_len}")
        super().__init__(input_size, output_size, hidden_size, num_members, seeds,
                         n_layers=int(n_layers), seq_len=int(seq_len))

    @property
    def state_size(self) -> int:
        return self.hidden_size

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        h, shapes = self.hidden_size, {}
        for layer in range(self.options["n_layers"]):
            fan_in = self.options["seq_len"] * self.input_size if layer == 0 else h
            shapes[f"layer{layer}_weight"] = (fan_in, h)
            shapes[f"layer{layer}_bias"] = (h,)
        shapes["readout_weight"] = (h, self.output_size)
        shapes["readout_bias"] = (self.output_size,)
        return shapes

    def init_member(self, generator: torch.Generator) -> dict[str, Tensor]:
        shapes = self.parameter_shapes()
        fan_in = {name: shapes[name.replace("_bias", "_weight")][0] for name in shapes}
        return {name: uniform(shape, fan_in_bound(fan_in[name]), generator)
                for name, shape in shapes.items()}

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x, shared = self._input_batch(x)
        flat = x.flatten(-2).to(self.readout_weight.dtype)  # [B, T·I] or [G, B, T·I]
        a = flat.expand(self.num_members, -1, -1) if shared else flat
        stages = []
        for layer in range(self.options["n_layers"]):
            weight = getattr(self, f"layer{layer}_weight")
            bias = getattr(self, f"layer{layer}_bias")
            a = torch.tanh(torch.baddbmm(bias.unsqueeze(1), a, weight))
            stages.append(a)
        outputs = torch.baddbmm(self.readout_bias.unsqueeze(1), a, self.readout_weight)
        return outputs.unsqueeze(2), torch.stack(stages, dim=2)
