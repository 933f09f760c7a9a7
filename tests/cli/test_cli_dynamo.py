"""The ``dynamo fit | test | validate`` commands, driven through the real CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml
from paths import CONF as TEST_CONF

from dynamo_lightning.cli import main
from dynamo_lightning.cli.lightning_cli import dynamo_main
from dynamo_lightning.module import DynamoModule
from dynamo_lightning.population import Population
from dynamo_lightning.population.errors import PopulationFormatError

CONF = str(TEST_CONF)
TINY = os.path.join(CONF, "dynamo_tiny.yaml")


@pytest.fixture(scope="module")
def pop_dir(tiny_population: Population, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_population.save(tmp_path_factory.mktemp("cli_dynamo") / "population")


@pytest.fixture(scope="module")
def run(pop_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One ``dynamo fit`` of the tiny config; returns its paths and arguments."""
    root = tmp_path_factory.mktemp("cli_fit")
    common = ["--config", TINY, f"--data.population={pop_dir}",
              f"--data.cache_dir={root / 'cache'}", f"--trainer.default_root_dir={root}"]
    assert main(["fit", *common]) == 0
    return {"root": root, "common": common, "last": root / "checkpoints" / "last.ckpt"}


def test_fit_writes_checkpoint_config_and_map(run: dict, pop_dir: Path,
                                              tiny_population: Population) -> None:
    root, last = run["root"], run["last"]
    assert last.is_file()
    config = yaml.safe_load((root / "config.yaml").read_text())
    assert config["data"]["population"] == str(pop_dir)
    assert config["model"]["meta"]["hidden_size"] == 8
    assert (root / "map.png").is_file() and (root / "map.png").stat().st_size > 0
    assert (root / "figures" / "figures_map.png").is_file()
    # The data→model links carried the population's sizes and identity into the checkpoint.
    torch.load(last, weights_only=True)
    module = DynamoModule.load_from_checkpoint(last)
    assert module.hparams.num_members == 4 and module.hparams.input_size == 3
    assert module.hparams.num_components == 3
    assert module.member_ids == tiny_population.ids
    assert module.member_metadata[2]["architecture"] == "vanilla"
    assert module.hparams.population_path == str(pop_dir.resolve())
    assert module.hparams.task_spec["name"] == "flipflop"
    assert module.embeddings().shape == (4, 2)
    assert module.projections["basis"].shape[0] == 4


def test_test_and_validate_run_from_the_checkpoint(run: dict) -> None:
    args = [*run["common"], "--ckpt_path", str(run["last"])]
    cli = dynamo_main(["test", *args])
    scores = cli.model.member_scores
    for key in ("hidden_r2", "output_r2", "output_agreement", "task_metric_meta",
                "task_metric_member"):
        assert len(scores[key]) == 4, key
    assert "test/hidden_r2" in cli.trainer.callback_metrics
    expected = DynamoModule.load_from_checkpoint(run["last"]).embeddings()
    torch.testing.assert_close(cli.model.embeddings(), expected)  # weights came from ckpt
    assert main(["validate", *args]) == 0


