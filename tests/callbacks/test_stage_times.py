"""StageTimes books every phase of a fit once: warm-up, steady steps, validation apart."""

from __future__ import annotations

import json
import time

import lightning.pytorch as pl
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel

from dynamo_lightning.callbacks import StageTimes

STEP, VALIDATION_STEP = 0.004, 0.01


class Sleepy(BoringModel):
    def training_step(self, batch, batch_idx):
        time.sleep(STEP)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        time.sleep(VALIDATION_STEP)
        return super().validation_step(batch, batch_idx)


def test_phases_are_disjoint_and_counted(tmp_path) -> None:
    timer = StageTimes(warmup_steps=5)
    trainer = pl.Trainer(default_root_dir=tmp_path, max_steps=30, val_check_interval=10,
                         limit_val_batches=2, num_sanity_val_steps=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer])
    trainer.fit(Sleepy())
    times = timer.times
    assert times["steps"] == 25  # 30 batches, the first 5 warm-up
    assert times["validations"] == 3  # after steps 10, 20, 30; the sanity check not counted
    assert times["step_seconds"] >= 25 * STEP and times["warmup"] >= 5 * STEP
    assert times["validation"] >= 3 * 2 * VALIDATION_STEP
    parts = times["setup"] + times["warmup"] + times["step_seconds"] + times["validation"]
    assert parts <= times["fit"] + 1e-6  # disjoint intervals within the fit
    assert times["steps_per_second"] == pytest.approx(25 / times["step_seconds"])
    assert timer.started_at < timer.ended_at
    written = json.loads((tmp_path / "stage_times.json").read_text())
    assert written["steps"] == 25 and written["validations"] == 3


def test_warmup_steps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="warmup_steps"):
        StageTimes(warmup_steps=0)
