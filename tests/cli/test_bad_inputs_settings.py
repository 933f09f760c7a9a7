"""Every command's numeric settings, given NaN, ∞, a negative number, zero or an empty grid
axis where that cannot work, as a user meets them: ``dynamo`` in a subprocess ends with
status 2 and one error line that names the setting, never a traceback, and nothing is
written (each refusal comes before any training). Then the checks behind those lines, called
directly: the settings dataclasses, the Trainer flag checks and the error boundary's reading
of jsonargparse's union errors."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_runner import run_dynamo, run_dynamo_process
from paths import CONF

from dynamo_lightning.cli.errors import one_line, readable_type_error, union_reason
from dynamo_lightning.cli.trainer_flags import check_trainer_flags
from dynamo_lightning.module.config import (
    LossWeights,
    MetaModelConfig,
    Optimization,
    as_config,
    check_schedule_length,
)

TINY = str(CONF / "dynamo_tiny.yaml")
POPULATION_TINY = str(CONF / "population_tiny.yaml")

YAML = {  # settings files, as a user writes them (YAML's NaN and ∞ are .nan and .inf)
    "lr_negative": "model:\n  optim: {lr: -1}\n",
    "lr_nan": "model:\n  optim: {lr: .nan}\n",
    "output_nan": "model:\n  loss: {output: .nan}\n",
    "profiler_dict": "trainer:\n  profiler: {foo: 1}\n",
    "population_lr_nan": "model:\n  lr: .nan\n",
}


@pytest.fixture(scope="module")
def ctx(tiny_fit: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("bad_settings")
    for name, text in YAML.items():
        (root / f"{name}.yaml").write_text(text)
    return {"root": str(root), "pop": str(tiny_fit["population"]),
            "ckpt": str(tiny_fit["ckpt"])}


def fit(name: str, *extra: str) -> Callable[[dict], list[str]]:
    return lambda c: ["fit", "--config", TINY, f"--data.population={c['pop']}",
                      f"--data.cache_dir={c['root']}/cache",
                      f"--trainer.default_root_dir={c['root']}/fit_{name}",
                      *_files(c, extra)]


def population(*extra: str) -> Callable[[dict], list[str]]:
    return lambda c: ["population", "fit", "--config", POPULATION_TINY,
                      f"--trainer.default_root_dir={c['root']}/pop_run",
                      f"--population.path={c['root']}/pop_out", *_files(c, extra)]


def analyze(*extra: str) -> Callable[[dict], list[str]]:
    return lambda c: ["analyze", "--ckpt", c["ckpt"], "--out", f"{c['root']}/report",
                      "--no-test", "--no-progress", *extra]


def place(*extra: str) -> Callable[[dict], list[str]]:
    return lambda c: ["place", "--ckpt_path", c["ckpt"], "--population", c["pop"],
                      "--out", f"{c['root']}/placement", "--no-progress", *extra]


def demo(*extra: str) -> Callable[[dict], list[str]]:
    return lambda c: ["demo", "--out", f"{c['root']}/demo", *extra]


def _files(c: dict, extra: tuple[str, ...]) -> list[str]:
    """``@name`` stands for the settings file ``YAML[name]``."""
    return [f"{c['root']}/{a[1:]}.yaml" if a.startswith("@") else a for a in extra]


CASES: dict[str, tuple[Callable[[dict], list[str]], str]] = {
    # dynamo fit: the module's settings groups (model.optim.*, model.loss.*, model.meta.*)
    "fit-lr-nan": (fit("a", "--model.optim.lr", "nan"),
                   "DynamoModule: optim.lr must be a finite number > 0, got 'nan'"),
    "fit-theta-lr-inf": (fit("b", "--model.optim.theta_lr", "inf"),
                         "optim.theta_lr must be a finite number > 0, got 'inf'"),
    "fit-lr-negative": (fit("c", "--model.optim.lr", "-1"),
                        "DynamoModule: optim.lr must be a finite number > 0, got -1.0"),
    "fit-lr-negative-yaml": (fit("d", "--config", "@lr_negative"),
                             "optim.lr must be a finite number > 0, got -1.0"),
    "fit-lr-nan-yaml": (fit("e", "--config", "@lr_nan"),
                        "optim.lr must be a finite number > 0, got nan"),
    "fit-loss-theta-nan": (fit("f", "--model.loss.theta", "nan"),
                           "loss.theta must be a finite number >= 0, got 'nan'"),
    "fit-loss-output-nan-yaml": (fit("g", "--config", "@output_nan"),
                                 "loss.output must be a finite number >= 0, got nan"),
    "fit-theta-init-scale": (fit("j", "--model.theta_init_scale", "-1"),
                             "theta_init_scale must be a finite number >= 0"),
    "fit-meta-width-zero": (fit("k", "--model.meta.hidden_size", "0"),
                            "meta.hidden_size must be a positive integer, got 0"),
    # dynamo fit: Trainer flags, checked before the model and data are built
    "fit-max-epochs-negative": (fit("l", "--trainer.max_epochs", "-5"),
                                "trainer.max_epochs must be an integer >= -1, got -5"),
    "fit-max-steps-negative": (fit("m", "--trainer.max_steps", "-5"),
                               "trainer.max_steps must be an integer >= -1, got -5"),
    "fit-cosine-without-end": (fit("n", "--trainer.max_epochs", "-1"),
                               "optim.schedule 'cosine' decays the rates over the whole run"),
    "fit-limit-train-batches": (fit("o", "--trainer.limit_train_batches", "-1"),
                                "trainer.limit_train_batches must be a finite number in [0, 1]"),
    "fit-clip-negative": (fit("r", "--trainer.gradient_clip_val", "-1"),
                          "trainer.gradient_clip_val must be a finite number >= 0"),
    "fit-devices-negative": (fit("t", "--trainer.devices", "-3"),
                             "trainer.devices must be a number of devices >= 1"),
    "fit-profiler-dict": (fit("u", "--trainer.profiler", '{"a": 1}'),
                          "trainer.profiler must be one of simple, advanced, pytorch, xla"),
    "fit-profiler-dict-yaml": (fit("v", "--config", "@profiler_dict"), "trainer.profiler"),
    "fit-lightning-refuses-a-flag": (fit("x", "--trainer.gradient_clip_algorithm", "foo"),
                                     "trainer flags: `gradient_clip_algorithm` foo is invalid"),
    # dynamo population fit: the module's settings and the grid
    "population-lr-nan": (population("--model.lr", "nan"),
                          "model.lr: expected a finite number, got 'nan'"),
    "population-lr-nan-yaml": (population("--config", "@population_lr_nan"),
                               "PopulationModule: lr must be a finite number > 0, got nan"),
    "population-lr-negative": (population("--model.lr", "-1"),
                               "PopulationModule: lr must be a finite number > 0, got -1.0"),
    "population-weight-decay-negative": (population("--model.weight_decay", "-1"),
                                         "weight_decay must be a finite number >= 0"),
    "population-clip-norm-negative": (population("--model.clip_norm", "-1"),
                                      "clip_norm must be a finite number >= 0, got -1.0"),
    "population-clip-norm-nan": (population("--model.clip_norm", "nan"),
                                 "model.clip_norm: expected a finite number, got 'nan'"),
    "population-no-seeds": (population("--model.seeds", "[]"),
                            "seeds must be a non-empty list"),
    "population-no-architectures": (population("--model.architectures", "[]"),
                                    "architectures must be a non-empty list"),
    "population-no-widths": (population("--model.hidden_sizes", "[]"),
                             "hidden_sizes must be a non-empty list"),
    "population-no-tasks": (population("--data.tasks", "[]"), "tasks must be a non-empty list"),
    "population-negative-seed": (population("--model.seeds", "[0, -1]"),
                                 "seeds[1] must be an integer in [0, 2**64), got -1"),
    "population-negative-eval-seed": (population("--population.eval_seed", "-1"),
                                      "PopulationWriter: eval_seed must be an integer"),
    "population-max-steps-negative": (population("--trainer.max_steps", "-5"),
                                      "trainer.max_steps must be an integer >= -1, got -5"),
    "population-limit-train-batches": (population("--trainer.limit_train_batches", "-1"),
                                       "trainer.limit_train_batches"),
    "population-profiler-dict": (population("--trainer.profiler", '{"a": 1}'),
                                 "trainer.profiler must be one of"),
    # dynamo analyze, place and demo: their own flags
    "analyze-negative-seed": (analyze("--seed", "-1"),
                              "seed must be an integer in [0, 2**64), got -1"),
    "analyze-zero-threads": (analyze("--threads", "0"),
                             "threads must be a positive integer or None, got 0"),
    "analyze-zero-iterations": (analyze("--max_iters", "0"),
                                "max_iters must be a positive integer, got 0"),
    "place-negative-seed": (place("--seed", "-1"),
                            "seed must be an integer in [0, 2**64), got -1"),
    "place-zero-threads": (place("--threads", "0"),
                           "threads must be a positive integer or None, got 0"),
    "demo-negative-max-steps": (demo("--max_steps", "-5"),
                                "--max_steps must be a positive integer or None, got -5"),
    "demo-zero-max-epochs": (demo("--max_epochs", "0"),
                             "--max_epochs must be a positive integer or None, got 0"),
    "demo-zero-threads": (demo("--threads", "0"), "--threads must be a positive integer, got 0"),
}

if not torch.cuda.is_available():  # Lightning's TypeError for a CPU run on every device
    CASES["fit-all-devices-of-a-cpu"] = (fit("y", "--trainer.devices", "-1"),
                                         "trainer.devices: `devices` selected with "
                                         "`CPUAccelerator` should be an int > 0")


IN_A_PROCESS = ("fit-lr-nan", "population-no-seeds", "fit-max-epochs-negative",
                "analyze-negative-seed")
"""Cases also run as a fresh process (the rest run in this one: see ``cli_runner``)."""


@pytest.fixture(scope="module")
def results(ctx: dict) -> dict[str, subprocess.CompletedProcess]:
    """Every case, run as a user runs it (cwd a scratch folder), in this process."""
    env = {"OMP_NUM_THREADS": "1", "DYNAMO_TRACEBACK": ""}
    return {name: run_dynamo(CASES[name][0](ctx), cwd=ctx["root"], env=env) for name in CASES}


@pytest.mark.slow
@pytest.mark.parametrize("name", IN_A_PROCESS)
def test_a_bad_setting_is_one_line_in_a_fresh_process_too(name: str, ctx: dict) -> None:
    result = run_dynamo_process(CASES[name][0](ctx), cwd=ctx["root"],
                                env={"OMP_NUM_THREADS": "1", "DYNAMO_TRACEBACK": ""})
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and CASES[name][1] in errors[0], result.stderr[-3000:]


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_setting_is_one_line_that_names_it(name: str, results: dict) -> None:
    result = results[name]
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith("dynamo") and CASES[name][1] in errors[0], errors[0]
    assert "Does not validate" not in errors[0] and "Namespace(" not in errors[0], errors[0]


def test_bad_settings_are_refused_before_any_work(results: dict, ctx: dict) -> None:
    """No run trained, wrote a checkpoint, a population, a report or a placement."""
    root = Path(ctx["root"])
    assert not list(root.glob("fit_*/checkpoints/*.ckpt"))
    for folder in ("pop_out", "report", "placement", "demo"):
        assert not (root / folder).exists() or not any((root / folder).iterdir()), folder


# The checks behind the lines, called directly.

@pytest.mark.parametrize(("build", "message"), [
    (lambda: Optimization(lr=math.nan), r"DynamoModule: optim\.lr must be a finite number > 0"),
    (lambda: Optimization(theta_lr=math.inf), r"optim\.theta_lr must be a finite number > 0"),
    (lambda: Optimization(lr=-1e-3), r"optim\.lr must be a finite number > 0, got -0\.001"),
    (lambda: Optimization(lr="0.1"), r"optim\.lr must be a finite number > 0, got '0\.1'"),
    (lambda: Optimization(weight_decay=-1), r"optim\.weight_decay must be a finite number >= 0"),
    (lambda: Optimization(final_lr_fraction=1.5), r"optim\.final_lr_fraction .* in \[0, 1\]"),
    (lambda: Optimization(schedule="linear"), r"optim\.schedule must be 'cosine' or 'none'"),
    (lambda: LossWeights(theta=math.nan), r"loss\.theta must be a finite number >= 0, got nan"),
    (lambda: LossWeights(output=-1), r"loss\.output must be a finite number >= 0, got -1"),
    (lambda: MetaModelConfig(hidden_size=0), r"meta\.hidden_size must be a positive integer"),
    (lambda: MetaModelConfig(kernel_size=True), r"meta\.kernel_size must be a positive integer"),
    (lambda: MetaModelConfig(stages=0), r"meta\.stages must be a positive integer or None"),
    (lambda: as_config(Optimization, {"lr": math.nan}), r"optim\.lr must be a finite number"),
    (lambda: as_config(Optimization, {"rate": 1}), r"bad Optimization entry"),
    (lambda: as_config(LossWeights, 0.5), r"expected a LossWeights or a mapping of its fields"),
])
def test_settings_groups_check_their_fields(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_settings_groups_keep_good_values_as_plain_numbers() -> None:
    optim = Optimization(lr=1, theta_lr=0.5, weight_decay=0, final_lr_fraction=0)
    assert (optim.lr, optim.weight_decay) == (1.0, 0.0) and type(optim.lr) is float
    assert LossWeights(output=0, theta=0).theta == 0.0
    assert MetaModelConfig(stages=None).stages is None


def test_a_decaying_schedule_needs_a_run_of_set_length() -> None:
    check_schedule_length("cosine", None, 100)
    check_schedule_length("cosine", 30, -1)
    check_schedule_length("none", -1, -1)
    with pytest.raises(ValueError, match=r"trainer\.max_epochs and trainer\.max_steps are -1"):
        check_schedule_length("cosine", -1, -1)


GOOD_TRAINER = {"max_epochs": None, "max_steps": -1, "min_epochs": None, "min_steps": None,
                "check_val_every_n_epoch": 1, "log_every_n_steps": 0,
                "accumulate_grad_batches": 1, "num_sanity_val_steps": -1, "num_nodes": 1,
                "reload_dataloaders_every_n_epochs": 0, "limit_train_batches": 0.5,
                "limit_val_batches": 3, "limit_test_batches": 1.0, "overfit_batches": 0.0,
                "val_check_interval": "00:00:10:00", "gradient_clip_val": 0, "devices": "auto",
                "profiler": "Simple", "max_time": "00:12:00:00"}


@pytest.mark.parametrize("flags", [
    GOOD_TRAINER, {}, {"devices": -1}, {"devices": [0, 1]}, {"val_check_interval": 0.25},
    {"val_check_interval": 50}, {"limit_train_batches": 2.0}, {"max_time": {"hours": 2}},
    {"profiler": {"class_path": "lightning.pytorch.profilers.SimpleProfiler"}},
])
def test_trainer_flags_that_lightning_runs_pass(flags: dict) -> None:
    check_trainer_flags(flags)


@pytest.mark.parametrize(("flags", "message"), [
    ({"max_epochs": -5}, r"^trainer\.max_epochs must be an integer >= -1, got -5 "
                         r"\(-1: no limit\)$"),
    ({"max_steps": -2}, r"^trainer\.max_steps must be an integer >= -1, got -2"),
    ({"max_epochs": 2.5}, r"^trainer\.max_epochs must be an integer >= -1, got 2\.5"),
    ({"min_steps": -1}, r"^trainer\.min_steps must be a non-negative integer, got -1$"),
    ({"accumulate_grad_batches": 0}, r"^trainer\.accumulate_grad_batches must be a positive"),
    ({"check_val_every_n_epoch": 0}, r"^trainer\.check_val_every_n_epoch must be a positive"),
    ({"num_sanity_val_steps": -5}, r"^trainer\.num_sanity_val_steps must be an integer >= -1"),
    ({"limit_train_batches": -1}, r"^trainer\.limit_train_batches must be a finite number in "
                                  r"\[0, 1\]"),
    ({"limit_val_batches": 1.5}, r"^trainer\.limit_val_batches .* got 1\.5$"),
    ({"overfit_batches": math.nan}, r"^trainer\.overfit_batches .* got nan$"),
    ({"val_check_interval": 0}, r"^trainer\.val_check_interval must be a finite number in "
                                r"\(0, 1\]"),
    ({"gradient_clip_val": -1.0}, r"^trainer\.gradient_clip_val must be a finite number >= 0"),
    ({"gradient_clip_val": math.inf}, r"^trainer\.gradient_clip_val .* got inf"),
    ({"devices": 0}, r"^trainer\.devices must be a number of devices >= 1"),
    ({"devices": "-3"}, r"^trainer\.devices must be a number of devices >= 1, .* got -3$"),
    ({"devices": []}, r"^trainer\.devices must be a non-empty list of device indices"),
    ({"profiler": '{"a": 1}'}, r"^trainer\.profiler must be one of simple, advanced"),
    ({"profiler": {"foo": 1}}, r"^trainer\.profiler must be one of .* got \{'foo': 1\}$"),
    ({"max_time": "-1"}, r"^trainer\.max_time must be a time 'DD:HH:MM:SS'"),
])
def test_trainer_flags_that_cannot_work_are_named(flags: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_trainer_flags({**GOOD_TRAINER, **flags})


UNION = ("Does not validate against any of the Union subtypes\nSubtypes: [<class "
         "'dynamo_lightning.module.config.Optimization'>, <class 'dict'>, <class 'NoneType'>]"
         "\nErrors:\n  - DynamoModule: optim.lr must be a finite number > 0, got -1.0\n"
         "  - Expected a <class 'dict'>\n  - Expected a <class 'NoneType'>\nGiven value type: "
         "<class 'jsonargparse._namespace.Namespace'>\nGiven value: Namespace(lr=-1.0)")


def test_a_union_error_is_reported_by_the_subtype_that_took_the_value() -> None:
    reason = "DynamoModule: optim.lr must be a finite number > 0, got -1.0"
    assert union_reason(UNION) == reason
    assert one_line(ValueError(UNION)) == reason
    assert readable_type_error(f'Parser key "model.optim": {UNION}') == f"model.optim: {reason}"
    only_types = ('Parser key "trainer.max_epochs": Does not validate against any of the '
                  "Union subtypes Subtypes: [<class 'int'>, <class 'NoneType'>] Errors: - "
                  "Expected a <class 'int'> - Expected a <class 'NoneType'> Given value type: "
                  "<class 'str'> Given value: ten")
    assert union_reason(only_types) is None
    assert readable_type_error(only_types) == "trainer.max_epochs: expected int or None, got 'ten'"
    assert one_line(ValueError("plain message")) == "plain message"


def test_a_float_flag_given_nan_says_it_must_be_finite() -> None:
    message = "Parser key \"model.lr\": Expected a <class 'float'>. Got value: nan"
    assert readable_type_error(message) == "model.lr: expected a finite number, got 'nan'"
