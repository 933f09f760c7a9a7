"""Every shipped config parses: ``--print_config`` resolves it (with the overlays and logger
files stacked on a run config, as the README shows) into a config naming its model and data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dynamo_lightning.cli import main

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
OVERLAYS = ("film.yaml", "lowrank.yaml")  # stacked after a dynamo run config
BASE = CONFIGS / "dynamo" / "flipflop.yaml"


def config_runs() -> list[tuple[str, list[Path]]]:
    runs = [("population", [path]) for path in sorted((CONFIGS / "population").glob("*.yaml"))]
    for path in sorted((CONFIGS / "dynamo").glob("*.yaml")):
        runs.append(("fit", [BASE, path] if path.name in OVERLAYS else [path]))
    runs += [("fit", [BASE, path]) for path in sorted((CONFIGS / "logger").glob("*.yaml"))]
    return runs


def test_every_config_file_is_covered() -> None:
    covered = {paths[-1] for _, paths in config_runs()}
    assert covered == set(CONFIGS.glob("*/*.yaml"))


@pytest.mark.parametrize(("command", "paths"), config_runs(),
                         ids=lambda v: v if isinstance(v, str) else "+".join(
                             f"{p.parent.name}/{p.stem}" for p in v))
def test_config_resolves(command: str, paths: list[Path],
                         capsys: pytest.CaptureFixture) -> None:
    argv = [*(["population", "fit"] if command == "population" else ["fit"]),
            *(arg for path in paths for arg in ("--config", str(path))), "--print_config"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code in (0, None)
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert {"trainer", "model", "data"} <= set(resolved)
    if command == "fit":
        assert resolved["data"]["population"]  # every run config names its population
        overlay = paths[-1]
        expected = overlay.stem if overlay.name in OVERLAYS else "concat"
        assert resolved["model"]["meta"]["conditioning"] == expected  # the last file wins
        if overlay.parent.name == "logger":
            logger = resolved["trainer"]["logger"]["class_path"].lower()
            assert {"csv": "csv", "tensorboard": "tensorboard", "wandb": "wandb"}[
                overlay.stem] in logger
    else:
        assert resolved["data"]["tasks"] and resolved["population"]["path"]
