"""A small CNN, stacked with grouped convolutions; "time" is depth.

Inputs keep the population convention ``x [B, T, I]``: the CNN reads it as a one-channel
``T × I`` image (the ``digits`` task's 8×8 images). Each of the ``n_layers`` stages is a
``kernel_size`` convolution with ``hidden_size`` channels and ReLU; its activation map,
average-pooled to ``pool_size × pool_size``, is that stage's hidden state, so every stage has
the same size ``hidden_size · pool_size²``. The readout is linear in the last stage's state.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dynamo_lightning.population.architectures.base import Architecture, fan_in_bound, uniform
from dynamo_lightning.population.architectures.registry import register_architecture


@register_architecture("cnn")
class CNN(Architecture):
    """Stacked convolutional network: G members run as one grouped convolution per layer.

    Options:
        n_layers: number of convolutional stages (default 3).
        kernel_size: odd convolution size (default 3).
        pool_size: side of the pooled map that forms a stage's hidden state (default 2).
    """

    recurrent: ClassVar[bool] = False

    def __init__(self, input_size: int, output_size: int, hidden_size: int, num_members: int = 1,
                 seeds: Any = None, n_layers: int = 3, kernel_size: int = 3,
                 pool_size: int = 2) -> None:
        if n_layers < 1 or kernel_size < 1 or kernel_size % 2 == 0 or pool_size < 1:
            raise ValueError("CNN: need n_layers >= 1, odd kernel_size >= 1, pool_size >= 1; "
                             f"got n_layers={n_layers}, kernel_size={kernel_size}, "
                             f"pool_size={pool_size}")
        super().__init__(input_size, output_size, hidden_size, num_members, seeds,
                         n_layers=n_layers, kernel_size=kernel_size, pool_size=pool_size)

    @property
    def state_size(self) -> int:
        return self.hidden_size * self.options["pool_size"] ** 2

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        c, k = self.hidden_size, self.options["kernel_size"]
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(self.options["n_layers"]):
            shapes[f"conv{layer}_weight"] = (c, 1 if layer == 0 else c, k, k)
            shapes[f"conv{layer}_bias"] = (c,)
        shapes["readout_weight"] = (self.state_size, self.output_size)
        shapes["readout_bias"] = (self.output_size,)
        return shapes

    def init_member(self, generator: torch.Generator) -> dict[str, Tensor]:
        params = {}
        for name, shape in self.parameter_shapes().items():
            fan_in = self.state_size if name.startswith("readout") else _conv_fan_in(
                self.parameter_shapes()[name.replace("_bias", "_weight")])
            params[name] = uniform(shape, fan_in_bound(fan_in), generator)
        return params

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x, shared = self._input_batch(x)
        g, c, p = self.num_members, self.hidden_size, self.options["pool_size"]
        x = x.to(self.readout_weight.dtype)
        # [B, G, T, I]: member g's image in channel group g.
        a = x.unsqueeze(1).expand(-1, g, -1, -1) if shared else x.transpose(0, 1)
        batch = a.shape[0]
        stages = []
        for layer in range(self.options["n_layers"]):
            weight = getattr(self, f"conv{layer}_weight")
            bias = getattr(self, f"conv{layer}_bias")
            a = F.relu(F.conv2d(a, weight.flatten(0, 1), bias.flatten(),
                                padding=self.options["kernel_size"] // 2, groups=g))
            pooled = F.adaptive_avg_pool2d(a, p).reshape(batch, g, c * p * p)
            stages.append(pooled.transpose(0, 1))
        hidden = torch.stack(stages, dim=2)  # [G, B, S, C·p²]
        last = hidden[:, :, -1]
        outputs = torch.baddbmm(self.readout_bias.unsqueeze(1), last, self.readout_weight)
        return outputs.unsqueeze(2), hidden


def _conv_fan_in(shape: tuple[int, ...]) -> int:
    return shape[1] * shape[2] * shape[3]
