"""Which member pairs the report interpolates between.

Clusters come from metadata: members with the same task (``task_label``, else ``task``) and
the same ``architecture`` form one cluster. This is the grouping the map is expected to
reproduce, so a segment *within* a cluster should stay a working network of one topology,
and a segment *across* clusters is where bifurcations are expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dynamo_lightning.checks import is_int

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


def auto_pairs(metadata: Sequence[dict[str, Any]]) -> list[Pair]:
    """Up to :data:`AUTO_WITHIN` pairs within clusters, then up to :data:`AUTO_ACROSS` across.

    Within: the first two members of each cluster that has two, clusters in population order.
    Across: the last members of clusters (0, 1), (2, 3), (0, 2), (1, 3), ... — distinct
    clusters first, so the segments cover as many of them as they can — with pairs of
    different computations (task) first: of the same architecture, so that the segment
    changes the computation only, then of different ones. In a population of several tasks
    those are the segments where the fixed-point topology should change.
    """
    groups = list(clusters(metadata).values())
    within = [(g[0], g[1]) for g in groups if len(g) >= 2][:AUTO_WITHIN]
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

    return within + sorted(pairs, key=rank)[:AUTO_ACROSS]  # sorted() is stable


def resolve_pairs(pairs: str | Sequence[Sequence[int | str]] | None, ids: Sequence[str],
                  metadata: Sequence[dict[str, Any]]) -> list[Pair]:
    """``"auto"``, ``"none"``/None/``[]``, or explicit ``[(i, j), ...]`` (indices or ids).

    Raises:
        ValueError: an unknown pairs spec or member, or a pair of a member with itself.
    """
    if pairs is None or pairs == "none":
        return []
    if pairs == "auto":
        return auto_pairs(metadata)
    if isinstance(pairs, str):
        raise ValueError(f"pairs must be 'auto', 'none' or a list of (i, j) member pairs, "
                         f"got {pairs!r}")
    chosen = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"each pair must be (i, j), got {pair!r}")
        i, j = (_index(key, ids) for key in pair)
        if i == j:
            raise ValueError(f"pair {tuple(pair)!r} joins member {ids[i]!r} with itself")
        chosen.append((i, j))
    return chosen


def parse_pairs(text: str) -> str | list[tuple[str, str]]:
    """The command line's ``--pairs``: ``auto``, ``none`` or ``a:b,c:d`` (ids or indices)."""
    if text in ("auto", "none"):
        return text
    pairs = []
    for part in text.split(","):
        ends = part.strip().split(":")
        if len(ends) != 2 or not all(ends):
            raise ValueError(f"--pairs: expected 'auto', 'none' or 'a:b,c:d', got {text!r}")
        pairs.append((ends[0], ends[1]))
    return pairs


def _index(key: int | str, ids: Sequence[str]) -> int:
    if isinstance(key, str) and key in ids:
        return list(ids).index(key)
    if isinstance(key, str) and key.lstrip("-").isdigit():
        key = int(key)
    if is_int(key) and 0 <= key < len(ids):
        return key
    shown = ", ".join(ids[:8]) + (", ..." if len(ids) > 8 else "")
    raise ValueError(f"unknown member {key!r} in pairs (ids: {shown}; or an index < {len(ids)})")
