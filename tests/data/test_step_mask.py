"""Padded trials (``Task.step_mask``): the mask travels with the trials, each member's PCA
fits real steps only, and padded steps reach neither the DYNAMO losses nor the metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dynamo_lightning.data import TrajectoryDataModule
from dynamo_lightning.data.cache import cache_key
from dynamo_lightning.data.projection import ProjectionFitter
from dynamo_lightning.module import DynamoModule
from dynamo_lightning.module.losses import output_loss, squared_error
from dynamo_lightning.module.metrics import PerMemberAgreement, PerMemberR2
from dynamo_lightning.population import Population, architectures

pytest.importorskip("neurogym")

# dm1 at neurogym's default dt (100 ms): trials of 6 to 12 steps, padded to 14.
TASK = {"env": "yang19.dm1-v0", "dt": 100, "seq_len": None}
SIZES = {"num_components": 3, "members_per_batch": 2, "samples_per_member": 8,
         "train_trials": 32, "val_trials": 16, "test_trials": 8}
META = {"cell": "gru", "hidden_size": 8, "conditioning": "concat"}


@pytest.fixture(scope="module")
def padded_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three untrained members (2 GRU, 1 vanilla) of the neurogym task's sizes."""
    parts = []
    for name, seeds in (("gru", [0, 1]), ("vanilla", [2])):
        stack = architectures.build(name, num_members=len(seeds), seeds=seeds, input_size=33,
                                    output_size=17, hidden_size=8)
        meta = [{"task": "neurogym", "task_config": TASK, "seed": s} for s in seeds]
        parts.append(Population.from_stack(name, stack, [f"{name}-s{s}" for s in seeds], meta))
    return Population.concat(parts).save(tmp_path_factory.mktemp("padded") / "population")


@pytest.fixture(scope="module", params=["cached", "online"])
def padded(request: pytest.FixtureRequest, padded_dir: Path,
           tmp_path_factory: pytest.TempPathFactory) -> TrajectoryDataModule:
    dm = TrajectoryDataModule(str(padded_dir), mode=request.param,
                              cache_dir=str(tmp_path_factory.mktemp("cache")), **SIZES)
    dm.setup("fit")
    return dm


def _batch(dm: TrajectoryDataModule, split: str = "val") -> dict[str, torch.Tensor]:
    loader = dm.train_dataloader() if split == "train" else dm.val_dataloader()
    return dm.on_after_batch_transfer(next(iter(loader)), 0)


def _module(dm: TrajectoryDataModule) -> DynamoModule:
    torch.manual_seed(0)
    return DynamoModule(num_members=dm.num_members, input_size=dm.input_size,
                        output_size=dm.output_size, num_components=dm.num_components,
                        output_kind=dm.output_kind, meta=META)


def test_batches_carry_the_mask_of_their_trials(padded: TrajectoryDataModule) -> None:
    assert padded.has_mask
    for split in ("train", "val"):
        batch = _batch(padded, split)
        m, s, t = batch["inputs"].shape[:3]
        assert batch["mask"].dtype == torch.bool and batch["mask"].shape == (m, s, t)
        want = padded.task.step_mask(batch["targets"].flatten(0, 1)).view(m, s, t)
        assert torch.equal(batch["mask"], want)
        assert (~batch["mask"]).any() and batch["mask"].any()  # real and padded steps
        assert not batch["inputs"][~batch["mask"]].any()  # padding is zero input


def test_each_members_pca_is_fitted_on_real_steps_only(padded: TrajectoryDataModule) -> None:
    store = padded._store("train")
    inputs = torch.tensor(store["train_inputs"])
    mask = torch.tensor(store["train_mask"])
    hidden = padded._population.trajectories(inputs).hidden  # N × [B, T, H]
    real = ProjectionFitter([h.shape[-1] for h in hidden])
    real.update([h[mask] for h in hidden])
    fitted, everything = real.fit(3), ProjectionFitter([h.shape[-1] for h in hidden])
    everything.update(list(hidden))
    assert padded.projections is not None
    torch.testing.assert_close(padded.projections.mean, fitted.mean)
    torch.testing.assert_close(padded.projections.basis.abs(), fitted.basis.abs(),
                               atol=1e-4, rtol=1e-4)
    assert not torch.allclose(everything.fit(3).mean, fitted.mean, atol=1e-3)


def test_the_fitter_reads_no_padded_state() -> None:
    g = torch.Generator().manual_seed(0)
    states = torch.randn(2, 5, 7, 4, generator=g)
    mask = torch.rand(5, 7, generator=g) > 0.4
    a, b = ProjectionFitter([4, 4]), ProjectionFitter([4, 4])
    a.update(states, mask)
    b.update(states.masked_fill(~mask[None, ..., None], 1e6), mask)
    for one, two in zip(a.fit(2).to_state_dict().values(), b.fit(2).to_state_dict().values(),
                        strict=True):
        assert torch.equal(one, two)
    with pytest.raises(ValueError, match="mask"):
        a.update(states, mask[:, :-1])


