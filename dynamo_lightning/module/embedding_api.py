"""The read-out half of ``DynamoModule``'s public API (documented in README).

Kept apart from the training code so ``dynamo_module.py`` stays about training: ``embeddings()``,
``member_ids``, ``member_metadata``, the input-source ``task`` and ``fit_embedding``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dynamo_lightning.data.projection import fit_projections, project_states
from dynamo_lightning.meta.embedding_fit import (
    EmbeddingFit,
    fit_theta,
    least_squares_map,
    map_grid,
)
from dynamo_lightning.modes import frozen
from dynamo_lightning.tasks.base import Task
from dynamo_lightning.tasks.mixture import task_from_spec


class EmbeddingAPI:
    """Mixin for ``DynamoModule``: needs ``hparams``, ``meta``, ``theta`` and ``output_loss``."""

    hparams: Any
    meta: torch.nn.Module
    theta: torch.nn.Embedding

    def embeddings(self) -> Tensor:
        """The learned θ's, ``[N, d]``, rows in ``member_ids`` order (a detached CPU copy)."""
        return self.theta.weight.detach().cpu().clone()

    @property
    def member_ids(self) -> list[str]:
        """Member ids in population order."""
        return list(self.hparams.member_ids)

    @property
    def member_metadata(self) -> list[dict[str, Any]]:
        """Each member's metadata from the population manifest."""
        return [dict(m) for m in self.hparams.member_metadata]

    @property
    def task(self) -> Task | None:
        """The task whose inputs the members were compared on (None if not recorded)."""
        spec = self.hparams.task_spec
        return task_from_spec(spec) if spec else None

    def fit_embedding(self, inputs: Tensor, outputs: Tensor | None = None,
                      hidden: Tensor | None = None, targets: Tensor | None = None,
                      task: Task | dict[str, Any] | str | None = None, steps: int = 300,
                      lr: float = 0.05, return_details: bool = False) -> Tensor | EmbeddingFit:
        """Fit θ for a new network or a few labels, the meta-model frozen.

        Args:
            inputs: ``[B, T, I]`` inputs the evidence was recorded on.
            outputs: the new network's outputs ``[B, T, O]`` (emulate them, as in training).
            hidden: the new network's states ``[B, T, H_new]``; they are projected on their own
                top-k PCs and a new alignment map ``[k, H̃]`` is fitted jointly with θ.
            targets: task targets (few-shot labels), scored with ``task``'s own loss.
            task: the task the ``targets`` come from: a ``Task``, a ``{"name", "config"}``
                spec, or a string naming a sub-task of the module's mixture (its label in
                ``task.sub_tasks``, or its registered name when only one sub-task has it).
                Default: the module's input task, which must then not be a mixture (a mixture
                trial's loss depends on which sub-task drew it, which labels alone do not say).
            steps, lr: Adam steps and learning rate. Adam starts from the best of the
                members' θ's, the origin and (for maps of d ≤ 3 without ``hidden``) a grid
                of 225 θ's over the map: the loss in θ has several basins.
            return_details: return an ``EmbeddingFit`` (θ, loss curve, alignment map).

        Returns:
            θ ``[d]`` (or the ``EmbeddingFit``).

        Raises:
            ValueError: no evidence given, shapes that do not fit, targets without a task (or
                with a mixture and no ``task=``), ``task`` without targets, or a task that
                does not fit the module.
        """
        if outputs is None and hidden is None and targets is None:
            raise ValueError("fit_embedding needs outputs, hidden and/or targets to fit θ to")
        if task is not None and targets is None:
            raise ValueError("task= names the task of the targets; pass targets too")
        device = self.theta.weight.device
        inputs = self._check_inputs(inputs).to(device)
        labels_task = self._labels_task(task) if targets is not None else None
        projected = None if hidden is None else self._project_hidden(hidden, inputs)
        weights = self.hparams.loss

        def loss_fn(theta: Tensor, extra: dict[str, Tensor]) -> Tensor:
            out, states = self.meta(inputs, theta.expand(inputs.shape[0], -1))
            loss = weights["theta"] * theta.pow(2).sum()
            if outputs is not None:
                loss = loss + weights["output"] * self.output_loss(out, outputs.to(device))
            if labels_task is not None and targets is not None:
                loss = loss + labels_task.loss(out, targets.to(device))
            if projected is not None:
                aligned = states @ extra["align_weight"].T + extra["align_bias"]
                loss = loss + (aligned - projected).pow(2).sum(-1).mean()
            return loss

        table = self.theta.weight.detach()
        # Start from the members, the origin and, for a low-dimensional map without a new
        # alignment to fit, a grid over the map: the loss in θ is far from convex (a sine's
        # frequency, say), and the best start decides which basin the fit ends in.
        candidates = torch.cat([table, table.new_zeros(1, table.shape[1]),
                                *([map_grid(table)] if hidden is None else [])])
        with frozen(self.meta):  # parameters frozen before stay frozen after
            extra = self._initial_alignment(inputs, candidates, projected)
            result = fit_theta(loss_fn, candidates if extra is None else extra[0],
                               extra=None if extra is None else extra[1], steps=steps, lr=lr)
        return result if return_details else result.theta

    def _labels_task(self, task: Task | dict[str, Any] | str | None) -> Task:
        """The single task whose loss scores few-shot targets (see ``fit_embedding``)."""
        own = self.task
        if task is None:
            if own is None:
                raise ValueError("targets need the input task, which this checkpoint does not "
                                 "name; pass task= (a Task or a {name, config} spec)")
            resolved = own
        elif isinstance(task, str):
            resolved = _named_sub_task(own, task)
        elif isinstance(task, Task):
            resolved = task
        elif isinstance(task, dict):
            resolved = task_from_spec(task)
        else:
            raise ValueError(f"task must be a Task, a {{name, config}} dict or a sub-task "
                             f"name, got {type(task).__name__} {task!r}")
        if len(resolved.sub_tasks) > 1:
            why = ("this module's input task is a mixture of" if task is None else
                   "task= must be one task, not a mixture of")
            raise ValueError(f"{why} {_sub_tasks(resolved)} (targets alone do not say which "
                             "sub-task drew each trial); pass task= naming the task the "
                             "targets come from (one of those labels, a Task or a spec)")
        sizes = (resolved.input_size, resolved.output_size)
        expected = (self.hparams.input_size, self.hparams.output_size)
        if sizes != expected:
            raise ValueError(f"task {resolved!r} has input/output sizes {sizes}, but this "
                             f"module takes {expected}")
        return resolved

    def _project_hidden(self, hidden: Tensor, inputs: Tensor) -> Tensor:
        """``hidden [B, T, H_new]`` on its own top-k PCs, ``[B, T, k]`` on θ's device."""
        if hidden.dim() != 3 or hidden.shape[:2] != inputs.shape[:2]:
            raise ValueError(f"hidden must be [B, T, H] matching inputs {tuple(inputs.shape)},"
                             f" got {tuple(hidden.shape)}")
        states = hidden.unsqueeze(0).float().cpu()
        projection = fit_projections(states, self.hparams.num_components)
        return project_states(projection, states)[0].to(inputs.device)

    def _check_inputs(self, inputs: Tensor) -> Tensor:
        size = self.hparams.input_size
        if inputs.dim() != 3 or inputs.shape[-1] != size:
            raise ValueError(f"inputs must be [B, T, {size}], got {tuple(inputs.shape)}")
        return inputs.float()

    @torch.no_grad()
    def _initial_alignment(self, inputs: Tensor, candidates: Tensor, projected: Tensor | None,
                           ) -> tuple[Tensor, dict[str, Tensor]] | None:
        """For hidden-state fits: the candidate θ whose least-squares alignment fits best."""
        if projected is None:
            return None
        best: tuple[float, int, Tensor, Tensor] | None = None
        target = projected.reshape(-1, projected.shape[-1])
        for index, theta in enumerate(candidates):
            _, states = self.meta(inputs, theta.expand(inputs.shape[0], -1))
            flat = states.reshape(-1, states.shape[-1])
            weight, bias = least_squares_map(flat, target)
            error = float((flat @ weight.T + bias - target).pow(2).sum(-1).mean())
            if best is None or error < best[0]:
                best = (error, index, weight, bias)
        assert best is not None
        return candidates[best[1]].unsqueeze(0), {"align_weight": best[2], "align_bias": best[3]}


def _sub_tasks(task: Task | None) -> str:
    """``'flipflop' (flipflop {...}), ...``: each sub-task's label and spec, for errors."""
    if task is None:
        return "none (this checkpoint names no task)"
    return ", ".join(f"{label!r} ({t.name} {t.config()})" for label, t in task.sub_tasks.items())


def _named_sub_task(own: Task | None, name: str) -> Task:
    """The module's sub-task called ``name``: its label, or a registered name that only one
    sub-task has (for a single-task module, that task by its name)."""
    subs = own.sub_tasks if own is not None else {}
    if name in subs:
        return subs[name]
    matches = [t for t in subs.values() if t.name == name]
    if len(matches) == 1:
        return matches[0]
    why = "several sub-tasks are" if matches else "no task is"
    tasks = "tasks are" if len(subs) > 1 else "task is"
    raise ValueError(f"task={name!r}: {why} called that; this module's {tasks} "
                     f"{_sub_tasks(own)}; pass a label, a Task or a {{name, config}} spec")
