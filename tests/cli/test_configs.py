"""Every shipped config parses: ``--print_config`` resolves it (with the overlays and logger
files stacked on a run config, as the README shows) into a config naming its model and data.
The dynamo run configs hold only what differs from the shared base (``DYNAMO_BASE``), and
every resolved dynamo config carries the base's values that no stacked file overrides."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
import yaml
from paths import REPO as ROOT

from dynamo_lightning.cli import main
from dynamo_lightning.cli.lightning_cli import DYNAMO_BASE

CONFIGS = ROOT / "configs"
OVERLAYS = ("film.yaml", "lowrank.yaml")  # stacked after a dynamo run config
FLIPFLOP = CONFIGS / "dynamo" / "flipflop.yaml"  # the run config the overlays are stacked on
RUN_CONFIGS = [p for p in sorted((CONFIGS / "dynamo").glob("*.yaml")) if p.name not in OVERLAYS]


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    """``{"a.b.c": value}`` for every non-dict value of a nested dict (lists are leaves: a
    config's list replaces the one below it)."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def shadows(key: str, base_key: str) -> bool:
    """Whether setting ``key`` overrides the base's ``base_key``: the same key, one above or
    below it, or another class (``x.class_path``) for the object ``base_key`` configures."""
    if key == base_key or base_key.startswith(f"{key}.") or key.startswith(f"{base_key}."):
        return True
    return key.endswith(".class_path") and base_key.startswith(key[:-len("class_path")])


def lookup(tree: dict, key: str) -> object:
    for part in key.split("."):
        tree = tree[part]
    return tree


def agrees(resolved: object, given: object) -> bool:
    """``resolved`` holds everything ``given`` says (a class entry's ``init_args`` also gain
    the class's defaults when resolved)."""
    if isinstance(given, dict):
        return isinstance(resolved, dict) and all(
            key in resolved and agrees(resolved[key], value) for key, value in given.items())
    if isinstance(given, list):
        return (isinstance(resolved, list) and len(resolved) == len(given)
                and all(agrees(r, g) for r, g in zip(resolved, given, strict=True)))
    return resolved == given


def config_runs() -> list[tuple[str, list[Path]]]:
    runs = [("population", [path]) for path in sorted((CONFIGS / "population").glob("*.yaml"))]
    for path in sorted((CONFIGS / "dynamo").glob("*.yaml")):
        runs.append(("fit", [FLIPFLOP, path] if path.name in OVERLAYS else [path]))
    runs += [("fit", [FLIPFLOP, path]) for path in sorted((CONFIGS / "logger").glob("*.yaml"))]
    runs += [("population", [CONFIGS / "scale" / "population.yaml"]),
             ("fit", [CONFIGS / "scale" / "dynamo.yaml"])]
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
        overridden = [key for path in paths for key in leaves(load(path))]
        for key, value in leaves(load(DYNAMO_BASE)).items():
            if not any(shadows(other, key) for other in overridden):
                assert agrees(lookup(resolved, key), value), f"{key}: the base's value is lost"
    else:
        assert resolved["data"]["tasks"] and resolved["population"]["path"]


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.stem)
def test_run_config_holds_only_what_differs_from_the_base(path: Path) -> None:
    """A run config that repeats a base value has drifted from the base (change the base, or
    drop the copy). It names its own folder and population, and no output path of its own:
    the logger, checkpoint and figures follow ``trainer.default_root_dir`` through the base
    (a fixed path there would stay behind when a user moves the root)."""
    base = leaves(load(DYNAMO_BASE))
    config = load(path)
    repeated = {key: value for key, value in leaves(config).items()
                if key in base and base[key] == value}
    assert not repeated, f"{path.name} repeats the base's {repeated}"
    assert config["trainer"] == {"default_root_dir": f"runs/dynamo/{path.stem}"}
    assert config["data"]["population"] == f"runs/population/{path.stem}/population"


def test_base_writes_every_output_into_the_run_folder() -> None:
    """The base's logger and callbacks name no fixed path: the logger's folder is the
    root placeholder, the checkpoint and the map go into the run's own folder."""
    trainer = load(DYNAMO_BASE)["trainer"]
    assert trainer["logger"]["init_args"]["save_dir"] == "${trainer.default_root_dir}"
    callbacks = {c["class_path"].rsplit(".", 1)[-1]: c.get("init_args", {})
                 for c in trainer["callbacks"]}
    assert {"LastCheckpoint", "EmbeddingManifold", "FixedPoints", "Interpolation"} <= set(
        callbacks)
    assert not any(key in args for args in callbacks.values() for key in ("dirpath", "map_path"))


def test_base_ships_with_the_package() -> None:
    """The base lies inside the package and pyproject.toml lists it as package data, so an
    installed wheel has it (without it, ``dynamo fit`` would silently lose the base)."""
    base = DYNAMO_BASE
    tomllib = pytest.importorskip("tomllib")
    package = ROOT / "dynamo_lightning"
    relative = base.relative_to(package).as_posix()
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["dynamo_lightning"]
    assert base.is_file()
    assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), patterns


@pytest.mark.parametrize("path", sorted((CONFIGS / "population").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_population_runs_keep_a_resumable_checkpoint(path: Path) -> None:
    trainer = load(path)["trainer"]
    callbacks = {c["class_path"].rsplit(".", 1)[-1]: c.get("init_args", {})
                 for c in trainer["callbacks"]}
    assert "dirpath" not in callbacks["LastCheckpoint"]  # <run folder>/checkpoints/last.ckpt
    assert trainer["default_root_dir"] == f"runs/population/{path.stem}"
    assert trainer["logger"]["init_args"]["save_dir"] == "${trainer.default_root_dir}"
