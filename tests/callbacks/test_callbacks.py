"""Projection, the figure/table helpers, and EmbeddingManifold run through a real Trainer."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dynamo_lightning.analysis import project
from dynamo_lightning.callbacks import (
    DynamoWandbLogger,
    EmbeddingManifold,
    log_figure,
    log_table,
)
from dynamo_lightning.callbacks.wandb_logger import wandb_credentials_available

# ---------------------------------------------------------------------------- project()


def test_pca_of_points_on_a_line_has_one_informative_axis():
    t = np.linspace(-1.0, 1.0, 12)
    direction = np.array([1.0, -2.0, 0.5, 3.0, 0.0])
    emb = torch.tensor(np.outer(t, direction) + 7.0)  # a line in R^5, off the origin
    xy = project(emb, method="pca")
    assert xy.shape == (12, 2)
    np.testing.assert_allclose(xy[:, 1], 0.0, atol=1e-9)
    np.testing.assert_allclose(np.abs(xy[:, 0]), np.abs(t) * np.linalg.norm(direction), atol=1e-9)


def test_low_dimensional_embeddings_pass_through():
    emb = np.array([[0.5, -1.0], [2.0, 3.0], [1.0, 1.0]])
    with pytest.warns(UserWarning, match="returning them unchanged"):  # umap would do nothing
        np.testing.assert_array_equal(project(emb, method="umap"), emb)  # d = 2: no projection
    line = torch.tensor([[1.0], [2.0], [3.0]])
    np.testing.assert_array_equal(project(line), [[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])


def test_pca_with_fewer_members_than_components_pads():
    xy = project(np.array([[1.0, 2.0, 3.0]]), method="pca")
    np.testing.assert_allclose(xy, [[0.0, 0.0]])


@pytest.mark.slow
def test_umap_gives_finite_2d_map():
    emb = np.random.default_rng(0).normal(size=(20, 6))
    xy = project(emb, method="umap", random_state=0)
    assert xy.shape == (20, 2)
    assert np.isfinite(xy).all()
    assert xy.std(axis=0).min() > 0  # not collapsed onto a point or a line


@pytest.mark.parametrize(("args", "match"), [
    ((np.zeros((5, 3)), "tsne"), r"unknown projection method 'tsne' \(known: pca, umap\)"),
    ((np.zeros((3, 4)), "umap"), "UMAP needs at least 4 points, got 3"),
    ((np.zeros(5), "pca"), r"2-D array \[N, d\]"),
    ((np.zeros((0, 3)), "pca"), "non-empty"),
    ((np.full((4, 3), np.nan), "pca"), "NaN"),
])
def test_project_errors(args, match):
    with pytest.raises(ValueError, match=match):
        project(*args)


# ---------------------------------------------------------------------------- helpers


class _BrokenTensorBoard(TensorBoardLogger):
    """A logger whose experiment fails, to check that figures are closed anyway."""

    @property
    def experiment(self):
        raise RuntimeError("logger is down")


def _figure():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    return fig


def test_log_figure_writes_step_and_latest_png(tmp_path):
    trainer = Trainer(devices=1, logger=CSVLogger(tmp_path), default_root_dir=tmp_path)
    path = log_figure(trainer, _figure(), "figures/demo", step=7)
    assert path == Path(trainer.log_dir) / "figures" / "figures_demo_step7.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (path.parent / "figures_demo.png").is_file()
    assert plt.get_fignums() == []
    explicit = log_figure(trainer, _figure(), "x", png_dir=tmp_path / "pngs")
    assert explicit == tmp_path / "pngs" / "x_step0.png" and explicit.is_file()


def test_log_figure_closes_figure_when_a_logger_raises(tmp_path):
    trainer = Trainer(devices=1, logger=_BrokenTensorBoard(tmp_path), default_root_dir=tmp_path)
    with pytest.raises(RuntimeError, match="logger is down"):
        log_figure(trainer, _figure(), "figures/demo", step=1, png_dir=tmp_path)
    assert plt.get_fignums() == []
    assert (tmp_path / "figures_demo_step1.png").is_file()  # written before the loggers


def test_log_figure_without_logger_uses_default_root_dir(tmp_path):
    trainer = Trainer(devices=1, logger=False, default_root_dir=tmp_path)
    assert log_figure(trainer, _figure(), "a/b", step=2) == tmp_path / "figures" / "a_b_step2.png"
    assert plt.get_fignums() == []


def test_log_table_writes_csv(tmp_path):
    trainer = Trainer(devices=1, logger=False, default_root_dir=tmp_path)
    path = log_table(trainer, "tables/t", ["id", "cfg"], [["a", {"n": 3}], ["b", 1.5]], step=3)
    with open(path) as f:
        assert list(csv.reader(f)) == [["id", "cfg"], ["a", '{"n": 3}'], ["b", "1.5"]]
    assert (path.parent / "tables_t.csv").is_file()
    with pytest.raises(ValueError, match="row 0 of table 'tables/t' has 1 cells"):
        log_table(trainer, "tables/t", ["id", "cfg"], [["a"]])


def test_wandb_credentials_are_read_from_env_and_netrc(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "missing"))
    assert not wandb_credentials_available()
    assert DynamoWandbLogger(save_dir=tmp_path)._offline
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    assert wandb_credentials_available()
    monkeypatch.setenv("NETRC", str(tmp_path / "missing"))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert not DynamoWandbLogger(save_dir=tmp_path)._offline


# ---------------------------------------------------------------------------- callback


class _FakeDynamo(LightningModule):
    """Just what EmbeddingManifold reads: a θ table, ids and metadata."""

    def __init__(self, dim: int = 2):
        super().__init__()
        self.theta = nn.Embedding(6, dim)
        self.member_ids = [f"{arch}-s{s}" for arch in ("gru", "lstm") for s in range(3)]
        self.member_metadata = [
            {"architecture": i.split("-")[0], "task": "flipflop", "seed": k % 3,
             "hidden_size": 8, "task_metric": 0.5 + 0.07 * k, "task_config": {"n_bits": 3}}
            for k, i in enumerate(self.member_ids)
        ]

    def embeddings(self) -> torch.Tensor:
        return self.theta.weight

    def training_step(self, batch, batch_idx):
        (idx,) = batch
        return self.theta(idx).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(tmp_path, logger, callback, dim=2):
    """Two epochs of two steps each, with a sanity check before them."""
    loader = DataLoader(TensorDataset(torch.arange(6)), batch_size=3)
    trainer = Trainer(devices=1, max_epochs=2, logger=logger, default_root_dir=tmp_path,
                      callbacks=[callback],
                      enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=1)
    trainer.fit(_FakeDynamo(dim), loader, loader)
    return trainer


def test_embedding_manifold_with_csv_logger(tmp_path):
    trainer = _fit(tmp_path, CSVLogger(tmp_path, name="csv"), EmbeddingManifold())
    figures = Path(trainer.log_dir) / "figures"
    assert sorted(p.name for p in figures.glob("figures_map_step*.png")) == [
        "figures_map_step2.png", "figures_map_step4.png"]  # none from the sanity check (step 0)
    assert (figures / "figures_map.png").is_file()
    assert (Path(trainer.log_dir) / "map.png").is_file()
    with open(figures / "tables_embeddings.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["member"] for r in rows] == trainer.lightning_module.member_ids
    theta = trainer.lightning_module.embeddings().detach().numpy()
    np.testing.assert_allclose([float(r["map_x"]) for r in rows], theta[:, 0], rtol=1e-5)
    assert rows[0]["architecture"] == "gru" and rows[0]["task_config"] == '{"n_bits": 3}'
    assert plt.get_fignums() == []


def test_embedding_manifold_with_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    callback = EmbeddingManifold(method="pca", keys=["architecture", "task_metric"],
                                 annotate=True)
    trainer = _fit(tmp_path, TensorBoardLogger(tmp_path, name="tb"), callback)
    events = list(Path(trainer.log_dir).glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0]), size_guidance={"images": 0}).Reload()
    assert [e.step for e in acc.Images("figures/map")] == [2, 4]
    text = [tag for tag in acc.Tags()["tensors"] if tag.startswith("tables/embeddings")]
    assert text  # the table as Markdown text in TensorBoard's text tab
    table = acc.Tensors(text[0])[-1].tensor_proto.string_val[0].decode()
    assert table.startswith("| member |") and "| --- |" in table
    assert callback.state_dict() == {"last_step": 4, "num_drawn": 2}
    assert plt.get_fignums() == []


def test_embedding_manifold_with_wandb_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    logger = DynamoWandbLogger(save_dir=tmp_path, offline=True)
    try:
        trainer = _fit(tmp_path, logger, EmbeddingManifold(every_n_epochs=2))
    finally:
        import wandb

        wandb.finish()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    assert list(runs[0].rglob("media/images/figures/map_*.png"))
    run_folder = tmp_path / str(logger.version)  # this run's own folder, by its W&B id
    assert Path(trainer.log_dir) == run_folder
    assert sorted(p.name for p in (run_folder / "figures").glob("figures_map_step*.png")) == [
        "figures_map_step4.png"]  # every_n_epochs=2: only after the second epoch
    assert (run_folder / "map.png").is_file()


def test_two_wandb_runs_sharing_a_save_dir_keep_their_own_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    import wandb

    folders = []
    for _ in range(2):
        logger = DynamoWandbLogger(save_dir=tmp_path, offline=True)
        try:
            trainer = _fit(tmp_path, logger, EmbeddingManifold(every_n_epochs=1))
        finally:
            wandb.finish()
        folders.append(Path(trainer.log_dir))
    assert folders[0] != folders[1] and all(f.parent == tmp_path for f in folders)
    for folder in folders:
        assert (folder / "figures" / "tables_embeddings.csv").is_file()


def test_final_map_is_drawn_even_when_it_is_never_time(tmp_path):
    trainer = _fit(tmp_path, False, EmbeddingManifold(every_n_epochs=5), dim=5)
    figures = tmp_path / "figures"
    assert [p.name for p in figures.glob("figures_map_step*.png")] == ["figures_map_step4.png"]
    assert (tmp_path / "map.png").is_file() and trainer.global_step == 4  # from on_fit_end
    with open(figures / "tables_embeddings.csv") as f:
        header = next(csv.reader(f))  # d = 5: θ in the table, its PCA in map_x/map_y
    assert header[:8] == ["member", "theta_1", "theta_2", "theta_3", "theta_4", "theta_5",
                          "map_x", "map_y"]


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"every_n_epochs": 0}, "every_n_epochs"),
    ({"every_n_epochs": True}, "every_n_epochs"),
    ({"method": "tsne"}, "method"),
    ({"keys": "architecture"}, "keys"),
    ({"keys": ["architecture", ""]}, "keys"),
    ({"annotate": "yes"}, "annotate"),
])
def test_embedding_manifold_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=rf"^EmbeddingManifold: .*{name}") as info:
        EmbeddingManifold(**kwargs)
    assert repr(kwargs[name]) in str(info.value)  # the value it got


def test_embedding_manifold_unknown_key_and_state_round_trip(tmp_path):
    with pytest.raises(ValueError, match=r"no member has metadata key.*'colour'.*known: "):
        _fit(tmp_path, False, EmbeddingManifold(keys=["colour"]))
    assert plt.get_fignums() == []
    callback = EmbeddingManifold()
    callback.load_state_dict({"last_step": 10, "num_drawn": 3})
    assert callback.state_dict() == {"last_step": 10, "num_drawn": 3}


def test_wandb_logger_stores_the_population_as_an_artifact_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    population = tmp_path / "pop"
    (population / "weights").mkdir(parents=True)
    (population / "manifest.json").write_text("{}")
    logger = DynamoWandbLogger(save_dir=tmp_path, offline=True, log_population=True)
    logged = []
    monkeypatch.setattr(logger.experiment, "log_artifact", logged.append)
    try:
        logger.log_hyperparams({"population_path": str(population),
                                "population_checksum": "feedbeef" * 8})
        logger.log_hyperparams({"population_path": str(population)})  # logged once only
    finally:
        logger.experiment.finish()
    assert len(logged) == 1
    artifact = logged[0]
    assert artifact.type == "population" and artifact.name == "population-feedbeeffeedbeef"
    assert "manifest.json" in artifact.manifest.entries


def test_wandb_logger_keeps_a_relative_save_dir_in_the_callers_folder(tmp_path, monkeypatch):
    """W&B's service process resolves relative folders against its own working directory;
    the logger hands it an absolute one, so a run started elsewhere writes where it was told."""
    monkeypatch.chdir(tmp_path)
    logger = DynamoWandbLogger(save_dir="runs/x", offline=True)
    assert Path(logger._save_dir) == tmp_path / "runs" / "x"
