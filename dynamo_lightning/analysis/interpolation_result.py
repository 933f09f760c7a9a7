"""What an interpolation returns: the meta-model's task metric and fixed-point counts along
a path (:class:`InterpolationResult`) or over a grid (:class:`GridResult`), and where the
topology changes (:func:`bifurcation_alphas`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from dynamo_lightning.analysis.fixed_points import FixedPointSet
from dynamo_lightning.analysis.plain import plain
from dynamo_lightning.checks import positive_int

__all__ = ["GridResult", "InterpolationResult", "bifurcation_alphas"]


@dataclass
class InterpolationResult:
    """The meta-model along a path ``θ(α)``, α ∈ [0, 1].

    Attributes:
        alphas: path parameter ``[S]`` (segment: evenly spaced; path: normalised arc length).
        thetas: the embeddings ``[S, d]``.
        task_metric: ``m.task``'s metric at each θ ``[S]`` (NaN without a task).
        metric_name: its name (``task.metric_name``; ``""`` without a task).
        counts: fixed points per kind (``"stable"``, ``"saddle"``, ``"unstable"``, ``"slow"``)
            at each θ, ``{kind: [S] long}`` (empty when fixed points were not computed).
        bifurcations: α's (midpoints between consecutive α's) where the counts by kind change.
        fixed_points: the points at each θ (one :class:`FixedPointSet` per α), or None.
        endpoints: member ids at α = 0 and α = 1 for a segment between members, else None.
        task_metrics: for a task of several sub-tasks (a mixed population's mixture task),
            each sub-task's metric on its own trials, ``{"<task>:<metric>": [S]}``; empty
            otherwise. ``task_metric`` is then their mean, which mixes scales.
    """

    alphas: Tensor
    thetas: Tensor
    task_metric: Tensor
    metric_name: str
    counts: dict[str, Tensor]
    bifurcations: list[float]
    fixed_points: list[FixedPointSet] | None = None
    endpoints: tuple[str, str] | None = None
    task_metrics: dict[str, Tensor] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: lists, ``None`` for NaN; per α the points' kinds, q, unstable
        directions, spectral radius and distance to data (not the states themselves)."""
        return {
            "alphas": self.alphas.tolist(), "thetas": self.thetas.tolist(),
            "metric_name": self.metric_name, "task_metric": plain(self.task_metric),
            "task_metrics": {k: plain(v) for k, v in self.task_metrics.items()},
            "counts": {k: v.tolist() for k, v in self.counts.items()},
            "bifurcations": list(self.bifurcations),
            "endpoints": list(self.endpoints) if self.endpoints else None,
            "fixed_points": None if self.fixed_points is None else [
                {"kind": list(f.kind), "q": plain(f.q), "n_unstable": f.n_unstable.tolist(),
                 "spectral_radius": plain(f.eigvals.abs().amax(1)),
                 "distance_to_data": plain(f.distance_to_data)} for f in self.fixed_points],
        }


@dataclass
class GridResult:
    """Task metric and fixed-point counts on a regular grid over a 2-D map.

    Attributes:
        theta_grid: ``[R, R, 2]``; ``theta_grid[r, c] = (θ₁ of column c, θ₂ of row r)``, so
            ``imshow(task_metric, origin="lower")`` draws the map upright.
        task_metric: ``[R, R]`` (NaN without a task).
        counts: ``{kind: [R, R] long}`` (empty when fixed points were not computed).
        metric_name: the task metric's name.
        task_metrics: a mixture task's sub-task metrics, ``{"<task>:<metric>": [R, R]}``
            (empty for a single task; see :class:`InterpolationResult`).
    """

    theta_grid: Tensor
    task_metric: Tensor
    counts: dict[str, Tensor]
    metric_name: str = ""
    task_metrics: dict[str, Tensor] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``None`` for NaN)."""
        return {"theta_grid": self.theta_grid.tolist(), "metric_name": self.metric_name,
                "task_metric": plain(self.task_metric),
                "task_metrics": {k: plain(v) for k, v in self.task_metrics.items()},
                "counts": {k: v.tolist() for k, v in self.counts.items()}}


def bifurcation_alphas(alphas: Tensor | Sequence[float], counts: dict[str, Tensor],
                       kinds: Sequence[str] | None = ("stable",), persist: int = 2,
                       decimals: int = 4) -> list[float]:
    """α's where the fixed-point topology changes: the midpoint of the consecutive α's at
    which the counts of ``kinds`` take a new value that then holds for ``persist`` α's.

    By default only stable points count: every attractor has a basin that the search's
    initial states (sampled from trajectories) reach, so their count is reliable, while
    saddles are found only partially and their counts jitter from one α to the next. The
    persistence rule (hysteresis) keeps a count that flickers for one α (8, 7, 8) from
    reading as two bifurcations; a change in the last ``persist − 1`` α's cannot be
    confirmed and is not reported.

    Args:
        alphas: ``[S]``.
        counts: ``{kind: [S]}``.
        kinds: which kinds' counts define the topology (None: all of ``counts``).
        persist: α's a new count must hold (1: every change counts).
        decimals: the α's are rounded to this many decimals (they are midpoints of a grid).

    Raises:
        ValueError: counts that are not ``[S]`` like ``alphas``, or ``persist`` < 1.
    """
    persist = positive_int("persist", persist)
    alphas = torch.as_tensor(alphas, dtype=torch.float64).cpu()
    chosen = [c for k, c in counts.items() if kinds is None or k in kinds]
    if not chosen:
        return []
    table = torch.stack([torch.as_tensor(c).cpu().long() for c in chosen])
    if table.shape[1:] != alphas.shape:
        raise ValueError(f"counts must be [{alphas.numel()}] per kind like alphas, got "
                         f"{tuple(table.shape[1:])}")
    found, current = [], table[:, 0]
    for s in range(1, table.shape[1] - persist + 1):
        new = table[:, s]
        if not torch.equal(new, current) and bool((table[:, s:s + persist] == new[:, None]).all()):
            found.append(round(float((alphas[s - 1] + alphas[s]) / 2), decimals))
            current = new
    return found
