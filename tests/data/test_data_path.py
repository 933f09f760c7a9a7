"""The cached data path: worker processes, pinned memory and one hash pass per process.

Batch d is a function of ``(seed, d)`` gathered wherever the DataLoader runs it, so the
batches (members, trials, values, order) must not depend on ``num_workers``, across epochs
with persistent workers too, under a Trainer as well as alone.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch

from dynamo_lightning.data import TrajectoryDataModule
from dynamo_lightning.data import cache as cache_module
from dynamo_lightning.data.batches import ArrayStore
from dynamo_lightning.population import Population

SIZES = {"num_components": 3, "members_per_batch": 2, "samples_per_member": 4,
         "train_trials": 12, "val_trials": 6, "test_trials": 4, "batches_per_epoch": 5}


@pytest.fixture(scope="module")
def pop_dir(tiny_population: Population, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_population.save(tmp_path_factory.mktemp("data_path") / "population")


def data(pop_dir: Path, **options: object) -> TrajectoryDataModule:
    dm = TrajectoryDataModule(str(pop_dir), **{**SIZES, **options})
    dm.setup("fit")
    return dm


def epochs(loader: torch.utils.data.DataLoader, count: int) -> list[dict[str, torch.Tensor]]:
    return [batch for _ in range(count) for batch in loader]


def assert_same_batches(a: list[dict[str, torch.Tensor]],
                        b: list[dict[str, torch.Tensor]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            assert torch.equal(x[key], y[key]), key


def test_batches_do_not_depend_on_workers(pop_dir: Path) -> None:
    alone, workers = data(pop_dir), data(pop_dir, num_workers=2)
    assert_same_batches(epochs(alone.train_dataloader(), 2),
                        epochs(workers.train_dataloader(), 2))
    for split in ("val_dataloader", "test_dataloader"):
        assert_same_batches(epochs(getattr(alone, split)(), 1),
                            epochs(getattr(workers, split)(), 1))


def test_persistent_workers_serve_each_epoch_in_turn(pop_dir: Path) -> None:
    dm = data(pop_dir, num_workers=2)
    loader = dm.train_dataloader()
    assert loader.persistent_workers and loader.prefetch_factor == 2
    first = epochs(loader, 1)
    workers = loader._iterator  # kept alive between epochs
    second = epochs(loader, 1)
    assert loader._iterator is workers
    assert not torch.equal(first[0]["trial"], second[0]["trial"])
    assert_same_batches(first + second, epochs(data(pop_dir).train_dataloader(), 2))


class _Recorder(pl.LightningModule):
    """Records each training batch's members and trials, on a Trainer's schedule."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[list[int], list[list[int]]]] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen.append((batch["member"].tolist(), batch["trial"].tolist()))
        return (batch["hidden"].mean() - self.weight) ** 2

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_trainer_gets_the_same_stream_with_workers(pop_dir: Path) -> None:
    seen = []
    for workers in (0, 2):
        recorder = _Recorder()
        trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False,
                             limit_val_batches=0, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(recorder, datamodule=TrajectoryDataModule(str(pop_dir), **SIZES,
                                                              num_workers=workers))
        seen.append(recorder.seen)
    assert len(seen[0]) == 2 * SIZES["batches_per_epoch"] and seen[0] == seen[1]


def _on(dm: TrajectoryDataModule, device: str) -> TrajectoryDataModule:
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))
    return dm


@pytest.mark.parametrize(("pin", "workers", "device", "expected"), [
    (None, 0, None, False),      # no Trainer
    (None, 2, "cpu", False),     # nothing to copy to
    (None, 0, "cuda", False),    # pinning would run inline in the training loop
    (None, 2, "cuda", True),     # the loader's pinning thread overlaps the step
    (True, 0, None, True),       # as given
    (False, 2, "cuda", False),
])
def test_pin_memory_is_decided_as_documented(pop_dir: Path, pin: bool | None, workers: int,
                                             device: str | None, expected: bool) -> None:
    dm = TrajectoryDataModule(str(pop_dir), **SIZES, pin_memory=pin, num_workers=workers)
    if device is not None:
        _on(dm, device)
    assert dm.resolved_pin_memory() is expected
    assert dm.loader_options()["pin_memory"] is expected


def test_loader_options_follow_the_workers(pop_dir: Path) -> None:
    alone = TrajectoryDataModule(str(pop_dir), **SIZES)
    assert alone.loader_options() == {"num_workers": 0, "pin_memory": False}
    workers = TrajectoryDataModule(str(pop_dir), **SIZES, num_workers=3, prefetch_factor=4)
    assert workers.loader_options() == {"num_workers": 3, "pin_memory": False,
                                        "persistent_workers": True, "prefetch_factor": 4}


@pytest.mark.parametrize(("arg", "value"), [
    ("pin_memory", "yes"), ("pin_memory", 1), ("prefetch_factor", 0),
    ("prefetch_factor", 1.5), ("num_workers", True),
])
def test_bad_loader_arguments_name_themselves(pop_dir: Path, arg: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"TrajectoryDataModule: {arg} must be"):
        TrajectoryDataModule(str(pop_dir), **{**SIZES, arg: value})


def test_the_cache_is_hashed_once_per_process(pop_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    real = cache_module.sha256_file

    def counting(path: Path) -> str:
        hashed.append(Path(path).name)
        return real(path)
    monkeypatch.setattr(cache_module, "sha256_file", counting)
    built = TrajectoryDataModule(str(pop_dir), **SIZES, cache_dir=str(tmp_path))
    built.prepare_data()
    built.setup("fit")
    assert not built.reused_cache and sorted(hashed) == sorted(set(hashed))  # at writing
    names = sorted(hashed)
    hashed.clear()
    reused = TrajectoryDataModule(str(pop_dir), **SIZES, cache_dir=str(tmp_path))
    reused.prepare_data()
    reused.setup("fit")
    reused.prepare_data()  # after setup: nothing to do
    assert reused.reused_cache and sorted(hashed) == names  # each file once, not twice
    assert_same_batches(epochs(built.train_dataloader(), 1),
                        epochs(reused.train_dataloader(), 1))


def test_array_store_knows_its_names_and_reopens(pop_dir: Path) -> None:
    dm = data(pop_dir)
    store = dm._stores["train"]
    assert "train_hidden" in store and "train_nothing" not in store
    with pytest.raises(KeyError, match="train_nothing"):
        store["train_nothing"]
    before = next(iter(dm.train_dataloader()))
    dm.teardown()  # memory maps dropped, reopened on the next batch
    dm.load_state_dict({"train_epoch": 0})
    assert_same_batches([before], [next(iter(dm.train_dataloader()))])
    memory = ArrayStore({"a_x": torch.arange(3).numpy()})
    memory.close()  # in-memory arrays are kept
    assert memory["a_x"].tolist() == [0, 1, 2]
