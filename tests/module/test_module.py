"""DynamoModule: batched alignment, the loss of docs/method.md, a tiny end-to-end fit, checkpoints,
the meta-model at θ, fit_embedding, test-time task scores and config errors."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from paths import CONF as TEST_CONF

import dynamo_lightning as dl
from dynamo_lightning.cli import main
from dynamo_lightning.data import TrajectoryDataModule, fit_projections, project_states
from dynamo_lightning.meta import EmbeddedNetwork
from dynamo_lightning.module import DynamoModule

CONF = str(TEST_CONF)
K = 4  # principal components per member


def small_module(cell: str = "gru", conditioning: str = "concat", output_kind: str = "regression",
                 **kwargs: Any) -> DynamoModule:
    """An untrained module with 5 members, I=3, O=2, k=K and non-trivial alignment biases."""
    torch.manual_seed(0)
    options = {"rank": 2} if conditioning == "lowrank" else {}
    module = DynamoModule(num_members=5, input_size=3, output_size=2, num_components=K,
                          output_kind=output_kind, embedding_dim=2,
                          meta={"cell": cell, "hidden_size": 6, "conditioning": conditioning,
                                "conditioning_options": options}, theta_init_scale=0.5, **kwargs)
    with torch.no_grad():
        module.align_bias.normal_()
    return module


def small_batch(module: DynamoModule, members: list[int], samples: int = 3, steps: int = 5,
                seed: int = 1) -> dict[str, torch.Tensor]:
    """A member-major batch with random inputs, projected hidden states and member outputs."""
    g = torch.Generator().manual_seed(seed)
    m, hp = len(members), module.hparams
    return {"member": torch.tensor(members),
            "inputs": torch.randn(m, samples, steps, hp.input_size, generator=g),
            "hidden": torch.randn(m, samples, steps, hp.num_components, generator=g),
            "outputs": torch.randn(m, samples, steps, hp.output_size, generator=g)}


def one_by_one(module: DynamoModule, member: torch.Tensor, inputs: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Meta outputs and aligned states computed member by member from ``module.meta``."""
    outputs, aligned = [], []
    for row, m in enumerate(member.tolist()):
        x = inputs[row]
        theta = module.theta.weight[m].expand(x.shape[0], -1)
        out, hidden = module.meta(x, theta)
        outputs.append(out)
        aligned.append(hidden @ module.align_weight[m].T + module.align_bias[m])
    return torch.stack(outputs), torch.stack(aligned)


# ---------------------------------------------------------------------- forward and loss
@pytest.mark.parametrize(("cell", "conditioning"),
                         [("gru", "concat"), ("lstm", "film"), ("vanilla", "lowrank")])
