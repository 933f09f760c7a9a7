"""Copy after a delay: reproduce each input channel ``delay`` steps later."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dynamo_lightning.tasks.base import OutputKind, Split, Task, new_generator


class CopyDelay(Task):
    """Sparse random pulses in; the same pulses out, ``delay`` steps later.

    ``x [B, T, C]`` holds pulses of amplitude U(-1, 1) that occur with probability
    ``pulse_prob`` per step and channel (0 elsewhere); the target is
    ``y[:, t] = x[:, t - delay]`` for ``t >= delay`` and 0 before. Solving it needs a memory
    of the last ``delay`` inputs, i.e. a delay line in the network's dynamics.

    Args:
        n_channels: input and output size C.
        delay: steps between an input and its copy (1 <= delay < seq_len).
        seq_len: trial length T.
        pulse_prob: probability of a pulse per step and channel, in (0, 1].
    """

    output_kind: ClassVar[OutputKind] = "regression"
    metric_name: ClassVar[str] = "mse"
    higher_is_better: ClassVar[bool] = False

    def __init__(self, n_channels: int = 1, delay: int = 5, seq_len: int = 40,
                 pulse_prob: float = 0.2) -> None:
        if n_channels < 1 or not 1 <= delay < seq_len or not 0.0 < pulse_prob <= 1.0:
            raise ValueError(
                "CopyDelay: need n_channels >= 1, 1 <= delay < seq_len and 0 < pulse_prob <= 1; "
                f"got n_channels={n_channels}, delay={delay}, seq_len={seq_len}, "
                f"pulse_prob={pulse_prob}")
        super().__init__(n_channels=n_channels, delay=delay, seq_len=seq_len,
                         pulse_prob=pulse_prob)
        self.input_size = self.output_size = n_channels
        self.seq_len = seq_len
        self.delay = delay
        self.pulse_prob = pulse_prob

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               split: Split = "train") -> tuple[Tensor, Tensor]:
        g = new_generator(generator)
        shape = (batch_size, self.seq_len, self.input_size)
        pulses = torch.rand(shape, generator=g) < self.pulse_prob
        x = torch.where(pulses, torch.rand(shape, generator=g) * 2 - 1, 0.0)
        y = torch.zeros_like(x)
        y[:, self.delay :] = x[:, : -self.delay]
        return x, y

    def loss(self, outputs: Tensor, targets: Tensor, task_ids: Tensor | None = None) -> Tensor:
        """MSE of ``outputs [B, T, C]`` against the delayed copy ``targets [B, T, C]``."""
        if outputs.shape != targets.shape:
            raise ValueError(f"CopyDelay: outputs {tuple(outputs.shape)} must match targets "
                             f"{tuple(targets.shape)} [batch, time, n_channels]")
        return F.mse_loss(outputs, targets.to(outputs.dtype))

    def metric(self, outputs: Tensor, targets: Tensor, task_ids: Tensor | None = None) -> float:
        """Mean squared error (lower is better)."""
        return float(self.loss(outputs.detach(), targets))
