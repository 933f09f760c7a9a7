"""A task made of several: each trial drawn by one of the tasks, and scored by it.

``MixtureTask`` is how members trained on different tasks (that share input/output sizes and
sequence length) are compared on one input distribution. It is a ``Task`` like any other:
``sample_with_ids`` says which sub-task drew each trial and ``loss``/``metric`` take those
ids, as they do for every task, so no layer needs to know it holds a mixture.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from dynamo_lightning.tasks.base import Split, Task, new_generator
from dynamo_lightning.tasks.registry import get as get_task

__all__ = ["MIXTURE", "MixtureTask", "normalize_task_spec", "spec_label", "task_from_spec",
           "task_spec_of"]

MIXTURE = "mixture"


class MixtureTask(Task):
    """Each trial comes from one of several tasks, chosen uniformly at random.

    Not registered: it is built by ``build_input_source`` (or from a spec with name
    ``"mixture"``, see :func:`task_from_spec`). Sub-tasks must agree on input size, output
    size, sequence length and output kind. ``sample_with_ids`` says which sub-task drew each
    trial, and ``loss``/``metric`` take those ids as ``task_ids``. ``metric`` is the
    unweighted mean over sub-tasks of each one's metric on its own trials (NaN without
    ``task_ids``: targets alone do not say which metric applies).

    Args:
        tasks: sub-task specs ``[{"name": ..., "config": {...}}, ...]`` (at least two).

    Raises:
        ValueError: fewer than two tasks, a bad spec, or sub-tasks that disagree in shape.
    """

    registered_name = MIXTURE
    metric_name = "mean_task_metric"

    def __init__(self, tasks: Sequence[dict[str, Any]]) -> None:
        specs = [normalize_task_spec(t, f"tasks[{i}]") for i, t in enumerate(tasks)]
        if len(specs) < 2:
            raise ValueError(f"MixtureTask needs at least two tasks, got {len(specs)}")
        super().__init__(tasks=specs)
        self.tasks = [get_task(s["name"], **s["config"]) for s in specs]
        labels = [spec_label(s) for s in specs]
        names = [s["name"] for s in specs]  # short labels: indexed where two share a name
        self.labels = [n if names.count(n) == 1 else f"{n}{i}" for i, n in enumerate(names)]
        for attr in ("input_size", "output_size", "seq_len", "output_kind"):
            values = {label: getattr(t, attr) for label, t in zip(labels, self.tasks, strict=True)}
            if len(set(values.values())) > 1:
                raise ValueError(f"MixtureTask: tasks differ in {attr}: {values}")
        first = self.tasks[0]
        self.input_size, self.output_size = first.input_size, first.output_size
        self.seq_len = first.seq_len
        self.output_kind = first.output_kind  # type: ignore[misc]
        self.higher_is_better = first.higher_is_better  # type: ignore[misc]

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               split: Split = "train") -> tuple[Tensor, Tensor]:
        x, y, _ = self.sample_with_ids(batch_size, generator, split)
        return x, y

    def sample_with_ids(self, batch_size: int, generator: torch.Generator | None = None,
                        split: Split = "train") -> tuple[Tensor, Tensor, Tensor]:
        """``x [B, T, I]``, targets ``[B, ...]`` and task ids ``[B]`` (int64).

        Deterministic given the generator: the task of each trial is drawn first, then each
        sub-task draws its trials in sub-task order.
        """
        g = new_generator(generator)
        ids = torch.randint(len(self.tasks), (batch_size,), generator=g)
        x = torch.zeros(batch_size, self.seq_len, self.input_size)
        y: Tensor | None = None
        for j, task in enumerate(self.tasks):
            rows = (ids == j).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            xj, yj = task.sample(rows.numel(), generator=g, split=split)
            if y is None:
                y = torch.zeros(batch_size, *yj.shape[1:], dtype=yj.dtype)
            elif yj.shape[1:] != y.shape[1:]:
                raise ValueError(f"MixtureTask: {task.name} targets {tuple(yj.shape[1:])} do "
                                 f"not match earlier targets {tuple(y.shape[1:])}")
            x[rows], y[rows] = xj.to(x.dtype), yj
        if y is None:  # batch_size == 0
            y = self.tasks[0].sample(0, generator=g, split=split)[1]
        return x, y, ids

    @property
    def sub_tasks(self) -> dict[str, Task]:
        """The sub-tasks by short label (the name, indexed where two share a name).

        :meth:`metrics_by_task` scores each on its own trials; the mean that :meth:`metric`
        reports mixes scales (bit accuracy with an R² that is very negative on a network of
        the other computation), so analyses of mixed populations read those instead."""
        return dict(zip(self.labels, self.tasks, strict=True))

    def own_sub_task(self, metadata: dict[str, Any]) -> int | None:
        """The sub-task a member was trained on, from its metadata's ``task`` (name) and
        ``task_config`` (as the population writer records them: every option, defaults
        included): the one sub-task of that name whose full config matches, or the only one
        of that name when the metadata has no config. None when none or several match (a
        member of another computation, or metadata that does not say)."""
        name, config = metadata.get("task"), metadata.get("task_config")
        named = [j for j, task in enumerate(self.tasks) if task.name == name]
        if isinstance(config, dict):
            named = [j for j in named if self.tasks[j].config() == config]
        elif config is not None:
            return None
        return named[0] if len(named) == 1 else None

    def step_mask(self, targets: Tensor, task_ids: Tensor | None = None) -> Tensor | None:
        """Each trial's real steps ``[batch, time]`` by its own sub-task's ``step_mask``
        (every step of a trial whose sub-task has none); None when no sub-task has one.

        Raises:
            ValueError: sub-tasks with masks and no ``task_ids`` to say whose each trial is.
        """
        if task_ids is None:
            if all(task.step_mask(targets) is None for task in self.tasks):
                return None
            raise ValueError("MixtureTask.step_mask needs task_ids (from sample_with_ids): "
                             "its tasks pad their trials")
        masks = [(task_ids == j, task.step_mask(targets[task_ids == j]))
                 for j, task in enumerate(self.tasks)]
        if all(mask is None for _, mask in masks):
            return None
        mask = torch.ones(targets.shape[:2], dtype=torch.bool, device=targets.device)
        for rows, part in masks:
            if part is not None:
                mask[rows] = part
        return mask

    def loss(self, outputs: Tensor, targets: Tensor, task_ids: Tensor | None = None) -> Tensor:
        """Trial-weighted mean of the sub-task losses (needs ``task_ids``)."""
        if task_ids is None:
            raise ValueError("MixtureTask.loss needs task_ids (from sample_with_ids)")
        total = outputs.sum() * 0.0
        for j, task in enumerate(self.tasks):
            rows = task_ids == j
            if bool(rows.any()):
                total = total + task.loss(outputs[rows], targets[rows]) * rows.float().mean()
        return total

    def metric(self, outputs: Tensor, targets: Tensor, task_ids: Tensor | None = None) -> float:
        """Mean over sub-tasks of their metric on their own trials (NaN without ids)."""
        if task_ids is None:
            return math.nan
        values = [v for v in self.metrics_by_task(outputs, targets, task_ids).values()
                  if not math.isnan(v)]
        return sum(values) / len(values) if values else math.nan


def normalize_task_spec(spec: Any, where: str = "task") -> dict[str, Any]:
    """``{"name": str, "config": dict}`` from a user spec (``config`` optional).

    Raises:
        ValueError: not a dict, no string ``name``, a non-dict ``config`` or extra keys.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError(f"{where} must be a dict {{name, config}} with a string name, "
                         f"got {spec!r}")
    extra = sorted(set(spec) - {"name", "config"})
    config = spec.get("config") or {}
    if extra or not isinstance(config, dict):
        raise ValueError(f"{where} takes only 'name' and a dict 'config', got {spec!r}")
    return {"name": spec["name"], "config": json.loads(json.dumps(config))}


def task_from_spec(spec: dict[str, Any]) -> Task:
    """Rebuild a task (including a mixture) from ``task_spec_of(task)``."""
    spec = normalize_task_spec(spec)
    if spec["name"] == MIXTURE:
        return MixtureTask(**spec["config"])
    return get_task(spec["name"], **spec["config"])


def task_spec_of(task: Task) -> dict[str, Any]:
    """The plain ``{"name", "config"}`` dict that ``task_from_spec`` turns back into ``task``."""
    return {"name": task.name, "config": task.config()}


def spec_label(spec: dict[str, Any]) -> str:
    """``name{config}``: a spec in one line, for messages."""
    return f"{spec['name']}{json.dumps(spec['config'], sort_keys=True)}"
