"""One small generic registry, reused for architectures, tasks and conditionings.

Plugins register with a decorator or through a Python entry-point group; entry points are
loaded lazily, the first time a name is looked up or listed, so importing the package stays
cheap and a broken third-party plugin only fails when it is asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised when a registry is asked for a name it does not know."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0])


class PluginLoadError(ImportError):
    """Raised when a plugin's entry point cannot be imported."""


class Registry(Generic[T]):
    """Name → class mapping with duplicate checks and entry-point discovery.

    Args:
        kind: what the registry holds, used in error messages ("architecture", "task").
        group: entry-point group scanned for third-party plugins.

    Example::

        tasks = Registry("task", "dynamo_lightning.tasks")

        @tasks.register("flipflop")
        class FlipFlop(Task): ...

        tasks.get("flipflop")  # -> FlipFlop
    """

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, T] = {}
        self._unlisted: set[str] = set()
        self._entry_points_loaded = False

    def register(self, name: str, listed: bool = True) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; the name is stored on the class.

        ``listed=False`` keeps the name out of :meth:`names` (and error messages) while
        ``get`` still finds it: for plugins that exist to serve a function (the rotated
        copies of ``analysis.rotated_copy``) rather than to be chosen in a config.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")

        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered "
                    f"(by {_qualname(self._entries[name])}); choose another name"
                )
            self._entries[name] = obj
            if not listed:
                self._unlisted.add(name)
            with contextlib.suppress(AttributeError, TypeError):  # e.g. builtins
                obj.registered_name = name  # type: ignore[attr-defined]
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The object registered as ``name``; the error lists the known names."""
        if name not in self._entries:
            self._load_entry_points()
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names users choose from, built-ins first, in registration order."""
        self._load_entry_points()
        return [name for name in self._entries if name not in self._unlisted]

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._entries

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        for ep in entry_points(group=self.group):
            if ep.name in self._entries:
                continue
            try:
                obj: Any = ep.load()
            except Exception as err:
                raise PluginLoadError(
                    f"cannot load {self.kind} plugin {ep.name!r} ({ep.value}) from entry-point "
                    f"group {self.group!r}: {type(err).__name__}: {err}"
                ) from err
            # Loading the module usually registers the object through the decorator;
            # register it here too for plugins that only expose the class.
            if ep.name not in self._entries:
                self.register(ep.name)(obj)
        self._entry_points_loaded = True


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
