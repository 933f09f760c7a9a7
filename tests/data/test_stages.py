"""Stage-wise targets of feed-forward populations: the depth mapping, one PCA per member and
stage, NaN where a shallower member has no stage, the data module on a CNN population, and
the refusal of a population mixing recurrent and feed-forward members."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import build_cnn_population

from dynamo_lightning.data import TrajectoryDataModule, fit_projections, project_states
from dynamo_lightning.data.stages import StageLayout
from dynamo_lightning.population import Population, architectures


def test_depths_map_by_proportion_with_the_last_stages_matched() -> None:
    layout = StageLayout((2, 3, 4, 1))
    assert layout.depth == 4
    assert [layout.meta_stages(n) for n in range(4)] == [[1, 3], [1, 2, 3], [0, 1, 2, 3], [3]]
    assert layout.mask().tolist()[0] == [False, True, False, True]
    assert layout.offsets == [0, 2, 5, 9]
    assert StageLayout((2,), meta_depth=3).meta_stages(0) == [1, 2]


def test_projection_is_one_pca_per_member_and_stage() -> None:
    g = torch.Generator().manual_seed(0)
    hidden = [torch.randn(50, 2, 5, generator=g), torch.randn(50, 3, 7, generator=g)]
    layout = StageLayout((2, 3))
    fitter = layout.fitter([5, 7])
    layout.update(fitter, hidden)
    projections = fitter.fit(3)
    targets = layout.project(projections, hidden)
    assert targets.shape == (2, 50, 3, 3)
    assert bool(targets[0, :, 0].isnan().all()) and not targets[1].isnan().any()
    for n, h in enumerate(hidden):  # each (member, stage) alone, as its own "member"
        for s, place in enumerate(layout.meta_stages(n)):
            alone = h[:, s].unsqueeze(0)
            want = project_states(fit_projections(alone, 3), alone)[0]
            torch.testing.assert_close(targets[n, :, place], want, atol=1e-4, rtol=1e-4)
            assert math.isclose(float(want.pow(2).sum(-1).mean()), 1.0, rel_tol=1e-3)


@pytest.fixture
def cnn_population_dir(tmp_path: Path) -> Path:
    return build_cnn_population().save(tmp_path / "population")


def _datamodule(path: Path, mode: str, cache: Path) -> TrajectoryDataModule:
    return TrajectoryDataModule(str(path), num_components=3, members_per_batch=2,
                                samples_per_member=4, train_trials=16, val_trials=8,
                                test_trials=8, mode=mode, cache_dir=str(cache))


def test_cnn_population_batches_are_stage_wise_in_both_modes(cnn_population_dir: Path,
                                                             tmp_path: Path) -> None:
    batches = {}
    for mode in ("cached", "online"):
        dm = _datamodule(cnn_population_dir, mode, tmp_path / "cache")
        assert dm.layout == StageLayout((2, 2, 3, 3))
        assert [m["stages"] for m in dm.member_metadata] == [2, 2, 3, 3]
        dm.setup("fit")
        batch = next(iter(dm.val_dataloader()))
        batch = dm.on_after_batch_transfer(batch, 0)
        assert batch["hidden"].shape == (2, 4, 3, 3)  # members 0, 1: depth 2 of 3
        assert batch["outputs"].shape == (2, 4, 1, 10)
        assert bool(batch["hidden"][:, :, 0].isnan().all())
        assert not batch["hidden"][:, :, 1:].isnan().any()
        batches[mode] = batch
    torch.testing.assert_close(batches["cached"]["hidden"], batches["online"]["hidden"],
                               equal_nan=True, atol=1e-5, rtol=1e-5)


def test_mixing_recurrent_and_feed_forward_members_is_refused(tmp_path: Path) -> None:
    cnn = build_cnn_population()[:2]
    gru = architectures.build("gru", num_members=1, input_size=8, output_size=10,
                              hidden_size=4)
    rnn = Population.from_stack("gru", gru, ["gru-s0"], [{"task": "digits"}])
    path = Population.concat([cnn, rnn]).save(tmp_path / "mixed")
    with pytest.raises(ValueError, match=r"recurrent gru-s0; feed-forward cnn-h4-d2-standard"):
        _datamodule(path, "cached", tmp_path / "cache")