def test_batched_alignment_equals_member_by_member(cell: str, conditioning: str) -> None:
    module = small_module(cell, conditioning)
    batch = small_batch(module, [3, 0, 4])
    with torch.no_grad():
        outputs, aligned = module(batch["member"], batch["inputs"])
        want_out, want_aligned = one_by_one(module, batch["member"], batch["inputs"])
    assert outputs.shape == (3, 3, 5, 2)
    assert aligned.shape == (3, 3, 5, K)
    torch.testing.assert_close(outputs, want_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(aligned, want_aligned, atol=1e-5, rtol=1e-5)
    # Each member uses its own map: swapping two members' maps changes their rows.
    with torch.no_grad():
        module.align_weight[[3, 0]] = module.align_weight[[0, 3]].clone()
        _, swapped = module(batch["member"], batch["inputs"])
    assert not torch.allclose(swapped[:2], aligned[:2])
    torch.testing.assert_close(swapped[2], aligned[2])


def test_regression_loss_is_design_formula_by_hand() -> None:
    module = small_module(loss={"output": 0.7, "theta": 0.3})
    batch = small_batch(module, [1, 4, 2])
    with torch.no_grad():
        terms = module.losses(batch)
        outputs, aligned = one_by_one(module, batch["member"], batch["inputs"])
    # Hidden term: squared norm over k, mean over members, samples and steps.
    m, s, t = batch["inputs"].shape[:3]
    sq = sum(float(((aligned[i, j, u] - batch["hidden"][i, j, u]) ** 2).sum())
             for i in range(m) for j in range(s) for u in range(t))
    hidden = sq / (m * s * t)
    output = float(((outputs - batch["outputs"]) ** 2).mean())
    theta = float(module.embeddings()[[1, 4, 2]].pow(2).sum(1).mean())
    assert terms["hidden_loss"].item() == pytest.approx(hidden, rel=1e-5)
    assert terms["output_loss"].item() == pytest.approx(output, rel=1e-5)
    assert terms["theta_loss"].item() == pytest.approx(theta, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(hidden + 0.7 * output + 0.3 * theta, rel=1e-5)


def test_classification_loss_is_kl_member_to_meta() -> None:
    module = small_module(output_kind="classification", loss={"output": 1.0, "theta": 0.0})
    batch = small_batch(module, [0, 2])
    batch["outputs"] = batch["outputs"] * 3  # member logits, far from the meta-model's
    with torch.no_grad():
        terms = module.losses(batch)
        meta_logits, _ = one_by_one(module, batch["member"], batch["inputs"])
    p = batch["outputs"].softmax(-1)  # member distribution
    q = meta_logits.softmax(-1)  # meta-model distribution
    positions = p.shape[0] * p.shape[1] * p.shape[2]
    kl_member_meta = float((p * (p.log() - q.log())).sum() / positions)
    kl_meta_member = float((q * (q.log() - p.log())).sum() / positions)
    assert terms["output_loss"].item() == pytest.approx(kl_member_meta, rel=1e-4)
    assert abs(kl_member_meta - kl_meta_member) > 1e-3  # the direction is tested
    reference = F.kl_div(q.log().reshape(-1, 2), p.reshape(-1, 2), reduction="batchmean")
    assert terms["output_loss"].item() == pytest.approx(reference.item(), rel=1e-4)
    assert terms["loss"].item() == pytest.approx(
        terms["hidden_loss"].item() + kl_member_meta, rel=1e-4)


def test_loss_gradients_reach_only_the_batch_members_parameters() -> None:
    module = small_module()
    batch = small_batch(module, [1, 3])
    module.losses(batch)["loss"].backward()
    for name in ("align_weight", "align_bias"):
        grad = getattr(module, name).grad
        touched = grad.flatten(1).abs().sum(1) > 0
        assert touched.tolist() == [False, True, False, True, False], name
    touched = module.theta.weight.grad.abs().sum(1) > 0
    assert touched.tolist() == [False, True, False, True, False]


# ---------------------------------------------------------------------- config errors
@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"num_members": 0}, ValueError, "num_members must be a positive integer"),
    ({"input_size": -1}, ValueError, "input_size must be a positive integer"),
    ({"output_size": 0}, ValueError, "output_size must be a positive integer"),
    ({"num_components": 0}, ValueError, "num_components must be a positive integer"),
    ({"embedding_dim": 0}, ValueError, "embedding_dim must be a positive integer"),
    ({"num_members": 2.5}, ValueError, "num_members"),
    ({"output_kind": "ordinal"}, ValueError, "output_kind must be .*'ordinal'"),
    ({"meta": {"cel": "gru"}}, ValueError, "cel"),
    ({"meta": {"cell": "transformer"}}, ValueError, "unknown cell 'transformer'.*gru"),
    ({"meta": {"hidden_size": 0}}, ValueError, "hidden_size"),
    ({"meta": {"conditioning": "sideways"}}, KeyError, "sideways.*concat"),
    ({"meta": {"conditioning": "lowrank", "conditioning_options": {"rnak": 2}}},
     ValueError, "rnak"),
    ({"loss": {"outptu": 1.0}}, ValueError, "outptu"),
    ({"optim": {"learning_rate": 1.0}}, ValueError, "learning_rate"),
    ({"member_ids": ["a", "b"]}, ValueError, "2 member_ids for 3 members"),
])
def test_bad_config_values_are_named(kwargs: dict, error: type, match: str) -> None:
    args = {"num_members": 3, "input_size": 2, "output_size": 2, "num_components": 2, **kwargs}
    with pytest.raises(error, match=match):
        DynamoModule(**args)


