"""The architecture registry (entry-point group ``dynamo_lightning.architectures``)."""

from __future__ import annotations

from typing import Any

from dynamo_lightning.population.architectures.base import Architecture
from dynamo_lightning.registry import Registry

REGISTRY: Registry[type[Architecture]] = Registry(
    "architecture", "dynamo_lightning.architectures"
)
register_architecture = REGISTRY.register


def names() -> list[str]:
    """Names of all registered architectures, built-ins first."""
    return REGISTRY.names()


def get(name: str) -> type[Architecture]:
    """The architecture class registered as ``name``; the error lists the known names."""
    return REGISTRY.get(name)


def build(name: str, num_members: int = 1, seeds: list[int] | None = None,
          **config: Any) -> Architecture:
    """A stack of ``num_members`` fresh members of architecture ``name``.

    Raises:
        ValueError: a config key the architecture does not take.
    """
    cls = REGISTRY.get(name)
    try:
        return cls(num_members=num_members, seeds=seeds, **config)
    except TypeError as err:
        raise ValueError(f"bad config for architecture {name!r}: {err}") from None
