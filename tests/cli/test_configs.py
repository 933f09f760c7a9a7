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


def config_runs() -> list[tuple[str, list[Path]]]:
    runs = [("population", [path]) for path in sorted((CONFIGS / "population").glob("*.yaml"))]
    for path in sorted((CONFIGS / "dynamo").glob("*.yaml")):
        runs.append(("fit", [FLIPFLOP, path] if path.name in OVERLAYS else [path]))
    runs += [("fit", [FLIPFLOP, path]) for path in sorted((CONFIGS / "logger").glob("*.yaml"))]
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
                assert lookup(resolved, key) == value, f"{key}: the base's value is lost"
    else:
        assert resolved["data"]["tasks"] and resolved["population"]["path"]


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.stem)
def test_run_config_holds_only_what_differs_from_the_base(path: Path) -> None:
    """A run config that repeats a base value has drifted from the base (change the base, or
    drop the copy); its paths all name its own run directory, and its callbacks (a list, so
    each run config spells it out) are those of every other run config but for the paths."""
    base = leaves(load(DYNAMO_BASE))
    config = load(path)
    repeated = {key: value for key, value in leaves(config).items()
                if key in base and base[key] == value}
    assert not repeated, f"{path.name} repeats the base's {repeated}"
    run_dir = f"runs/dynamo/{path.stem}"
    trainer = config["trainer"]
    assert trainer["default_root_dir"] == trainer["logger"]["init_args"]["save_dir"] == run_dir
    assert config["data"]["population"] == f"runs/population/{path.stem}/population"
    callbacks = {c["class_path"].rsplit(".", 1)[-1]: c["init_args"] for c in trainer["callbacks"]}
    assert callbacks["LastCheckpoint"]["dirpath"] == f"{run_dir}/checkpoints"  # resumable
    assert callbacks["EmbeddingManifold"]["map_path"] == f"{run_dir}/map.png"
    reference = load(FLIPFLOP)["trainer"]["callbacks"]
    assert yaml.safe_dump(trainer["callbacks"]).replace(run_dir, "RUN") == yaml.safe_dump(
        reference).replace(f"runs/dynamo/{FLIPFLOP.stem}", "RUN"), "callbacks drifted"


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
    callbacks = {c["class_path"].rsplit(".", 1)[-1]: c.get("init_args", {})
                 for c in load(path)["trainer"]["callbacks"]}
    assert callbacks["LastCheckpoint"]["dirpath"] == f"runs/population/{path.stem}/checkpoints"
