"""Files that lie, as a command-line user meets them: a population whose weights have another
dtype, are one file under two names (hard links) or copies of one another, whose manifest
links outside it or nests 100k levels deep, and configs that are YAML alias bombs. Every
case runs ``dynamo`` in a fresh process and must end with status 2 and one error line that
names the problem, never a traceback, within a timeout (a bomb used to run until memory was
gone); the user's files are left as they were."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_dynamo
from paths import CONF
from safetensors.torch import load_file, save_file

from dynamo_lightning.cli.config_files import MAX_ALIAS_NODES
from dynamo_lightning.population.manifest import MAX_JSON_DEPTH

pytestmark = pytest.mark.slow  # a few fresh processes and a dozen in-process runs

TINY = str(CONF / "dynamo_tiny.yaml")
POPULATION_TINY = str(CONF / "population_tiny.yaml")
TIMEOUT = 300
"""Seconds a case may take: each needs about ten; a bomb that expands takes forever."""


def _laughs(levels: int = 9) -> list[str]:
    """Anchored YAML lists, each holding nine aliases of the one before: the last expands to
    9**levels scalars ("billion laughs")."""
    parts = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    return parts + [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]


def _bomb() -> str:
    """The laughs as one flow list (a value: a few hundred bytes)."""
    return f"[{', '.join(_laughs())}]"


def _fix_checksum(folder: Path, manifest: dict, index: int) -> None:
    entry = manifest["members"][index]
    entry["sha256"] = hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest()


def _float64(folder: Path, manifest: dict) -> None:
    path = folder / manifest["members"][1]["file"]
    save_file({k: v.double() for k, v in load_file(path).items()}, path)
    _fix_checksum(folder, manifest, 1)


def _hard_link(folder: Path, manifest: dict) -> None:
    first, second = (folder / manifest["members"][i]["file"] for i in (0, 1))
    second.unlink()
    os.link(first, second)
    _fix_checksum(folder, manifest, 1)


def _copy(folder: Path, manifest: dict) -> None:
    first, second = (folder / manifest["members"][i]["file"] for i in (0, 1))
    shutil.copyfile(first, second)
    _fix_checksum(folder, manifest, 1)


def _population_copy(source: Path, target: Path,
                     damage: Callable[[Path, dict], None] | None) -> str:
    shutil.copytree(source, target)
    if damage is not None:
        manifest = json.loads((target / "manifest.json").read_text())
        damage(target, manifest)
        (target / "manifest.json").write_text(json.dumps(manifest))
    return str(target)


USER_FILES = ("float64", "hard_link", "copy", "manifest_link", "deep", "configs",
              "manifest_elsewhere.json")
"""What the cases read, below ``ctx["root"]``: the lying populations and the configs."""


def _snapshot(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every file and link of :data:`USER_FILES`: where a link points, or a file's bytes."""
    paths = [p for name in USER_FILES for p in (root / name, *sorted((root / name).rglob("*")))]
    return {str(p.relative_to(root)): ("link", os.readlink(p).encode()) if p.is_symlink()
            else ("file", p.read_bytes()) for p in paths if p.is_symlink() or p.is_file()}


