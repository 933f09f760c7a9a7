"""RunProgressBar: Lightning's rich progress bar, with an epoch count a step-limited run can read.

Lightning's bar labels an epoch ``Epoch {e}/{max_epochs - 1}``; a population run limited by
``max_steps`` has ``max_epochs = -1`` and read ``Epoch 1/-2``. This one counts the last
epoch from ``max_steps`` and the batches per epoch, or leaves the count out when it is not
known. The ``dynamo`` commands put it in place of Lightning's default bar.
"""

from __future__ import annotations

import math

from lightning.pytorch.callbacks import RichProgressBar
from typing_extensions import override

__all__ = ["RunProgressBar", "last_epoch"]


def last_epoch(max_epochs: int | None, max_steps: int, batches_per_epoch: float) -> int | None:
    """The 0-based index of a run's last epoch, or None when the run has no set end."""
    if max_epochs is not None and max_epochs >= 0:
        epochs = max_epochs
        if max_steps > 0 and math.isfinite(batches_per_epoch) and batches_per_epoch > 0:
            epochs = min(epochs, math.ceil(max_steps / batches_per_epoch))
        return epochs - 1
    if max_steps > 0 and math.isfinite(batches_per_epoch) and batches_per_epoch > 0:
        return math.ceil(max_steps / batches_per_epoch) - 1
    return None


class RunProgressBar(RichProgressBar):
    """``RichProgressBar`` whose epoch label reads ``Epoch 3/19`` also for a run limited by
    ``max_steps`` (and ``Epoch 3`` for one with no set end)."""

    @override
    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        last = last_epoch(trainer.max_epochs, trainer.max_steps, trainer.num_training_batches)
        text = f"Epoch {current_epoch}" if last is None else f"Epoch {current_epoch}/{last}"
        if len(self.validation_description) > len(text):  # as Lightning pads it
            text = f"{text:{len(self.validation_description)}}"
        return text
