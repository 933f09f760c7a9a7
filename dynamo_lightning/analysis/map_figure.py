"""The model-embedding map as a matplotlib figure: one panel per metadata key.

Shared by the ``EmbeddingManifold`` callback (maps while DYNAMO trains) and the analysis
report (``map_<key>.png``). Pure matplotlib/numpy; no Lightning.

Categorical keys (architecture, task, seed, hidden_size) get a colour per value and a
legend; numeric keys with non-integer values or more than :data:`MAX_CATEGORIES` values
(task_metric) get a colormap and a colorbar.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np

from dynamo_lightning.analysis.plots import closed_on_error
from dynamo_lightning.checks import is_real

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["MAX_CATEGORIES", "default_keys", "map_figure", "metadata_keys"]

MAX_CATEGORIES = 20
"""A metadata key with more distinct (non-numeric) values than this is not drawn by default."""
LEGEND_INSIDE_CHARS = 24
"""Legends whose longest label is longer than this go under the axes, not over the points."""
LEGEND_MAX_CHARS = 60
"""Legend labels are cut to this many characters."""


def map_figure(xy: np.ndarray, ids: list[str], metadata: list[dict[str, Any]],
               keys: list[str], method: str, dim: int, annotate: bool = False) -> Figure:
    """Draw the map: every member at ``xy``, one panel per key, coloured by that key.

    Args:
        xy: map coordinates ``[N, 2]`` (θ itself when d ≤ 2, else its projection).
        ids: member ids (N), written next to the points when ``annotate``.
        metadata: one dict per member (N).
        keys: metadata keys, one panel each; empty: a single uncoloured panel.
        method: the projection used when ``dim > 2`` (``"pca"``/``"umap"``), for axis labels.
        dim: d, the size of θ.
        annotate: write each member's id next to its point.

    Returns:
        The figure (the caller saves and closes it; it is closed here if drawing fails).
    """
    panels: list[str | None] = list(keys) if keys else [None]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 4.0 * nrows),
                             squeeze=False, layout="constrained")
    with closed_on_error(fig):
        labels = _axis_labels(method, dim)
        for ax, key in zip(axes.flat, panels, strict=False):
            if key is None:
                ax.scatter(xy[:, 0], xy[:, 1], s=30, color="C0")
                ax.set_title(f"{len(ids)} members")
            else:
                values = [m.get(key) for m in metadata]
                if _is_continuous(values):
                    _scatter_numeric(fig, ax, xy, values, key)
                else:
                    _scatter_categorical(ax, xy, values, key)
            if annotate:
                for (x, y), name in zip(xy, ids, strict=True):
                    ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
            ax.set_xlabel(labels[0])
            ax.set_ylabel(labels[1])
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
    return fig


def default_keys(metadata: list[dict[str, Any]]) -> list[str]:
    """Metadata keys worth a panel: values vary across members, and there are at most
    :data:`MAX_CATEGORIES` of them or they are numbers (drawn with a colorbar)."""
    chosen = []
    for key in metadata_keys(metadata):
        values = [m.get(key) for m in metadata]
        distinct = len({_label(v) for v in values})
        if distinct > 1 and (distinct <= MAX_CATEGORIES or _is_continuous(values)):
            chosen.append(key)
    return chosen


def metadata_keys(metadata: list[dict[str, Any]]) -> list[str]:
    """Union of the members' metadata keys, in first-seen order."""
    return list(dict.fromkeys(k for m in metadata for k in m))


def _scatter_categorical(ax: Axes, xy: np.ndarray, values: list[Any], key: str) -> None:
    labels = [_label(v) for v in values]
    order = sorted(set(labels), key=_sort_key)
    cmap = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    for i, category in enumerate(order):
        mask = np.array([lab == category for lab in labels])
        ax.scatter(xy[mask, 0], xy[mask, 1], s=30, color=cmap(i % cmap.N),
                   label=_shorten(category))
    if max(len(c) for c in order) <= LEGEND_INSIDE_CHARS:
        ax.legend(title=key, fontsize=7, title_fontsize=8, loc="best", framealpha=0.7)
    else:  # long labels (e.g. task configs) would cover the points: legend under the axes
        ax.legend(title=key, fontsize=7, title_fontsize=8, loc="upper center",
                  bbox_to_anchor=(0.5, -0.18), framealpha=0.7)
    ax.set_title(key)


def _scatter_numeric(fig: Figure, ax: Axes, xy: np.ndarray, values: list[Any], key: str) -> None:
    c = np.array([np.nan if v is None else float(v) for v in values])
    known = np.isfinite(c)
    points = ax.scatter(xy[known, 0], xy[known, 1], c=c[known], s=30, cmap="viridis")
    if not known.all():
        ax.scatter(xy[~known, 0], xy[~known, 1], s=30, color="lightgrey", marker="x",
                   label="n/a")
        ax.legend(fontsize=7)
    fig.colorbar(points, ax=ax, label=key)
    ax.set_title(key)


def _shorten(label: str) -> str:
    """At most :data:`LEGEND_MAX_CHARS` characters, the cut marked with an ellipsis."""
    return label if len(label) <= LEGEND_MAX_CHARS else label[: LEGEND_MAX_CHARS - 1] + "…"


def _is_continuous(values: list[Any]) -> bool:
    """Numbers (missing allowed) with a non-integer value or too many values for a legend."""
    numbers = [v for v in values if v is not None]
    if not numbers or not all(is_real(v) for v in numbers):
        return False
    return (any(float(v) != int(v) for v in numbers if math.isfinite(v))
            or len(set(numbers)) > MAX_CATEGORIES)


def _sort_key(label: str) -> tuple[int, float, str]:
    """Numbers in numeric order first, then other labels alphabetically."""
    try:
        return 0, float(label), label
    except ValueError:
        return 1, 0.0, label


def _label(value: Any) -> str:
    return "n/a" if value is None else str(value)


def _axis_labels(method: str, dim: int) -> tuple[str, str]:
    if dim > 2:
        name = method.upper()
        return f"{name} 1 of θ (d = {dim})", f"{name} 2"
    return "θ₁", "θ₂" if dim == 2 else "(d = 1)"
