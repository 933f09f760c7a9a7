"""The data layer: per-member PCA, the input source, the on-disk cache and the datamodule."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

import dynamo_lightning as dl
from dynamo_lightning.data import (
    MemberProjections,
    TrajectoryDataModule,
    build_input_source,
    fit_projections,
    project_states,
)
from dynamo_lightning.data.cache import cache_key, read_cache, write_cache
from dynamo_lightning.data.projection import ProjectionFitter
from dynamo_lightning.population import Member, Population
from dynamo_lightning.seeding import derive_seed
from dynamo_lightning.tasks import MixtureTask

SIZES = {"num_components": 4, "members_per_batch": 3, "samples_per_member": 4,
         "train_trials": 24, "val_trials": 10, "test_trials": 6}


def correlated(n: int, b: int, s: int, h: int, seed: int) -> torch.Tensor:
    """``[n, b, s, h]`` states with distinct variances along random directions."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(n, h, h, generator=g) * torch.linspace(3.0, 0.1, h).view(1, h, 1)
    noise = torch.randn(n, b * s, h, generator=g) @ mix
    return noise.view(n, b, s, h) + torch.randn(n, 1, 1, h, generator=g)


def with_members(pop: Population, change) -> Population:
    """A copy of ``pop`` whose member i is rebuilt from ``change(i, member) -> kwargs``."""
    members = []
    for i, m in enumerate(pop):
        args = {"id": m.id, "architecture": m.architecture, "config": m.config,
                "metadata": m.metadata, "state": {k: v.clone() for k, v in m.state.items()}}
        args.update(change(i, m) or {})
        members.append(Member(**args))
    return Population(members)


