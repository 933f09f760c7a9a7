"""The CUDA-graph training step computes what the eager step does (skips without CUDA), and
the eager step, which CPUs and mixed precision run, still catches a loss that is not finite."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from dynamo_lightning.population.datamodule import TaskDataModule
from dynamo_lightning.population.graphed_step import GraphedStep
from dynamo_lightning.population.training import PopulationModule, clip_per_member

TASKS = [{"name": "flipflop", "config": {"n_bits": 2, "seq_len": 12}},
         {"name": "integrator", "config": {"n_channels": 2, "seq_len": 12}}]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def module(clip_norm: float | None = 0.5) -> PopulationModule:
    return PopulationModule(tasks=TASKS, architectures=["vanilla", "gru", "lstm"],
                            hidden_sizes=[8], seeds=[0, 1], clip_norm=clip_norm)


def batch(seed: int, device: str) -> dict:
    data = TaskDataModule(tasks=TASKS, batch_size=16, seed=seed)
    x = next(iter(data.train_dataloader()))
    return {label: (a.to(device), b.to(device)) for label, (a, b) in x.items()}


def eager_grads(m: PopulationModule, b: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
    for p in m.parameters():
        p.grad = None
    total = sum(m._group_loss(i, *b[g.task.label]) for i, g in enumerate(m.groups))
    total.backward()
    for stack in m.stacks:
        clip_per_member(stack, m.hparams.clip_norm)
    return total.detach(), [p.grad.clone() for p in m.parameters()]


@cuda
def test_replays_give_the_eager_loss_and_clipped_gradients() -> None:
    m = module().cuda()
    graphed = GraphedStep(m.stacks, [g.task.label for g in m.groups], m._group_loss, m._clip,
                          batch(0, "cuda"))
    for seed in (1, 2, 3):  # fresh inputs every replay: the graph reads its static copies
        b = batch(seed, "cuda")
        total = graphed(b).clone()
        grads = [p.grad.clone() for p in m.parameters()]
        expected_total, expected = eager_grads(m, b)
        torch.testing.assert_close(total, expected_total, rtol=1e-5, atol=1e-6)
        for got, want in zip(grads, expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
        with torch.no_grad():  # parameters change between steps, as Adam's would
            for p in m.parameters():
                p.add_(0.01 * torch.randn_like(p))
    assert not graphed.accepts(batch(0, "cpu") | {"extra": batch(0, "cpu")["flipflop"]})


@cuda
def test_graphed_training_matches_eager_training() -> None:
    results = []
    for graphs in (False, True):
        torch.manual_seed(0)
        m = PopulationModule(tasks=TASKS, architectures=["vanilla", "gru"], hidden_sizes=[8],
                             seeds=[0, 1], cuda_graphs=graphs)
        trainer = pl.Trainer(accelerator="gpu", devices=1, max_steps=6, limit_val_batches=0,
                             logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(m, TaskDataModule(tasks=TASKS, batch_size=16, steps_per_epoch=6))
        assert (m._graphed is not None) == graphs
        results.append([p.detach().cpu() for p in m.parameters()])
    for eager, graphed in zip(*results, strict=True):
        torch.testing.assert_close(graphed, eager, rtol=1e-4, atol=1e-5)


def test_a_loss_that_is_not_finite_stops_training(monkeypatch: pytest.MonkeyPatch) -> None:
    m = module()
    data = TaskDataModule(tasks=TASKS, batch_size=4, steps_per_epoch=3)
    task = m.tasks["flipflop"]
    sample = task.sample

    def poisoned(*args, **kwargs):
        x, y = sample(*args, **kwargs)
        return x * float("nan"), y

    monkeypatch.setattr(type(data._train.tasks["flipflop"]), "sample",
                        lambda self, *a, **k: poisoned(*a, **k))
    trainer = pl.Trainer(accelerator="cpu", max_steps=3, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    with pytest.raises(FloatingPointError, match="not finite at step 0"):
        trainer.fit(m, data)


@cuda
def test_a_loss_that_cannot_be_captured_runs_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    m = PopulationModule(tasks=TASKS[:1], architectures=["gru"], hidden_sizes=[8], seeds=[0, 1])
    task = m.tasks["flipflop"]
    loss = task.loss
    monkeypatch.setattr(task, "loss", lambda out, y, ids=None: loss(out, y) * (
        1.0 if bool((y != 0).any()) else 0.0))  # a host sync: not capturable
    trainer = pl.Trainer(accelerator="gpu", devices=1, max_steps=3, limit_val_batches=0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    with pytest.warns(UserWarning, match="could not be captured as a CUDA graph"):
        trainer.fit(m, TaskDataModule(tasks=TASKS[:1], batch_size=16, steps_per_epoch=3))
    assert m._graphed is None and trainer.global_step == 3
