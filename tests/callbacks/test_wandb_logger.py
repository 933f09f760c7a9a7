"""An offline W&B run of the shipped config is the whole experiment: the config, the metrics,
every callback's figures and tables, the checkpoint and the population as artifacts (what
``wandb sync`` uploads later), and the run's own folder with the checkpoint file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from paths import REPO

from dynamo_lightning.cli import main
from dynamo_lightning.population import Population

CONFIGS = REPO / "configs"
TINY = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.devices", "1",
        "--model.meta.hidden_size", "8", "--data.num_components", "3",
        "--data.members_per_batch", "2", "--data.samples_per_member", "4",
        "--data.train_trials", "16", "--data.val_trials", "8", "--data.test_trials", "8"]


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials (so the shipped config goes offline by itself), W&B's data in tmp."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))


def test_offline_run_of_the_shipped_config_holds_everything(
        offline: None, tiny_population: Population, tmp_path: Path) -> None:
    import wandb

    population = tiny_population.save(tmp_path / "population")
    root = tmp_path / "runs"
    try:
        code = main(["fit", "--config", str(CONFIGS / "dynamo" / "flipflop.yaml"),
                     "--config", str(CONFIGS / "logger" / "wandb.yaml"), *TINY,
                     f"--data.population={population}", f"--trainer.default_root_dir={root}"])
    finally:
        wandb.finish()
    assert code == 0
    (offline_run,) = (root / "wandb").glob("offline-run-*")
    run_id = offline_run.name.rsplit("-", 1)[-1]

    folder = root / run_id  # the run's own files
    assert (folder / "checkpoints" / "last.ckpt").is_file()
    assert (folder / "map.png").is_file()
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["seed_everything"] == 0 and config["trainer"]["max_epochs"] == 2

    media = offline_run / "files" / "media"
    images = {p.name.split("_")[0] for p in (media / "images" / "figures").glob("*.png")}
    assert {"map", "fixed"} <= images
    assert list((media / "images" / "figures" / "interpolation").glob("*.png"))
    tables = {p.name.split("_")[0] for p in (media / "table" / "tables").glob("*.json")}
    assert tables >= {"embeddings", "fixed", "interpolation"}

    records = next(offline_run.glob("run-*.wandb")).read_bytes()  # what `wandb sync` sends
    assert f"model-{run_id}".encode() in records  # the checkpoint artifact
    assert b"model.ckpt" in records and b'"original_filename":"last.ckpt"' in records
    assert f"population-{tiny_population.checksum[:16]}".encode() in records
    assert b"trainer/global_step" in records and b"val/hidden_r2" in records  # metrics
    assert b"seed_everything" in records and b"gradient_clip_val" in records  # the config
