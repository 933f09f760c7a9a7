"""Small context managers of the report's computation: thread count and stage timings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def threads(count: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` for the block (None: unchanged)."""
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Time the block as report stage ``name``; a ``ValueError`` out of it (the kind the CLI
    prints as one line) names the stage, so a failure deep in a library says where it was.

    Raises:
        ValueError: ``report stage 'name': <the original message>`` (the original chained).
    """
    start = time.perf_counter()
    try:
        yield
    except ValueError as exc:
        if str(exc).startswith("report stage "):
            raise
        raise ValueError(f"report stage {name!r}: {exc}") from exc
    finally:
        timings[name] = round(time.perf_counter() - start, 3)
