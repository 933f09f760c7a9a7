"""Shape checks and metrics shared by the built-in task plugins.

Third-party tasks may use these helpers too; they depend on nothing but torch. Constructor
arguments are checked with :mod:`dynamo_lightning.checks`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["EveryEntryRegression", "check_same_shape", "r2_score", "sign_accuracy"]


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

    def loss(self, outputs: Tensor, targets: Tensor, task_ids: Tensor | None = None) -> Tensor:
        """MSE over all entries."""
        check_same_shape(outputs, targets, self.shape_hint)
        return F.mse_loss(outputs, targets.to(outputs.dtype))

    @torch.no_grad()
    def metric(self, outputs: Tensor, targets: Tensor, task_ids: Tensor | None = None) -> float:
        """Coefficient of determination over all entries (1 is perfect; can be negative)."""
        check_same_shape(outputs, targets, self.shape_hint)
        return r2_score(outputs, targets)
