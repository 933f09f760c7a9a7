"""``PopulationModule``: trains every member of a grid at once, one stack per group.

Each group (task × architecture × shape) is one stacked ``Architecture``; a training step
is one forward per group. Adam is elementwise and gradients are clipped per member, so each
member follows exactly the trajectory it would follow if trained alone on the same batches.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import Tensor, nn

from dynamo_lightning.population import architectures
from dynamo_lightning.population.datamodule import Batch
from dynamo_lightning.population.evaluation import summed_member_loss
from dynamo_lightning.population.grid import GroupSpec, expand_grid, parse_task_specs


class PopulationModule(pl.LightningModule):
    """A grid of networks trained together.

    Args:
        tasks: task variants ``[{name, config?, label?}]``; linked from ``data.tasks`` by the CLI.
        architectures: registered architecture names (``dl.architectures.names()``).
        hidden_sizes: widths to train (RNN units or CNN channels).
        seeds: initialisation seeds; one member per seed in every group.
        architecture_options: extra constructor options per architecture name,
            e.g. ``{"cnn": {"n_layers": 3}}``.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        clip_norm: per-member gradient-norm clip (None or 0 turns it off). Lightning's own
            ``gradient_clip_val`` would clip the whole stack and couple the members.
    """

    def __init__(self, tasks: list[dict[str, Any]], architectures: list[str] | None = None,
                 hidden_sizes: list[int] | None = None, seeds: list[int] | None = None,
                 architecture_options: dict[str, dict[str, Any]] | None = None,
                 lr: float = 1e-2, weight_decay: float = 0.0, clip_norm: float | None = 1.0,
                 ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if lr <= 0:
            raise ValueError(f"PopulationModule: lr must be positive, got {lr}")
        if clip_norm is not None and clip_norm < 0:
            raise ValueError(f"PopulationModule: clip_norm must be >= 0 or null, got {clip_norm}")
        specs = parse_task_specs(tasks)
        self.groups: list[GroupSpec] = expand_grid(
            specs, architectures or ["gru"], hidden_sizes or [32], seeds or [0, 1, 2, 3],
            architecture_options)
        self.tasks = {spec.label: spec.build() for spec in specs}
        self.stacks = nn.ModuleList(
            _build_stack(group) for group in self.groups)

    @property
    def member_ids(self) -> list[str]:
        """Ids of the trained members, group by group."""
        return [member for group in self.groups for member in group.ids]

    def forward(self, batch: Batch) -> list[tuple[Tensor, Tensor]]:
        """Outputs and hidden states of every group on its task's inputs."""
        pairs = zip(self.groups, self.stacks, strict=True)
        return [stack(batch[group.task.label][0]) for group, stack in pairs]

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        total = torch.zeros((), device=self.device)
        for group, stack in zip(self.groups, self.stacks, strict=True):
            x, y = batch[group.task.label]
            outputs, _ = stack(x)
            loss = summed_member_loss(self.tasks[group.task.label], outputs, y)
            total = total + loss
        if not torch.isfinite(total):
            raise FloatingPointError(f"population training loss is {total.item()} at step "
                                     f"{self.global_step}; lower model.lr or set model.clip_norm")
        self.log("train/loss", total / len(self.member_ids), prog_bar=True)
        return total

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        worst = float("inf")
        for group, stack in zip(self.groups, self.stacks, strict=True):
            x, y = batch[group.task.label]
            outputs, _ = stack(x)
            task = self.tasks[group.task.label]
            scores = [task.metric(out, y) for out in outputs]
            for member, score in zip(group.ids, scores, strict=True):
                self.log(f"val_member/{member}", score)
            worst = min(worst, *scores)
            label = f"val/{group.task.label}/{group.architecture}/{task.metric_name}"
            self.log(label, sum(scores) / len(scores))
        self.log("val/worst_member_metric", worst, prog_bar=True)

    def configure_optimizers(self) -> OptimizerLRScheduler:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr,
                                weight_decay=self.hparams.weight_decay)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        clip = self.hparams.clip_norm
        if clip:
            for stack in self.stacks:
                clip_per_member(stack, clip)


def clip_per_member(stack: nn.Module, max_norm: float) -> Tensor:
    """Scale each member's gradient (leading axis of every parameter) to norm ≤ ``max_norm``.

    Returns the per-member norms before clipping, ``[G]``.
    """
    grads = [p.grad for p in stack.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))
    return norms


def _build_stack(group: GroupSpec) -> architectures.Architecture:
    return architectures.build(group.architecture, num_members=len(group.seeds),
                               seeds=list(group.seeds), **group.config)
