"""Tests of the built-in task plugins, parametrised over the task registry."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import dynamo_lightning as dl
from dynamo_lightning.registry import UnknownNameError
from dynamo_lightning.tasks import scoring
from dynamo_lightning.tasks.flipflop import flipflop_targets
from dynamo_lightning.tasks.integrator import integrate

EXPECTED_BUILTINS = {"flipflop", "integrator", "sine", "context", "seq_digits", "digits",
                     "neurogym"}
NEEDS_AN_ENV = {"neurogym"}  # no default env: tests/tasks/test_neurogym.py covers it
BUILTINS = [
    name for name in dl.tasks.names()
    if dl.tasks.get_class(name).__module__.startswith("dynamo_lightning.tasks.")
    and name not in NEEDS_AN_ENV
]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _perfect(task: dl.tasks.Task, y: torch.Tensor, steps: int | None = None) -> torch.Tensor:
    """Outputs of a perfect predictor: the targets, or confident one-hot logits."""
    if task.output_kind == "regression":
        return y.clone()
    steps = task.seq_len if steps is None else steps
    logits = 20.0 * F.one_hot(y, task.output_size).float()
    return logits.unsqueeze(1).expand(-1, steps, -1).contiguous()


def _wrong(task: dl.tasks.Task, y: torch.Tensor, steps: int | None = None) -> torch.Tensor:
    """Outputs of a maximally wrong predictor: negated targets, or the next class."""
    if task.output_kind == "regression":
        return -y
    return _perfect(task, (y + 1) % task.output_size, steps)


def test_builtins_are_registered() -> None:
    assert set(BUILTINS) | NEEDS_AN_ENV == EXPECTED_BUILTINS
    assert set(dl.tasks.names()) >= NEEDS_AN_ENV


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("batch_size", [1, 5, 32])
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_sample_shapes_and_dtypes(name: str, batch_size: int, split: str) -> None:
    task = dl.tasks.get(name)
    x, y = task.sample(batch_size, generator=_gen(0), split=split)
    assert x.shape == (batch_size, task.seq_len, task.input_size)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()
    if task.output_kind == "regression":
        assert y.shape == (batch_size, task.seq_len, task.output_size)
        assert y.dtype == torch.float32
        assert torch.isfinite(y).all()
    else:
        assert y.shape == (batch_size,)
        assert y.dtype == torch.int64
        assert ((y >= 0) & (y < task.output_size)).all()


@pytest.mark.parametrize("name", BUILTINS)
def test_sample_is_deterministic_given_generator(name: str) -> None:
    task = dl.tasks.get(name)
    x1, y1 = task.sample(16, generator=_gen(7))
    x2, y2 = task.sample(16, generator=_gen(7))
    x3, _ = task.sample(16, generator=_gen(8))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    x4, _ = task.sample(16)  # no generator: still works, freshly seeded
    assert x4.shape == x1.shape


@pytest.mark.parametrize("name", BUILTINS)
def test_config_round_trip(name: str) -> None:
    task = dl.tasks.get(name)
    assert task.name == name
    rebuilt = dl.tasks.get(task.name, **task.config())
    assert type(rebuilt) is type(task)
    assert rebuilt.config() == task.config()
    assert repr(rebuilt) == repr(task)
    xa, ya = task.sample(8, generator=_gen(3))
    xb, yb = rebuilt.sample(8, generator=_gen(3))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("name", BUILTINS)
def test_perfect_predictor_scores_best_and_wrong_one_low(name: str) -> None:
    task = dl.tasks.get(name)
    _, y = task.sample(64, generator=_gen(1))
    best = task.metric(_perfect(task, y), y)
    worst = task.metric(_wrong(task, y), y)
    assert isinstance(best, float) and isinstance(worst, float)
    assert best == pytest.approx(1.0)
    assert worst <= 0.0
    assert task.higher_is_better


@pytest.mark.parametrize("name", BUILTINS)
def test_loss_is_finite_scalar_and_minimal_for_perfect_predictor(name: str) -> None:
    task = dl.tasks.get(name)
    _, y = task.sample(32, generator=_gen(2))
    outputs = _wrong(task, y).clone().requires_grad_(True)
    loss = task.loss(outputs, y)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert outputs.grad is not None and outputs.grad.abs().sum() > 0
    perfect = task.loss(_perfect(task, y), y)
    assert perfect.item() == pytest.approx(0.0, abs=1e-6)
    assert perfect < loss


@pytest.mark.parametrize("name", ["seq_digits", "digits"])
@pytest.mark.parametrize("steps", [1, 8])
def test_classification_reads_last_step(name: str, steps: int) -> None:
    task = dl.tasks.get(name)
    _, y = task.sample(32, generator=_gen(4))
    outputs = _wrong(task, y, steps)
    outputs[:, -1] = _perfect(task, y, 1)[:, 0]  # only the last step is right
    assert task.metric(outputs, y) == 1.0
    with pytest.raises(ValueError, match="logits"):
        task.metric(outputs[:, -1], y)  # [B, 10] lacks the steps axis


@pytest.mark.parametrize("name", ["flipflop", "integrator", "sine", "context"])
def test_regression_rejects_mismatched_outputs(name: str) -> None:
    task = dl.tasks.get(name)
    _, y = task.sample(4, generator=_gen(0))
    with pytest.raises(ValueError, match="must match targets"):
        task.metric(y[:, :-1], y)


def test_flipflop_targets_hold_latest_pulse() -> None:
    x = torch.zeros(1, 8, 2)
    x[0, 1, 0] = 1.0
    x[0, 4, 0] = -1.0
    x[0, 5, 0] = -1.0  # same sign again: no change
    x[0, 3, 1] = -1.0
    x[0, 7, 1] = 1.0
    expected = torch.tensor([
        [[0.0, 0.0], [1, 0], [1, 0], [1, -1], [-1, -1], [-1, -1], [-1, -1], [-1, 1]],
    ])
    assert torch.equal(flipflop_targets(x), expected)


def test_flipflop_sample_semantics_and_masked_metric() -> None:
    task = dl.tasks.get("flipflop", n_bits=4, seq_len=100, pulse_prob=0.1)
    x, y = task.sample(64, generator=_gen(0))
    assert set(x.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert abs((x != 0).float().mean().item() - 0.1) < 0.01
    assert torch.equal(y, flipflop_targets(x))


@pytest.mark.parametrize("name", ["flipflop", "context"])
def test_entries_with_target_zero_do_not_count(name: str) -> None:
    # flipflop: before a channel's first pulse; context: before the response period.
    task = dl.tasks.get(name)
    _, y = task.sample(64, generator=_gen(0))
    assert (y == 0).any()
    outputs = y.clone()
    outputs[y == 0] = 123.0
    assert task.metric(outputs, y) == 1.0
    assert task.loss(outputs, y).item() == 0.0


def test_flipflop_without_pulses_has_no_metric_and_zero_loss() -> None:
    task = dl.tasks.get("flipflop")
    y = torch.zeros(2, task.seq_len, task.n_bits)
    outputs = torch.randn_like(y, requires_grad=True)
    assert math.isnan(task.metric(outputs, y))
    loss = task.loss(outputs, y)
    assert loss.item() == 0.0
    loss.backward()  # still differentiable, so a training step does not crash


def test_integrator_targets_are_leaky_bounded_sum_of_inputs() -> None:
    task = dl.tasks.get("integrator", n_channels=2, seq_len=50, noise=0.3, leak=0.1, bound=0.5)
    x, y = task.sample(16, generator=_gen(0))
    ref = torch.zeros(16, 2)
    for t in range(50):
        ref = (0.9 * ref + x[:, t]).clamp(-0.5, 0.5)
        assert torch.allclose(y[:, t], ref, atol=1e-6)
    assert y.abs().max() <= 0.5
    plain = integrate(torch.ones(1, 4, 1))
    assert torch.equal(plain.flatten(), torch.tensor([1.0, 2.0, 3.0, 4.0]))


def test_integrator_default_targets_mostly_within_bound() -> None:
    task = dl.tasks.get("integrator")
    _, y = task.sample(512, generator=_gen(0))
    saturated = (y.abs() >= task.bound).float().mean().item()
    assert 0.0 < saturated < 0.15
    assert y.std() > 0.3  # the integral actually moves


def test_sine_target_frequency_is_cued_by_input_level() -> None:
    task = dl.tasks.get("sine", seq_len=40, n_frequencies=5, min_freq=0.05, max_freq=0.2)
    x, y = task.sample(32, generator=_gen(0))
    assert torch.equal(x, x[:, :1].expand_as(x))  # static input
    level = x[:, 0, 0].double()
    j = torch.round((level - 0.25) * 5).long()
    assert torch.allclose(task.levels[j], level, atol=1e-6)
    freq = 0.05 + j.double() * (0.2 - 0.05) / 4
    t = torch.arange(40, dtype=torch.float64)
    expected = torch.sin(2 * math.pi * freq[:, None] * t)
    assert torch.allclose(y[..., 0].double(), expected, atol=1e-6)
    assert len(j.unique()) > 1


def test_context_target_is_sign_of_cued_channel() -> None:
    task = dl.tasks.get("context", seq_len=20, noise=0.0, coherence_scale=0.1)
    x, y = task.sample(64, generator=_gen(0))
    cue = x[:, 0, 2:]
    assert torch.equal(cue.sum(-1), torch.ones(64))
    assert torch.equal(x[:, :, 2:], cue[:, None].expand(-1, 20, -1))
    relevant = x[:, 0, :2].gather(1, cue.argmax(-1, keepdim=True))  # noiseless coherence
    assert torch.equal(y[:, :15], torch.zeros(64, 15, 1))
    assert torch.equal(y[:, 15:, 0], torch.sign(relevant).expand(-1, 5))
    levels = {round(abs(v), 6) for v in x[:, 0, :2].flatten().tolist()}
    assert levels == {0.1, 0.2, 0.4}


@pytest.mark.parametrize("name", ["seq_digits", "digits"])
def test_digits_splits_disjoint_complete_and_balanced(name: str) -> None:
    task = dl.tasks.get(name)
    images, labels = dl.tasks.digits.load_digits()
    assert images.shape == (1797, 8, 8) and images.min() >= 0.0 and images.max() <= 1.0
    idx = {s: task.indices(s) for s in ("train", "val", "test")}
    sets = {s: set(i.tolist()) for s, i in idx.items()}
    assert all(len(sets[s]) == len(idx[s]) for s in sets)  # no repeats within a split
    assert not sets["train"] & sets["val"]
    assert not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    assert set().union(*sets.values()) == set(range(1797))
    assert abs(len(idx["val"]) / 1797 - 0.15) < 0.01
    assert abs(len(idx["test"]) / 1797 - 0.15) < 0.01
    for split, i in idx.items():
        counts = torch.bincount(labels[i], minlength=10).float()
        share = counts / counts.sum()
        assert (share - 0.1).abs().max() < 0.02, split
    # Same seed → same split; another seed → another split.
    assert torch.equal(dl.tasks.get(name).indices("val"), idx["val"])
    assert not torch.equal(dl.tasks.get(name, split_seed=1).indices("val"), idx["val"])


def test_digits_samples_come_from_their_split() -> None:
    task = dl.tasks.get("digits")
    images, labels = dl.tasks.digits.load_digits()
    for split in ("train", "val", "test"):
        x, y = task.sample(200, generator=_gen(0), split=split)
        pool = task.indices(split)
        # Each sampled image equals some image of its split with the same label.
        match = (x[:, None] == images[pool][None]).flatten(2).all(-1)  # [200, n_split]
        assert match.any(dim=1).all()
        matched_labels = labels[pool][match.float().argmax(dim=1)]
        assert torch.equal(matched_labels, y)
    with pytest.raises(ValueError, match="split"):
        task.sample(2, split="validation")  # type: ignore[arg-type]


def test_importing_the_package_does_not_load_scikit_learn() -> None:
    code = "import sys, dynamo_lightning; print('sklearn' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


BAD_CONFIGS = [
    ("flipflop", {"n_bits": 0}, "n_bits"),
    ("flipflop", {"n_bits": 2.5}, "n_bits"),
    ("flipflop", {"seq_len": -1}, "seq_len"),
    ("flipflop", {"pulse_prob": 0.0}, "pulse_prob"),
    ("flipflop", {"pulse_prob": 1.5}, "pulse_prob"),
    ("integrator", {"n_channels": 0}, "n_channels"),
    ("integrator", {"noise": -0.1}, "noise"),
    ("integrator", {"leak": 1.0}, "leak"),
    ("integrator", {"leak": -0.5}, "leak"),
    ("integrator", {"bound": 0.0}, "bound"),
    ("integrator", {"bound": float("nan")}, "bound"),
    ("sine", {"n_frequencies": 0}, "n_frequencies"),
    ("sine", {"seq_len": True}, "seq_len"),
    ("sine", {"min_freq": 0.0}, "min_freq"),
    ("sine", {"max_freq": 0.6}, "max_freq"),
    ("sine", {"min_freq": 0.2, "max_freq": 0.1}, "max_freq"),
    ("context", {"seq_len": 0}, "seq_len"),
    ("context", {"noise": -1.0}, "noise"),
    ("context", {"coherence_scale": 0.0}, "coherence_scale"),
    ("seq_digits", {"val_fraction": 0.0}, "val_fraction"),
    ("digits", {"test_fraction": 1.0}, "test_fraction"),
    ("digits", {"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction"),
    ("digits", {"split_seed": -1}, "split_seed"),
]


@pytest.mark.parametrize(("name", "config", "arg"), BAD_CONFIGS)
def test_bad_config_raises_naming_argument(name: str, config: dict, arg: str) -> None:
    with pytest.raises(ValueError, match=arg) as info:
        dl.tasks.get(name, **config)
    assert repr(config[arg]) in str(info.value)


def test_shared_metrics() -> None:
    y = torch.tensor([[1.0], [2.0], [3.0]])
    assert scoring.r2_score(y, y) == 1.0
    assert scoring.r2_score(torch.full_like(y, 2.0), y) == pytest.approx(0.0)
    assert scoring.r2_score(torch.ones(3), torch.ones(3)) == 1.0  # constant targets
    assert scoring.r2_score(torch.zeros(3), torch.ones(3)) == 0.0
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0])
    assert scoring.sign_accuracy(torch.tensor([0.2, -3.0, -0.1, 0.0]), signs) == 0.5
    assert math.isnan(scoring.sign_accuracy(torch.zeros(0), torch.zeros(0)))


@pytest.mark.parametrize("name", BUILTINS)
def test_unknown_config_key_raises_value_error(name: str) -> None:
    with pytest.raises(ValueError, match="not_an_option"):
        dl.tasks.get(name, not_an_option=1)


def test_unknown_task_name_lists_known_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        dl.tasks.get("nope")
    message = str(info.value)
    assert "'nope'" in message
    for name in EXPECTED_BUILTINS:
        assert name in message


@pytest.mark.parametrize("name", BUILTINS)
def test_every_task_speaks_task_ids(name: str) -> None:
    """The one interface mixtures share: sample_with_ids draws what sample draws (ids 0),
    loss and metric take the ids, and sub_tasks / metrics_by_task name the one task."""
    task = dl.tasks.get(name)
    x, y = task.sample(6, generator=_gen(3), split="test")
    x_ids, y_ids, ids = task.sample_with_ids(6, generator=_gen(3), split="test")
    assert torch.equal(x, x_ids) and torch.equal(y, y_ids)
    assert ids.dtype == torch.long and ids.tolist() == [0] * 6
    outputs = torch.zeros(6, 1 if task.output_kind == "classification" else y.shape[1],
                          task.output_size)
    assert torch.equal(task.loss(outputs, y, task_ids=ids), task.loss(outputs, y))
    metric = task.metric(outputs, y, task_ids=ids)
    assert metric == task.metric(outputs, y) or (math.isnan(metric)
                                                 and math.isnan(task.metric(outputs, y)))
    assert task.sub_tasks == {task.name: task}
    by_task = task.metrics_by_task(outputs, y, ids)
    assert list(by_task) == [f"{task.name}:{task.metric_name}"]


def test_a_mixture_is_a_task_of_labelled_sub_tasks() -> None:
    mixture = dl.tasks.MixtureTask([{"name": "flipflop", "config": {"n_bits": 2}},
                                    {"name": "flipflop", "config": {"n_bits": 2,
                                                                    "pulse_prob": 0.2}}])
    assert list(mixture.sub_tasks) == ["flipflop0", "flipflop1"]
    _, y, ids = mixture.sample_with_ids(32, generator=_gen(0))
    assert set(ids.tolist()) == {0, 1}
    by_task = mixture.metrics_by_task(y, y, ids)
    assert by_task == {"flipflop0:bit_accuracy": 1.0, "flipflop1:bit_accuracy": 1.0}
    assert mixture.metric(y, y, task_ids=ids) == 1.0 and math.isnan(mixture.metric(y, y))
    assert dl.tasks.task_from_spec(dl.tasks.task_spec_of(mixture)).config() == mixture.config()


def test_a_mixture_knows_each_members_own_sub_task_from_its_metadata() -> None:
    """What the population writer records (name and every option) picks the sub-task; a
    name alone does when it is the only one of that name; anything else says None."""
    from dynamo_lightning.tasks.mixture import MixtureTask

    mixture = MixtureTask([{"name": "flipflop", "config": {"n_bits": 3}},
                           {"name": "integrator", "config": {"n_channels": 3, "leak": 0.1}},
                           {"name": "integrator", "config": {"n_channels": 3, "leak": 0.5}}])
    slow = mixture.tasks[1].config()  # every option, defaults included
    assert mixture.own_sub_task({"task": "flipflop", "task_config": mixture.tasks[0].config()}) == 0
    assert mixture.own_sub_task({"task": "flipflop"}) == 0
    assert mixture.own_sub_task({"task": "integrator", "task_config": slow}) == 1
    assert mixture.own_sub_task({"task": "integrator"}) is None  # two of that name
    assert mixture.own_sub_task({"task": "integrator", "task_config": {"leak": 0.1}}) is None
    assert mixture.own_sub_task({"task": "sine"}) is None and mixture.own_sub_task({}) is None
    single = mixture.tasks[0]
    assert single.own_sub_task({"task": "flipflop"}) is None  # its metric is every member's