@pytest.fixture(scope="module")
def pop_dir(tiny_population: Population, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_population.save(tmp_path_factory.mktemp("data") / "population")


@pytest.fixture(scope="module")
def cached(pop_dir: Path) -> TrajectoryDataModule:
    dm = TrajectoryDataModule(str(pop_dir), **SIZES)
    dm.setup("fit")
    return dm


# ---------------------------------------------------------------------- projection maths
def test_projection_matches_sklearn_pca() -> None:
    hidden, k = correlated(3, 20, 10, 6, seed=0), 3
    proj = fit_projections(hidden, k)
    z = project_states(proj, hidden)
    assert z.shape == (3, 20, 10, k)
    for n in range(3):
        states = hidden[n].reshape(-1, 6).double().numpy()
        pca = PCA(n_components=k).fit(states)
        basis = proj.basis[n].double().numpy()
        # Same subspace (and, with distinct eigenvalues, the same axes up to sign).
        np.testing.assert_allclose(np.abs(pca.components_ @ basis), np.eye(k), atol=1e-4)
        np.testing.assert_allclose(proj.mean[n].numpy(), states.mean(0), rtol=1e-5, atol=1e-5)
        assert proj.explained_variance[n].item() == pytest.approx(
            pca.explained_variance_ratio_.sum(), rel=1e-5)
        flat = z[n].reshape(-1, k).double()
        assert flat.var(0, unbiased=False).sum().item() == pytest.approx(1.0, rel=1e-5)
        assert flat.mean(0).abs().max().item() < 1e-5


def test_small_states_get_zero_components_and_list_input_works() -> None:
    big, small = correlated(1, 16, 5, 6, seed=1)[0], correlated(1, 16, 5, 2, seed=2)[0]
    proj = fit_projections([small, big], 3)
    assert proj.state_sizes.tolist() == [2, 6] and proj.basis.shape == (2, 6, 3)
    assert proj.basis[0, 2:].abs().max() == 0 and proj.basis[0, :, 2].abs().max() == 0
    z = project_states(proj, [small, big])
    assert z[0, ..., 2].abs().max() == 0
    for n in range(2):
        assert z[n].reshape(-1, 3).var(0, unbiased=False).sum().item() == pytest.approx(1, 1e-5)
    assert proj.explained_variance[0].item() == pytest.approx(1.0)
    assert proj.explained_variance[1].item() < 1.0
    # A subset of members, in any order, maps like the full call.
    sub = project_states(proj, [big, small], members=torch.tensor([1, 0]))
    torch.testing.assert_close(sub, z.flip(0))


def test_streamed_fit_and_state_dict_round_trip() -> None:
    hidden = correlated(2, 12, 4, 5, seed=3)
    fitter = ProjectionFitter([5, 5])
    for chunk in hidden.split(5, dim=1):
        fitter.update(chunk)
    streamed, direct = fitter.fit(2), fit_projections(hidden, 2)
    restored = MemberProjections.from_state_dict(streamed.to_state_dict())
    for name, value in direct.to_state_dict().items():
        torch.testing.assert_close(getattr(restored, name), value, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------- cache
def test_cache_key_depends_on_every_part() -> None:
    base = {"population": "abc", "task": {"name": "flipflop"}, "seed": 0, "k": 4}
    key = cache_key(**base)
    assert key == cache_key(**dict(reversed(base.items())))
    for part, other in (("population", "abd"), ("task", {"name": "sine"}), ("seed", 1),
                        ("k", 5)):
        assert cache_key(**{**base, part: other}) != key, part


def test_cache_write_is_atomic_and_reads_memmaps(tmp_path: Path) -> None:
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.arange(5)}
    entry = write_cache(tmp_path, "k1", arrays, {"note": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k1"]  # no temp dirs left
    assert read_cache(tmp_path, "absent") is None
    got, meta = read_cache(tmp_path, "k1")
    assert meta == {"note": "x"} and isinstance(got["a"], np.memmap)
    np.testing.assert_array_equal(got["a"], arrays["a"])
    assert json.loads((entry / "meta.json").read_text())["arrays"]["b"]["shape"] == [5]


@pytest.mark.parametrize("damage", ["truncate", "meta"])
def test_damaged_cache_warns_and_is_rebuilt(tmp_path: Path, damage: str) -> None:
    arrays = {"a": np.ones((64, 64), dtype=np.float32)}
    entry = write_cache(tmp_path, "k", arrays, {})
    bad = entry / ("a.npy" if damage == "truncate" else "meta.json")
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.warns(UserWarning, match=str(bad.name)):
        assert read_cache(tmp_path, "k") is None
    write_cache(tmp_path, "k", arrays, {})
    np.testing.assert_array_equal(read_cache(tmp_path, "k")[0]["a"], arrays["a"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


# ---------------------------------------------------------------------- input source
def test_input_source_mixture_and_errors(tiny_population: Population) -> None:
    assert build_input_source(tiny_population).config()["n_bits"] == 3
    mixed = with_members(tiny_population, lambda i, m: {"metadata": {
        **m.metadata, "task_config": {"n_bits": 3, "pulse_prob": 0.05 + 0.05 * (i % 2)}}})
    mixture = build_input_source(mixed)
    assert isinstance(mixture, MixtureTask) and len(mixture.tasks) == 2
    x1, y1, ids1 = mixture.sample_with_ids(16, torch.Generator().manual_seed(0))
    x2, _, ids2 = mixture.sample_with_ids(16, torch.Generator().manual_seed(0))
    assert torch.equal(x1, x2) and torch.equal(ids1, ids2) and set(ids1.tolist()) == {0, 1}
    assert mixture.metric(y1, y1, task_ids=ids1) == 1.0
    by_task = mixture.metrics_by_task(y1, y1, task_ids=ids1)
    assert len(by_task) == 2 and set(by_task.values()) == {1.0}
    assert all(key.endswith(":" + t.metric_name)
               for key, t in zip(by_task, mixture.tasks, strict=True))
    wide = with_members(tiny_population, lambda i, m: {"metadata": {
        **m.metadata, "task_config": {"n_bits": 2 if i == 3 else 3}}})
    with pytest.raises(ValueError, match=r"input_size.*lstm-s3"):
        build_input_source(wide)
    bare = with_members(tiny_population, lambda i, m: {"metadata": {"seed": i}})
    with pytest.raises(ValueError, match=r"gru-s0.*no 'task'"):
        build_input_source(bare)
    with pytest.raises(ValueError, match=r"input_size 2.*gru-s0"):
        build_input_source(tiny_population, {"name": "flipflop", "config": {"n_bits": 2}})


# ---------------------------------------------------------------------- datamodule
def test_attributes_and_batch_layout(cached: TrajectoryDataModule) -> None:
    assert cached.num_members == 4 and cached.member_ids[0] == "gru-s0"
    assert (cached.input_size, cached.output_size, cached.seq_len) == (3, 3, 64)
    assert cached.output_kind == "regression" and cached.num_components == 4
    assert cached.task_spec["name"] == "flipflop" and Path(cached.population_path).is_absolute()
    assert cached.batches_per_epoch == 8  # ceil(4 · 24 / (3 · 4))
    loader = cached.train_dataloader()
    assert len(loader) == 8
    batch = next(iter(loader))
    m, s = 3, 4
    shapes = {"member": (m,), "trial": (m, s), "inputs": (m, s, 64, 3),
              "targets": (m, s, 64, 3), "hidden": (m, s, 64, 4), "outputs": (m, s, 64, 3)}
    assert {k: tuple(v.shape) for k, v in batch.items() if k in shapes} == shapes
    assert len(set(batch["member"].tolist())) == m
    assert all(len(set(row)) == s for row in batch["trial"].tolist())


def test_cached_targets_are_the_projected_trajectories(cached: TrajectoryDataModule) -> None:
    pop = dl.Population.load(cached.population_path)
    g = torch.Generator().manual_seed(derive_seed(cached.seed, "train"))
    train_x, _ = cached.task.sample(SIZES["train_trials"], generator=g, split="train")
    expected = fit_projections(pop.trajectories(train_x).hidden, 4)
    torch.testing.assert_close(cached.projections.basis, expected.basis, atol=1e-4, rtol=1e-4)
    assert cached.projection_state()["scale"].shape == (4,)
    batch = next(iter(cached.train_dataloader()))
    torch.testing.assert_close(batch["inputs"], train_x[batch["trial"]])
    for row, n in enumerate(batch["member"].tolist()):
        traj = pop[n].module(batch["inputs"][row])
        target = project_states(cached.projections, traj[1].unsqueeze(0), members=[n])[0]
        torch.testing.assert_close(batch["hidden"][row], target, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(batch["outputs"][row], traj[0], atol=1e-5, rtol=1e-4)


def test_cache_is_reused_and_invalidated_by_a_weight(cached: TrajectoryDataModule,
                                                      tmp_path: Path) -> None:
    assert cached.cache_path is not None and not cached.reused_cache
    stamp = {p: p.stat().st_mtime_ns for p in cached.cache_path.iterdir()}
    again = TrajectoryDataModule(cached.population_path, **SIZES)
    again.setup("fit")
    assert again.reused_cache and again.cache_path == cached.cache_path
    assert {p: p.stat().st_mtime_ns for p in cached.cache_path.iterdir()} == stamp
    assert isinstance(again._stores["val"]["val_hidden"], np.memmap)
    pop = dl.Population.load(cached.population_path)
    name = sorted(pop[1].state)[0]

    def bump(i: int, m: Member) -> dict | None:
        if i != 1:
            return None
        return {"state": {k: v + (1e-3 if k == name else 0) for k, v in m.state.items()}}

    changed = with_members(pop, bump).save(tmp_path / "changed")
    other = TrajectoryDataModule(str(changed), cache_dir=str(cached.cache_dir), **SIZES)
    other.setup("fit")
    assert not other.reused_cache and other.cache_key != cached.cache_key


def test_online_mode_matches_cached(cached: TrajectoryDataModule) -> None:
    online = TrajectoryDataModule(cached.population_path, mode="online", **SIZES)
    online.setup("fit")
    for loader_of in ("train_dataloader", "val_dataloader"):
        want = next(iter(getattr(cached, loader_of)()))
        got = next(iter(getattr(online, loader_of)()))
        assert "hidden" not in got
        got = online.on_after_batch_transfer(got, 0)
        assert torch.equal(got["member"], want["member"])
        for key in ("inputs", "hidden", "outputs"):
            torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=1e-4)


def test_val_pass_covers_every_pair_once(cached: TrajectoryDataModule) -> None:
    for split, loader in (("val", cached.val_dataloader()), ("test", cached.test_dataloader())):
        pairs = []
        for batch in loader:
            members = batch["member"].tolist()
            assert members == list(range(members[0], members[0] + len(members)))
            pairs += [(n, t) for n, row in zip(members, batch["trial"].tolist(), strict=True)
                      for t in row]
        assert sorted(pairs) == [(n, t) for n in range(4) for t in range(SIZES[f"{split}_trials"])]


def test_sampling_is_reproducible_and_resumable(cached: TrajectoryDataModule) -> None:
    loader = cached.train_dataloader()
    cached.load_state_dict({"train_epoch": 0})
    epoch0, epoch1 = [b["trial"] for b in loader], [b["trial"] for b in loader]
    assert not all(torch.equal(a, b) for a, b in zip(epoch0, epoch1, strict=True))
    resumed = TrajectoryDataModule(cached.population_path, **SIZES)
    resumed.setup("fit")
    resumed.load_state_dict(cached.state_dict() | {"train_epoch": 1})
    first = next(iter(resumed.train_dataloader()))
    assert torch.equal(first["trial"], epoch1[0])


class _Probe(pl.LightningModule):
    """Checks in a real Trainer loop that online batches arrive with their targets."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[int, ...]] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen.append(tuple(batch["hidden"].shape))
        return (batch["hidden"].mean() - self.weight) ** 2

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.seen.append(tuple(batch["outputs"].shape))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_online_batches_in_a_trainer(pop_dir: Path) -> None:
    dm = TrajectoryDataModule(str(pop_dir), mode="online", **SIZES)
    probe = _Probe()
    trainer = pl.Trainer(fast_dev_run=2, accelerator="cpu", logger=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(probe, datamodule=dm)
    # fast_dev_run=2: two training batches, then two validation batches.
    assert probe.seen == [(3, 4, 64, 4)] * 2 + [(3, 4, 64, 3)] * 2


@pytest.mark.parametrize(("arg", "value"), [
    ("num_components", 0), ("members_per_batch", 0), ("samples_per_member", 25),
    ("train_trials", 1.5), ("batches_per_epoch", 0), ("mode", "disk"), ("seed", -1),
    ("num_workers", -2),
])
def test_bad_arguments_name_themselves(pop_dir: Path, arg: str, value: object) -> None:
    with pytest.raises(ValueError, match=arg):
        TrajectoryDataModule(str(pop_dir), **{**SIZES, arg: value})


def test_population_errors_and_member_cap(pop_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(dl.PopulationFormatError):
        TrajectoryDataModule(str(tmp_path / "nowhere"))
    with pytest.warns(UserWarning, match="members_per_batch=9"):
        dm = TrajectoryDataModule(str(pop_dir), **{**SIZES, "members_per_batch": 9})
    assert dm.members_per_batch == 4
    assert os.path.dirname(dm.cache_dir) == os.path.dirname(pop_dir)


def test_a_cache_built_by_prepare_data_is_not_called_reused(cached: TrajectoryDataModule,
                                                            tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    fresh = TrajectoryDataModule(cached.population_path, **{**SIZES, "cache_dir": tmp_path})
    with caplog.at_level("INFO"):
        fresh.prepare_data()
        fresh.setup("fit")
    assert not fresh.reused_cache
    text = caplog.text
    assert "trajectory cache written to" in text and "reusing" not in text