def _scores(module: DynamoModule, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The loss terms, their gradient and every per-member metric on ``batch``."""
    module.zero_grad()
    terms = module.losses(batch)
    terms["loss"].backward()
    grads = [p.grad.clone() for p in module.parameters() if p.grad is not None]
    metrics = []
    for metric, pred, target in (
            (PerMemberR2(module.hparams.num_members, 3), terms["aligned"], batch["hidden"]),
            (PerMemberR2(module.hparams.num_members, 17), terms["outputs"], batch["outputs"]),
            (PerMemberAgreement(module.hparams.num_members, "classification"),
             terms["outputs"], batch["outputs"])):
        metric.update(pred, target, batch["member"], batch["mask"])
        metrics.append(metric.compute())
    return [terms[k].detach() for k in ("loss", "hidden_loss", "output_loss")] + grads + metrics


def test_padded_steps_change_neither_the_loss_nor_the_metrics(
        padded: TrajectoryDataModule) -> None:
    module, batch = _module(padded), _batch(padded)
    pad = ~batch["mask"]
    before = _scores(module, batch)
    changed = dict(batch)
    changed["hidden"] = batch["hidden"].masked_fill(pad.unsqueeze(-1), float("nan"))
    changed["outputs"] = batch["outputs"] + 1e3 * pad.unsqueeze(-1) * torch.randn_like(
        batch["outputs"])
    after = _scores(module, changed)
    for a, b in zip(before, after, strict=True):  # bit for bit (NaN: a member not seen)
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    assert all(torch.isfinite(v).all() for v in after[:-3])  # the losses and gradients
    real = dict(batch)  # the same change on real steps does change them
    real["hidden"] = batch["hidden"] + batch["mask"].unsqueeze(-1) * 0.5
    assert not torch.equal(_scores(module, real)[1], before[1])


def test_the_masked_terms_are_means_over_real_steps() -> None:
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(2, 3, 6, 4, generator=g), torch.randn(2, 3, 6, 4, generator=g)
    mask = torch.rand(2, 3, 6, generator=g) > 0.3
    torch.testing.assert_close(squared_error(pred, target, mask),
                               (pred - target)[mask].pow(2).sum(-1).mean())
    torch.testing.assert_close(output_loss(pred, target, "regression", mask),
                               F.mse_loss(pred[mask], target[mask]))
    kl = F.kl_div(F.log_softmax(pred[mask], -1), F.log_softmax(target[mask], -1),
                  log_target=True, reduction="batchmean")
    torch.testing.assert_close(output_loss(pred, target, "classification", mask), kl)
    noisy = target.masked_fill(~mask.unsqueeze(-1), float("nan"))
    assert torch.equal(output_loss(pred, noisy, "regression", mask),
                       output_loss(pred, target, "regression", mask))


def test_without_a_mask_nothing_changes(tiny_population: Population,
                                        tmp_path: Path) -> None:
    """A task of unpadded trials: no mask anywhere, the cache key and losses as before."""
    dm = TrajectoryDataModule(str(tiny_population.save(tmp_path / "population")),
                              cache_dir=str(tmp_path / "cache"), **SIZES)
    assert not dm.has_mask
    assert dm.cache_key == cache_key(population=dm.population_checksum, task=dm.task_spec,
                                     seed=0, trials=dm.trials, num_components=3,
                                     dtype="float32")  # existing caches stay valid
    dm.setup("fit")
    batch = _batch(dm)
    assert "mask" not in batch and not any(k.endswith("_mask") for k in dm._store("val").names)
    module = _module(dm)
    terms = module.losses(batch)
    aligned, outputs = terms["aligned"], terms["outputs"]
    assert torch.equal(terms["hidden_loss"], (aligned - batch["hidden"]).pow(2).sum(-1).mean())
    assert torch.equal(terms["output_loss"], F.mse_loss(outputs, batch["outputs"]))
    every = torch.ones(batch["inputs"].shape[:3], dtype=torch.bool)
    with_mask = module.losses({**batch, "mask": every})
    for key in ("loss", "hidden_loss", "output_loss"):
        torch.testing.assert_close(with_mask[key], terms[key])
    for pred, target, metric in ((aligned, batch["hidden"], PerMemberR2(dm.num_members, 3)),
                                 (outputs, batch["outputs"], PerMemberAgreement(dm.num_members))):
        plain = metric.clone()
        metric.update(pred, target, batch["member"], every)
        plain.update(pred, target, batch["member"])
        torch.testing.assert_close(metric.compute(), plain.compute(), equal_nan=True)
