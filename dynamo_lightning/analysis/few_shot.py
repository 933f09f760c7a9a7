"""Few-shot learning on the map: fit only θ from n labelled trials, against a network trained
from scratch on the same n trials.

A fitted meta-model spans a family of computations; a new variant of the task that lies
within the family should be reachable by moving θ alone (``d`` numbers), so a handful of
labels should suffice where a network trained from scratch (thousands of weights) overfits.
:func:`few_shot_curve` measures both as the number of labels grows.

``m`` is read duck-typed (``fit_embedding``, ``meta_model_at``): ``DynamoModule`` fits.
Nothing here imports Lightning.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from torch import Tensor, nn

from dynamo_lightning.analysis.fitted_map import FittedMap
from dynamo_lightning.analysis.plots import closed_on_error
from dynamo_lightning.analysis.theta_evaluation import network_metric
from dynamo_lightning.checks import positive_int
from dynamo_lightning.population import architectures
from dynamo_lightning.tasks import task_from_spec
from dynamo_lightning.tasks.base import Task

__all__ = ["SCRATCH_CLIP_NORM", "SCRATCH_LR", "SCRATCH_STEPS", "few_shot_curve",
           "few_shot_figure"]

SCRATCH_STEPS = 500
"""Full-batch Adam steps of the from-scratch network (it sees the same n trials each step)."""
SCRATCH_LR = 1e-2
"""Adam learning rate of the from-scratch network (population training's default)."""
SCRATCH_CLIP_NORM = 1.0
"""Gradient-norm clip of the from-scratch network, as population training clips each member."""


def few_shot_curve(m: FittedMap, task: Task | dict[str, Any], architecture: str, hidden_size: int,
                   ns: Sequence[int] = (4, 8, 16, 64, 256), test_trials: int = 512,
                   seeds: Sequence[int] = (0, 1, 2), theta_steps: int = 300,
                   scratch_steps: int = SCRATCH_STEPS, scratch_lr: float = SCRATCH_LR,
                   seed: int = 0) -> dict[str, Any]:
    """Task metric against the number of labelled trials: θ-only fit vs training from scratch.

    For each ``n`` and each repeat seed ``r``: draw ``n`` labelled training trials of
    ``task``; fit θ alone (``m.fit_embedding(x, targets=y, task=task, steps=theta_steps)``)
    and score ``m.meta_model_at(θ)``; train a fresh ``architecture`` network (one stacked
    member, initialised with seed ``r``) on the same trials with full-batch Adam
    (``scratch_steps`` steps, ``scratch_lr``, gradient norm clipped to
    :data:`SCRATCH_CLIP_NORM`) and score it. Both are scored with ``task.metric`` on the
    same ``test_trials`` fresh test trials, drawn once.

    Args:
        m: a fitted module (``fit_embedding``, ``meta_model_at``).
        task: the (held-out) task the labels come from: a ``Task`` or ``{"name", "config"}``.
        architecture: registered architecture of the from-scratch network (``"gru"``, ...).
        hidden_size: its width.
        ns: numbers of labelled trials.
        test_trials: fresh test trials every network is scored on.
        seeds: repeat seeds (training trials and the scratch network's initialisation).
        theta_steps: Adam steps of the θ fit.
        scratch_steps, scratch_lr: the from-scratch training.
        seed: seed of the test trials; training trials use ``seed``, ``r`` and ``n``.

    Returns:
        ``{"metric_name", "higher_is_better", "task": {"name", "config"}, "architecture",
        "hidden_size", "ns", "seeds", "test_trials", "theta_steps", "scratch_steps",
        "scratch_lr", "theta": curve, "scratch": curve}`` where each curve is
        ``{"mean": [per n], "std": [per n], "values": [[per seed] per n]}`` (std over
        seeds, ddof 0). Plain JSON.

    Raises:
        ValueError: a mixture task (its loss needs task ids), bad sizes or counts.
    """
    task = _single_task(task)
    ns = [positive_int(f"ns[{i}]", n) for i, n in enumerate(ns)]
    seeds = [int(s) for s in seeds]
    if not ns or not seeds:
        raise ValueError(f"ns and seeds must not be empty, got ns={ns}, seeds={seeds}")
    test_trials = positive_int("test_trials", test_trials)
    x_test, y_test = task.sample(test_trials, generator=torch.Generator().manual_seed(seed),
                                 split="test")
    theta_values, scratch_values = [], []
    for n in ns:
        theta_row, scratch_row = [], []
        for r in seeds:
            g = torch.Generator().manual_seed(1_000_003 * (seed + 1) + 1009 * r + n)
            x, y = task.sample(n, generator=g, split="train")
            theta = m.fit_embedding(x.float(), targets=y, task=task, steps=theta_steps)
            theta_row.append(network_metric(task, m.meta_model_at(theta), x_test, y_test))
            net = train_from_scratch(task, architecture, hidden_size, x, y, r,
                                     scratch_steps, scratch_lr)
            scratch_row.append(network_metric(task, net, x_test, y_test))
        theta_values.append(theta_row)
        scratch_values.append(scratch_row)
    return {"metric_name": str(task.metric_name), "higher_is_better": bool(task.higher_is_better),
            "task": {"name": task.name, "config": task.config()},
            "architecture": architecture, "hidden_size": int(hidden_size), "ns": ns,
            "seeds": seeds, "test_trials": test_trials, "theta_steps": int(theta_steps),
            "scratch_steps": int(scratch_steps), "scratch_lr": float(scratch_lr),
            "theta": _curve(theta_values), "scratch": _curve(scratch_values)}


def train_from_scratch(task: Task, architecture: str, hidden_size: int, x: Tensor, y: Tensor,
                       seed: int, steps: int = SCRATCH_STEPS, lr: float = SCRATCH_LR,
                       ) -> nn.Module:
    """A fresh one-member ``architecture`` stack trained on ``x [n, T, I]``, ``y`` alone.

    Full-batch Adam with the gradient norm clipped to :data:`SCRATCH_CLIP_NORM` (with one
    member, the same as population training's per-member clip). Returns the stack in eval
    mode; ``stack(x)[0]`` is ``[1, B, S, O]``.
    """
    stack = architectures.build(architecture, num_members=1, seeds=[int(seed)],
                                input_size=task.input_size, output_size=task.output_size,
                                hidden_size=hidden_size)
    optimizer = torch.optim.Adam(stack.parameters(), lr=lr)
    x = x.float()
    for _ in range(positive_int("scratch_steps", steps)):
        optimizer.zero_grad()
        outputs, _ = stack(x)
        loss = task.loss(outputs[0], y)
        loss.backward()
        nn.utils.clip_grad_norm_(stack.parameters(), SCRATCH_CLIP_NORM)
        optimizer.step()
    return stack.eval()


def few_shot_figure(curve: dict[str, Any]) -> Figure:
    """The task metric against n (log axis), θ-only fit and from-scratch training, each the
    mean over seeds with ± one standard deviation as error bars; one tick per n."""
    fig, ax = plt.subplots(figsize=(5.6, 4.0), layout="constrained")
    with closed_on_error(fig):
        ns = np.asarray(curve["ns"], dtype=float)
        for key, label, marker in (("theta", "θ only (meta-model frozen)", "o"),
                                   ("scratch", f"{curve['architecture']} from scratch", "s")):
            mean = np.asarray([np.nan if v is None else v for v in curve[key]["mean"]], float)
            std = np.asarray([np.nan if v is None else v for v in curve[key]["std"]], float)
            ax.errorbar(ns, mean, yerr=std, marker=marker, capsize=3, label=label)
        ax.set_xscale("log")
        ax.set_xticks(ns, [str(int(n)) for n in ns])
        ax.minorticks_off()
        ax.set_xlabel("labelled trials n")
        ax.set_ylabel(curve["metric_name"])
        task = curve["task"]
        config = ", ".join(f"{k}={v}" for k, v in task["config"].items())
        ax.set_title("\n".join(textwrap.wrap(f"Few-shot: {task['name']} ({config})", 60)),
                     fontsize=9)
        ax.legend(fontsize=8)
    return fig


def _single_task(task: Task | dict[str, Any]) -> Task:
    """``task`` as a ``Task`` (a spec is built from the registry); mixtures are refused."""
    if isinstance(task, dict):
        task = task_from_spec(task)
    if not isinstance(task, Task):
        raise ValueError(f"task must be a Task or a {{name, config}} spec, got {task!r}")
    if len(task.sub_tasks) > 1:
        raise ValueError("few_shot_curve needs one task, not a mixture: labels alone do not "
                         "say which sub-task drew each trial; pass one of its sub-tasks")
    return task


def _curve(values: list[list[float]]) -> dict[str, Any]:
    """Mean and std (ddof 0) over seeds per n, NaN as None."""
    array = np.asarray(values, dtype=float)

    def plain(row: np.ndarray) -> list[float | None]:
        return [float(v) if np.isfinite(v) else None for v in row]

    return {"mean": plain(array.mean(1)), "std": plain(array.std(1)),
            "values": [plain(np.asarray(row)) for row in array]}
