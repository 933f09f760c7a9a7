"""Context-dependent integration (Mante, Sussillo, Shenoy & Newsome 2013).

Two noisy sensory streams (in the monkey experiment: motion and colour) arrive together; a
context cue says which one to integrate and report, the other must be ignored. Trained RNNs
solve it with context-dependent line attractors and selection vectors, a richer structure
than the plain integrator's, which makes it a good stress test for the model embedding.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from dynamo_lightning.checks import finite_real, positive_int
from dynamo_lightning.tasks.base import Split, Task, new_generator
from dynamo_lightning.tasks.registry import register
from dynamo_lightning.tasks.scoring import check_same_shape, sign_accuracy

_LAYOUT = "[batch, time, 1]"


@register("context")
class ContextIntegration(Task):
    """Report the sign of the cued one of two noisy evidence streams.

    Inputs ``x [batch, time, 4]``: channels 0 and 1 are sensory, ``c_k + noise · N(0, 1)`` with
    one coherence per channel and trial drawn uniformly from
    ``{±1, ±2, ±4} · coherence_scale``; channels 2 and 3 are a one-hot context cue (which
    sensory channel is relevant), on for the whole trial. Sensory input is also on for the
    whole trial. Target ``y [batch, time, 1]``: 0 (ignored) before the response period, the
    last ``max(1, seq_len // 4)`` steps, and ``sign(c_relevant) = ±1`` during it.

    With the defaults the ideal observer, summing the relevant channel over the 48 steps
    before the response, is right on about 92% of the weakest-coherence trials and on
    virtually all strong ones.

    Args:
        seq_len: number of time steps T.
        noise: standard deviation of the per-step sensory noise, >= 0.
        coherence_scale: the smallest coherence magnitude, > 0.

    Raises:
        ValueError: an argument out of range; the message names it and its value.
    """

    output_kind = "regression"
    metric_name = "accuracy"
    coherence_levels: ClassVar[tuple[float, ...]] = (1.0, 2.0, 4.0)

    def __init__(self, seq_len: int = 64, noise: float = 0.5,
                 coherence_scale: float = 0.1) -> None:
        seq_len = positive_int("seq_len", seq_len)
        noise = finite_real("noise", noise, lambda v: v >= 0, ">= 0")
        coherence_scale = finite_real("coherence_scale", coherence_scale, lambda v: v > 0, "> 0")
        super().__init__(seq_len=seq_len, noise=noise, coherence_scale=coherence_scale)
        self.noise = noise
        self.coherence_scale = coherence_scale
        self.input_size = 4
        self.output_size = 1
        self.seq_len = seq_len

    @property
    def response_steps(self) -> int:
        """Length of the response period at the end of the trial."""
        return max(1, self.seq_len // 4)

    @property
    def coherences(self) -> Tensor:
        """``[6]`` signed coherences a sensory channel can take."""
        levels = torch.tensor(self.coherence_levels) * self.coherence_scale
        return torch.cat([-levels.flip(0), levels])

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, split: Split = "train"
    ) -> tuple[Tensor, Tensor]:
        """Fresh trials (``split`` is ignored): ``x [batch, time, 4]``, ``y [batch, time, 1]``."""
        g = new_generator(generator)
        coherence = self.coherences[torch.randint(6, (batch_size, 2), generator=g)]  # [B, 2]
        context = torch.randint(2, (batch_size,), generator=g)
        noise = torch.randn(batch_size, self.seq_len, 2, generator=g)
        sensory = coherence.unsqueeze(1) + self.noise * noise
        cue = F.one_hot(context, 2).to(torch.float32).unsqueeze(1).expand(-1, self.seq_len, 2)
        x = torch.cat([sensory, cue], dim=-1).to(torch.float32)

        choice = torch.sign(coherence.gather(1, context.unsqueeze(1)))  # [B, 1]
        y = torch.zeros(batch_size, self.seq_len, 1)
        y[:, -self.response_steps:] = choice.unsqueeze(1)
        return x, y

    def loss(self, outputs: Tensor, targets: Tensor, task_ids: Tensor | None = None) -> Tensor:
        """MSE over the response period only; before it the network is free."""
        check_same_shape(outputs, targets, _LAYOUT)
        r = self.response_steps
        return F.mse_loss(outputs[:, -r:], targets[:, -r:].to(outputs.dtype))

    @torch.no_grad()
    def metric(self, outputs: Tensor, targets: Tensor, task_ids: Tensor | None = None) -> float:
        """Fraction of trials whose mean output over the response period has the right sign."""
        check_same_shape(outputs, targets, _LAYOUT)
        r = self.response_steps
        return sign_accuracy(outputs[:, -r:, 0].float().mean(dim=1), targets[:, -1, 0])
