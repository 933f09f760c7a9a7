"""Input-cued sine generation (Sussillo & Barak 2013): a static level selects a frequency.

The network must turn a constant input into an oscillation whose frequency depends on that
input, so each input level needs its own limit cycle (or slow oscillatory fixed point). The
family of cycles, indexed by the input, is the structure DYNAMO maps across members.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch
import torch.nn.functional as F
from torch import Tensor

from dynamo_lightning.tasks import register
from dynamo_lightning.tasks.base import Split, Task, new_generator
from dynamo_lightning.tasks.integrator import r2_score


@register("sine")
class Sine(Task):
    """Generate ``sin(2π f t)`` with ``f`` cued by a constant input level.

    Frequencies are in **cycles per step**: ``f_j`` for ``j = 0 .. n_frequencies - 1`` are
    evenly spaced in ``[min_freq, max_freq]`` (the defaults give 1.3 to 6.4 cycles in 64
    steps). Trial ``j`` has the constant input ``x_t = j / n_frequencies + 0.25`` (levels
    0.25 .. 1.125 with the defaults; offset from 0 so every cue drives the network) and the
    target ``y_t = sin(2π f_j t)`` for ``t = 0 .. seq_len - 1``.

    Args:
        seq_len: number of time steps T.
        n_frequencies: number of cued frequencies.
        min_freq: lowest frequency, cycles per step, > 0.
        max_freq: highest frequency, cycles per step, >= min_freq and < 0.5 (Nyquist).

    Raises:
        ValueError: an argument out of range; the message names it and its value.
    """

    output_kind = "regression"
    metric_name = "r2"

    def __init__(self, seq_len: int = 64, n_frequencies: int = 8, min_freq: float = 0.02,
                 max_freq: float = 0.1) -> None:
        seq_len = _positive_int("seq_len", seq_len)
        n_frequencies = _positive_int("n_frequencies", n_frequencies)
        for name, value in (("min_freq", min_freq), ("max_freq", max_freq)):
            if (isinstance(value, bool) or not isinstance(value, Real)
                    or not 0.0 < value < 0.5):
                raise ValueError(f"{name} must be a number in (0, 0.5) cycles per step, "
                                 f"got {value!r}")
        if max_freq < min_freq:
            raise ValueError(f"max_freq must be >= min_freq, got max_freq={max_freq!r} < "
                             f"min_freq={min_freq!r}")
        min_freq, max_freq = float(min_freq), float(max_freq)
        super().__init__(seq_len=seq_len, n_frequencies=n_frequencies, min_freq=min_freq,
                         max_freq=max_freq)
        self.n_frequencies = n_frequencies
        self.min_freq = min_freq
        self.max_freq = max_freq
        self.input_size = 1
        self.output_size = 1
        self.seq_len = seq_len

    @property
    def frequencies(self) -> Tensor:
        """``[n_frequencies]`` frequencies in cycles per step, ascending."""
        return torch.linspace(self.min_freq, self.max_freq, self.n_frequencies,
                              dtype=torch.float64)

    @property
    def levels(self) -> Tensor:
        """``[n_frequencies]`` input levels cueing ``frequencies``: ``j / n + 0.25``."""
        return torch.arange(self.n_frequencies, dtype=torch.float64) / self.n_frequencies + 0.25

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, split: Split = "train"
    ) -> tuple[Tensor, Tensor]:
        """Fresh trials (``split`` is ignored): ``x [batch, time, 1]``, ``y [batch, time, 1]``."""
        g = new_generator(generator)
        j = torch.randint(self.n_frequencies, (batch_size,), generator=g)
        t = torch.arange(self.seq_len, dtype=torch.float64)
        x = self.levels[j].view(-1, 1, 1).expand(-1, self.seq_len, 1)
        y = torch.sin(2 * math.pi * self.frequencies[j].view(-1, 1) * t).unsqueeze(-1)
        return x.to(torch.float32).contiguous(), y.to(torch.float32)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """MSE over all entries."""
        _check_same_shape(outputs, targets)
        return F.mse_loss(outputs, targets.to(outputs.dtype))

    @torch.no_grad()
    def metric(self, outputs: Tensor, targets: Tensor) -> float:
        """Coefficient of determination over all entries (1 is perfect; can be negative)."""
        _check_same_shape(outputs, targets)
        return r2_score(outputs, targets)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_same_shape(outputs: Tensor, targets: Tensor) -> None:
    if outputs.shape != targets.shape:
        raise ValueError(
            f"outputs {tuple(outputs.shape)} must match targets {tuple(targets.shape)} "
            "[batch, time, 1]"
        )
