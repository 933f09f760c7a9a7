"""FixedPoints and Interpolation callbacks through a real Trainer on a tiny population."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger

from dynamo_lightning.analysis import SearchOptions
from dynamo_lightning.callbacks import FixedPoints, Interpolation
from dynamo_lightning.callbacks.figures import run_dir
from dynamo_lightning.data import TrajectoryDataModule
from dynamo_lightning.module import DynamoModule

SEARCH = SearchOptions(max_iters=200, trials=8)


@pytest.fixture(scope="module")
def data(tiny_population, tmp_path_factory: pytest.TempPathFactory) -> TrajectoryDataModule:
    root = tmp_path_factory.mktemp("analysis_callbacks")
    tiny_population.save(root / "population")
    return TrajectoryDataModule(population=str(root / "population"), num_components=4,
                                members_per_batch=2, samples_per_member=4, train_trials=16,
                                val_trials=8, test_trials=8, cache_dir=str(root / "cache"))


def module_for(dm: TrajectoryDataModule) -> DynamoModule:
    torch.manual_seed(0)
    return DynamoModule(num_members=dm.num_members, input_size=dm.input_size,
                        output_size=dm.output_size, num_components=dm.num_components,
                        member_ids=dm.member_ids, member_metadata=dm.member_metadata,
                        task_spec=dm.task_spec, meta={"hidden_size": 8})


def fit(dm: TrajectoryDataModule, tmp_path: Path, *callbacks: Any) -> tuple[Trainer, Any]:
    module = module_for(dm)
    trainer = Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1, devices=1,
                      logger=CSVLogger(tmp_path, name="run"), callbacks=list(callbacks),
                      enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=1)
    trainer.fit(module, dm)
    return trainer, module


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_both_callbacks_log_pngs_tables_and_metrics(data: TrajectoryDataModule,
                                                   tmp_path: Path) -> None:
    plt.close("all")
    points = FixedPoints(every_n_epochs=1, search=SEARCH.replace(inits=16))
    segments = Interpolation(every_n_epochs=2, steps=3, search=SEARCH.replace(inits=8))
    trainer, _ = fit(data, tmp_path, points, segments)
    figures = run_dir(trainer) / "figures"
    # After epochs 1 and 2 (steps 2, 4), none from the sanity check; fit end is step 4 again.
    assert sorted(p.name for p in figures.glob("figures_fixed_points_step*.png")) == [
        "figures_fixed_points_step2.png", "figures_fixed_points_step4.png"]
    assert points.state_dict() == {"last_step": 4, "num_drawn": 2}
    table = read_csv(figures / "tables_fixed_points.csv")
    assert [r["member"] for r in table] == data.member_ids  # 4 members < 8: all of them
    assert all(int(r["total"]) == sum(int(r[k]) for k in ("stable", "saddle", "unstable",
                                                           "slow")) for r in table)
    assert sum(int(r["total"]) for r in table) == len(points.last_fixed_points)
    metrics = read_csv(run_dir(trainer) / "metrics.csv")
    logged = [r for r in metrics if r.get("fixed_points/gru-s0/stable")]
    assert len(logged) == 2 and "fixed_points/lstm-s3/total" in metrics[0]
    assert sorted(p.name for p in figures.glob("figures_interpolation_*_step*.png")) == [
        "figures_interpolation_gru-s0__gru-s1_step4.png",  # within an architecture
        "figures_interpolation_gru-s1__vanilla-s2_step4.png"]  # across (every 2nd epoch)
    assert (figures / "figures_interpolation_gru-s0__gru-s1.png").is_file()
    assert segments.state_dict() == {"last_step": 4, "num_drawn": 1}
    rows = read_csv(figures / "tables_interpolation.csv")
    assert [(r["pair"], float(r["alpha"])) for r in rows] == [
        (p, a) for p in ("gru-s0__gru-s1", "gru-s1__vanilla-s2") for a in (0.0, 0.5, 1.0)]
    assert rows[0]["bit_accuracy"] and rows[0]["stable"]
    assert plt.get_fignums() == []


def test_chosen_members_and_pairs_and_restored_train_mode(data: TrajectoryDataModule,
                                                          tmp_path: Path) -> None:
    points = FixedPoints(every_n_epochs=5, members=["vanilla-s2", 0],
                         search=SEARCH.replace(inits=8))
    segments = Interpolation(every_n_epochs=5, pairs=[[3, "gru-s1"]], steps=2,
                             fixed_points=False, search=SearchOptions(trials=4))
    trainer, module = fit(data, tmp_path, points, segments)  # drawn at fit end only
    figures = run_dir(trainer) / "figures"
    assert [r["member"] for r in read_csv(figures / "tables_fixed_points.csv")] == [
        "vanilla-s2", "gru-s0"]
    assert [p.name for p in figures.glob("figures_interpolation_*_step*.png")] == [
        "figures_interpolation_lstm-s3__gru-s1_step4.png"]
    assert segments.last_results[0].counts == {}
    module.train()
    points.load_state_dict({"last_step": None, "num_drawn": 1})
    points.on_fit_end(trainer, module)
    assert module.training and points.state_dict()["num_drawn"] == 2
    module.eval()
    unknown = FixedPoints(members=["nope"])
    with pytest.raises(ValueError, match="unknown member 'nope'"):
        unknown.on_fit_end(trainer, module)
    assert not module.training  # restored after the error too
    assert plt.get_fignums() == []


@pytest.mark.parametrize(("factory", "kwargs", "match"), [
    (FixedPoints, {"every_n_epochs": 0}, "every_n_epochs must be a positive integer, got 0"),
    (FixedPoints, {"members": "gru-s0"}, r"FixedPoints: members must list .*, got 'gru-s0'"),
    (FixedPoints, {"members": []}, r"FixedPoints: members must be a non-empty list .*, got \[\]"),
    (FixedPoints, {"members": ["a", "a"]}, "distinct"),
    (FixedPoints, {"members": [True]}, "members"),
    (FixedPoints, {"search": {"inits": 16}}, "FixedPoints: search must be a SearchOptions"),
    (Interpolation, {"pairs": [["a"]]}, r"Interpolation: pairs must be .*, got \[\['a'\]\]"),
    (Interpolation, {"pairs": "ab"}, "pairs"),
    (Interpolation, {"pairs": [["a", "a"]]}, "itself"),
    (Interpolation, {"pairs": [["a", -1]]}, "pairs"),
    (Interpolation, {"steps": 1}, "Interpolation: steps must be an integer >= 2, got 1"),
    (Interpolation, {"fixed_points": "yes"}, "fixed_points"),
])
def test_bad_arguments_are_named(factory: type, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)