def test_matmul_precision_holds_for_the_run_and_is_restored(
        run: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """``--float32_matmul_precision high`` (TF32 on a GPU) is torch's setting while the run
    runs, and the one before it afterwards; unset, the run leaves torch's setting alone."""
    seen = []
    monkeypatch.setattr(DynamoModule, "on_validation_start",
                        lambda self: seen.append(torch.get_float32_matmul_precision()))
    args = ["validate", *run["common"], "--ckpt_path", str(run["last"])]
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert main([*args, "--float32_matmul_precision", "high"]) == 0
        assert torch.get_float32_matmul_precision() == "highest"
        torch.set_float32_matmul_precision("medium")
        assert main(args) == 0
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(before)
    assert seen == ["high", "medium"]
    error = run_failing([*args, "--float32_matmul_precision", "fast"], capsys)
    assert "float32_matmul_precision" in error and "fast" in error
    assert len(error.strip().splitlines()) == 1

def run_failing(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run ``main(argv)``, expect it to fail with status 2 (a config error from the parser,
    or one line from the package's error boundary), return stderr."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2
    return capsys.readouterr().err


def test_unknown_meta_key_on_the_command_line_is_named(run: dict, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    argv = ["fit", *run["common"], f"--trainer.default_root_dir={tmp_path}",
            "--model.meta.cel", "gru"]
    assert "cel" in run_failing(argv, capsys)
    assert not (tmp_path / "checkpoints").exists()


def test_typo_key_in_yaml_is_named(run: dict, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    config = yaml.safe_load(Path(TINY).read_text())
    config["model"]["embeding_dim"] = config["model"].pop("embedding_dim")
    bad = tmp_path / "typo.yaml"
    bad.write_text(yaml.safe_dump(config))
    argv = ["fit", *run["common"], "--config", str(bad), f"--trainer.default_root_dir={tmp_path}"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code not in (0, None)
    assert "embeding_dim" in capsys.readouterr().err


def test_typo_key_in_nested_meta_yaml_is_named(run: dict, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    config = yaml.safe_load(Path(TINY).read_text())
    config["model"]["meta"] = {"cel": "gru", "hidden_size": 8}
    bad = tmp_path / "typo.yaml"
    bad.write_text(yaml.safe_dump(config))
    argv = ["fit", *run["common"], "--config", str(bad), f"--trainer.default_root_dir={tmp_path}"]
    assert "cel" in run_failing(argv, capsys)


def test_missing_population_path_is_named(tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "no_such_population"
    err = run_failing(["fit", "--config", TINY, f"--data.population={missing}",
                       f"--trainer.default_root_dir={tmp_path}"], capsys)
    assert err.startswith("dynamo fit: error: population directory") and "not found" in err
    assert "no_such_population" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(PopulationFormatError, match="no_such_population"):  # --traceback
        main(["fit", "--config", TINY, f"--data.population={missing}", "--traceback",
              f"--trainer.default_root_dir={tmp_path}"])


def test_version_is_the_package_version(capsys: pytest.CaptureFixture) -> None:
    import dynamo_lightning

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip().endswith(dynamo_lightning.__version__)


def test_optimizer_flags_are_refused_not_dropped(run: dict, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    """--optimizer would replace the module's two learning rates (meta-model and θ) and its
    schedule without a word; it is refused instead (model.optim.* sets them)."""
    for flag in ("--optimizer", "--lr_scheduler"):
        err = run_failing(["fit", *run["common"], f"--trainer.default_root_dir={tmp_path}",
                           flag, "Adam"], capsys)
        assert f"unrecognized arguments: {flag}" in err


def test_callbacks_are_named_by_short_class_name(run: dict, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    argv = ["fit", *run["common"], f"--trainer.default_root_dir={tmp_path}",
            "--trainer.callbacks+=FixedPoints", "--print_config"]
    with pytest.raises(SystemExit):
        main(argv)
    assert "class_path: dynamo_lightning.callbacks.FixedPoints" in capsys.readouterr().out


def test_every_fit_option_has_help(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "lacks type and help" not in capsys.readouterr().out


@pytest.mark.parametrize("command", ["analyze", "place", "demo"])
def test_every_command_speaks_the_config_dialect(command: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    """analyze/place/demo take --config files and --print_config, with option names as
    the YAML keys (underscores); the old dashed flags still work."""
    options = {"analyze": {"ckpt_path": "a.ckpt", "out": "r", "inits_per_member": 4},
               "place": {"ckpt_path": "a.ckpt", "population": "p", "neighbours": 2},
               "demo": {"out": "d", "max_epochs": 1}}[command]
    config = tmp_path / "options.yaml"
    config.write_text(yaml.safe_dump(options))
    dashed = {"analyze": ["--max-iters", "7"], "place": ["--no-hidden"],
              "demo": ["--max-steps", "3"]}[command]
    with pytest.raises(SystemExit) as info:
        main([command, "--config", str(config), *dashed, "--print_config"])
    assert info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert {k: printed[k] for k in options} == options
    assert printed[dashed[0].lstrip("-").replace("-", "_")] in (7, True, 3)


def test_the_run_logs_its_whole_config(run: dict, tmp_path: Path) -> None:
    """Every logger records the resolved config, trainer settings and seed included."""
    argv = ["fit", *run["common"], f"--trainer.default_root_dir={tmp_path}",
            "--trainer.max_epochs=1", "--trainer.logger=CSVLogger",
            f"--trainer.logger.init_args.save_dir={tmp_path}"]
    assert main(argv) == 0
    (hparams,) = tmp_path.glob("lightning_logs/version_*/hparams.yaml")
    config = yaml.safe_load(hparams.read_text())["config"]
    assert config["seed_everything"] == 0 and config["trainer"]["max_epochs"] == 1
    assert config["model"]["embedding_dim"] == 2 and config["data"]["population"]


@pytest.mark.parametrize("command", [["fit"], ["population", "fit"]])
def test_help_leads_with_this_packages_options(command: list[str],
                                               capsys: pytest.CaptureFixture) -> None:
    """A short usage line, then the module's and the data's options before the Trainer's
    (jsonargparse's usage alone listed all ~150 options, and DYNAMO's came last)."""
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    lines = capsys.readouterr().out.splitlines()
    usage = lines[: next(i for i, line in enumerate(lines) if not line.strip())]
    assert len(usage) == 2 and usage[0].startswith(f"usage: dynamo {' '.join(command)} ")
    first = {prefix: next(i for i, line in enumerate(lines)
                          if line.lstrip().startswith(f"--{prefix}."))
             for prefix in ("model", "data", "trainer")}
    assert first["model"] < first["trainer"] and first["data"] < first["trainer"]
