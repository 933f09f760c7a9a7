"""Figures of the fixed-point and interpolation analyses (matplotlib only, no Lightning).

Each function returns an open ``Figure`` for the caller to save/log and close (the
callbacks hand it to ``log_figure``, which always closes it); a figure is closed here only
when drawing it fails.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from dynamo_lightning.analysis.fixed_points import KINDS, FixedPointSet
from dynamo_lightning.analysis.pca import pca

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from dynamo_lightning.analysis.interpolation import GridResult, InterpolationResult

KIND_STYLE: dict[str, tuple[str, bool, str]] = {
    "stable": ("tab:blue", True, "o"),
    "saddle": ("tab:orange", False, "o"),
    "unstable": ("tab:red", False, "o"),
    "slow": ("tab:gray", False, "s"),
}
"""Per kind: colour, filled marker?, marker shape."""
ANNOTATE_GRID_UP_TO = 12
"""Grids of at most this many points a side write each cell's count in the cell."""


@contextlib.contextmanager
def closed_on_error(fig: Figure) -> Iterator[Figure]:
    """Close ``fig`` if drawing it fails, so no half-drawn figure leaks."""
    try:
        yield fig
    except BaseException:
        plt.close(fig)
        raise


def fixed_point_figure(trajectories: Tensor | Sequence[Tensor], fps: FixedPointSet,
                       titles: Sequence[str] | None = None, *, dims: int = 2,
                       max_trajectories: int = 16) -> Figure:
    """Fixed points on the top principal components of the states, one panel per system.

    Each panel's PCA is fitted on that system's trajectories; up to ``max_trajectories``
    trajectories are drawn thin and grey, the points coloured by kind (stable filled,
    saddle/unstable/slow hollow; see :data:`KIND_STYLE`).

    Args:
        trajectories: ``[B, T, H]`` for one system, or one ``[B_g, T_g, H]`` per group of
            ``fps`` (``[T, H]`` is read as one trajectory).
        fps: the points; ``fps.group`` says which panel each goes to.
        titles: one title per panel (default ``"system g"``); point counts are appended.
        dims: 2 or 3 principal components.
        max_trajectories: trajectories drawn per panel.

    Raises:
        ValueError: as many trajectory sets as groups are needed, a title per panel, and
            ``dims`` in (2, 3).
    """
    systems = [trajectories] if isinstance(trajectories, Tensor) else list(trajectories)
    if len(systems) != fps.num_groups:
        raise ValueError(f"trajectories: got {len(systems)} systems for the {fps.num_groups} "
                         "groups of fps (pass one [B, T, H] per group)")
    titles = [f"system {g}" for g in range(len(systems))] if titles is None else list(titles)
    if len(titles) != len(systems):
        raise ValueError(f"titles: got {len(titles)} for {len(systems)} panels")
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims!r}")
    ncols = min(4, len(systems))
    nrows = math.ceil(len(systems) / ncols)
    fig = plt.figure(figsize=(4.2 * ncols, 3.8 * nrows), layout="constrained")
    with closed_on_error(fig):
        for g, (states, points) in enumerate(zip(systems, fps.split(), strict=True)):
            ax = fig.add_subplot(nrows, ncols, g + 1, projection="3d" if dims == 3 else None)
            _fixed_point_panel(ax, _as_trajectories(states), points, dims, max_trajectories)
            counts = ", ".join(f"{points.count(k)} {k}" for k in KINDS if points.count(k))
            ax.set_title(f"{titles[g]}\n{counts or 'no fixed point'}", fontsize=9)
    return fig


def interpolation_figure(result: InterpolationResult) -> Figure:
    """Task metric (top) and fixed-point counts per kind (bottom) against α, bifurcation α's
    as dashed vertical lines, the endpoint ids in the title."""
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(6.4, 5.6),
                                      layout="constrained")
    with closed_on_error(fig):
        alphas = result.alphas.double().cpu().numpy()
        # Several sub-tasks: one line each (their mean mixes scales, e.g. accuracy and R²).
        curves = (dict(result.task_metrics)
                  or {result.metric_name or "task metric": result.task_metric})
        finite = []
        for n, (label, values) in enumerate(curves.items()):
            values = values.double().cpu().numpy()
            finite.append(values[np.isfinite(values)])
            colour = "black" if len(curves) == 1 else f"C{n}"
            top.plot(alphas, values, "o-", color=colour, lw=1.5, ms=4, label=label)
        if any(v.size for v in finite):
            _at_least_span(top, np.concatenate(finite), MIN_METRIC_SPAN)
            if len(curves) > 1:
                top.legend(fontsize=8, loc="best")
        else:
            _note(top, "no task metric")
        top.set_ylabel(next(iter(curves)) if len(curves) == 1 else "task metric (own trials)")
        shown = [k for k in KINDS if k in result.counts and bool(result.counts[k].any())]
        for kind in shown:
            colour, _, marker = KIND_STYLE[kind]
            bottom.plot(alphas, result.counts[kind].cpu().numpy(), marker=marker, ls="-",
                        color=colour, label=kind, ms=4)
        if shown:
            bottom.legend(fontsize=8, loc="best")
        else:
            _note(bottom, "fixed points not computed" if not result.counts else "none found")
        bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
        bottom.set_ylabel("fixed points")
        bottom.set_xlabel("α")
        for alpha in result.bifurcations:
            for ax in (top, bottom):
                ax.axvline(alpha, color="tab:purple", ls="--", lw=1, alpha=0.8)
        path = (f"θ[{result.endpoints[0]}] → θ[{result.endpoints[1]}]" if result.endpoints
                else "path in θ-space")
        fig.suptitle(f"{path}: {len(result.bifurcations)} bifurcation(s)", fontsize=10)
    return fig


