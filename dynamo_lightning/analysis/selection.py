"""Which members and pairs an analysis shows when the user names none: one policy for the
report and the training callbacks.

Clusters come from metadata: members with the same task (``task_label``, else ``task``) and
the same ``architecture`` form one cluster. This is the grouping the map is expected to
reproduce, so a segment *within* a cluster should stay a working network of one topology,
and a segment *across* clusters is where bifurcations are expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["AUTO_ACROSS", "AUTO_WITHIN", "Pair", "auto_pairs", "cluster_of", "clusters",
           "representative_members"]

Pair = tuple[int, int]

AUTO_WITHIN = 2
"""Pairs chosen within clusters by ``pairs="auto"``."""
AUTO_ACROSS = 2
"""Pairs chosen across clusters by ``pairs="auto"``."""


def cluster_of(metadata: dict[str, Any]) -> str:
    """A member's cluster label: ``"<task_label or task>/<architecture>"`` (``?`` if absent)."""
    return f"{_task_of(metadata)}/{metadata.get('architecture') or '?'}"


def _task_of(metadata: dict[str, Any]) -> str:
    return str(metadata.get("task_label") or metadata.get("task") or "?")


def clusters(metadata: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    """Member indices per cluster label, clusters and members in population order."""
    groups: dict[str, list[int]] = {}
    for index, meta in enumerate(metadata):
        groups.setdefault(cluster_of(meta), []).append(index)
    return groups


def representative_members(metadata: Sequence[dict[str, Any]], count: int,
                           usable: Sequence[bool] | None = None) -> list[int]:
    """Up to ``count`` member indices (among the ``usable`` ones, default all): the first
    of each cluster, then the second, ... so every cluster is shown before any shows two."""
    groups = [[i for i in g if usable is None or usable[i]] for g in clusters(metadata).values()]
    order = [g[r] for r in range(max((len(g) for g in groups), default=0))
             for g in groups if r < len(g)]
    return order[:count]


def auto_pairs(metadata: Sequence[dict[str, Any]], within: int = AUTO_WITHIN,
               across: int = AUTO_ACROSS) -> list[Pair]:
    """Up to ``within`` pairs within clusters, then up to ``across`` across clusters.

    Within: the first two members of each cluster that has two, clusters in population order.
    Across: the last members of clusters (0, 1), (2, 3), (0, 2), (1, 3), ... — distinct
    clusters first, so the segments cover as many of them as they can — with pairs of
    different computations (task) first: of the same architecture, so that the segment
    changes the computation only, then of different ones. In a population of several tasks
    those are the segments where the fixed-point topology should change.
    """
    groups = list(clusters(metadata).values())
    inside = [(g[0], g[1]) for g in groups if len(g) >= 2][:within]
    last = [g[-1] for g in groups]
    order = [(0, 1), (2, 3), (0, 2), (1, 3), (0, 3), (1, 2)]
    order += [(a, b) for a in range(len(last)) for b in range(a + 1, len(last))
              if (a, b) not in order]
    pairs = [(last[a], last[b]) for a, b in order if b < len(last)]

    def rank(pair: Pair) -> int:
        a, b = (metadata[i] for i in pair)
        if _task_of(a) == _task_of(b):
            return 2
        return 0 if a.get("architecture") == b.get("architecture") else 1

    return inside + sorted(pairs, key=rank)[:across]  # sorted() is stable
