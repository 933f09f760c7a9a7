"""Task plugins: ``dl.tasks.get(name, **config)``, ``dl.tasks.names()``, ``dl.tasks.register``.

Third-party tasks register with the decorator or through the entry-point group
``dynamo_lightning.tasks``.
"""

from __future__ import annotations

# Built-in tasks register themselves on import.
from dynamo_lightning.tasks import (
    context,
    digits,
    flipflop,
    integrator,
    neurogym,
    sine,
)
from dynamo_lightning.tasks.base import OutputKind, Split, Task
from dynamo_lightning.tasks.mixture import MixtureTask, task_from_spec, task_spec_of
from dynamo_lightning.tasks.registry import REGISTRY, get, get_class, names, register

__all__ = [
    "REGISTRY",
    "MixtureTask",
    "OutputKind",
    "Split",
    "Task",
    "context",
    "digits",
    "flipflop",
    "get",
    "get_class",
    "integrator",
    "names",
    "neurogym",
    "register",
    "sine",
    "task_from_spec",
    "task_spec_of",
]
