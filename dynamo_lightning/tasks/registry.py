"""The task registry (entry-point group ``dynamo_lightning.tasks``).

A leaf module: the built-in tasks import ``register`` from here, and ``dynamo_lightning.tasks``
re-exports it after importing them, so the package and its tasks import no cycle.
"""

from __future__ import annotations

from typing import Any

from dynamo_lightning.registry import Registry
from dynamo_lightning.tasks.base import Task

REGISTRY: Registry[type[Task]] = Registry("task", "dynamo_lightning.tasks")
register = REGISTRY.register


def names() -> list[str]:
    """Names of all registered tasks, built-ins first."""
    return REGISTRY.names()


def get_class(name: str) -> type[Task]:
    """The task class registered as ``name``."""
    return REGISTRY.get(name)


def get(name: str, **config: Any) -> Task:
    """A task instance: ``get("flipflop", n_bits=3)``.

    Raises:
        UnknownNameError: unknown name; the message lists the known ones.
        ValueError: a config key the task does not take, or an invalid value.
    """
    cls = REGISTRY.get(name)
    try:
        return cls(**config)
    except TypeError as err:
        raise ValueError(f"bad config for task {name!r}: {err}") from None
