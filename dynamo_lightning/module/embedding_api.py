"""The read-out half of ``DynamoModule``'s public API (documented in README).

Kept apart from the training code so ``dynamo_module.py`` stays about training: ``embeddings()``,
``member_ids``, ``member_metadata``, the input-source ``task`` and ``fit_embedding``. Every
argument is checked here, at the boundary (shapes, finiteness), so a wrong one fails with its
name, shape and what would fit, not inside torch or as a fit that "diverged".
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dynamo_lightning.checks import positive_int, positive_real
from dynamo_lightning.data.projection import fit_projections, project_states
from dynamo_lightning.data.stages import StageLayout
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
            outputs: the new network's outputs ``[B, T, O]`` (emulate them, as in training;
                a classification module's are logits, also ``[B, T, O]``; ``[B, 1, O]`` for a
                feed-forward meta-model).
            hidden: the new network's states ``[B, T, H_new]``; they are projected on their own
                top-k PCs and a new alignment map ``[k, H̃]`` is fitted jointly with θ. For a
                feed-forward meta-model, ``[B, S_new, H_new]``: one PCA and one map per stage,
                its stages aligned with the meta-model's by proportional depth.
            targets: task targets (few-shot labels), one row per trial (``[B, ...]``: the
                task's ``[B, T, O]`` or labels ``[B]``), scored with ``task``'s own loss.
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
            ValueError: no evidence given, shapes that do not fit, NaN/Inf in the evidence,
                targets without a task (or with a mixture and no ``task=``), ``task`` without
                targets, a task that does not fit the module, or bad ``steps``/``lr``.
        """
        if outputs is None and hidden is None and targets is None:
            raise ValueError("fit_embedding needs outputs, hidden and/or targets to fit θ to")
        if task is not None and targets is None:
            raise ValueError("task= names the task of the targets; pass targets too")
        steps = positive_int("steps", steps, "fit_embedding")
        lr = positive_real("lr", lr, "fit_embedding")
        device = self.theta.weight.device
        inputs = self._check_inputs(inputs).to(device)
        outputs = None if outputs is None else self._check_outputs(outputs, inputs)
        targets = None if targets is None else _check_targets(targets, inputs)
        labels_task = self._labels_task(task) if targets is not None else None
        projected = None if hidden is None else self._project_hidden(hidden, inputs)
        weights = self.hparams.loss

        def loss_fn(theta: Tensor, extra: dict[str, Tensor]) -> Tensor:
            out, states = self.meta(inputs, theta.expand(inputs.shape[0], -1))
            loss = weights["theta"] * theta.pow(2).sum()
            if outputs is not None:
                loss = loss + weights["output"] * self.output_loss(out, outputs)
            if labels_task is not None and targets is not None:
                loss = loss + labels_task.loss(out, targets)
            if projected is not None:
                loss = loss + _hidden_error(states, extra, projected)
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
        hidden = _tensor("hidden", hidden)
        recurrent = self.meta.recurrent
        steps_ok = hidden.shape[1] == inputs.shape[1] if recurrent else hidden.shape[1] >= 1
        if hidden.dim() != 3 or hidden.shape[0] != inputs.shape[0] or not steps_ok \
                or hidden.shape[2] < 1:
            shape = "[B, T, H] matching inputs" if recurrent else "[B, stages, H] with B of"
            raise ValueError(f"hidden must be {shape} {tuple(inputs.shape)}, got "
                             f"{tuple(hidden.shape)}")
        states = _require_finite("hidden", hidden).unsqueeze(0).float().cpu()
        k = self.hparams.num_components
        if recurrent:
            return project_states(fit_projections(states, k), states)[0].to(inputs.device)
        layout = StageLayout((states.shape[2],), meta_depth=self.meta.stages)
        fitter = layout.fitter([states.shape[-1]])
        layout.update(fitter, [states[0]])
        return layout.project(fitter.fit(k), states)[0].to(inputs.device)

    def _check_inputs(self, inputs: Tensor) -> Tensor:
        size = self.hparams.input_size
        inputs = _tensor("inputs", inputs)
        if inputs.dim() != 3 or inputs.shape[-1] != size or min(inputs.shape[:2]) < 1:
            raise ValueError(f"inputs must be [B, T, {size}] (B, T >= 1), got "
                             f"{tuple(inputs.shape)}")
        return _require_finite("inputs", inputs.float())

    def _check_outputs(self, outputs: Tensor, inputs: Tensor) -> Tensor:
        """``outputs`` as ``[B, T, O]`` floats on θ's device: B, T of ``inputs``, O the
        module's ``output_size`` (logits for a classification module: the members'
        outputs it was trained to emulate, one per input step)."""
        steps = inputs.shape[1] if self.meta.recurrent else 1
        expected = (inputs.shape[0], steps, self.hparams.output_size)
        outputs = _tensor("outputs", outputs)
        if tuple(outputs.shape) != expected:
            raise ValueError(f"outputs must be [B, T, O] = {list(expected)} (B of inputs "
                             f"{tuple(inputs.shape)}; T its steps, 1 for a feed-forward "
                             f"meta-model; O the module's output_size), got "
                             f"{tuple(outputs.shape)}")
        weight = self.theta.weight
        return _require_finite("outputs", outputs.to(weight.device, weight.dtype))

    @torch.no_grad()
    def _initial_alignment(self, inputs: Tensor, candidates: Tensor, projected: Tensor | None,
                           ) -> tuple[Tensor, dict[str, Tensor]] | None:
        """For hidden-state fits: the candidate θ whose least-squares alignment fits best."""
        if projected is None:
            return None
        best: tuple[float, int, Tensor, Tensor] | None = None
        for index, theta in enumerate(candidates):
            _, states = self.meta(inputs, theta.expand(inputs.shape[0], -1))
            if self.meta.recurrent:
                weight, bias = least_squares_map(states.reshape(-1, states.shape[-1]),
                                                 projected.reshape(-1, projected.shape[-1]))
            else:
                weight, bias = _stage_maps(states, projected)
            error = float(_hidden_error(states, {"align_weight": weight, "align_bias": bias},
                                        projected))
            if best is None or error < best[0]:
                best = (error, index, weight, bias)
        assert best is not None
        return candidates[best[1]].unsqueeze(0), {"align_weight": best[2], "align_bias": best[3]}


