"""Argument checks, shape checks and metrics shared by the built-in task plugins.

The constructor checks raise ``ValueError`` with a message that names the argument and shows
its value (``"n_bits must be a positive integer, got 0"``), and return the value converted to
a plain ``int`` or ``float`` so that ``Task.config()`` stays JSON-serialisable. Booleans are
rejected everywhere, although Python counts them as integers.

Third-party tasks may use these helpers too; they depend on nothing but torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral, Real
from typing import ClassVar, TypeGuard

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "EveryEntryRegression",
    "check_same_shape",
    "finite_real",
    "fraction",
    "non_negative_int",
    "open_interval",
    "positive_int",
    "r2_score",
    "sign_accuracy",
]


def _is_int(value: object) -> TypeGuard[Integral]:
    return not isinstance(value, bool) and isinstance(value, Integral)


def _is_real(value: object) -> TypeGuard[Real]:
    return not isinstance(value, bool) and isinstance(value, Real)


def positive_int(name: str, value: object) -> int:
    """``value`` as an ``int`` if it is an integer >= 1.

    Raises:
        ValueError: ``"{name} must be a positive integer, got {value!r}"``.
    """
    return _int_at_least(name, value, 1, "a positive integer")


def non_negative_int(name: str, value: object) -> int:
    """``value`` as an ``int`` if it is an integer >= 0.

    Raises:
        ValueError: ``"{name} must be a non-negative integer, got {value!r}"``.
    """
    return _int_at_least(name, value, 0, "a non-negative integer")


def _int_at_least(name: str, value: object, minimum: int, what: str) -> int:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def finite_real(name: str, value: object, ok: Callable[[float], bool], valid: str) -> float:
    """``value`` as a ``float`` if it is a finite real number for which ``ok(value)`` holds.

    Args:
        name: the argument's name, for the message.
        value: the argument.
        ok: the range test, e.g. ``lambda v: v >= 0``; called only on finite numbers.
        valid: the range in words for the message, e.g. ``">= 0"`` or ``"in [0, 1)"``.

    Raises:
        ValueError: ``"{name} must be a finite number {valid}, got {value!r}"``.
    """
    if not _is_real(value) or not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name} must be a finite number {valid}, got {value!r}")
    return float(value)


def open_interval(name: str, value: object, low: float, high: float, unit: str = "") -> float:
    """``value`` as a ``float`` if it is a real number with ``low < value < high``.

    Args:
        name: the argument's name, for the message.
        value: the argument.
        low: exclusive lower end.
        high: exclusive upper end.
        unit: words after the interval in the message, e.g. ``"cycles per step"``.

    Raises:
        ValueError: ``"{name} must be a number in ({low}, {high}) {unit}, got {value!r}"``.
    """
    if not _is_real(value) or not low < value < high:
        unit = f" {unit}" if unit else ""
        raise ValueError(f"{name} must be a number in ({low:g}, {high:g}){unit}, got {value!r}")
    return float(value)


def fraction(name: str, value: object) -> float:
    """``value`` as a ``float`` if it is a real number in (0, 1): a probability or a share.

    Raises:
        ValueError: ``"{name} must be a number in (0, 1), got {value!r}"``.
    """
    return open_interval(name, value, 0.0, 1.0)


def check_same_shape(outputs: Tensor, targets: Tensor,
                     layout: str = "[batch, time, output]") -> None:
    """Raise unless a regression task's ``outputs`` and ``targets`` have the same shape.

    Args:
        outputs: network outputs.
        targets: the task's targets.
        layout: the expected layout, named at the end of the message.

    Raises:
        ValueError: ``"outputs (...) must match targets (...) {layout}"``.
    """
    if outputs.shape != targets.shape:
        raise ValueError(
            f"outputs {tuple(outputs.shape)} must match targets {tuple(targets.shape)} "
            f"{layout}"
        )


def r2_score(outputs: Tensor, targets: Tensor) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` over all entries, pooled.

    Pooling (rather than averaging per channel) keeps the score defined for channels that are
    constant in a batch. Constant targets give 1.0 if matched exactly, else 0.0 (as
    scikit-learn's ``force_finite``).
    """
    y = targets.detach().double().flatten()
    p = outputs.detach().double().flatten().to(y.device)
    ss_res = ((y - p) ** 2).sum()
    ss_tot = ((y - y.mean()) ** 2).sum()
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return (1.0 - ss_res / ss_tot).item()


def sign_accuracy(outputs: Tensor, targets: Tensor) -> float:
    """Fraction of entries where ``sign(output) == target`` (targets are ±1).

    Returns NaN for empty inputs.
    """
    return (torch.sign(outputs.float()) == targets.float()).float().mean().item()


class EveryEntryRegression:
    """Mixin for regression tasks scored on every entry: MSE loss and pooled R² metric.

    List it before ``Task`` (``class MyTask(EveryEntryRegression, Task)``) and set
    ``shape_hint`` to the layout named when outputs and targets differ in shape.
    """

    metric_name: ClassVar[str] = "r2"
    shape_hint: ClassVar[str] = "[batch, time, output]"

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """MSE over all entries."""
        check_same_shape(outputs, targets, self.shape_hint)
        return F.mse_loss(outputs, targets.to(outputs.dtype))

    @torch.no_grad()
    def metric(self, outputs: Tensor, targets: Tensor) -> float:
        """Coefficient of determination over all entries (1 is perfect; can be negative)."""
        check_same_shape(outputs, targets, self.shape_hint)
        return r2_score(outputs, targets)
