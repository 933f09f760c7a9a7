"""The epoch label of a step-limited run reads ``Epoch 1/19``, not Lightning's ``Epoch 1/-2``."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import TQDMProgressBar

from dynamo_lightning.callbacks import RunProgressBar
from dynamo_lightning.callbacks.progress_bar import last_epoch
from dynamo_lightning.cli.lightning_cli import readable_progress_bar


@pytest.mark.parametrize(("max_epochs", "max_steps", "batches", "expected"), [
    (30, -1, 10, 29),  # an epoch-limited run, as Lightning counts it
    (-1, 2000, 100, 19),  # a population run: max_steps 2000, 100 steps per epoch
    (-1, 2050, 100, 20),  # a last, partial epoch counts
    (30, 200, 100, 1),  # whichever limit comes first
    (-1, -1, 100, None),  # no set end
    (-1, 2000, math.inf, None),  # batches unknown (an iterable without a length)
])
def test_last_epoch(max_epochs, max_steps, batches, expected) -> None:
    assert last_epoch(max_epochs, max_steps, batches) == expected


def test_the_label_of_a_step_limited_run() -> None:
    bar = RunProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=-1, max_steps=2000, num_training_batches=100)
    assert bar._get_train_description(1).strip() == "Epoch 1/19"
    bar._trainer = SimpleNamespace(max_epochs=-1, max_steps=-1, num_training_batches=100)
    assert bar._get_train_description(4).strip() == "Epoch 4"


def test_the_default_bar_is_replaced_and_a_chosen_one_kept() -> None:
    trainer = readable_progress_bar(Trainer(logger=False, enable_checkpointing=False))
    assert type(trainer.progress_bar_callback) is RunProgressBar  # rich is installed
    chosen = TQDMProgressBar()
    trainer = readable_progress_bar(Trainer(logger=False, enable_checkpointing=False,
                                            callbacks=[chosen]))
    assert trainer.progress_bar_callback is chosen
