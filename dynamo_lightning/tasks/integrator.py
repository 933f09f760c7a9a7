"""Noisy evidence accumulation: the output is the running (leaky, bounded) sum of the input.

Integrating a scalar needs a continuum of marginally stable states, a line attractor (one
per channel), or, with a leak, a single slow fixed point. That makes this task the foil to
the flip-flop's discrete attractors when DYNAMO maps populations trained on different tasks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dynamo_lightning.checks import finite_real, positive_int
from dynamo_lightning.tasks.base import Split, Task, new_generator
from dynamo_lightning.tasks.registry import register
from dynamo_lightning.tasks.scoring import EveryEntryRegression


@register("integrator")
class Integrator(EveryEntryRegression, Task):
    """Leaky, bounded integration of noisy evidence.

    Each trial draws one constant drift per channel, ``mu ~ U(-bound, bound) / seq_len``, so
    that the noiseless integral ends anywhere in ``[-bound, bound]``. Inputs are
    ``x_t = mu + noise · N(0, 1)`` and targets are the running integral of the input itself,

        ``y_t = clip((1 - leak) · y_{t-1} + x_t, -bound, bound)``,  ``y_{-1} = 0``,

    a deterministic function of the input, so a perfect network exists. The noise part of the
    integral has standard deviation ``noise · sqrt(t)`` (0.8 at t = 64 with the defaults), so
    with the defaults about 5% of target entries sit at the bound.
    The loss (MSE) and the metric (pooled R², ``r2``) use every entry; see
    ``checks.EveryEntryRegression``.

    Args:
        n_channels: number of independent channels (input and output size).
        seq_len: number of time steps T.
        noise: standard deviation of the per-step input noise, >= 0.
        leak: per-step multiplicative decay of the integral, in [0, 1); 0 is a perfect
            integrator.
        bound: the integral saturates at ``±bound``, > 0.

    Raises:
        ValueError: an argument out of range; the message names it and its value.
    """

    output_kind = "regression"

    def __init__(self, n_channels: int = 1, seq_len: int = 64, noise: float = 0.1,
                 leak: float = 0.0, bound: float = 1.0) -> None:
        n_channels = positive_int("n_channels", n_channels)
        seq_len = positive_int("seq_len", seq_len)
        noise = finite_real("noise", noise, lambda v: v >= 0, ">= 0")
        leak = finite_real("leak", leak, lambda v: 0 <= v < 1, "in [0, 1)")
        bound = finite_real("bound", bound, lambda v: v > 0, "> 0")
        super().__init__(n_channels=n_channels, seq_len=seq_len, noise=noise, leak=leak,
                         bound=bound)
        self.n_channels = n_channels
        self.noise = noise
        self.leak = leak
        self.bound = bound
        self.input_size = n_channels
        self.output_size = n_channels
        self.seq_len = seq_len

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, split: Split = "train"
    ) -> tuple[Tensor, Tensor]:
        """Fresh trials (``split`` is ignored): ``x``, ``y`` both ``[batch, time, n_channels]``."""
        g = new_generator(generator)
        unit = torch.rand(batch_size, 1, self.n_channels, generator=g) * 2 - 1
        drift = unit * (self.bound / self.seq_len)
        shape = (batch_size, self.seq_len, self.n_channels)
        x = (drift + self.noise * torch.randn(shape, generator=g)).to(torch.float32)
        return x, integrate(x, self.leak, self.bound)


def integrate(inputs: Tensor, leak: float = 0.0, bound: float = math.inf) -> Tensor:
    """Leaky, bounded running sum over time.

    Args:
        inputs: ``[batch, time, channels]``.
        leak: per-step decay in [0, 1).
        bound: saturation level.

    Returns:
        ``[batch, time, channels]``: ``y_t = clip((1 - leak) y_{t-1} + x_t, ±bound)``.
    """
    y = torch.zeros_like(inputs[:, 0])
    out = []
    for t in range(inputs.shape[1]):  # the clip makes it sequential; T is small
        y = ((1.0 - leak) * y + inputs[:, t]).clamp(-bound, bound)
        out.append(y)
    return torch.stack(out, dim=1)

