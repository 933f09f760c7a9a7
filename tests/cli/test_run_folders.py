"""Every output of a run follows ``trainer.default_root_dir``, one folder per run, and
``--ckpt_path last`` resumes the newest run there (``dynamo_lightning.cli.run_folders``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml
from jsonargparse import Namespace
from paths import REPO

from dynamo_lightning.cli import main
from dynamo_lightning.cli.run_folders import (
    ROOT,
    find_last_checkpoint,
    resume_run,
    run_root,
    settle_root,
)
from dynamo_lightning.population import Population

FLIPFLOP = str(REPO / "configs" / "dynamo" / "flipflop.yaml")
# The shipped run config, shrunk: every base callback (checkpoint, map, fixed points,
# interpolation) still runs, on a meta-GRU of 8 units, 2 epochs of 2 batches.
TINY = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.devices", "1", "--model.meta.hidden_size", "8", "--data.num_components", "3",
        "--data.members_per_batch", "2", "--data.samples_per_member", "4",
        "--data.train_trials", "16", "--data.val_trials", "8", "--data.test_trials", "8"]
RUN_FILES = ("config.yaml", "metrics.csv", "hparams.yaml", "checkpoints/last.ckpt", "map.png",
             "figures/figures_map.png", "figures/figures_fixed_points.png",
             "figures/tables_embeddings.csv", "figures/tables_fixed_points.csv",
             "figures/tables_interpolation.csv")


def trainer_config(logger: object = None, callbacks: object = None,
                   root: str | None = "runs/x") -> Namespace:
    return Namespace(default_root_dir=root, logger=logger, callbacks=callbacks)


def entry(class_path: str, **init_args: object) -> Namespace:
    return Namespace(class_path=class_path, init_args=Namespace(**init_args))


# --- the pure functions on a parsed config ----------------------------------------------

def test_settle_root_replaces_the_placeholder_in_loggers_and_callbacks() -> None:
    csv = entry("lightning.pytorch.loggers.CSVLogger", save_dir=ROOT, name="")
    given = entry("lightning.pytorch.loggers.TensorBoardLogger", save_dir="elsewhere")
    manifold = entry("dynamo_lightning.callbacks.EmbeddingManifold",
                     map_path=f"{ROOT}/maps/final.png", every_n_epochs=3)
    trainer = trainer_config([csv, given], [manifold])
    settle_root(trainer)
    assert csv.init_args.save_dir == "runs/x"
    assert given.init_args.save_dir == "elsewhere"  # a path the user sets wins
    assert manifold.init_args.map_path == "runs/x/maps/final.png"
    assert manifold.init_args.every_n_epochs == 3
    unset = entry("lightning.pytorch.loggers.CSVLogger", save_dir=ROOT)
    settle_root(trainer_config(unset, root=None))
    assert unset.init_args.save_dir == "."  # Lightning's own default root: the working dir


def test_run_root_per_logger_kind() -> None:
    csv = entry("lightning.pytorch.loggers.CSVLogger", save_dir="runs/x", name="logs")
    assert run_root(trainer_config(csv)) == Path("runs/x/logs")
    wandb = entry("dynamo_lightning.callbacks.wandb_logger.DynamoWandbLogger", save_dir="w")
    assert run_root(trainer_config(wandb)) == Path("w")
    assert run_root(trainer_config(False)) == Path("runs/x")


def test_find_last_checkpoint_takes_the_newest_run(tmp_path: Path) -> None:
    assert find_last_checkpoint(tmp_path) is None
    for age, run in ((200, "version_0"), (100, "version_2"), (300, "version_1")):
        ckpt = tmp_path / run / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"x")
        os.utime(ckpt, ns=(age * 10**9, age * 10**9))
    assert find_last_checkpoint(tmp_path) == tmp_path / "version_1" / "checkpoints" / "last.ckpt"


def test_resume_continues_a_wandb_run_and_starts_a_new_csv_folder() -> None:
    ckpt = Path("runs/x/3kq0ab/checkpoints/last.ckpt")
    wandb = entry("dynamo_lightning.callbacks.wandb_logger.DynamoWandbLogger", save_dir="runs/x")
    resume_run(trainer_config(wandb), ckpt)
    assert wandb.init_args.id == "3kq0ab"
    named = entry("lightning.pytorch.loggers.WandbLogger", save_dir="runs/x", id="mine")
    resume_run(trainer_config(named), ckpt)
    assert named.init_args.id == "mine"
    csv = entry("lightning.pytorch.loggers.CSVLogger", save_dir="runs/x", name="", version=None)
    resume_run(trainer_config(csv), Path("runs/x/version_0/checkpoints/last.ckpt"))
    assert csv.init_args.version is None  # CSVLogger would delete that folder's metrics.csv


# --- through the CLI ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def pop_dir(tiny_population: Population, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_population.save(tmp_path_factory.mktemp("run_folders") / "population")


def fit(root: Path, pop_dir: Path, *extra: str) -> None:
    assert main(["fit", "--config", FLIPFLOP, *TINY, f"--data.population={pop_dir}",
                 f"--data.cache_dir={pop_dir.parent / 'cache'}",
                 f"--trainer.default_root_dir={root}", *extra]) == 0


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_each_fit_writes_one_complete_folder_of_its_own(pop_dir: Path, tmp_path: Path) -> None:
    """Two roots: two complete, separate run folders, nothing outside them. The same root
    again: a new version folder, the first one untouched. ``--ckpt_path last`` resumes the
    newest run into the next folder; ``test --ckpt_path last`` loads that run's checkpoint."""
    first, second = tmp_path / "first", tmp_path / "second"
    fit(first, pop_dir)
    fit(second, pop_dir)
    for root in (first, second):
        assert sorted(p.name for p in root.iterdir()) == ["version_0"]
        run = root / "version_0"
        missing = [name for name in RUN_FILES if not (run / name).is_file()]
        assert not missing, f"{run} lacks {missing}"
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["trainer"]["default_root_dir"] == str(root)
        assert config["trainer"]["logger"]["init_args"]["save_dir"] == str(root)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "second"]

    before = digests(first / "version_0")
    fit(first, pop_dir)
    assert digests(first / "version_0") == before
    assert (first / "version_1" / "checkpoints" / "last.ckpt").is_file()

    fit(first, pop_dir, "--trainer.max_epochs", "3", "--ckpt_path", "last")
    resumed = yaml.safe_load((first / "version_2" / "config.yaml").read_text())
    assert resumed["ckpt_path"] == str(first / "version_1" / "checkpoints" / "last.ckpt")
    epochs = [line.split(",")[0] for line in
              (first / "version_2" / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs and set(epochs) <= {"2", ""}  # only the third epoch ran
    assert digests(first / "version_0") == before


def test_ckpt_path_last_without_a_run_is_one_clear_error(pop_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    code = main(["test", "--config", FLIPFLOP, f"--data.population={pop_dir}",
                 f"--trainer.default_root_dir={tmp_path / 'empty'}", "--ckpt_path", "last"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "--ckpt_path last" in err[0] and "no run below" in err[0]
