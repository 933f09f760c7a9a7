"""The inputs on which members are compared: one task, or a mixture of the members' tasks.

DYNAMO needs every member to run on the *same* input distribution. By default that is the
members' own task (from their metadata); a population trained on several tasks that share
input/output sizes and sequence length is compared on a ``MixtureTask`` of them; an explicit
``{"name", "config"}`` overrides both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from dynamo_lightning import tasks as task_registry
from dynamo_lightning.population import Population
from dynamo_lightning.tasks.base import Split, Task, new_generator

MIXTURE = "mixture"


class MixtureTask(Task):
    """Each trial comes from one of several tasks, chosen uniformly at random.

    Not registered: it is built by ``build_input_source`` (or from a spec with name
    ``"mixture"``). Sub-tasks must agree on input size, output size, sequence length and
    output kind. Which task drew a trial is a side channel: ``sample_with_ids`` returns the
    per-trial task ids, and ``metric``/``loss`` take them as ``task_ids``. ``metric`` is then
    the unweighted mean over sub-tasks of each sub-task's metric on its own trials (NaN
    without ``task_ids``: targets alone do not say which metric applies).

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
        self.tasks = [task_registry.get(s["name"], **s["config"]) for s in specs]
        labels = [_label(s) for s in specs]
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

    def metrics_by_task(self, outputs: Tensor, targets: Tensor,
                        task_ids: Tensor) -> dict[str, float]:
        """Each sub-task's own metric on its own trials, keyed ``"<label>:<metric name>"``
        (NaN for a sub-task without trials). The mean that :meth:`metric` reports mixes
        scales — bit accuracy with an R² that is very negative on a network of the other
        computation — so analyses of mixed populations read these instead."""
        return {f"{label}:{task.metric_name}":
                task.metric(outputs[task_ids == j], targets[task_ids == j])
                if bool((task_ids == j).any()) else math.nan
                for j, (label, task) in enumerate(zip(self.labels, self.tasks, strict=True))}


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
    return task_registry.get(spec["name"], **spec["config"])


def task_spec_of(task: Task) -> dict[str, Any]:
    """The plain ``{"name", "config"}`` dict that ``task_from_spec`` turns back into ``task``."""
    return {"name": task.name, "config": task.config()}


def build_input_source(population: Population, task: dict[str, Any] | None = None) -> Task:
    """The task whose inputs all members are compared on.

    Args:
        population: the members; their metadata ``task``/``task_config`` are used when
            ``task`` is None.
        task: explicit ``{"name", "config"}`` (``name`` may be ``"mixture"``).

    Returns:
        The explicit task; else the members' shared task; else a ``MixtureTask`` of their
        distinct tasks.

    Raises:
        ValueError: members without task metadata and no explicit task; member tasks that
            cannot be mixed; a task whose input size does not fit some members.
    """
    if task is not None:
        source = task_from_spec(task)
    else:
        missing = [m.id for m in population if not m.metadata.get("task")]
        if missing:
            raise ValueError(f"members {_short(missing)} have no 'task' in their metadata; "
                             "pass the task explicitly (data.task={name, config})")
        by_spec: dict[str, list[str]] = {}
        for m in population:
            spec = normalize_task_spec({"name": m.metadata["task"],
                                        "config": m.metadata.get("task_config") or {}},
                                       f"task metadata of member {m.id!r}")
            by_spec.setdefault(json.dumps(spec, sort_keys=True), []).append(m.id)
        specs = [json.loads(s) for s in by_spec]
        if len(specs) == 1:
            source = task_from_spec(specs[0])
        else:
            built = [task_from_spec(s) for s in specs]
            for attr in ("input_size", "output_size", "seq_len", "output_kind"):
                values = {getattr(t, attr) for t in built}
                if len(values) > 1:
                    detail = "; ".join(f"{_label(s)} ({attr}={getattr(t, attr)}): members "
                                       f"{_short(ids)}" for s, t, ids
                                       in zip(specs, built, by_spec.values(), strict=True))
                    raise ValueError(f"members' tasks differ in {attr}, so they cannot share "
                                     f"inputs: {detail}; pass data.task explicitly")
            source = MixtureTask(specs)
    bad = [m.id for m in population if m.config.get("input_size") != source.input_size]
    if bad:
        raise ValueError(f"task {source.name!r} has input_size {source.input_size}, which does "
                         f"not fit members {_short(bad)}")
    return source


def _label(spec: dict[str, Any]) -> str:
    return f"{spec['name']}{json.dumps(spec['config'], sort_keys=True)}"


def _short(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")
