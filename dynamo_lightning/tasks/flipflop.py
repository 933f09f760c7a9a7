"""K-bit flip-flop (Sussillo & Barak 2013): a memory task whose solution has 2^K fixed points.

Each of K input channels receives sparse +1/−1 pulses; the matching output must hold the sign
of the most recent pulse on its channel until the next one. A trained RNN stores each bit in
a stable fixed point, which is why this is the canonical task for fixed-point analysis.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dynamo_lightning.checks import fraction, positive_int
from dynamo_lightning.tasks.base import Split, Task, new_generator
from dynamo_lightning.tasks.registry import register
from dynamo_lightning.tasks.scoring import check_same_shape, sign_accuracy

_LAYOUT = "[batch, time, n_bits]"


@register("flipflop")
class FlipFlop(Task):
    """K-bit flip-flop.

    Inputs ``x [batch, time, n_bits]``: at every step each channel independently gets a pulse
    of +1 or −1 (equally likely) with probability ``pulse_prob``, else 0. Targets
    ``y [batch, time, n_bits]``: the sign of the most recent pulse on that channel, including
    the current step, and 0 before the channel's first pulse. Entries with target 0 carry no
    information (nothing to remember yet), so the loss and the metric ignore them.

    Args:
        n_bits: number of independent bits K (input and output size).
        seq_len: number of time steps T.
        pulse_prob: probability of a pulse per channel and step, in (0, 1).

    Raises:
        ValueError: an argument out of range; the message names it and its value.

    Example::

        task = FlipFlop(n_bits=3)
        x, y = task.sample(16, torch.Generator().manual_seed(0))  # [16, 64, 3] each
    """

    output_kind = "regression"
    metric_name = "bit_accuracy"

    def __init__(self, n_bits: int = 3, seq_len: int = 64, pulse_prob: float = 0.05) -> None:
        n_bits = positive_int("n_bits", n_bits)
        seq_len = positive_int("seq_len", seq_len)
        pulse_prob = fraction("pulse_prob", pulse_prob)
        super().__init__(n_bits=n_bits, seq_len=seq_len, pulse_prob=pulse_prob)
        self.n_bits = n_bits
        self.pulse_prob = pulse_prob
        self.input_size = n_bits
        self.output_size = n_bits
        self.seq_len = seq_len

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, split: Split = "train"
    ) -> tuple[Tensor, Tensor]:
        """Fresh trials (``split`` is ignored): ``x`` and ``y``, both ``[batch, time, n_bits]``."""
        g = new_generator(generator)
        shape = (batch_size, self.seq_len, self.n_bits)
        pulse = torch.rand(shape, generator=g) < self.pulse_prob
        sign = torch.where(torch.rand(shape, generator=g) < 0.5, 1.0, -1.0)
        x = torch.where(pulse, sign, 0.0).to(torch.float32)
        return x, flipflop_targets(x)

    def loss(self, outputs: Tensor, targets: Tensor, task_ids: Tensor | None = None) -> Tensor:
        """MSE over the entries whose target is nonzero (a bit has been set); 0 when none is.

        Written with a multiplicative mask, not ``outputs[mask]``: fixed shapes and no
        host-device sync, so the population's step can be captured as a CUDA graph.
        """
        check_same_shape(outputs, targets, _LAYOUT)
        mask = (targets != 0).to(outputs.dtype)
        error = (outputs - targets.to(outputs.dtype)).pow(2) * mask
        return error.sum() / mask.sum().clamp(min=1.0)

    @torch.no_grad()
    def metric(self, outputs: Tensor, targets: Tensor, task_ids: Tensor | None = None) -> float:
        """Fraction of set ``(trial, time, bit)`` entries where ``sign(output) == target``.

        Returns NaN when no entry is set (no pulse at all in the batch).
        """
        check_same_shape(outputs, targets, _LAYOUT)
        mask = targets != 0
        if not bool(mask.any()):
            return math.nan
        return sign_accuracy(outputs[mask], targets[mask])


def flipflop_targets(inputs: Tensor) -> Tensor:
    """The flip-flop targets of pulse inputs.

    Args:
        inputs: ``[batch, time, bits]``; nonzero entries are pulses, read by their sign.

    Returns:
        ``[batch, time, bits]`` float32: sign of the latest pulse at or before each step,
        0 before a channel's first pulse.
    """
    pulse = inputs != 0
    steps = torch.arange(inputs.shape[1], device=inputs.device).view(1, -1, 1)
    # Index of the latest pulse so far (−1 while none): running max of the pulse times.
    last = torch.where(pulse, steps, -1).cummax(dim=1).values
    held = torch.sign(inputs.float()).gather(1, last.clamp(min=0))
    return torch.where(last >= 0, held, 0.0).to(torch.float32)

