"""Task metric of the meta-model at each θ_n beside member n's own, on the same trials.

Collected during ``dynamo test``: the test pass visits every (member, trial) pair once, so
per member we keep the meta-model's outputs, the member's outputs and the task targets, and
score both with the task's metric at the end. This is the check that the meta-model at θ_n
*is* a working network, not only a good regression of hidden states.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor

from dynamo_lightning.data.input_source import MixtureTask
from dynamo_lightning.tasks.base import Task


class TaskScores:
    """Accumulates test outputs per member; ``compute`` scores them with ``task.metric``."""

    def __init__(self) -> None:
        self._parts: dict[int, list[tuple[Tensor, Tensor, Tensor, Tensor]]] = defaultdict(list)

    def update(self, member: Tensor, meta_outputs: Tensor, member_outputs: Tensor,
               targets: Tensor, task_id: Tensor | None) -> None:
        """Per-member slices of a member-major batch (``[M, S, ...]``), kept on the CPU."""
        ids = task_id if task_id is not None else torch.zeros(targets.shape[:2], dtype=torch.long)
        for row, index in enumerate(member.tolist()):
            self._parts[index].append((meta_outputs[row].detach().float().cpu(),
                                       member_outputs[row].detach().float().cpu(),
                                       targets[row].detach().cpu(), ids[row].detach().cpu()))

    def compute(self, task: Task, num_members: int) -> tuple[list[float], list[float]]:
        """``(meta_scores, member_scores)``, one float per member (NaN if never seen)."""
        meta_scores, member_scores = [float("nan")] * num_members, [float("nan")] * num_members
        for index, parts in self._parts.items():
            meta, own, targets, ids = (torch.cat(p) for p in zip(*parts, strict=True))
            meta_scores[index] = _metric(task, meta, targets, ids)
            member_scores[index] = _metric(task, own, targets, ids)
        return meta_scores, member_scores

    def __len__(self) -> int:
        """Number of members seen since the last reset."""
        return len(self._parts)

    def reset(self) -> None:
        self._parts.clear()


def _metric(task: Task, outputs: Tensor, targets: Tensor, task_ids: Tensor) -> float:
    if isinstance(task, MixtureTask):
        return float(task.metric(outputs, targets, task_ids))
    return float(task.metric(outputs, targets))
