"""Task batches for population training, drawn on the fly and reproducibly.

Each training batch holds one ``(x, y)`` per task variant of the grid; all members of a task
see the same batch (they differ by architecture, width and initialisation seed). Draw ``k``
of the run is seeded from ``(seed, k)``, so a run is reproducible and a resumed run continues
the same stream (the draw counter is part of the checkpoint).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from dynamo_lightning.checks import positive_int
from dynamo_lightning.checks import seed as check_seed
from dynamo_lightning.population.grid import TaskSpec, parse_task_specs
from dynamo_lightning.seeding import derive_seed
from dynamo_lightning.tasks.base import Split, Task

Batch = dict[str, tuple[Tensor, Tensor]]


class _TaskStream(IterableDataset):
    """``steps`` batches per pass; continues the seeded stream from pass to pass."""

    def __init__(self, tasks: dict[str, Task], batch_size: int, steps: int, seed: int,
                 split: Split, fixed: bool) -> None:
        self.tasks, self.batch_size, self.steps = tasks, batch_size, steps
        self.seed, self.split, self.fixed = seed, split, fixed
        self.draws = 0

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Batch]:
        for i in range(self.steps):
            draw = i if self.fixed else self.draws
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.split, draw))
            yield {label: task.sample(self.batch_size, generator=generator, split=self.split)
                   for label, task in self.tasks.items()}
            if not self.fixed:
                self.draws += 1


class TaskDataModule(pl.LightningDataModule):
    """Serves task batches for ``dynamo population fit``.

    Args:
        tasks: task variants, ``[{name, config?, label?}, ...]`` (linked to the model's grid).
        batch_size: trials per training batch and task.
        steps_per_epoch: training batches per epoch.
        val_batch_size: trials per validation batch and task.
        val_batches: validation batches per epoch (the same fixed trials every epoch).
        seed: seed of the input stream (independent of the members' init seeds).
    """

    def __init__(self, tasks: list[dict[str, Any]], batch_size: int = 64,
                 steps_per_epoch: int = 100, val_batch_size: int = 256, val_batches: int = 1,
                 seed: int = 0) -> None:
        super().__init__()
        for key, value in (("batch_size", batch_size), ("steps_per_epoch", steps_per_epoch),
                           ("val_batch_size", val_batch_size), ("val_batches", val_batches)):
            positive_int(key, value, "TaskDataModule")
        seed = check_seed("seed", seed, "TaskDataModule")
        self.specs: list[TaskSpec] = parse_task_specs(tasks)
        self.batch_size, self.steps_per_epoch = batch_size, steps_per_epoch
        self.val_batch_size, self.val_batches, self.seed = val_batch_size, val_batches, seed
        tasks_by_label = {spec.label: spec.build() for spec in self.specs}
        self._train = _TaskStream(tasks_by_label, batch_size, steps_per_epoch, seed, "train", False)
        self._val = _TaskStream(tasks_by_label, val_batch_size, val_batches, seed, "val", True)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self._train, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._val, batch_size=None)

    def state_dict(self) -> dict[str, Any]:
        return {"draws": self._train.draws}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._train.draws = int(state_dict.get("draws", 0))
