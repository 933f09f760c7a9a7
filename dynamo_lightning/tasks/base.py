"""The task plugin interface: an input generator, targets, a training loss and a metric.

Every task speaks the population's calling convention: inputs are ``x [batch, time, input]``
(images are read as rows = time, columns = input), and networks return
``outputs [batch, steps, output]`` where ``steps`` is the number of time steps for recurrent
networks and 1 for feed-forward ones. Tasks never import Lightning.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

Split = Literal["train", "val", "test"]
OutputKind = Literal["regression", "classification"]


class Task(ABC):
    """Base class of a task plugin.

    Subclasses set ``input_size``, ``output_size`` and ``seq_len`` in ``__init__``, declare
    ``output_kind`` and ``metric_name``, and implement ``sample``, ``loss`` and ``metric``
    (a task of padded trials also ``step_mask``)
    (``loss``/``metric`` take an optional ``task_ids`` that a single task ignores; a task
    made of several, like :class:`~.mixture.MixtureTask`, also overrides
    ``sample_with_ids`` and ``sub_tasks``).
    Constructor arguments must be JSON-serialisable keywords: ``config()`` returns them so
    that ``tasks.get(name, **task.config())`` rebuilds the same task (this is what manifests
    store).

    Attributes:
        output_kind: "regression" (outputs compared by MSE) or "classification" (outputs are
            logits; members are emulated by matching their output distribution).
        metric_name: what ``metric`` returns, e.g. "bit_accuracy"; higher is better unless
            ``higher_is_better`` is False.
    """

    registered_name: ClassVar[str] = ""
    output_kind: ClassVar[OutputKind] = "regression"
    metric_name: ClassVar[str] = "metric"
    higher_is_better: ClassVar[bool] = True

    input_size: int
    output_size: int
    seq_len: int

    def __init__(self, **config: Any) -> None:
        self._config = dict(config)

    @property
    def name(self) -> str:
        """The registered name (stored in manifests and checkpoints)."""
        return self.registered_name or type(self).__name__

    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this task with ``dl.tasks.get(name, **config)``."""
        return dict(self._config)

    @abstractmethod
    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, split: Split = "train"
    ) -> tuple[Tensor, Tensor]:
        """Draw a batch, deterministic given the generator's state.

        Args:
            batch_size: number of trials.
            generator: source of randomness; a fresh unseeded one if None.
            split: which data to draw from. Synthetic tasks draw fresh trials for every split;
                dataset-backed tasks (digits) draw from disjoint train/val/test images.

        Returns:
            ``x [batch, time, input]`` (float32) and targets ``y``: ``[batch, time, output]``
            for regression tasks, integer labels ``[batch]`` for classification tasks.
        """

    def sample_with_ids(
        self, batch_size: int, generator: torch.Generator | None = None, split: Split = "train"
    ) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`sample` plus each trial's sub-task id ``[batch]`` (int64): its index into
        :attr:`sub_tasks`. A single task draws exactly what ``sample`` draws, ids all 0; a
        mixture says which of its tasks drew each trial. ``loss`` and ``metric`` take the ids
        as ``task_ids``, so callers never need to know which kind of task they hold."""
        x, y = self.sample(batch_size, generator=generator, split=split)
        return x, y, torch.zeros(x.shape[0], dtype=torch.long)

    @property
    def sub_tasks(self) -> dict[str, Task]:
        """The computations trials come from, by label: ``{name: self}`` for a single task."""
        return {self.name: self}

    def own_sub_task(self, metadata: dict[str, Any]) -> int | None:
        """Which of :attr:`sub_tasks` (its index) a member with ``metadata`` was trained on,
        when that is not every trial's: None for a single task, whose metric is already
        each member's own."""
        return None

    def step_mask(self, targets: Tensor, task_ids: Tensor | None = None) -> Tensor | None:
        """Which time steps of each trial are real, from the task's ``targets``.

        A task whose trials differ in length pads them to ``seq_len`` and says here which
        steps are padding, so that every layer leaves those out (the DYNAMO losses and
        metrics, each member's PCA); its own ``loss`` and ``metric`` skip them already.

        Args:
            targets: what :meth:`sample` returns as targets, ``[batch, ...]``.
            task_ids: each trial's sub-task ``[batch]`` (:meth:`sample_with_ids`), for a
                task made of several; a single task ignores it.

        Returns:
            ``[batch, time]`` bool, True on a real step; None (the default) when every step
            of every trial is real.
        """
        return None

    @abstractmethod
    def loss(self, outputs: Tensor, targets: Tensor, task_ids: Tensor | None = None) -> Tensor:
        """Scalar training loss of ``outputs [batch, steps, output]`` against ``targets``.

        ``task_ids [batch]`` (from :meth:`sample_with_ids`) says which sub-task drew each
        trial; a single task may ignore it.
        """

    @abstractmethod
    def metric(self, outputs: Tensor, targets: Tensor, task_ids: Tensor | None = None) -> float:
        """Task metric (``metric_name``) of ``outputs`` against ``targets`` (``task_ids`` as
        for :meth:`loss`)."""

    def metrics_by_task(self, outputs: Tensor, targets: Tensor, task_ids: Tensor
                        ) -> dict[str, float]:
        """Each sub-task's own metric on its own trials, ``{"<label>:<metric_name>": value}``
        (NaN for a sub-task without trials). For a single task, its metric."""
        rows = {label: task_ids == j for j, label in enumerate(self.sub_tasks)}
        return {f"{label}:{task.metric_name}":
                task.metric(outputs[rows[label]], targets[rows[label]])
                if bool(rows[label].any()) else math.nan
                for label, task in self.sub_tasks.items()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        return f"{type(self).__name__}({args})"


def new_generator(generator: torch.Generator | None) -> torch.Generator:
    """The generator to draw from: the caller's, or a fresh randomly seeded one."""
    if generator is not None:
        return generator
    g = torch.Generator()
    g.seed()
    return g
