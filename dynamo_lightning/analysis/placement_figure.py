"""The map with newly placed networks on it (:func:`~.placement.place`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from dynamo_lightning.analysis.placement import Placement
from dynamo_lightning.analysis.plots import closed_on_error
from dynamo_lightning.analysis.projection import project

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def placement_figure(m_embeddings: Tensor, metadata: list[dict[str, Any]],
                     placement: Placement, key: str = "task") -> Figure:
    """The map with the placed members on it.

    Fitted members are dots coloured by ``metadata[key]`` (as on the map figure), group
    centres large crosses of the group's colour under them, placed members stars (their own
    group's colour, grey without one) labelled with their ids. For d > 2 all three are
    projected by one PCA of them together, so they share the axes.

    Args:
        m_embeddings: the fitted θ's ``[N, d]``; metadata: theirs (N).
        placement: from :func:`place` or :func:`locate`.
        key: metadata key to colour by (normally ``placement.key``).

    Returns:
        The figure (the caller saves and closes it; it is closed here if drawing fails).
    """
    fitted = torch.as_tensor(m_embeddings).detach().cpu().float()
    xy = project(torch.cat([fitted, placement.centres, placement.thetas]), method="pca")
    n, g, d = fitted.shape[0], len(placement.groups), fitted.shape[1]
    cmap = plt.get_cmap("tab10" if g <= 10 else "tab20")
    colour = {group: cmap(i % cmap.N) for i, group in enumerate(placement.groups)}
    fig, ax = plt.subplots(figsize=(6.4, 5.2), layout="constrained")
    with closed_on_error(fig):
        labels = [None if meta.get(key) is None else str(meta[key]) for meta in metadata]
        if len(labels) != n:
            raise ValueError(f"metadata: got {len(labels)} dicts for {n} embeddings")
        for group, (x, y) in zip(placement.groups, xy[n:n + g], strict=True):
            ax.scatter(x, y, marker="X", s=160, color=colour[group], alpha=0.45, zorder=2)
        for group in [*placement.groups, None]:
            rows = [i for i, label in enumerate(labels) if label == group]
            if rows:
                ax.scatter(xy[rows, 0], xy[rows, 1], s=30, zorder=3, label=group or "n/a",
                           color=colour.get(group, "lightgrey"), edgecolors="white", lw=0.5)
        _stars(ax, xy[n + g:], placement, colour, key)
        ax.legend(title=f"{key} (✕ centre, ★ placed)", fontsize=7, title_fontsize=8,
                  loc="best", framealpha=0.7)
        ax.set_xlabel("θ₁" if d <= 2 else f"PCA 1 of θ (d = {d})")
        ax.set_ylabel(("θ₂" if d == 2 else "(d = 1)") if d <= 2 else "PCA 2")
        ax.set_title(f"{len(placement.ids)} placed (★) on the map of {n} members")
    return fig


def _stars(ax: Axes, xy: np.ndarray, placement: Placement, colour: dict[str, Any],
           key: str) -> None:
    """The placed members at ``xy [M, 2]``: stars in their own group's colour, with ids."""
    for meta, member_id, (x, y) in zip(placement.metadata, placement.ids, xy, strict=True):
        own = None if meta.get(key) is None else str(meta[key])
        ax.scatter(x, y, marker="*", s=260, color=colour.get(own, "lightgrey"),
                   edgecolors="black", lw=0.8, zorder=4)
        ax.annotate(member_id, (x, y), fontsize=7, xytext=(5, 5), textcoords="offset points")
