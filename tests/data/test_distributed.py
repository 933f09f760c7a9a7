"""Two DDP processes (CPU, gloo) learn the embeddings one process learns from the same draws.

Under DDP, Lightning wraps the training sampler in a ``DistributedSampler``: each epoch it
permutes the epoch's draws (``randperm(n)`` seeded with ``seed + epoch``) and rank ``r`` of 2
takes positions ``r, r + 2, …``, so every draw is still used once per epoch. One optimiser
step sees two member-major batches (one per rank), and DDP averages the two ranks'
gradients. One process that takes the union of the two draws as its batch computes the same
mean loss, so the same gradients, clipping and learning-rate schedule: the embeddings after
training must agree (up to the summation order of the all-reduce).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from dynamo_lightning.data import TrajectoryDataModule
from dynamo_lightning.data.batches import EpochSampler, TrainBatches
from dynamo_lightning.module import DynamoModule
from dynamo_lightning.population import Population

SIZES = {"num_components": 3, "members_per_batch": 2, "samples_per_member": 4,
         "train_trials": 16, "val_trials": 4, "test_trials": 4, "batches_per_epoch": 6}
LINKED = ("num_members", "input_size", "output_size", "num_components", "output_kind",
          "member_ids", "member_metadata", "population_path", "population_checksum",
          "task_spec")
MODEL = {"meta": {"hidden_size": 8}}
TRAINER = {"max_epochs": 2, "limit_val_batches": 0, "num_sanity_val_steps": 0,
           "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
           "enable_model_summary": False, "gradient_clip_val": 1.0}

DDP_SCRIPT = """
import sys
import lightning.pytorch as pl
import torch
from dynamo_lightning.data import TrajectoryDataModule
from dynamo_lightning.module import DynamoModule
population, cache, out = sys.argv[1:4]
sizes, linked, model_kwargs, trainer_kwargs = {sizes!r}, {linked!r}, {model!r}, {trainer!r}
pl.seed_everything(0)
data = TrajectoryDataModule(population, cache_dir=cache, **sizes)
model = DynamoModule(**{{k: getattr(data, k) for k in linked}}, **model_kwargs)
trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", **trainer_kwargs)
trainer.fit(model, data)
if trainer.is_global_zero:
    torch.save({{"theta": model.embeddings().detach(), "steps": trainer.global_step}}, out)
"""


class UnionOfDrawPairs(Dataset):
    """Batch ``k`` of epoch ``e``: the draws the two DDP ranks take for their step ``k``
    (positions ``2k`` and ``2k + 1`` of the epoch's permutation), concatenated member-major."""

    def __init__(self, draws: TrainBatches, batches_per_epoch: int, seed: int = 0) -> None:
        self.draws, self.per_epoch, self.half = draws, batches_per_epoch, batches_per_epoch // 2
        self.seed = seed

    def __getitem__(self, index: int) -> dict[str, Any]:
        epoch, k = divmod(int(index), self.half)
        order = torch.randperm(self.per_epoch,
                               generator=torch.Generator().manual_seed(self.seed + epoch))
        first, second = (self.draws[epoch * self.per_epoch + int(order[2 * k + r])]
                         for r in (0, 1))
        return {key: torch.cat([first[key], second[key]]) for key in first}


class PairedData(TrajectoryDataModule):
    def train_dataloader(self) -> DataLoader:
        draws = TrainBatches(self._store("train"), self.num_members, self.trials["train"],
                             self.members_per_batch, self.samples_per_member, self.seed)
        dataset = UnionOfDrawPairs(draws, self.batches_per_epoch)
        return DataLoader(dataset, batch_size=None, sampler=EpochSampler(dataset.half))


@pytest.mark.slow
def test_two_processes_learn_the_embeddings_of_one(tiny_population: Population,
                                                   tmp_path: Path) -> None:
    population = tiny_population.save(tmp_path / "population")
    cache = tmp_path / "cache"
    script = tmp_path / "ddp_fit.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(
        sizes=SIZES, linked=LINKED, model=MODEL, trainer=TRAINER)))
    out = tmp_path / "ddp.pt"
    run = subprocess.run([sys.executable, str(script), str(population), str(cache), str(out)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    ddp = torch.load(out, weights_only=True)

    pl.seed_everything(0)
    data = PairedData(str(population), cache_dir=str(cache), **SIZES)
    model = DynamoModule(**{k: getattr(data, k) for k in LINKED}, **MODEL)
    trainer = pl.Trainer(accelerator="cpu", devices=1, **TRAINER)
    trainer.fit(model, data)

    assert ddp["steps"] == trainer.global_step == 2 * SIZES["batches_per_epoch"] // 2
    torch.testing.assert_close(ddp["theta"], model.embeddings().detach(), rtol=1e-4,
                               atol=1e-5)
    pl.seed_everything(0)  # and training moved θ: the agreement is not that of two inits
    untrained = DynamoModule(**{k: getattr(data, k) for k in LINKED}, **MODEL).embeddings()
    assert (model.embeddings() - untrained).abs().max() > 1e-2
