"""DYNAMO's map beside the similarity baselines: same clustering, same scores, one figure.

Pure numpy/torch/scikit-learn/matplotlib; no Lightning. DYNAMO's dissimilarity is the
Euclidean distance between the members' embeddings θ; each baseline's comes from
:func:`~dynamo_lightning.analysis.similarity.similarity`. Every dissimilarity is clustered
the same way (agglomerative, average linkage) into the same number of clusters and scored
against every metadata key, so the scores compare the dissimilarities themselves.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np

from dynamo_lightning.analysis.clustering import cluster, cluster_scores, mds
from dynamo_lightning.analysis.member_dynamics import member_states
from dynamo_lightning.analysis.plain import plain
from dynamo_lightning.analysis.plots import closed_on_error
from dynamo_lightning.analysis.projection import project
from dynamo_lightning.analysis.similarity import (
    METHODS,
    states_distance,
    weight_distance,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import Tensor

    from dynamo_lightning.population import Population

FALLBACK_KEY = "architecture"
"""Key the clusters are counted from when the requested key has fewer than two values."""


def compare_methods(embeddings: Any, population: Population, inputs: Tensor,
                    metadata: Sequence[Mapping[str, Any]],
                    methods: Sequence[str] = ("cka", "procrustes", "weights", "dsa"),
                    key: str = "task", n_clusters: int | None = None,
                    **method_options: Mapping[str, Any]) -> dict[str, Any]:
    """Cluster the members by DYNAMO's map and by each baseline, and score every clustering.

    Args:
        embeddings: θ ``[N, d]`` (array or tensor), rows in population order.
        population: the N members the baselines run.
        inputs: ``[B, T, I]`` trials every trajectory baseline runs the members on.
        metadata: one dict per member; every scalar key with ≥ 2 values is scored.
        methods: baselines, in order, from ``similarity.METHODS``; DYNAMO always comes first.
        key: the key that sets the number of clusters. When it has fewer than two distinct
            values, ``"architecture"`` is used instead, and when that has fewer than two
            too, 2 clusters (N if smaller); ``result["key"]`` says which key was used.
        n_clusters: overrides the count taken from ``key``.
        **method_options: options per method, by name, e.g. ``dsa={"n_delays": 4}``.

    Returns:
        Plain JSON-able data (NaN written as None)::

            {"key": str, "n_clusters": int,
             "methods": {name: {"labels": [N] | None,
                                "scores": {meta_key: {"ari", "nmi"}} | None,
                                "silhouette": float | None,
                                "mds": [[x, y]] * N | None,   # DYNAMO: its map (θ or PCA)
                                "dissimilarity": [[float | None] * N] * N | None,
                                "seconds": float,             # see below
                                "error": None | str}}}

        A baseline whose package is missing gets ``error`` and None elsewhere. ``seconds``
        is the dissimilarity and clustering; the members' trajectories are computed once,
        by the first trajectory method, and counted in its time.

    Raises:
        ValueError: an unknown method, options for a method not run, or sizes that disagree.
    """
    unknown = [m for m in methods if m not in METHODS]
    extra = [m for m in method_options if m not in methods]
    if unknown or extra:
        raise ValueError(f"compare_methods: unknown methods {unknown} or options for methods "
                         f"not run {extra} (known: {', '.join(METHODS)})")
    theta = np.asarray(embeddings.detach().cpu() if hasattr(embeddings, "detach")
                       else embeddings, dtype=np.float64)
    if not theta.shape[0] == len(population) == len(metadata):
        raise ValueError(f"embeddings ({theta.shape[0]}), population ({len(population)}) and "
                         f"metadata ({len(metadata)}) must have one row per member")
    key, n_clusters = _cluster_count(metadata, key, n_clusters)
    out: dict[str, Any] = {"key": key, "n_clusters": n_clusters, "methods": {}}
    started = time.perf_counter()
    distance = np.linalg.norm(theta[:, None] - theta[None], axis=-1)
    out["methods"]["dynamo"] = _entry(distance, metadata, n_clusters, started,
                                      xy=project(theta, "pca"))
    states: list | None = None  # every trajectory method compares the same states
    for name in methods:
        started = time.perf_counter()
        options = dict(method_options.get(name, {}))
        try:
            if name == "weights":
                d = weight_distance(population)
            else:
                states = member_states(population, inputs) if states is None else states
                d = states_distance(states, name, **options)
        except ImportError as exc:
            out["methods"][name] = {"labels": None, "scores": None, "silhouette": None,
                                    "mds": None, "dissimilarity": None,
                                    "seconds": time.perf_counter() - started, "error": str(exc)}
            continue
        out["methods"][name] = _entry(d, metadata, n_clusters, started)
    return out


def comparison_figure(result: Mapping[str, Any], metadata: Sequence[Mapping[str, Any]],
                      key: str) -> Figure:
    """One panel per method: DYNAMO's map, then each baseline's MDS picture, coloured by
    ``metadata[key]`` and titled with the method and its ARI against ``key``.

    Returns:
        The figure (the caller saves and closes it; it is closed here if drawing fails).
    """
    entries = list(result["methods"].items())
    ncols = min(3, max(1, len(entries)))
    nrows = math.ceil(len(entries) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.8 * nrows), squeeze=False,
                             layout="constrained")
    with closed_on_error(fig):
        values = [str(m.get(key)) for m in metadata]
        colours = {v: f"C{i % 10}" for i, v in enumerate(dict.fromkeys(values))}
        for ax, (name, entry) in zip(axes.flat, entries, strict=False):
            _panel(ax, name, entry, values, colours, key)
        for ax in axes.flat[len(entries):]:
            ax.set_visible(False)
        handles = [plt.Line2D([], [], ls="", marker="o", color=c, label=v)
                   for v, c in colours.items()]
        fig.legend(handles=handles, title=key, loc="outside right upper", fontsize=8)
    return fig


def _panel(ax: Any, name: str, entry: Mapping[str, Any], values: list[str],
           colours: Mapping[str, str], key: str) -> None:
    label = "DYNAMO map" if name == "dynamo" else f"{name} (MDS)"
    if entry.get("error") or entry.get("mds") is None:
        ax.text(0.5, 0.5, f"not run:\n{entry.get('error')}"[:200], transform=ax.transAxes,
                ha="center", va="center", color="0.4", fontsize=7, wrap=True)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    xy = np.asarray(entry["mds"], dtype=np.float64)
    ax.scatter(xy[:, 0], xy[:, 1], s=30, c=[colours[v] for v in values], edgecolors="black",
               linewidths=0.4)
    axis = "map axis" if name == "dynamo" else "MDS"  # θ itself at d = 2, else θ's PCs
    ax.set_xlabel(f"{axis} 1", fontsize=8)
    ax.set_ylabel(f"{axis} 2", fontsize=8)
    ari = (entry.get("scores") or {}).get(key, {}).get("ari")
    ax.set_title(f"{label}: ARI vs {key} = " + ("n/a" if ari is None else f"{ari:.2f}"),
                 fontsize=9)


def _entry(d: np.ndarray, metadata: Sequence[Mapping[str, Any]], n_clusters: int,
           started: float, xy: np.ndarray | None = None) -> dict[str, Any]:
    """Cluster and score one dissimilarity; ``seconds`` counts from ``started`` to the labels."""
    labels = cluster(d, n_clusters, precomputed=True)
    seconds = time.perf_counter() - started
    scores = cluster_scores(labels, list(metadata), dissimilarity=d)
    silhouette = scores.pop("silhouette")
    return {"labels": labels.tolist(), "scores": plain(scores), "silhouette": plain(silhouette),
            "mds": plain((mds(d) if xy is None else xy).tolist()),
            "dissimilarity": plain(d.tolist()), "seconds": seconds, "error": None}


def _cluster_count(metadata: Sequence[Mapping[str, Any]], key: str,
                   n_clusters: int | None) -> tuple[str, int]:
    """The key used and the number of clusters (see :func:`compare_methods`)."""
    def distinct(k: str) -> int:
        return len({str(m.get(k)) for m in metadata})

    if distinct(key) < 2 and distinct(FALLBACK_KEY) >= 2:
        key = FALLBACK_KEY
    if n_clusters is None:
        n_clusters = distinct(key) if distinct(key) >= 2 else min(2, len(metadata))
    return key, int(n_clusters)
