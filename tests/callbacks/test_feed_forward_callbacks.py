"""FixedPoints and Interpolation on a feed-forward meta-model (one shared config serves RNN
and CNN fits): FixedPoints says once that fixed points do not apply and does nothing;
Interpolation interpolates the task metric without fixed points."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import pytest
from conftest import build_cnn_population

from dynamo_lightning.callbacks import FixedPoints, Interpolation
from dynamo_lightning.data import TrajectoryDataModule
from dynamo_lightning.module import DynamoModule


def test_fixed_points_and_interpolation_adapt_to_a_meta_cnn(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = build_cnn_population().save(tmp_path / "population")
    dm = TrajectoryDataModule(str(path), num_components=3, members_per_batch=2,
                              samples_per_member=4, train_trials=16, val_trials=8,
                              test_trials=8, cache_dir=str(tmp_path / "cache"))
    module = DynamoModule(num_members=dm.num_members, input_size=8, output_size=10,
                          num_components=3, output_kind="classification",
                          member_ids=dm.member_ids, member_metadata=dm.member_metadata,
                          task_spec=dm.task_spec, meta={"hidden_size": 4})
    fixed = FixedPoints(every_n_epochs=1)
    interpolation = Interpolation(every_n_epochs=1, pairs=[[0, 3]], steps=3)
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path,
                         callbacks=[fixed, interpolation])
    with caplog.at_level(logging.INFO):
        trainer.fit(module, dm)
    said = [r for r in caplog.records if "fixed points do not apply" in r.getMessage()]
    assert len(said) == 1 and fixed.last_fixed_points is None
    (result,) = interpolation.last_results
    assert result.counts == {} and result.alphas.tolist() == [0.0, 0.5, 1.0]
    assert result.metric_name == "mean_task_metric" and len(result.task_metric) == 3
    assert set(result.task_metrics) == {"digits0:accuracy", "digits1:accuracy"}
