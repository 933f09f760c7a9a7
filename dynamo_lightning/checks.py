"""The argument validators every layer uses: one wording, one rule for bools.

Each check returns the value converted to a plain ``int``/``float``/``bool`` (so configs and
manifests stay JSON-serialisable) or raises one ``ValueError`` that names the argument, says
what it must be and shows what it got: ``"n_bits must be a positive integer, got 0"``, or with
an owner ``"DynamoModule: num_members must be a positive integer, got 0"``.

The rule for bools: a bool is not a number (``True`` is no integer here, although Python
counts it as one) and a number is not a bool (``1`` is no ``True``). Integers include NumPy's;
reals include ints.

Plugins may use these too; the module depends on nothing but the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral, Real
from typing import TypeGuard

__all__ = [
    "boolean",
    "finite_real",
    "fraction",
    "int_at_least",
    "is_int",
    "is_real",
    "non_negative_int",
    "non_negative_real",
    "open_interval",
    "optional_positive_int",
    "positive_int",
    "positive_real",
    "seed",
]


def is_int(value: object) -> TypeGuard[Integral]:
    """An integer that is not a bool."""
    return not isinstance(value, bool) and isinstance(value, Integral)


def is_real(value: object) -> TypeGuard[Real]:
    """A real number that is not a bool."""
    return not isinstance(value, bool) and isinstance(value, Real)


def _fail(name: str, what: str, value: object, owner: str | None) -> ValueError:
    prefix = f"{owner}: " if owner else ""
    return ValueError(f"{prefix}{name} must be {what}, got {value!r}")


def int_at_least(name: str, value: object, minimum: int, owner: str | None = None) -> int:
    """``value`` as an ``int`` if it is an integer >= ``minimum``.

    Raises:
        ValueError: ``"{name} must be a positive integer, got …"`` (minimum 1),
            ``"… a non-negative integer …"`` (0) or ``"… an integer >= {minimum} …"``.
    """
    if not is_int(value) or value < minimum:
        what = {1: "a positive integer", 0: "a non-negative integer"}.get(
            minimum, f"an integer >= {minimum}")
        raise _fail(name, what, value, owner)
    return int(value)


def positive_int(name: str, value: object, owner: str | None = None) -> int:
    """``value`` as an ``int`` if it is an integer >= 1."""
    return int_at_least(name, value, 1, owner)


def non_negative_int(name: str, value: object, owner: str | None = None) -> int:
    """``value`` as an ``int`` if it is an integer >= 0."""
    return int_at_least(name, value, 0, owner)


def optional_positive_int(name: str, value: object, owner: str | None = None) -> int | None:
    """``None``, or ``value`` as an ``int`` if it is an integer >= 1."""
    if value is None:
        return None
    if not is_int(value) or value < 1:
        raise _fail(name, "a positive integer or None", value, owner)
    return int(value)


def finite_real(name: str, value: object, ok: Callable[[float], bool], valid: str,
                owner: str | None = None) -> float:
    """``value`` as a ``float`` if it is a finite real number for which ``ok(value)`` holds.

    Args:
        name: the argument's name, for the message.
        value: the argument.
        ok: the range test, e.g. ``lambda v: v >= 0``; called only on finite numbers.
        valid: the range in words for the message, e.g. ``">= 0"`` or ``"in [0, 1)"``.
        owner: who takes the argument, named first in the message.

    Raises:
        ValueError: ``"{name} must be a finite number {valid}, got {value!r}"``.
    """
    if not is_real(value) or not math.isfinite(value) or not ok(value):
        raise _fail(name, f"a finite number {valid}", value, owner)
    return float(value)


def positive_real(name: str, value: object, owner: str | None = None) -> float:
    """``value`` as a ``float`` if it is a finite number > 0."""
    return finite_real(name, value, lambda v: v > 0, "> 0", owner)


def non_negative_real(name: str, value: object, owner: str | None = None) -> float:
    """``value`` as a ``float`` if it is a finite number >= 0: a weight, a decay, a scale."""
    return finite_real(name, value, lambda v: v >= 0, ">= 0", owner)


def seed(name: str, value: object, owner: str | None = None, bits: int = 64) -> int:
    """``value`` as an ``int`` if it is an integer in ``[0, 2**bits)``: what a torch generator
    takes (64 bits; larger values overflow inside torch) or NumPy's global seed (32).

    Raises:
        ValueError: ``"{name} must be an integer in [0, 2**{bits}), got …"``.
    """
    if not is_int(value) or not 0 <= value < 2**bits:
        raise _fail(name, f"an integer in [0, 2**{bits})", value, owner)
    return int(value)


def open_interval(name: str, value: object, low: float, high: float, unit: str = "",
                  owner: str | None = None) -> float:
    """``value`` as a ``float`` if it is a real number with ``low < value < high``.

    Args:
        name: the argument's name, for the message.
        value: the argument.
        low: exclusive lower end.
        high: exclusive upper end.
        unit: words after the interval in the message, e.g. ``"cycles per step"``.
        owner: who takes the argument, named first in the message.

    Raises:
        ValueError: ``"{name} must be a number in ({low}, {high}) {unit}, got {value!r}"``.
    """
    if not is_real(value) or not low < value < high:
        unit = f" {unit}" if unit else ""
        raise _fail(name, f"a number in ({low:g}, {high:g}){unit}", value, owner)
    return float(value)


def fraction(name: str, value: object, owner: str | None = None) -> float:
    """``value`` as a ``float`` if it is a real number in (0, 1): a probability or a share."""
    return open_interval(name, value, 0.0, 1.0, owner=owner)


def boolean(name: str, value: object, owner: str | None = None) -> bool:
    """``value`` if it is a bool (``True``/``False``; YAML ``true``/``false``), never 0/1."""
    if not isinstance(value, bool):
        raise _fail(name, "a bool (true or false)", value, owner)
    return value
