"""Task performance and fixed-point topology of the meta-model along paths in θ-space.

The meta-model at any θ is a network (``m.meta_model_at(θ)``); walking θ from one member's
embedding to another's asks whether the points in between are working networks (task
metric) and where the dynamics change qualitatively (the fixed points' counts by kind change:
a bifurcation). Every θ of a call is evaluated in batched form:

- task metric: the same ``trials`` task trials are repeated for every θ and run in one
  meta-model call ``m.meta(x_rep, θ_rep)`` (split into chunks only past ``ELEMENT_BUDGET``
  state elements), then scored per θ with ``m.task.metric``. Trials are drawn with
  ``task.sample_with_ids(trials, torch.Generator().manual_seed(seed), split="test")`` and
  the ids passed to ``metric(..., task_ids=...)`` (a mixture scores each trial by the task
  that drew it). A module without a task gives NaN.
- fixed points: one :func:`find_fixed_points` call for all θ's (``meta_step_fn``, one group
  per θ), initial states sampled from the meta-model's own states on those trials at each θ,
  which are also each group's ``reference`` (outlier removal, ``distance_to_data``). The
  constant input is ``x_const`` (default zeros: the no-input condition, as in Sussillo &
  Barak 2013, where pulses are absent and memories are held). Without a task the meta-model
  free-runs ``FREE_RUN_STEPS`` steps on ``x_const`` from ``H̃₀(θ)`` instead.

``m`` is a :class:`~.fitted_map.FittedMap` (``DynamoModule`` is one); nothing here imports
Lightning. ``search`` (:class:`~.search_options.SearchOptions`) sets the trials and the
fixed-point search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from dynamo_lightning.analysis.fitted_map import FittedMap
from dynamo_lightning.analysis.fixed_points import KINDS, FixedPointSet
from dynamo_lightning.analysis.interpolation_result import (
    GridResult,
    InterpolationResult,
    bifurcation_alphas,
)
from dynamo_lightning.analysis.search_options import SearchOptions
from dynamo_lightning.analysis.theta_evaluation import (
    ELEMENT_BUDGET,
    FREE_RUN_STEPS,
    Evaluation,
    evaluate,
)
from dynamo_lightning.checks import finite_real, int_at_least, is_int

__all__ = ["ELEMENT_BUDGET", "FREE_RUN_STEPS", "GridResult", "InterpolationResult",
           "bifurcation_alphas", "fixed_points_at", "interpolate", "interpolate_grid",
           "interpolate_pairs", "interpolate_path", "member_index"]


def interpolate(m: FittedMap, i: int | str, j: int | str, steps: int = 11, *,
                search: SearchOptions | None = None, fixed_points: bool = True,
                x_const: Tensor | None = None) -> InterpolationResult:
    """The segment ``θ_i → θ_j``: ``θ(α) = (1 − α) θ_i + α θ_j`` at ``steps`` even α's.

    Args:
        m: the fitted map (see the module docstring).
        i, j: members, by index in ``m.member_ids`` or by id.
        steps: points on the segment (≥ 2), both ends included.
        search: the trials scored at every θ (which also drive the trajectories) and the
            fixed-point search's settings; default ``SearchOptions()``.
        fixed_points: also find the fixed points at every θ (the slow part).
        x_const: constant input ``[I]`` of the fixed-point search (default zeros).

    Returns:
        :class:`InterpolationResult` with ``endpoints = (id_i, id_j)``.

    Raises:
        ValueError: an unknown member, or an option out of range (named).

    Example::

        result = interpolate(module, "gru-s0", "lstm-s3", steps=11)
        result.task_metric, result.counts["stable"], result.bifurcations
    """
    return interpolate_pairs(m, [(i, j)], steps, search=search, fixed_points=fixed_points,
                             x_const=x_const)[0]


def interpolate_pairs(m: FittedMap, pairs: Sequence[tuple[int | str, int | str]],
                      steps: int = 11, **options: Any) -> list[InterpolationResult]:
    """:func:`interpolate` for several member pairs, all their θ's in one batched evaluation.

    ``options`` are :func:`interpolate`'s keywords (``search``, ``fixed_points``,
    ``x_const``).
    """
    steps = int_at_least("steps", steps, 2)
    if not pairs:
        raise ValueError("pairs must name at least one (i, j) pair of members")
    table = _embeddings(m)
    ids = [str(k) for k in m.member_ids]
    alphas = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    ends = [(member_index(m, a), member_index(m, b)) for a, b in pairs]
    weight = alphas.to(table.dtype)[:, None]
    thetas = torch.cat([(1 - weight) * table[a] + weight * table[b] for a, b in ends])
    whole = evaluate(m, thetas, **options)
    return [_cut(whole, k * steps, steps, alphas, (ids[a], ids[b]))
            for k, (a, b) in enumerate(ends)]


def interpolate_path(m: FittedMap, thetas: Tensor, *, alphas: Tensor | None = None,
                     endpoints: tuple[str, str] | None = None, **options: Any
                     ) -> InterpolationResult:
    """Any path ``thetas [S, d]`` (S ≥ 1), e.g. through several members or around a loop.

    Args:
        m: the fitted module.
        thetas: the path's points, in order.
        alphas: the path parameter ``[S]``; default the normalised arc length of the
            polyline (evenly spaced when the path has zero length).
        endpoints: ids to record in the result (default None).
        **options: :func:`interpolate`'s keywords.
    """
    thetas = _thetas(m, thetas)
    if alphas is None:
        lengths = (thetas[1:] - thetas[:-1]).double().norm(dim=1)
        cumulative = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
        total = float(cumulative[-1])
        alphas = cumulative / total if total > 0 else torch.linspace(0, 1, len(thetas)).double()
    alphas = torch.as_tensor(alphas, dtype=torch.float64).cpu()
    if alphas.shape != (thetas.shape[0],):
        raise ValueError(f"alphas must be [{thetas.shape[0]}], got {tuple(alphas.shape)}")
    return _cut(evaluate(m, thetas, **options), 0, thetas.shape[0], alphas, endpoints)


def interpolate_grid(m: FittedMap, resolution: int = 9, margin: float = 0.1,
                     **options: Any) -> GridResult:
    """A ``resolution × resolution`` grid over a 2-D map's bounding box, widened by
    ``margin`` × its extent on every side; ``options`` as for :func:`interpolate`.

    Raises:
        ValueError: the embeddings are not 2-D (d ≠ 2), or a bad resolution/margin.
    """
    table = _embeddings(m)
    if table.shape[1] != 2:
        raise ValueError(f"interpolate_grid needs a 2-D map (embedding_dim d = 2), got "
                         f"d = {table.shape[1]}; use interpolate_path on a path instead")
    resolution = int_at_least("resolution", resolution, 2)
    margin = finite_real("margin", margin, lambda v: v >= 0, ">= 0")
    low, high = table.min(0).values, table.max(0).values
    span = torch.where(high > low, high - low, torch.ones_like(high))
    low, high = low - margin * span, high + margin * span
    xs = torch.linspace(float(low[0]), float(high[0]), resolution, dtype=table.dtype)
    ys = torch.linspace(float(low[1]), float(high[1]), resolution, dtype=table.dtype)
    rows, cols = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([cols, rows], dim=-1)  # [R, R, 2]: (θ₁ of the column, θ₂ of the row)
    flat = interpolate_path(m, grid.reshape(-1, 2), **options)
    shape = (resolution, resolution)
    return GridResult(theta_grid=grid, task_metric=flat.task_metric.reshape(shape),
                      counts={k: v.reshape(shape) for k, v in flat.counts.items()},
                      metric_name=flat.metric_name,
                      task_metrics={k: v.reshape(shape) for k, v in flat.task_metrics.items()})


def fixed_points_at(m: FittedMap, thetas: Tensor, **options: Any) -> tuple[FixedPointSet, Tensor]:
    """Fixed points of the meta-model at ``thetas [G, d]`` in one search (group g = θ_g).

    Returns:
        the points (on the CPU) and the meta-model's states that seeded them,
        ``[G, trials, T, state]`` (CPU), e.g. for :func:`~.plots.fixed_point_figure`.
    """
    result = evaluate(m, _thetas(m, thetas), **{**options, "fixed_points": True})
    assert result.fixed_points is not None
    return result.fixed_points, result.states


def member_index(m: FittedMap, key: int | str) -> int:
    """Index of member ``key`` (an index into ``m.member_ids`` or an id)."""
    ids = [str(k) for k in m.member_ids]
    if is_int(key):
        if 0 <= key < len(ids):
            return key
        raise ValueError(f"member index {key} out of range for {len(ids)} members")
    if isinstance(key, str) and key in ids:
        return ids.index(key)
    shown = ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "")
    raise ValueError(f"unknown member {key!r} (known ids: {shown}; or an index < {len(ids)})")


# ------------------------------------------------------------------------------ internals
def _cut(whole: Evaluation, start: int, size: int, alphas: Tensor,
         endpoints: tuple[str, str] | None) -> InterpolationResult:
    """The InterpolationResult of θ's ``start : start + size`` of ``whole``."""
    window = slice(start, start + size)
    per_alpha, counts = None, {}
    if whole.fixed_points is not None:
        groups = whole.fixed_points.group
        mine = (groups >= start) & (groups < start + size)
        part = whole.fixed_points.select(mine)
        part = replace(part, group=part.group - start, num_groups=size)
        per_alpha = part.split()
        kind = torch.tensor([KINDS.index(k) for k in part.kind], dtype=torch.long)
        counts = {k: torch.bincount(part.group[kind == n], minlength=size)
                  for n, k in enumerate(KINDS)}
    return InterpolationResult(alphas=alphas, thetas=whole.thetas[window],
                         task_metric=whole.task_metric[window], metric_name=whole.metric_name,
                         counts=counts, bifurcations=bifurcation_alphas(alphas, counts),
                         fixed_points=per_alpha, endpoints=endpoints,
                         task_metrics={k: v[window] for k, v in whole.task_metrics.items()})


def _embeddings(m: FittedMap) -> Tensor:
    table = torch.as_tensor(m.embeddings()).detach().cpu()
    if table.dim() != 2 or table.shape[0] != len(m.member_ids):
        raise ValueError(f"m.embeddings() must be [N, d] with N = {len(m.member_ids)} members, "
                         f"got {tuple(table.shape)}")
    return table


def _thetas(m: FittedMap, thetas: Tensor) -> Tensor:
    thetas = torch.as_tensor(thetas).detach()
    d = m.meta.embedding_dim
    if thetas.dim() != 2 or thetas.shape[1] != d or thetas.shape[0] < 1:
        raise ValueError(f"thetas must be [S>=1, {d}], got {tuple(thetas.shape)}")
    finite = torch.isfinite(thetas).all(1)
    if not bool(finite.all()):
        rows = (~finite).nonzero().flatten().tolist()
        raise ValueError(f"thetas must be finite, got NaN/Inf in row(s) {rows} of thetas "
                         f"{tuple(thetas.shape)}")
    return thetas.float() if not thetas.is_floating_point() else thetas