def test_nan_in_a_batch_raises_floating_point_error_naming_the_loss() -> None:
    module = small_module()
    batch = small_batch(module, [0, 1])
    batch["hidden"][1, 0, 2, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="DYNAMO loss became nan"):
        module.training_step(batch, 0)


def test_feed_forward_shaped_trajectories_are_rejected() -> None:
    module = small_module()
    batch = small_batch(module, [0, 1])
    batch["hidden"] = batch["hidden"][:, :, :2]  # two "stages" for five input steps
    with pytest.raises(ValueError, match="one state per input step"):
        module.losses(batch)


# ---------------------------------------------------------------------- meta_model_at
def test_meta_model_at_has_the_member_calling_convention() -> None:
    module = small_module("lstm")
    theta = module.embeddings()[2]
    net = module.meta_model_at(theta)
    assert isinstance(net, EmbeddedNetwork) and not net.training
    x = torch.randn(4, 7, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        outputs, hidden = net(x)
        want_out, want_hidden = module.meta(x, theta.expand(4, 2))
    assert outputs.shape == (4, 7, 2) and hidden.shape == (4, 7, module.meta.state_size)
    torch.testing.assert_close(outputs, want_out)
    torch.testing.assert_close(hidden, want_hidden)
    with torch.no_grad():
        h = net.initial_state(4)
        for step in range(7):
            h = net.step(h, x[:, step])
    torch.testing.assert_close(h, hidden[:, -1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="theta must be"):
        module.meta_model_at(torch.zeros(3))


# ---------------------------------------------------------------------- a tiny fit
@pytest.fixture(scope="module")
def trained_population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 2-bit flip-flop members (2 GRU, 2 vanilla, H=8) trained for 100 steps."""
    root = tmp_path_factory.mktemp("module_population")
    main(["population", "fit", "--config", os.path.join(CONF, "population_tiny.yaml"),
          f"--trainer.default_root_dir={root}", f"--population.path={root / 'pop'}",
          "--trainer.max_steps=100", "--trainer.val_check_interval=50",
          "--population.snapshot_steps=[]"])
    return root / "pop"


class LossRecorder(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def module_for(dm: TrajectoryDataModule, **kwargs: Any) -> DynamoModule:
    """A module sized and identified from the data module, as the CLI links them."""
    return DynamoModule(num_members=dm.num_members, input_size=dm.input_size,
                        output_size=dm.output_size, num_components=dm.num_components,
                        output_kind=dm.output_kind, member_ids=dm.member_ids,
                        member_metadata=dm.member_metadata, population_path=dm.population_path,
                        population_checksum=dm.population_checksum, task_spec=dm.task_spec,
                        **kwargs)


def quiet_trainer(**kwargs: Any) -> pl.Trainer:
    return pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, **{"devices": 1, **kwargs})


@pytest.fixture(scope="module")
def fitted(trained_population: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, Any]:
    """The meta-model fitted for 10 short epochs, with R² before and after and the losses."""
    dm = TrajectoryDataModule(population=str(trained_population), num_components=K,
                              members_per_batch=2, samples_per_member=8, train_trials=64,
                              val_trials=32, test_trials=32,
                              cache_dir=str(tmp_path_factory.mktemp("module_cache")))
    pl.seed_everything(0)
    module = module_for(dm, meta={"hidden_size": 16}, optim={"lr": 1e-2, "theta_lr": 5e-2})
    # Validating before fitting also checks that metric states reset under inference mode
    # can be updated again in fit's validation loop.
    quiet_trainer().validate(module, dm, verbose=False)
    before = list(module.member_scores["hidden_r2"])
    recorder = LossRecorder()
    trainer = quiet_trainer(max_epochs=10, callbacks=[recorder])
    trainer.fit(module, dm)
    module.eval()
    return {"dm": dm, "module": module, "trainer": trainer, "losses": recorder.losses,
            "r2_before": before, "r2_after": list(module.member_scores["hidden_r2"]),
            "pop": dl.Population.load(trained_population)}


def median(values: list[float]) -> float:
    return float(torch.tensor(values).median())


def test_tiny_fit_lowers_the_loss_and_raises_hidden_r2(fitted: dict[str, Any]) -> None:
    losses = fitted["losses"]
    assert len(losses) == 10 * 16  # ceil(N·train_trials / (M·S)) = 16 batches per epoch
    assert all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first, (first, last)
    before, after = median(fitted["r2_before"]), median(fitted["r2_after"])
    assert before < 0.1
    assert after > 0.5 and after > before + 0.4, (before, after)
    assert sum(a > b for a, b in zip(fitted["r2_after"], fitted["r2_before"], strict=True)) == 4


def test_cosine_schedule_decays_both_learning_rates(fitted: dict[str, Any]) -> None:
    groups = fitted["trainer"].optimizers[0].param_groups
    optim = fitted["module"].hparams.optim
    assert optim["schedule"] == "cosine"
    floor = optim["final_lr_fraction"]
    assert groups[0]["lr"] == pytest.approx(optim["lr"] * floor, rel=0.05)
    assert groups[1]["lr"] == pytest.approx(optim["theta_lr"] * floor, rel=0.05)


def test_checkpoint_round_trip_is_weights_only(fitted: dict[str, Any], tmp_path: Path) -> None:
    module, dm = fitted["module"], fitted["dm"]
    path = tmp_path / "model.ckpt"
    fitted["trainer"].save_checkpoint(path)
    raw = torch.load(path, weights_only=True)  # no arbitrary objects in the file
    assert "dynamo_projections" in raw
    loaded = DynamoModule.load_from_checkpoint(path)
    torch.testing.assert_close(loaded.embeddings(), module.embeddings(), rtol=0, atol=0)
    assert loaded.member_ids == module.member_ids == dm.member_ids
    assert loaded.member_metadata == module.member_metadata == dm.member_metadata
    assert loaded.hparams.task_spec == dm.task_spec
    assert loaded.task is not None and loaded.task.name == "flipflop"
    assert loaded.hparams.population_checksum == dm.population_checksum
    expected = dm.projection_state()
    assert loaded.projections and set(loaded.projections) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(loaded.projections[key], value, rtol=0, atol=0)
    x = torch.randn(2, 16, 2)
    with torch.no_grad():
        theta = module.embeddings()[1]
        torch.testing.assert_close(loaded.eval().meta_model_at(theta)(x),
                                   module.meta_model_at(theta)(x))


def member_outputs(pop: dl.Population, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([pop[i].module(x)[0] for i in range(len(pop))])


def fresh_inputs(module: DynamoModule, n: int = 32, seed: int = 1234) -> torch.Tensor:
    return module.task.sample(n, generator=torch.Generator().manual_seed(seed))[0]


def test_meta_model_at_theta_n_emulates_member_n(fitted: dict[str, Any]) -> None:
    module, pop = fitted["module"], fitted["pop"]
    x = fresh_inputs(module)
    members = member_outputs(pop, x)
    n = len(pop)
    distance = torch.zeros(n, n)  # [meta at θ_i, member j]
    with torch.no_grad():
        for i, theta in enumerate(module.embeddings()):
            net = module.meta_model_at(theta)
            outputs, hidden = net(x)
            assert outputs.shape == members[i].shape
            assert hidden.shape == (*x.shape[:2], module.meta.state_size)
            distance[i] = (outputs - members).pow(2).flatten(1).mean(1)
    own = distance.diagonal()
    others = distance[~torch.eye(n, dtype=torch.bool)].view(n, n - 1)
    assert own.mean() < others.mean(), distance
    # Column-wise: of all the θ's, member j's own θ_j emulates member j best.
    assert distance.argmin(0).tolist() == list(range(n)), distance


def emulation_loss(module: DynamoModule, x: torch.Tensor, outputs: torch.Tensor,
                   theta: torch.Tensor) -> float:
    with torch.no_grad():
        meta_out, _ = module.meta(x, theta.expand(x.shape[0], -1))
        weights = module.hparams.loss
        return float(weights["output"] * module.output_loss(meta_out, outputs)
                     + weights["theta"] * theta.pow(2).sum())


def test_fit_embedding_places_a_member_near_its_own_theta(fitted: dict[str, Any]) -> None:
    module, pop = fitted["module"], fitted["pop"]
    table = module.embeddings()
    spread = torch.pdist(table).mean()
    x = fresh_inputs(module)
    members = member_outputs(pop, x)
    scores = fitted["r2_after"]
    n = max(range(len(pop)), key=scores.__getitem__)  # the best-emulated member
    theta = module.fit_embedding(x, outputs=members[n], steps=60)
    assert theta.shape == (2,)
    at_fit = emulation_loss(module, x, members[n], theta)
    at_member = emulation_loss(module, x, members[n], table[n])
    assert at_fit <= at_member + 1e-3, (at_fit, at_member)
    assert (theta - table[n]).norm() < spread, (theta, table[n], spread)
    assert all(p.requires_grad for p in module.meta.parameters())  # unfrozen again
    torch.testing.assert_close(module.embeddings(), table)  # the table is untouched


def test_fit_embedding_from_hidden_states_fits_a_new_alignment_map(
        fitted: dict[str, Any]) -> None:
    module, pop = fitted["module"], fitted["pop"]
    x = fresh_inputs(module, n=16)
    with torch.no_grad():
        hidden = pop[1].module(x)[1]
    fit = module.fit_embedding(x, hidden=hidden, steps=15, return_details=True)
    assert fit.theta.shape == (2,)
    assert fit.extra["align_weight"].shape == (K, module.meta.state_size)
    assert fit.extra["align_bias"].shape == (K,)
    assert len(fit.losses) == 15
    # The returned θ and map reproduce the member's projected states (unit total variance,
    # so predicting their mean would cost 1 per state).
    projected = project_states(fit_projections(hidden.unsqueeze(0), K), hidden.unsqueeze(0))[0]
    with torch.no_grad():
        states = module.meta_model_at(fit.theta)(x)[1]
    aligned = states @ fit.extra["align_weight"].T + fit.extra["align_bias"]
    assert (aligned - projected).pow(2).sum(-1).mean() < 0.2


def test_fit_embedding_errors(fitted: dict[str, Any]) -> None:
    module = fitted["module"]
    x = fresh_inputs(module, n=4)
    with pytest.raises(ValueError, match="needs outputs, hidden and/or targets"):
        module.fit_embedding(x)
    with pytest.raises(ValueError, match=r"inputs must be \[B, T, 2\]"):
        module.fit_embedding(torch.zeros(4, 16, 3), outputs=torch.zeros(4, 16, 2))
    with pytest.raises(ValueError, match="hidden must be"):
        module.fit_embedding(x, hidden=torch.zeros(3, 16, 8))


def test_test_pass_scores_every_member_and_recomputes_member_task_metric(
        fitted: dict[str, Any]) -> None:
    module, dm, pop = fitted["module"], fitted["dm"], fitted["pop"]
    quiet_trainer().test(module, dm, verbose=False)
    scores = module.member_scores
    n = len(pop)
    for key in ("hidden_r2", "output_r2", "output_agreement", "task_metric_meta",
                "task_metric_member"):
        assert len(scores[key]) == n, key
        assert all(math.isfinite(v) for v in scores[key]), key
    # The test trials, in trial order, as the pass batches served them.
    trials: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for batch in dm.test_dataloader():
        for j, trial in enumerate(batch["trial"][0].tolist()):
            trials[trial] = (batch["inputs"][0, j], batch["targets"][0, j])
    assert sorted(trials) == list(range(32))
    x = torch.stack([trials[t][0] for t in range(32)])
    y = torch.stack([trials[t][1] for t in range(32)])
    task = module.task
    with torch.no_grad():
        own = pop.trajectories(x).outputs
        for i in range(n):
            assert scores["task_metric_member"][i] == pytest.approx(
                task.metric(own[i], y), abs=1e-6)
            meta = module.meta_model_at(module.embeddings()[i])(x)[0]
            assert scores["task_metric_meta"][i] == pytest.approx(task.metric(meta, y),
                                                                  abs=0.02)
    assert scores["task_metric_member"] != scores["task_metric_meta"]


def test_fit_theta_returns_the_best_parameters_seen() -> None:
    from dynamo_lightning.meta.embedding_fit import fit_theta

    target = torch.tensor([1.0, -2.0])

    def loss_fn(theta: torch.Tensor, extra: dict) -> torch.Tensor:
        return (theta - target).pow(2).sum()

    fit = fit_theta(loss_fn, torch.zeros(1, 2), steps=15, lr=5.0)  # lr far too large
    assert fit.losses[-1] > min(fit.losses)  # Adam overshoots ...
    assert loss_fn(fit.theta, {}).item() <= min(fit.losses) + 1e-6  # ... the result does not


def test_task_scores_are_a_metric_that_gathers_trials_by_concatenation() -> None:
    from torchmetrics.utilities import dim_zero_cat

    from dynamo_lightning import tasks
    from dynamo_lightning.module.task_scores import TaskScores

    task = tasks.get("flipflop", n_bits=3)
    _, y = task.sample(12, generator=torch.Generator().manual_seed(0))
    meta_out = y + 0.3 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    scores = TaskScores()
    assert not scores.seen and set(scores._reductions.values()) == {dim_zero_cat}
    # two batches, members 2 and 0 first, then member 2 again: [M, S, T, O]
    scores.update(torch.tensor([2, 0]), meta_out[:8].reshape(2, 4, *y.shape[1:]),
                  y[:8].reshape(2, 4, *y.shape[1:]), y[:8].reshape(2, 4, *y.shape[1:]),
                  torch.zeros(2, 4))
    scores.update(torch.tensor([2]), meta_out[8:].reshape(1, 4, *y.shape[1:]),
                  y[8:].reshape(1, 4, *y.shape[1:]), y[8:].reshape(1, 4, *y.shape[1:]),
                  torch.zeros(1, 4))
    meta, own = scores.scores(task, num_members=3)
    member_two = torch.cat([torch.arange(0, 4), torch.arange(8, 12)])
    assert meta[2] == pytest.approx(task.metric(meta_out[member_two], y[member_two]))
    assert meta[0] == pytest.approx(task.metric(meta_out[4:8], y[4:8]))
    assert own[0] == own[2] == 1.0 and math.isnan(meta[1]) and math.isnan(own[1])


def test_task_scores_rate_a_mixtures_member_on_its_own_sub_task() -> None:
    """A flip-flop member of a mixed population is scored by bit accuracy on the flip-flop
    trials, not by the mean with an integrator R² on trials it never learned."""
    from dynamo_lightning.module.task_scores import TaskScores
    from dynamo_lightning.tasks.mixture import MixtureTask

    mixture = MixtureTask([{"name": "flipflop", "config": {"n_bits": 3}},
                           {"name": "integrator", "config": {"n_channels": 3}}])
    _, y, ids = mixture.sample_with_ids(16, generator=torch.Generator().manual_seed(0))
    outputs = y + 0.2 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    scores = TaskScores()
    for member in range(3):  # 0: flip-flop, 1: integrator, 2: unknown (the mean)
        scores.update(torch.tensor([member]), outputs[None], outputs[None], y[None], ids[None])
    meta, own = scores.scores(mixture, num_members=3, own=[0, 1, None])
    flipflop, integrator = mixture.tasks
    assert own[0] == pytest.approx(flipflop.metric(outputs[ids == 0], y[ids == 0]))
    assert own[1] == pytest.approx(integrator.metric(outputs[ids == 1], y[ids == 1]))
    assert own[2] == pytest.approx(mixture.metric(outputs, y, ids)) and meta == own
    none = TaskScores()
    none.update(torch.tensor([0]), outputs[ids == 1][None], outputs[ids == 1][None],
                y[ids == 1][None], ids[ids == 1][None])
    assert all(math.isnan(v) for v in none.scores(mixture, 1, own=[0])[1])  # no own trial


def test_the_test_pass_scores_a_mixed_populations_members_on_their_own_tasks() -> None:
    """DynamoModule's test-epoch end hands each member's own sub-task (from its metadata,
    as the population writer records it) to the scores."""
    from types import SimpleNamespace

    from dynamo_lightning.module.dynamo_module import DynamoModule
    from dynamo_lightning.module.task_scores import TaskScores
    from dynamo_lightning.tasks.mixture import MixtureTask

    mixture = MixtureTask([{"name": "flipflop", "config": {"n_bits": 3}},
                           {"name": "integrator", "config": {"n_channels": 3}}])
    _, y, ids = mixture.sample_with_ids(16, generator=torch.Generator().manual_seed(0))
    outputs = y + 0.2 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    scores = TaskScores()
    scores.update(torch.tensor([0, 1]), outputs.expand(2, *y.shape), outputs.expand(2, *y.shape),
                  y.expand(2, *y.shape), ids.expand(2, -1))
    metadata = [{"task": task.name, "task_config": task.config()} for task in mixture.tasks]
    module = SimpleNamespace(
        task=mixture, _task_scores=scores, member_scores={}, log=lambda *a, **k: None,
        _log_member_metrics=lambda stage: None,
        hparams=SimpleNamespace(num_members=2, member_metadata=metadata))
    DynamoModule.on_test_epoch_end(module)
    own = module.member_scores["task_metric_member"]
    for member, task in enumerate(mixture.tasks):
        rows = ids == member
        assert own[member] == pytest.approx(task.metric(outputs[rows], y[rows]))


@pytest.mark.parametrize("members", [4, 300])
def test_loggers_get_per_member_lists_only_for_small_populations(members: int,
                                                                 tmp_path: Path) -> None:
    """Loggers record ids and metadata up to LOGGED_MEMBERS_UP_TO members, a count above;
    the checkpoint keeps them whole either way."""
    from dynamo_lightning.module.dynamo_module import LOGGED_MEMBERS_UP_TO

    ids = [f"m{i}" for i in range(members)]
    metadata = [{"architecture": "gru", "seed": i} for i in range(members)]
    module = DynamoModule(num_members=members, input_size=3, output_size=2, num_components=2,
                          member_ids=ids, member_metadata=metadata)
    logged = module.hparams_initial
    if members <= LOGGED_MEMBERS_UP_TO:
        assert logged["member_ids"] == ids and logged["member_metadata"] == metadata
    else:
        assert logged["member_ids"] == f"{members} entries (whole in the checkpoint)"
        assert logged["member_metadata"] == f"{members} entries (whole in the checkpoint)"
    assert logged["num_members"] == members and module.hparams["member_ids"] == ids
    logger = pl.loggers.CSVLogger(tmp_path)
    logger.log_hyperparams(logged)
    logger.save()
    assert len((Path(logger.log_dir) / "hparams.yaml").read_text()) < 20_000
