"""``PopulationWriter``: snapshots members during training and writes the population.

At the end of fit every member (and every snapshot) is scored on fresh test trials of its
task and written in the population format with its metadata. Snapshots taken at chosen
global steps become extra members (metadata ``step``), so a population can also be one
network's learning trajectory. The destination is checked when fit starts
(``check_destination``): a path that cannot take the population fails before the first
training step, not after the last.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from dynamo_lightning.checks import non_negative_int, positive_int
from dynamo_lightning.checks import seed as check_seed
from dynamo_lightning.population import architectures
from dynamo_lightning.population.destination import check_destination
from dynamo_lightning.population.evaluation import evaluate_stack
from dynamo_lightning.population.grid import GroupSpec
from dynamo_lightning.population.population import Population
from dynamo_lightning.population.training import PopulationModule
from dynamo_lightning.seeding import derive_seed


class PopulationWriter(pl.Callback):
    """Writes the trained population (manifest.json + weights/) when fit ends.

    Args:
        path: output directory; default ``<trainer.default_root_dir>/population``.
        snapshot_steps: global steps at which every member is also saved as an extra member
            with id ``<id>-step<k>`` and metadata ``step: k``.
        eval_trials: fresh test trials per task used to score each member (``task_metric``).
        eval_seed: seed of those trials.

    Raises:
        ValueError: negative snapshot steps or ``eval_seed``, or non-positive
            ``eval_trials``.
        PopulationFormatError: at the start of fit, when ``path`` is not absent, empty or a
            population, or its parent is not writable.
    """

    def __init__(self, path: str | None = None, snapshot_steps: list[int] | None = None,
                 eval_trials: int = 512, eval_seed: int = 12345) -> None:
        steps = sorted({non_negative_int(f"snapshot_steps[{i}]", s, "PopulationWriter")
                        for i, s in enumerate(snapshot_steps or [])})
        eval_trials = positive_int("eval_trials", eval_trials, "PopulationWriter")
        eval_seed = check_seed("eval_seed", eval_seed, "PopulationWriter")
        self.path = path
        self.snapshot_steps = steps
        self.eval_trials = eval_trials
        self.eval_seed = eval_seed
        self._snapshots: list[tuple[int, int, list[dict[str, torch.Tensor]]]] = []
        self._started = time.perf_counter()
        self.written_path: Path | None = None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            check_destination(self._destination(trainer))

    def _destination(self, trainer: pl.Trainer) -> Path:
        return Path(self.path) if self.path else Path(trainer.default_root_dir) / "population"

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not isinstance(pl_module, PopulationModule):
            raise TypeError("PopulationWriter needs a PopulationModule, "
                            f"got {type(pl_module).__name__}")
        self._started = time.perf_counter()
        last = trainer.estimated_stepping_batches  # max_steps, or epochs × batches
        late = [s for s in self.snapshot_steps if math.isfinite(last) and s > last]
        if late:
            raise ValueError(f"PopulationWriter: snapshot_steps {late} lie past the run's last "
                             f"step ({int(last)}: trainer.max_steps, or max_epochs × "
                             "steps_per_epoch), so they would never be taken; lower them or "
                             "train longer")
        if 0 in self.snapshot_steps and trainer.global_step == 0 and not self._taken(0):
            self._snapshot(pl_module, 0)  # (a resumed run restored its snapshots already)

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step in self.snapshot_steps and not self._taken(step):
            self._snapshot(pl_module, step)  # type: ignore[arg-type]

    def _taken(self, step: int) -> bool:
        return any(s == step for s, _, _ in self._snapshots)

    def _snapshot(self, module: PopulationModule, step: int) -> None:
        for index, stack in enumerate(module.stacks):
            states = [stack.member_state(i) for i in range(stack.num_members)]
            cpu_states = [{k: v.cpu() for k, v in s.items()} for s in states]
            self._snapshots.append((step, index, cpu_states))

    @override
    def state_dict(self) -> dict[str, Any]:
        """The snapshots taken so far (tensors and ints: a resumed run writes them too)."""
        return {"snapshots": [{"step": step, "group": index, "states": states}
                              for step, index, states in self._snapshots]}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._snapshots = [(int(s["step"]), int(s["group"]), list(s["states"]))
                           for s in state_dict.get("snapshots", [])]

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, pl_module)  # type: ignore[arg-type]

    @rank_zero_only
    def _write(self, trainer: pl.Trainer, module: PopulationModule) -> None:
        path = self._destination(trainer)
        step = trainer.global_step
        parts = [self._score(module, group, stack, None) for group, stack
                 in zip(module.groups, module.stacks, strict=True)]
        for snap_step, index, states in self._snapshots:
            if snap_step == step:
                continue  # identical to the final members
            group = module.groups[index]
            stack = architectures.get(group.architecture).from_member_states(states, **group.config)
            parts.append(self._score(module, group, stack.to(module.device), snap_step))
        population = Population.concat(parts)
        for member in population:
            member.metadata.setdefault("step", step)
            member.metadata["trained_steps"] = step
            member.metadata["train_seconds"] = round(time.perf_counter() - self._started, 2)
        population.save(path)
        self.written_path = path
        print(f"Population of {len(population)} members written to {path}")

    def _score(self, module: PopulationModule, group: GroupSpec,
               stack: architectures.Architecture, step: int | None) -> Population:
        task = module.tasks[group.task.label]
        generator = torch.Generator().manual_seed(derive_seed(self.eval_seed, group.task.label))
        scores = evaluate_stack(stack, task, self.eval_trials, generator, split="test")
        suffix = "" if step is None else f"-step{step}"
        metadata = []
        for seed, score in zip(group.seeds, scores, strict=True):
            entry = {**architecture_options(stack.config()),
                     "architecture": group.architecture, "task": group.task.name,
                     "task_config": task.config(), "task_label": group.task.label, "seed": seed,
                     "hidden_size": group.config["hidden_size"], "task_metric": score,
                     "metric_name": task.metric_name}
            if step is not None:
                entry["step"] = step
            metadata.append(entry)
        return Population.from_stack(group.architecture, stack,
                                     [i + suffix for i in group.ids], metadata)


def architecture_options(config: dict[str, Any]) -> dict[str, Any]:
    """A group's scalar architecture options (``n_layers``, ``dale_ratio``, ...; None
    included) as metadata: so a map can be coloured by depth, say, as by width
    (``hidden_size``)."""
    sizes = ("input_size", "output_size", "hidden_size")
    return {k: v for k, v in config.items()
            if k not in sizes and (v is None or isinstance(v, str | int | float | bool))}
