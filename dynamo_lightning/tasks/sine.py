"""Input-cued sine generation (Sussillo & Barak 2013): a static level selects a frequency.

The network must turn a constant input into an oscillation whose frequency depends on that
input, so each input level needs its own limit cycle (or slow oscillatory fixed point). The
family of cycles, indexed by the input, is the structure DYNAMO maps across members.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dynamo_lightning.checks import open_interval, positive_int
from dynamo_lightning.tasks.base import Split, Task, new_generator
from dynamo_lightning.tasks.registry import register
from dynamo_lightning.tasks.scoring import EveryEntryRegression


@register("sine")
class Sine(EveryEntryRegression, Task):
    """Generate ``sin(2π f t)`` with ``f`` cued by a constant input level.

    Frequencies are in **cycles per step**: ``f_j`` for ``j = 0 .. n_frequencies - 1`` are
    evenly spaced in ``[min_freq, max_freq]`` (the defaults give 1.3 to 6.4 cycles in 64
    steps). Trial ``j`` has the constant input ``x_t = j / n_frequencies + 0.25`` (levels
    0.25 .. 1.125 with the defaults; offset from 0 so every cue drives the network) and the
    target ``y_t = sin(2π f_j t)`` for ``t = 0 .. seq_len - 1``.
    The loss (MSE) and the metric (pooled R², ``r2``) use every entry; see
    ``checks.EveryEntryRegression``.

    Args:
        seq_len: number of time steps T.
        n_frequencies: number of cued frequencies.
        min_freq: lowest frequency, cycles per step, > 0.
        max_freq: highest frequency, cycles per step, >= min_freq and < 0.5 (Nyquist).

    Raises:
        ValueError: an argument out of range; the message names it and its value.
    """

    output_kind = "regression"
    shape_hint = "[batch, time, 1]"

    def __init__(self, seq_len: int = 64, n_frequencies: int = 8, min_freq: float = 0.02,
                 max_freq: float = 0.1) -> None:
        seq_len = positive_int("seq_len", seq_len)
        n_frequencies = positive_int("n_frequencies", n_frequencies)
        low = open_interval("min_freq", min_freq, 0.0, 0.5, "cycles per step")
        high = open_interval("max_freq", max_freq, 0.0, 0.5, "cycles per step")
        if max_freq < min_freq:
            raise ValueError(f"max_freq must be >= min_freq, got max_freq={max_freq!r} < "
                             f"min_freq={min_freq!r}")
        min_freq, max_freq = low, high
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
