"""The architecture registry (entry-point group ``dynamo_lightning.architectures``)."""

from __future__ import annotations

import inspect
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


def unknown_options(name: str, config: dict[str, Any]) -> str | None:
    """Why ``config`` holds keys architecture ``name``'s constructor does not take (naming
    them and the ones it takes), or None: checked from its signature, without building.
    A constructor that takes ``**options`` of its own checks them itself.

    Raises:
        UnknownNameError: an unknown architecture (the error lists the known ones).
    """
    cls = REGISTRY.get(name)
    parameters = inspect.signature(cls.__init__).parameters.values()
    if cls.__init__ is not Architecture.__init__ and any(
            p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    known = [p.name for p in parameters if p.name not in ("self", "num_members", "seeds")
             and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    unknown = sorted(set(config) - set(known))
    if not unknown:
        return None
    return (f"unknown option(s) {', '.join(map(repr, unknown))} for architecture {name!r} "
            f"(it takes: {', '.join(known)})")


def build(name: str, num_members: int = 1, seeds: list[int] | None = None,
          **config: Any) -> Architecture:
    """A stack of ``num_members`` fresh members of architecture ``name``.

    Raises:
        ValueError: a config key the architecture does not take (the message lists the
            ones it does), or an option's value out of range.
    """
    cls = REGISTRY.get(name)
    try:
        return cls(num_members=num_members, seeds=seeds, **config)
    except TypeError as err:
        reason = unknown_options(name, config) or err
        raise ValueError(f"bad config for architecture {name!r}: {reason}") from None