def grid_figure(result: GridResult, thetas: Tensor | None = None,
                kind: str = "stable") -> Figure:
    """The map as a field: the task metric (one panel per sub-task of a mixture) and the
    number of ``kind`` fixed points at every grid θ, the members' θ's on top.

    Metrics bounded above by 1 (accuracy, R²) are coloured from −1 up: an R² far below
    zero, a network of another computation, would otherwise wash out the rest. The colour
    range spans at least ``MIN_METRIC_SPAN``, as the interpolation plot's axis does.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    grid = result.theta_grid.double().cpu().numpy()
    xs, ys = grid[0, :, 0], grid[:, 0, 1]
    extent = (*_edges(xs), *_edges(ys))
    panels = dict(result.task_metrics) or {result.metric_name or "task metric": result.task_metric}
    panels = {k: v for k, v in panels.items() if bool(torch.isfinite(v).any())}
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.4 * (len(panels) + 1), 3.9),
                             squeeze=False, layout="constrained")
    with closed_on_error(fig):
        for ax, (name, values) in zip(axes[0], panels.items(), strict=False):
            metric = values.double().cpu().numpy()
            high, lowest = float(np.nanmax(metric)), float(np.nanmin(metric))
            low = max(lowest, -1.0) if high <= 1.0 else lowest
            low = min(low, high - MIN_METRIC_SPAN)  # 0.9973 vs 0.9986 is no contrast
            image = ax.imshow(metric, origin="lower", extent=extent, aspect="auto",
                              cmap="viridis", vmin=low, vmax=high)
            fig.colorbar(image, ax=ax, extend="min" if low > lowest else "neither")
            ax.set_title(name, fontsize=9)
        ax = axes[0, -1]
        if kind in result.counts:
            counts = result.counts[kind].cpu().numpy()
            image = ax.imshow(counts, origin="lower", extent=extent, aspect="auto",
                              cmap="magma", vmin=0)
            fig.colorbar(image, ax=ax, ticks=MaxNLocator(integer=True))
            if counts.shape[0] <= ANNOTATE_GRID_UP_TO:
                for (r, c), n in np.ndenumerate(counts):
                    ax.text(xs[c], ys[r], str(n), ha="center", va="center", fontsize=7,
                            color="white" if n < 0.6 * max(1, counts.max()) else "black")
            ax.set_title(f"{kind} fixed points", fontsize=9)
        else:
            _note(ax, "fixed points not computed")
        for ax in axes[0]:
            ax.set_xlabel("θ₁")
            ax.set_ylabel("θ₂")
            if thetas is not None:
                points = torch.as_tensor(thetas).double().cpu().numpy()
                ax.scatter(points[:, 0], points[:, 1], s=22, color="white",
                           edgecolors="black", lw=0.8, zorder=3)
    return fig


def _edges(centres: np.ndarray) -> tuple[float, float]:
    """The outer edges of cells centred on evenly spaced ``centres``."""
    half = (centres[1] - centres[0]) / 2 if len(centres) > 1 else 0.5
    return float(centres[0] - half), float(centres[-1] + half)


def _fixed_point_panel(ax: Axes, states: Tensor, points: FixedPointSet, dims: int,
                       max_trajectories: int) -> None:
    fit = pca(states.reshape(-1, states.shape[-1]), dims)
    explained = fit.explained
    for trajectory in states[:max_trajectories]:
        xy = fit.transform(trajectory).numpy()
        ax.plot(*xy.T, color="0.6", lw=0.5, alpha=0.6)
    if len(points):
        xy = fit.transform(points.points.detach().cpu()).numpy()
        for kind in KINDS:
            mask = np.array([k == kind for k in points.kind])
            if not mask.any():
                continue
            colour, filled, marker = KIND_STYLE[kind]
            ax.scatter(*xy[mask].T, marker=marker, s=40, linewidths=1.5, label=kind,
                       facecolors=colour if filled else "none", edgecolors=colour, zorder=3)
        ax.legend(fontsize=7, loc="best")
    labels = [f"PC{i + 1} ({100 * v:.0f}%)" for i, v in enumerate(explained)]
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    if dims == 3:
        ax.set_zlabel(labels[2])


def _as_trajectories(states: Tensor) -> Tensor:
    states = torch.as_tensor(states).detach().cpu().double()
    if states.dim() == 2:
        states = states.unsqueeze(0)
    if states.dim() != 3 or states.numel() == 0:
        raise ValueError(f"trajectories must be [B, T, H] (non-empty), got {tuple(states.shape)}")
    return states


def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


#: Smallest task-metric range shown on an interpolation plot (5 points), so that
#: differences of a few hundredths of a point do not look like a collapse.
MIN_METRIC_SPAN = 0.05


def _at_least_span(ax: Any, values: np.ndarray, span: float) -> None:
    """Widen ``ax``'s y-range to at least ``span`` around ``values``."""
    low, high = float(values.min()), float(values.max())
    if high - low < span:
        middle = (low + high) / 2
        ax.set_ylim(middle - span / 2, middle + span / 2)
