"""The ``neurogym`` task: neurogym's own trials, padded, mixed, and scored the envs' way."""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

import dynamo_lightning as dl
from dynamo_lightning.tasks.neurogym import DECISION, PAD, POST, PRE, trial_outcomes
from dynamo_lightning.tasks.neurogym_envs import (
    SEQ_LEN_MARGIN,
    longest_trial,
    make_env,
)

ngym = pytest.importorskip("neurogym")

DM1 = {"env": "yang19.dm1-v0", "dt": 20}
PAIR = {"env": ["yang19.go-v0", "yang19.dm1-v0"], "dt": 20}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def dm1() -> dl.tasks.Task:
    return dl.tasks.get("neurogym", **DM1)


@pytest.fixture(scope="module")
def pair() -> dl.tasks.Task:
    return dl.tasks.get("neurogym", **PAIR)


def _seeds(batch: int, seed: int, split_index: int, envs: int = 1) -> list[int]:
    """The per-trial env seeds ``sample`` draws from ``_gen(seed)`` (its documented order)."""
    g = _gen(seed)
    torch.randint(envs, (batch,), generator=g)
    return (torch.randint(2**32 // 3, (batch,), generator=g) * 3 + split_index).tolist()


def _perfect(y: torch.Tensor, classes: int = 17) -> torch.Tensor:
    """Confident logits for the ground truth on every real step (anything on padding)."""
    return 20.0 * F.one_hot(y[..., 0].clamp(min=0), classes).float()


# ---------------------------------------------------------------------- trials
def test_trials_are_neurogyms_own_padded_with_zeros(dm1) -> None:
    x, y = dm1.sample(6, generator=_gen(0), split="val")
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape == (6, dm1.seq_len, 33) and y.shape == (6, dm1.seq_len, 2)
    assert (dm1.input_size, dm1.output_size) == (33, 17)
    env = ngym.make("yang19.dm1-v0", dt=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b, seed in enumerate(_seeds(6, 0, split_index=1)):
            env.seed(seed)
            env.new_trial()
            ob, gt = torch.from_numpy(env.ob), torch.from_numpy(env.gt)
            steps, start, end = len(gt), env.start_ind["decision"], env.end_ind["decision"]
            assert torch.equal(x[b, :steps], ob) and torch.equal(y[b, :steps, 0], gt)
            assert not x[b, steps:].any() and (y[b, steps:] == PAD).all()
            assert (y[b, :start, 1] == PRE).all() and (y[b, start:end, 1] == DECISION).all()
            assert (y[b, end:steps, 1] == POST).all()
            assert torch.equal(dm1.step_mask(y)[b], torch.arange(dm1.seq_len) < steps)


def test_seq_len_is_the_longest_probed_trial_plus_the_margin_and_covers_trials(dm1) -> None:
    longest, varies = longest_trial("yang19.dm1-v0", 20, "{}")
    assert varies and dm1.seq_len == longest + -(-longest * SEQ_LEN_MARGIN // 100)
    timing = make_env("yang19.dm1-v0", 20, {}).unwrapped.timing  # fixation < 500 ms
    bound = (500 // 20 - 1) + max(timing["stimulus"][1]) // 20 + timing["decision"] // 20
    assert longest == bound  # 500 probes reach the longest trial the timing allows
    lengths = dm1.step_mask(dm1.sample(256, generator=_gen(5))[1]).sum(1)
    assert lengths.max() <= longest and lengths.min() < longest  # the trials vary
    go = dl.tasks.get("neurogym", env="yang19.go-v0", dt=20)  # fixed timing: no margin
    assert go.seq_len == sum(make_env("yang19.go-v0", 20, {}).unwrapped.timing.values()) // 20


def test_a_trial_longer_than_seq_len_raises_and_is_never_cut() -> None:
    task = dl.tasks.get("neurogym", env="yang19.dm1-v0", dt=20, seq_len=40)
    with pytest.raises(ValueError, match="more than seq_len=40"):
        task.sample(64, generator=_gen(0))


def test_same_generator_state_gives_the_same_batch_whatever_came_before(dm1) -> None:
    x1, y1 = dm1.sample(8, generator=_gen(3))
    dm1.sample(5, generator=_gen(9), split="test")  # env state moves on; batches do not
    x2, y2 = dm1.sample(8, generator=_gen(3))
    other = dl.tasks.get("neurogym", **DM1)
    x3, y3 = other.sample(8, generator=_gen(3))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(x1, x3) and torch.equal(y1, y3)
    assert not torch.equal(dm1.sample(8, generator=_gen(4))[0], x1)
    splits = [dm1.sample(8, generator=_gen(3), split=s)[0] for s in ("train", "val", "test")]
    assert not torch.equal(splits[0], splits[1]) and not torch.equal(splits[1], splits[2])
    with pytest.raises(ValueError, match="split"):
        dm1.sample(2, split="validation")  # type: ignore[arg-type]


def test_scheduled_envs_draw_both_modalities_reproducibly() -> None:
    go = dl.tasks.get("neurogym", env="yang19.go-v0", dt=20)
    x, _ = go.sample(64, generator=_gen(0))
    first_ring = x[:, :, 1:17].abs().sum((1, 2)) > 0  # modality 1's stimulus ring
    second_ring = x[:, :, 17:33].abs().sum((1, 2)) > 0
    assert torch.equal(first_ring, ~second_ring)
    assert 10 < int(first_ring.sum()) < 54  # uniform over the two, not alternating
    assert torch.equal(go.sample(64, generator=_gen(0))[0], x)


def test_env_options_reach_the_env_and_the_config_round_trips() -> None:
    task = dl.tasks.get("neurogym", env="yang19.go-v0", dt=20, timing={"decision": 200})
    assert task.seq_len == (500 + 500 + 0 + 200) // 20
    config = task.config()
    assert config == {"env": "yang19.go-v0", "dt": 20, "seq_len": None,
                      "timing": {"decision": 200}}
    assert json.loads(json.dumps(config)) == config
    rebuilt = dl.tasks.get("neurogym", **config)
    assert rebuilt.config() == config
    for a, b in zip(task.sample(4, generator=_gen(1)), rebuilt.sample(4, generator=_gen(1)),
                    strict=True):
        assert torch.equal(a, b)
    default = dl.tasks.get("neurogym", env="yang19.go-v0")
    assert default.config()["dt"] == 100 and default.seq_len == 1500 // 100
    copy = pickle.loads(pickle.dumps(task))  # the envs are remade, not pickled
    assert torch.equal(copy.sample(4, generator=_gen(1))[0], task.sample(4, generator=_gen(1))[0])


# ---------------------------------------------------------------------- a list of envs
def test_a_list_of_envs_is_one_distribution_with_each_env_a_sub_task(pair) -> None:
    _, y, ids = pair.sample_with_ids(64, generator=_gen(0))
    assert set(ids.tolist()) == {0, 1}
    assert pair.seq_len == max(dl.tasks.get("neurogym", env=e, dt=20).seq_len
                               for e in PAIR["env"])
    go, dm1 = pair.sub_tasks.values()
    assert list(pair.sub_tasks) == PAIR["env"]
    for sub, env in zip((go, dm1), PAIR["env"], strict=True):
        member_config = dl.tasks.get("neurogym", env=env, dt=20).config()
        assert sub.config() == member_config  # what a member trained on env alone records
    assert pair.own_sub_task({"task": "neurogym", "task_config": dm1.config()}) == 1
    assert pair.own_sub_task({"task": "neurogym", "task_config": pair.config()}) is None
    assert pair.own_sub_task({"task": "flipflop", "task_config": dm1.config()}) is None
    fixed_length = pair.step_mask(y).sum(1)[ids == 0]  # go trials: 75 steps each
    assert (fixed_length == go.seq_len).all()
    outputs = _perfect(y)
    outputs[ids == 1, :, 0] = 100.0  # every dm1 trial fixates through its decision
    assert pair.metrics_by_task(outputs, y, ids) == {
        "yang19.go-v0:decision_accuracy": 1.0, "yang19.dm1-v0:decision_accuracy": 0.0}
    assert pair.metric(outputs, y, ids) == pytest.approx(float((ids == 0).float().mean()))


def test_envs_of_other_sizes_unknown_ids_and_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match=r"yang19.go-v0 \(33 inputs, 17 actions\).*"
                                         r"PerceptualDecisionMaking-v0 \(3 inputs, 3 actions\)"):
        dl.tasks.get("neurogym", env=["yang19.go-v0", "PerceptualDecisionMaking-v0"])
    with pytest.raises(ValueError, match=r"unknown neurogym env 'yang19\.dm3-v0'") as info:
        dl.tasks.get("neurogym", env="yang19.dm3-v0")
    assert "yang19.dm1-v0" in str(info.value) and "all_envs" in str(info.value)
    for config, word in (({"env": []}, "env"), ({"env": ["yang19.go-v0"] * 2}, "more than once"),
                         ({"env": "yang19.go-v0", "dt": 0}, "dt"),
                         ({"env": "yang19.go-v0", "seq_len": 0}, "seq_len"),
                         ({"env": "yang19.go-v0", "not_an_option": 1}, "not_an_option"),
                         ({"env": "yang19.go-v0", "timing": {1, 2}}, "JSON")):
        with pytest.raises(ValueError, match=word):
            dl.tasks.get("neurogym", **config)


def test_importing_the_package_does_not_import_neurogym() -> None:
    code = "import sys, dynamo_lightning; print('neurogym' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_without_neurogym_the_error_is_a_value_error_saying_how_to_install() -> None:
    code = ("import sys; sys.modules['neurogym'] = None\n"
            "import dynamo_lightning as dl\n"
            "try:\n    dl.tasks.get('neurogym', env='yang19.go-v0')\n"
            "except ValueError as err:\n    print(type(err).__name__, '|', err)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("NeurogymUnavailableError |")
    assert "pip install 'dynamo-lightning[neurogym]'" in out


# ---------------------------------------------------------------------- loss and metric
def test_loss_is_cross_entropy_over_real_steps_only(dm1) -> None:
    _, y = dm1.sample(16, generator=_gen(2))
    real = dm1.step_mask(y)
    outputs = torch.randn(16, dm1.seq_len, 17, generator=_gen(3), requires_grad=True)
    loss = dm1.loss(outputs, y)
    torch.testing.assert_close(loss, F.cross_entropy(outputs[real], y[..., 0][real]))
    padded = outputs.detach().clone()
    padded[~real] = 1e4 * torch.randn(int((~real).sum()), 17)
    assert torch.equal(dm1.loss(padded, y), loss.detach())
    loss.backward()
    assert outputs.grad is not None and not outputs.grad[~real].any()
    assert dm1.loss(_perfect(y), y).item() < 1e-6
    with pytest.raises(ValueError, match="logits"):
        dm1.loss(outputs[:, :-1], y)


def _decision_trial(pre: int = 3, decision: int = 4, pad: int = 2, truth: int = 5
                    ) -> torch.Tensor:
    """Targets of one hand-made trial: ``pre`` fixation steps, a decision period, padding."""
    steps = pre + decision + pad
    y = torch.full((1, steps, 2), PAD)
    y[0, :pre] = torch.tensor([0, PRE])
    y[0, pre:pre + decision] = torch.tensor([truth, DECISION])
    return y


def _acting(actions: list[int]) -> torch.Tensor:
    return 10.0 * F.one_hot(torch.tensor([actions]), 17).float()


@pytest.mark.parametrize(("actions", "correct"), [
    ([0, 0, 0, 5, 5, 5, 5, 9, 9], True),    # the ground truth; padding is not read
    ([0, 0, 0, 0, 0, 5, 0, 0, 0], True),    # a late first choice, right
    ([0, 0, 0, 0, 7, 5, 5, 0, 0], False),   # the first choice is wrong
    ([0, 0, 0, 0, 0, 0, 0, 0, 0], False),   # fixating through the decision period
    ([0, 3, 0, 5, 5, 5, 5, 0, 0], False),   # fixation broken before the decision period
])
def test_metric_on_hand_made_outputs(dm1, actions: list[int], correct: bool) -> None:
    y = _decision_trial()
    assert trial_outcomes(_acting(actions), y).tolist() == [correct]
    assert dm1.metric(_acting(actions), y) == float(correct)


def test_a_no_go_trial_is_right_when_the_network_keeps_fixating(dm1) -> None:
    y = _decision_trial(truth=0)  # e.g. a non-match of yang19.dms-v0
    assert trial_outcomes(_acting([0] * 9), y).tolist() == [True]
    assert trial_outcomes(_acting([0, 0, 0, 0, 4, 0, 0, 0, 0]), y).tolist() == [False]


def _env_verdicts(task, seeds: list[int], picks: list[float], actions: torch.Tensor
                  ) -> tuple[list[bool], list[bool]]:
    """Each trial replayed through its env's ``step`` with ``actions [B, T]``: whether the
    env scored it correct (``performance``) and whether every action before the env's own
    decision period was fixation."""
    performance, held = [], []
    for b, (seed, pick) in enumerate(zip(seeds, picks, strict=True)):
        source = task.source
        env = source.envs[0]
        source.draw(0, seed, pick)  # the trial, as sample drew it
        trial = env.unwrapped
        trial.t = trial.t_ind = trial.performance = 0
        broke = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for a in actions[b].tolist():
                if trial.t < trial.start_t["decision"] and a != 0:
                    broke = True
                info = env.step(a)[-1]
                if info["new_trial"]:
                    break
        performance.append(info["performance"] == 1)
        held.append(not broke)
    return performance, held


def _slipping_network(y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Noisy logits ``[B, T, 17]`` of a network that gets a random share of trials right and
    slips in the others: fixation broken before the decision, a wrong or a late first choice,
    or no answer at all."""
    actions = y[..., 0].clamp(min=0).clone()
    for b, kind in enumerate(torch.randint(5, (len(y),), generator=g).tolist()):
        pre = (y[b, :, 1] == PRE).nonzero().flatten()
        decision = (y[b, :, 1] == DECISION).nonzero().flatten()
        if kind == 1:  # a saccade before the decision period
            actions[b, pre[torch.randint(len(pre), (1,), generator=g)]] = 3
        elif kind == 2:  # a wrong first choice, then the right one
            actions[b, decision[0]] = actions[b, decision[0]] % 16 + 1
        elif kind == 3:  # fixating a while into the decision period, then right
            actions[b, decision[: len(decision) // 2]] = 0
        elif kind == 4:  # never answering
            actions[b, decision] = 0
    return 5.0 * F.one_hot(actions, 17).float() + 0.3 * torch.randn(
        *actions.shape, 17, generator=g)


@pytest.mark.parametrize("env", ["yang19.dm1-v0", "yang19.go-v0", "yang19.dms-v0"])
def test_metric_agrees_trial_by_trial_with_the_envs_own_step(env: str) -> None:
    task = dl.tasks.get("neurogym", env=env, dt=20)
    _, y = task.sample(48, generator=_gen(11))
    seeds = _seeds(48, 11, split_index=0)
    probe = _gen(11)
    torch.randint(1, (48,), generator=probe)
    torch.randint(2**32 // 3, (48,), generator=probe)
    picks = torch.rand(48, generator=probe, dtype=torch.float64).tolist()
    outputs = _slipping_network(y, _gen(12))
    ours = trial_outcomes(outputs, y)
    performance, held = _env_verdicts(task, seeds, picks, outputs.argmax(-1))
    go_trials = ((y[..., 0] > 0) & (y[..., 1] == DECISION)).any(1)
    env_says = torch.tensor(performance) & torch.tensor(held)
    assert torch.equal(ours[go_trials], env_says[go_trials])
    assert 0 < int(ours[go_trials].sum()) < int(go_trials.sum())  # both verdicts occur
    assert 0 < sum(held) < 48 and sum(performance) > 0
    assert not torch.tensor(performance)[~go_trials].any()  # the envs never reward no-go


# ---------------------------------------------------------------------- end to end
POPULATION = {
    "seed_everything": 0,
    "trainer": {"max_steps": 4, "devices": 1, "val_check_interval": 2,
                "check_val_every_n_epoch": None, "log_every_n_steps": 1,
                "enable_checkpointing": False, "enable_progress_bar": False,
                "enable_model_summary": False, "logger": False},
    "model": {"architectures": ["gru"], "hidden_sizes": [8], "seeds": [0, 1], "lr": 0.01},
    "data": {"tasks": [
        {"name": "neurogym", "label": "go", "config": {"env": "yang19.go-v0", "seq_len": 16}},
        {"name": "neurogym", "label": "pair",
         "config": {"env": ["yang19.go-v0", "yang19.dm1-v0"], "seq_len": 16}}],
        "batch_size": 8, "steps_per_epoch": 2, "val_batch_size": 16},
    "population": {"eval_trials": 32, "snapshot_steps": []},
}


@pytest.fixture(scope="module")
def neurogym_population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dynamo population fit`` of two GRUs on go-v0 and two on [go-v0, dm1-v0]."""
    from dynamo_lightning.cli import main

    root = tmp_path_factory.mktemp("neurogym_population")
    config = root / "population.yaml"
    config.write_text(yaml.safe_dump(POPULATION))
    assert main(["population", "fit", "--config", str(config),
                 f"--trainer.default_root_dir={root}", f"--population.path={root / 'pop'}"]) == 0
    return root / "pop"


def test_population_fit_trains_members_on_one_env_and_on_a_list(neurogym_population) -> None:
    pop = dl.Population.load(neurogym_population)
    by_label = {m.metadata["task_label"]: m.metadata for m in pop}
    assert len(pop) == 4 and set(by_label) == {"go", "pair"}
    for meta in by_label.values():
        assert meta["task"] == "neurogym" and meta["metric_name"] == "decision_accuracy"
        assert 0.0 <= meta["task_metric"] <= 1.0
        assert dl.tasks.get("neurogym", **meta["task_config"]).config() == meta["task_config"]
    pair = dl.tasks.get("neurogym", **by_label["pair"]["task_config"])
    assert pair.own_sub_task(by_label["go"]) == 0  # the go members' own env in the list


def test_dynamo_fits_and_tests_on_members_of_different_envs(neurogym_population,
                                                            tmp_path: Path) -> None:
    """The members' two tasks mixed into one input distribution (a mixture of a single env
    and a list), the padded steps masked throughout, and each member scored on its own."""
    from dynamo_lightning.cli import main
    from dynamo_lightning.cli.lightning_cli import dynamo_main

    conf = Path(__file__).parents[1] / "conf" / "dynamo_tiny.yaml"
    args = ["--config", str(conf), f"--data.population={neurogym_population}",
            f"--data.cache_dir={tmp_path / 'cache'}", f"--trainer.default_root_dir={tmp_path}",
            "--trainer.callbacks=[{class_path: dynamo_lightning.callbacks.LastCheckpoint}]"]
    assert main(["fit", *args]) == 0
    cli = dynamo_main(["test", *args, f"--ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"])
    task, meta = cli.datamodule.task, cli.model.hparams.member_metadata
    assert isinstance(task, dl.tasks.MixtureTask) and cli.datamodule.has_mask
    assert [task.own_sub_task(m) for m in meta] == [0, 0, 1, 1]  # go, go, pair, pair
    scores = cli.model.member_scores
    for key in ("hidden_r2", "output_agreement", "task_metric_meta", "task_metric_member"):
        assert len(scores[key]) == 4 and all(math.isfinite(v) for v in scores[key]), key
    assert all(0.0 <= v <= 1.0 for v in scores["task_metric_member"])
