"""Small members trained for real, for tests that need learned dynamics (attractors)."""

from __future__ import annotations

import torch

from dynamo_lightning.population.architectures import MemberNetwork, build
from dynamo_lightning.tasks.base import Task


def trained_member(arch: str, task: Task, hidden: int, steps: int, lr: float,
                   seed: int) -> MemberNetwork:
    """A member trained on ``task`` with plain Adam, batches of 32 (a few seconds on one CPU
    thread); seeded: the same arguments give the same network."""
    stack = build(arch, input_size=task.input_size, output_size=task.output_size,
                  hidden_size=hidden, seeds=[seed])
    optimizer = torch.optim.Adam(stack.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = task.sample(32, generator=g)
        loss = task.loss(stack(x)[0][0], y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return MemberNetwork(stack)
