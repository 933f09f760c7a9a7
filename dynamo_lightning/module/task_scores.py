"""Task metric of the meta-model at each θ_n beside member n's own, on the same trials.

Collected during ``dynamo test``: the test pass visits every (member, trial) pair once, so
per member we keep the meta-model's outputs, the member's outputs and the task targets, and
score both with the task's metric at the end. This is the check that the meta-model at θ_n
*is* a working network, not only a good regression of hidden states.

A task metric (bit accuracy, R²) is not a sum over trials, so the states are the trials
themselves: list states that DDP gathers with ``cat``, so every process's trials are scored
together, once, whatever the number of devices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from dynamo_lightning.tasks.base import Task


class TaskScores(Metric):
    """Accumulates test trials per member; :meth:`scores` rates them with ``task.metric``."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("member", "meta", "own", "targets", "task_ids"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, member: Tensor, meta_outputs: Tensor, member_outputs: Tensor,
               targets: Tensor, task_id: Tensor) -> None:
        """A member-major batch: ``member [M]``, outputs ``[M, S, ...]``, targets
        ``[M, S, ...]`` and each trial's sub-task ``task_id [M, S]``."""
        samples = targets.shape[1]
        self.member.append(member.detach().repeat_interleave(samples))
        self.meta.append(meta_outputs.detach().float().flatten(0, 1))
        self.own.append(member_outputs.detach().float().flatten(0, 1))
        self.targets.append(targets.detach().flatten(0, 1))
        self.task_ids.append(task_id.detach().long().flatten(0, 1))

    def compute(self) -> dict[str, Tensor]:
        """Every trial seen (by every process), concatenated: ``member [P]`` and the rest."""
        return {name: dim_zero_cat(getattr(self, name))
                for name in ("member", "meta", "own", "targets", "task_ids")}

    @property
    def seen(self) -> bool:
        """Whether any trial was recorded since the last reset (on this process)."""
        return len(self.member) > 0

    def scores(self, task: Task, num_members: int,
               own: Sequence[int | None] | None = None) -> tuple[list[float], list[float]]:
        """``(meta_scores, member_scores)``, one float per member (NaN if never seen).

        ``own[n]``, where given and not None, is the sub-task (an index of
        ``task.sub_tasks``) member n was trained on: both scores are then that sub-task's
        metric on its own trials (NaN if none was drawn), not the task's metric over every
        trial, which for a mixture averages in computations the member never learned."""
        subs = list(task.sub_tasks.values())
        trials = {k: v.cpu() for k, v in self.compute().items()}
        meta_scores, member_scores = [math.nan] * num_members, [math.nan] * num_members
        # Trials sorted by member once, then cut into one run per member: a mask per member
        # would read every trial N times (benchmarks/per_member_work.py: 6.4x slower at 10,000).
        order = torch.argsort(trials["member"], stable=True)
        members, counts = torch.unique_consecutive(trials["member"][order], return_counts=True)
        runs = {k: v[order].split(counts.tolist()) for k, v in trials.items() if k != "member"}
        for i, index in enumerate(members.tolist()):
            targets, ids, meta, mine = (runs[k][i] for k in ("targets", "task_ids", "meta",
                                                               "own"))
            sub = own[index] if own is not None else None
            if sub is None:
                meta_scores[index] = float(task.metric(meta, targets, ids))
                member_scores[index] = float(task.metric(mine, targets, ids))
                continue
            rows = ids == sub
            if bool(rows.any()):
                meta_scores[index] = float(subs[sub].metric(meta[rows], targets[rows]))
                member_scores[index] = float(subs[sub].metric(mine[rows], targets[rows]))
        return meta_scores, member_scores

