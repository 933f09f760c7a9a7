"""The meta-model evaluated at many θ's at once: task metric and fixed points per θ.

The batched engine behind :mod:`.interpolation` (segments, paths, grids) and
:func:`~.interpolation.fixed_points_at`; the module docstring of :mod:`.interpolation` says
what is drawn, run and searched. Nothing here imports Lightning.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from dynamo_lightning.analysis.fitted_map import FittedMap
from dynamo_lightning.analysis.fixed_points import (
    FixedPointSet,
    find_fixed_points,
    meta_step_fn,
    sample_inits,
)
from dynamo_lightning.analysis.search_options import SearchOptions
from dynamo_lightning.modes import frozen
from dynamo_lightning.population.architectures import Architecture
from dynamo_lightning.tasks import Task

ELEMENT_BUDGET = 2**26
"""Most ``θ's × trials × time × (state + output)`` elements per meta-model call."""
FREE_RUN_STEPS = 100
"""Steps of the free run on ``x_const`` used for trajectories when the module has no task."""


@dataclass
class Evaluation:
    """Everything computed at θ's ``[S, d]``; :mod:`.interpolation` cuts it into paths."""

    thetas: Tensor  # [S, d]
    task_metric: Tensor  # [S]
    metric_name: str
    fixed_points: FixedPointSet | None  # all S groups
    states: Tensor  # [S, B, T, state]
    task_metrics: dict[str, Tensor] = field(default_factory=dict)  # mixture: {key: [S]}


def evaluate(m: FittedMap, thetas: Tensor, *, search: SearchOptions | None = None,
             fixed_points: bool = True, x_const: Tensor | None = None) -> Evaluation:
    """Task metric and (optionally) fixed points at every θ of ``thetas [S, d]``; the
    keywords are :func:`~.interpolation.interpolate`'s.

    Raises:
        ValueError: ``fixed_points`` for a feed-forward meta-model (it has no step map).
    """
    meta = m.meta
    if fixed_points and not getattr(meta, "recurrent", True):
        raise ValueError(f"fixed points do not apply to a feed-forward meta-model "
                         f"({type(meta).__name__}: no step map); pass fixed_points=False")
    search = search or SearchOptions()
    param = next(meta.parameters())
    thetas = thetas.to(param)
    x_const = torch.zeros(meta.input_size) if x_const is None else torch.as_tensor(x_const)
    if tuple(x_const.shape) != (meta.input_size,):
        raise ValueError(f"x_const must be [{meta.input_size}], got {tuple(x_const.shape)}")
    if not bool(torch.isfinite(x_const).all()):
        raise ValueError(f"x_const must be finite, got {x_const.tolist()}")
    x_const = x_const.to(param)
    task = m.task
    generator = torch.Generator().manual_seed(search.seed)
    if task is None:
        x, y, ids = x_const.expand(1, FREE_RUN_STEPS, -1), None, None
    else:
        x, y, ids = draw_trials(task, search.trials, generator)
    with evaluating(meta), torch.no_grad():
        outputs, states = _run_meta(meta, x.to(param), thetas)
    outputs = outputs.cpu()
    metric = torch.tensor([math.nan if task is None else float(task.metric(out, y, ids))
                           for out in outputs], dtype=torch.float64)
    points = None
    if fixed_points:
        inits = torch.cat([sample_inits(s, search.inits, search.init_noise, generator)
                           for s in states])
        step = meta_step_fn(meta, thetas, search.inits)
        with evaluating(meta):
            points = find_fixed_points(step, x_const, inits, search.tol, groups=step.groups,
                                       max_iters=search.max_iters, reference=list(states),
                                       slow_tol=search.slow_tol)
        points = points.cpu()
    return Evaluation(thetas=thetas.detach().cpu(), task_metric=metric,
                      metric_name="" if task is None else str(task.metric_name),
                      fixed_points=points, states=states.cpu(),
                      task_metrics=_per_task(task, outputs, y, ids))


def evaluating(module: nn.Module) -> contextlib.AbstractContextManager:
    """Eval mode for the block, every submodule's previous mode restored after."""
    return frozen(module, no_grad=False)


def draw_trials(task: Task, trials: int, generator: torch.Generator
                ) -> tuple[Tensor, Tensor, Tensor]:
    """Test-split trials ``x, y`` and each trial's sub-task id: the trials every θ is
    scored and searched on."""
    return task.sample_with_ids(trials, generator=generator, split="test")


@torch.no_grad()
def network_metric(task: Task, net: nn.Module, x: Tensor, y: Tensor,
                   task_ids: Tensor | None = None) -> float:
    """``task``'s metric of ``net``'s outputs on ``x [B, T, I]``, the net run on its own
    device (a stack of one member, ``Architecture``, has its member axis dropped)."""
    tensors = [*net.parameters(), *net.buffers()]
    device = tensors[0].device if tensors else x.device
    outputs = net(x.float().to(device))[0].float().cpu()
    if isinstance(net, Architecture):
        outputs = outputs[0]
    return float(task.metric(outputs, y, task_ids))


def _per_task(task: Task | None, outputs: Tensor, targets: Tensor | None,
              ids: Tensor | None) -> dict[str, Tensor]:
    """For a task of several sub-tasks, each one's metric on its own trials at every θ,
    ``{"<label>:<metric>": [S]}``; empty for a single task."""
    if task is None or len(task.sub_tasks) < 2 or ids is None or targets is None:
        return {}
    rows = [task.metrics_by_task(out, targets, ids) for out in outputs]
    return {key: torch.tensor([float(r[key]) for r in rows], dtype=torch.float64)
            for key in rows[0]}


def _run_meta(meta: nn.Module, x: Tensor, thetas: Tensor) -> tuple[Tensor, Tensor]:
    """Every trial at every θ: ``x [B, T, I]``, ``thetas [S, d]`` → outputs
    ``[S, B, T_o, O]`` and states ``[S, B, T_h, state]`` (``T`` both for a recurrent
    meta-model; 1 and its stages for a feed-forward one), one call per ``ELEMENT_BUDGET``."""
    b, t = x.shape[:2]
    per_theta = b * t * (meta.state_size + meta.output_size)
    chunk = max(1, ELEMENT_BUDGET // per_theta)
    outputs, states = [], []
    for start in range(0, thetas.shape[0], chunk):
        part = thetas[start : start + chunk]
        n = part.shape[0]
        out, hidden = meta(x.repeat(n, 1, 1), part.repeat_interleave(b, dim=0))
        outputs.append(out.reshape(n, b, *out.shape[1:]))
        states.append(hidden.reshape(n, b, *hidden.shape[1:]))
    return torch.cat(outputs), torch.cat(states)