@pytest.fixture(scope="module")
def ctx(tiny_fit: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Paths of the good run, of every lying population and of every hostile config."""
    root = tmp_path_factory.mktemp("bad_files")
    pop = Path(tiny_fit["population"])
    paths = {name: _population_copy(pop, root / name, damage) for name, damage in {
        "float64": _float64, "hard_link": _hard_link, "copy": _copy}.items()}
    linked = Path(_population_copy(pop, root / "manifest_link", None))
    (linked / "manifest.json").rename(root / "manifest_elsewhere.json")
    (linked / "manifest.json").symlink_to(root / "manifest_elsewhere.json")
    deep = Path(_population_copy(pop, root / "deep", None))
    (deep / "manifest.json").write_text('{"schema_version": 1, "members": '
                                        + "[" * 100_000 + "]" * 100_000 + "}")
    configs = root / "configs"
    configs.mkdir()
    (configs / "bomb.yaml").write_text(f"trainer:\n  plugins: {_bomb()}\n")
    (configs / "bomb_at_top.yaml").write_text(
        "".join(f"a{i}: {part}\n" for i, part in enumerate(_laughs())))
    (configs / "recursive.yaml").write_text("trainer:\n  plugins: &loop [*loop]\n")
    (configs / "bomb_in_a_string.yaml").write_text(f"trainer:\n  max_steps: '{_bomb()}'\n")
    (configs / "trainer_bomb.yaml").write_text(f"max_steps: 1\nplugins: {_bomb()}\n")
    (configs / "aliases.yaml").write_text(  # a small, legitimate use of anchors
        "model:\n  optim: {lr: &rate 0.004, theta_lr: *rate}\n")
    paths["manifest_link"], paths["deep"] = str(linked), str(deep)
    return {"root": str(root), "pop": str(pop), "ckpt": str(tiny_fit["ckpt"]),
            "configs": str(configs), **paths}


def fit(ctx: dict, name: str, *extra: str, population: str | None = None) -> list[str]:
    return ["fit", "--config", TINY, f"--data.population={population or ctx['pop']}",
            f"--data.cache_dir={ctx['root']}/cache", f"--trainer.default_root_dir="
            f"{ctx['root']}/fit_{name}", *extra]


def analyze(ctx: dict, population: str, *extra: str) -> list[str]:
    return ["analyze", "--ckpt", ctx["ckpt"], "--population", population, "--out",
            f"{ctx['root']}/report", "--no-test", "--no-progress", *extra]


def config(ctx: dict, name: str) -> str:
    return f"{ctx['configs']}/{name}.yaml"


BOMB = f"its aliases expand to more than {MAX_ALIAS_NODES} nodes"
CLI_CASES: dict[str, tuple[Callable[[dict], list[str]], list[str]]] = {
    # (a) dtypes
    "fit-float64-weights": (lambda c: fit(c, "a", population=c["float64"]),
                            ["float64 tensor(s)", "'gru' parameters are float32",
                             "convert_dtypes=True", "gru-s1.safetensors"]),
    "analyze-float64-weights": (lambda c: analyze(c, c["float64"]),
                                ["float64 tensor(s)", "gru-s1.safetensors"]),
    # (b) one file, two members
    "fit-hard-linked-weights": (lambda c: fit(c, "b", population=c["hard_link"]),
                                ["'gru-s0' (members[0])", "'gru-s1' (members[1])",
                                 "the same file (hard links)"]),
    "fit-copied-weights": (lambda c: fit(c, "c", population=c["copy"]),
                           ["'gru-s0' (members[0])", "'gru-s1' (members[1])",
                            "identical copies"]),
    "analyze-copied-weights": (lambda c: analyze(c, c["copy"]), ["identical copies"]),
    # (c) a manifest linked outside
    "fit-manifest-link-outside": (lambda c: fit(c, "d", population=c["manifest_link"]),
                                  ["manifest_elsewhere.json",
                                   "outside the population directory"]),
    "analyze-manifest-link-outside": (lambda c: analyze(c, c["manifest_link"]),
                                      ["outside the population directory"]),
    # (d) a manifest 100k levels deep
    "fit-deep-manifest": (lambda c: fit(c, "e", population=c["deep"]),
                          [f"nested deeper than {MAX_JSON_DEPTH} levels", "manifest.json"]),
    "analyze-deep-manifest": (lambda c: analyze(c, c["deep"]),
                              [f"nested deeper than {MAX_JSON_DEPTH} levels"]),
    # (e) YAML alias bombs, wherever the YAML is
    "fit-config-bomb": (lambda c: ["fit", "--config", config(c, "bomb")],
                        ["config file bomb.yaml", BOMB, "alias bomb"]),
    "fit-config-bomb-at-top-level": (lambda c: ["fit", "--config", config(c, "bomb_at_top")],
                                     ["config file bomb_at_top.yaml", BOMB]),
    "fit-config-recursive-alias": (lambda c: ["fit", "--config", config(c, "recursive")],
                                   ["alias *loop is used inside its own anchor"]),
    "fit-config-bomb-in-a-string": (lambda c: ["fit", "--config",
                                               config(c, "bomb_in_a_string")],
                                    ["trainer.max_steps: expected int"]),
    "fit-trainer-group-config-bomb": (lambda c: fit(c, "f", "--trainer",
                                                    config(c, "trainer_bomb")),
                                      ["trainer_bomb.yaml", BOMB]),
    "fit-bomb-on-the-command-line": (lambda c: fit(c, "g", "--trainer.max_steps", _bomb()),
                                     ["trainer.max_steps: expected int"]),
    "population-config-bomb": (lambda c: ["population", "fit", "--config", POPULATION_TINY,
                                          "--config", config(c, "bomb")],
                               ["dynamo population fit", "config file bomb.yaml", BOMB]),
    "analyze-config-bomb": (lambda c: ["analyze", "--config", config(c, "bomb_at_top"),
                                       "--ckpt", c["ckpt"]],
                            ["dynamo analyze", "config file bomb_at_top.yaml", BOMB]),
}


def _run(ctx: dict, argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DYNAMO_TRACEBACK": ""}
    return subprocess.run([sys.executable, "-m", "dynamo_lightning.cli", *argv],
                          cwd=ctx["root"], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)


@pytest.fixture(scope="module")
def before(ctx: dict) -> dict[str, tuple[str, bytes]]:
    """The user's files before any case ran."""
    return _snapshot(Path(ctx["root"]))


@pytest.fixture(scope="module")
def cli_results(ctx: dict, before: dict) -> dict[str, subprocess.CompletedProcess]:
    """Every case, run as a user runs it (cwd a scratch folder): the alias bombs in fresh
    processes (a guard that failed would hang, and a subprocess has a timeout), the rest in
    this one (``cli_runner``), which the bombs' processes show behaves the same."""
    env = {"OMP_NUM_THREADS": "1", "DYNAMO_TRACEBACK": ""}
    return {name: (_run(ctx, argv) if "bomb" in name
                   else run_dynamo(argv, cwd=ctx["root"], env=env))
            for name, argv in ((n, CLI_CASES[n][0](ctx)) for n in CLI_CASES)}


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_refuses_the_lying_file_in_one_line(name: str, cli_results: dict) -> None:
    result = cli_results[name]
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith("dynamo")
    for expected in CLI_CASES[name][1]:
        assert expected in errors[0], errors[0]


def test_refusals_leave_the_users_files_as_they_were(cli_results: dict, ctx: dict,
                                                     before: dict) -> None:
    """No lying file was repaired, moved or deleted, and no run wrote a checkpoint."""
    root = Path(ctx["root"])
    assert _snapshot(root) == before
    hard_link = Path(ctx["hard_link"]) / "weights"
    assert (hard_link / "gru-s0.safetensors").samefile(hard_link / "gru-s1.safetensors")
    assert not list(root.glob("fit_*/checkpoints/*.ckpt"))


def test_configs_with_small_aliases_still_work(ctx: dict) -> None:
    """Anchors and aliases as people use them (one value reused) parse as before."""
    result = _run(ctx, [*fit(ctx, "h", "--config", config(ctx, "aliases")), "--print_config"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "theta_lr: 0.004" in result.stdout and "lr: 0.004" in result.stdout
