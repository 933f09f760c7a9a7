"""The conditioning registry (entry-point group ``dynamo_lightning.conditionings``).

A leaf module: the built-in conditionings import ``register`` from here, and
``dynamo_lightning.meta.conditionings`` re-exports it after importing them (no import cycle).
"""

from __future__ import annotations

from dynamo_lightning.meta.conditionings.base import Conditioning
from dynamo_lightning.registry import Registry

REGISTRY: Registry[type[Conditioning]] = Registry("conditioning", "dynamo_lightning.conditionings")
register = REGISTRY.register

DEFAULT = "concat"
"""The default conditioning: lets a fused (cuDNN) RNN run the whole sequence."""


def names() -> list[str]:
    """Names of all registered conditionings, built-ins first."""
    return REGISTRY.names()


def get(name: str) -> type[Conditioning]:
    """The conditioning class registered as ``name``.

    Raises:
        UnknownNameError: unknown name; the message lists the known ones.
    """
    return REGISTRY.get(name)