def _hidden_error(states: Tensor, extra: dict[str, Tensor], projected: Tensor) -> Tensor:
    """Mean squared alignment error of meta states ``[B, T, H̃]`` mapped by ``extra``'s
    ``[k, H̃]`` map (or ``[S̃, k, H̃]``, one per stage) to targets ``[B, T, k]`` (NaN rows:
    stages the new network lacks, left out)."""
    weight, bias = extra["align_weight"], extra["align_bias"]
    if weight.dim() == 3:
        aligned = torch.einsum("bsh,skh->bsk", states, weight) + bias
    else:
        aligned = states @ weight.T + bias
    valid = ~projected.isnan().any(-1)
    error = (aligned - projected.nan_to_num()).pow(2).sum(-1)
    return (error * valid).sum() / valid.sum().clamp(min=1)


def _stage_maps(states: Tensor, projected: Tensor) -> tuple[Tensor, Tensor]:
    """One least-squares map per stage, ``[S̃, k, H̃]`` and ``[S̃, k]`` (zeros where the
    targets are NaN)."""
    maps = []
    for s in range(states.shape[1]):
        target = projected[:, s]
        if bool(target.isnan().any()):
            maps.append((states.new_zeros(target.shape[-1], states.shape[-1]),
                         states.new_zeros(target.shape[-1])))
        else:
            maps.append(least_squares_map(states[:, s], target))
    return torch.stack([w for w, _ in maps]), torch.stack([b for _, b in maps])


def _check_targets(targets: Tensor, inputs: Tensor) -> Tensor:
    """``targets`` with one row per trial of ``inputs`` (``[B, ...]``), finite, on their
    device; the task's loss checks the rest of the shape."""
    targets = _tensor("targets", targets)
    batch = inputs.shape[0]
    if targets.dim() < 1 or targets.shape[0] != batch:
        raise ValueError(f"targets must have one row per trial of inputs {tuple(inputs.shape)}:"
                         f" [{batch}, ...] (the task's [B, T, O], or labels [B]), got "
                         f"{tuple(targets.shape)}")
    return _require_finite("targets", targets.to(inputs.device))


def _tensor(name: str, value: object) -> Tensor:
    """``value`` if it is a tensor (NumPy arrays and nested lists converted)."""
    if isinstance(value, Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a tensor, got {type(value).__name__}") from None


def _require_finite(name: str, value: Tensor) -> Tensor:
    """``value`` if it holds no NaN/Inf."""
    bad = int((~torch.isfinite(value)).sum())
    if bad:
        raise ValueError(f"{name} must be finite, got {bad} NaN/Inf value(s) in {name} "
                         f"{tuple(value.shape)}")
    return value


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
