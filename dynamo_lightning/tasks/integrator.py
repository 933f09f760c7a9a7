"""Noisy evidence accumulation: the output is the running (leaky, bounded) sum of the input.

Integrating a scalar needs a continuum of marginally stable states, a line attractor (one
per channel), or, with a leak, a single slow fixed point. That makes this task the foil to
the flip-flop's discrete attractors when DYNAMO maps populations trained on different tasks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral, Real

import torch
import torch.nn.functional as F
from torch import Tensor

from dynamo_lightning.tasks import register
from dynamo_lightning.tasks.base import Split, Task, new_generator


@register("integrator")
class Integrator(Task):
    """Leaky, bounded integration of noisy evidence.

    Each trial draws one constant drift per channel, ``mu ~ U(-bound, bound) / seq_len``, so
    that the noiseless integral ends anywhere in ``[-bound, bound]``. Inputs are
    ``x_t = mu + noise · N(0, 1)`` and targets are the running integral of the input itself,

        ``y_t = clip((1 - leak) · y_{t-1} + x_t, -bound, bound)``,  ``y_{-1} = 0``,

    a deterministic function of the input, so a perfect network exists. The noise part of the
    integral has standard deviation ``noise · sqrt(t)`` (0.8 at t = 64 with the defaults), so
    with the defaults about 5% of target entries sit at the bound.

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
    metric_name = "r2"

    def __init__(self, n_channels: int = 1, seq_len: int = 64, noise: float = 0.1,
                 leak: float = 0.0, bound: float = 1.0) -> None:
        n_channels = _positive_int("n_channels", n_channels)
        seq_len = _positive_int("seq_len", seq_len)
        noise = _real("noise", noise, lambda v: v >= 0, ">= 0")
        leak = _real("leak", leak, lambda v: 0 <= v < 1, "in [0, 1)")
        bound = _real("bound", bound, lambda v: v > 0, "> 0")
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

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """MSE over all entries."""
        _check_same_shape(outputs, targets)
        return F.mse_loss(outputs, targets.to(outputs.dtype))

    @torch.no_grad()
    def metric(self, outputs: Tensor, targets: Tensor) -> float:
        """Coefficient of determination over all entries (1 is perfect; can be negative)."""
        _check_same_shape(outputs, targets)
        return r2_score(outputs, targets)


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


def r2_score(outputs: Tensor, targets: Tensor) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` over all entries, pooled.

    Pooling (rather than averaging per channel) keeps the score defined for channels that are
    constant in a batch. Constant targets give 1.0 if matched exactly, else 0.0 (as
    scikit-learn's ``force_finite``).
    """
    y = targets.detach().double().flatten()
    p = outputs.detach().double().flatten().to(y.device)
    ss_res = ((y - p) ** 2).sum()
    ss_tot = ((y - y.mean()) ** 2).sum()
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return (1.0 - ss_res / ss_tot).item()


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _real(name: str, value: object, ok: Callable[[float], bool], valid: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value)
            or not ok(value)):
        raise ValueError(f"{name} must be a finite number {valid}, got {value!r}")
    return float(value)


def _check_same_shape(outputs: Tensor, targets: Tensor) -> None:
    if outputs.shape != targets.shape:
        raise ValueError(
            f"outputs {tuple(outputs.shape)} must match targets {tuple(targets.shape)} "
            "[batch, time, output]"
        )
