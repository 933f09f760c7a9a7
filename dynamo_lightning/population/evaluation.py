"""Task metrics of stacked members on fresh inputs (no Lightning)."""

from __future__ import annotations

import torch
from torch import Tensor

from dynamo_lightning.modes import frozen
from dynamo_lightning.population.architectures import Architecture
from dynamo_lightning.tasks.base import Split, Task


def summed_member_loss(task: Task, outputs: Tensor, targets: Tensor) -> Tensor:
    """Sum over members of each member's training loss, in one task call.

    ``outputs [G, B, S, O]`` share ``targets`` (members see the same batch), so every
    member's loss averages over the same number of entries and the mean loss of the
    flattened ``[G·B, S, O]`` outputs against tiled targets is the mean of the per-member
    losses. Summing (not averaging) over members keeps each member's gradient exactly what
    it would be if it trained alone.
    """
    g = outputs.shape[0]
    flat = outputs.reshape(g * outputs.shape[1], *outputs.shape[2:])
    tiled = targets.unsqueeze(0).expand(g, *targets.shape).reshape(-1, *targets.shape[1:])
    return task.loss(flat, tiled) * g


@torch.no_grad()
def evaluate_stack(stack: Architecture, task: Task, trials: int, generator: torch.Generator,
                   split: Split = "test", batch_size: int = 512) -> list[float]:
    """Task metric of each member of ``stack`` on ``trials`` fresh trials of ``task``.

    All members see the same trials; trials are drawn in chunks of ``batch_size``. Returns
    one float per member, in stack order.
    """
    device = next(stack.parameters()).device
    outputs_all, targets_all = [], []
    remaining = trials
    with frozen(stack, no_grad=False):
        while remaining > 0:
            n = min(batch_size, remaining)
            x, y = task.sample(n, generator=generator, split=split)
            outputs, _ = stack(x.to(device))
            outputs_all.append(outputs.float())
            targets_all.append(y.to(device))
            remaining -= n
    # Scored where they were computed: thousands of members' outputs never cross to the host.
    outputs = torch.cat(outputs_all, dim=1)
    targets = torch.cat(targets_all, dim=0)
    return [float(task.metric(out, targets)) for out in outputs]
