"""The report's ``pairs`` option: ``"auto"`` (:func:`~..selection.auto_pairs`), ``"none"``
or explicit pairs, and the command line's ``--pairs``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dynamo_lightning.analysis.selection import Pair, auto_pairs
from dynamo_lightning.checks import is_int


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
