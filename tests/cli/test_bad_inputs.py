"""Bad inputs and faults, as a user meets them: every CLI case runs ``dynamo`` in a
subprocess and must end with status 2 and one error line that names the problem, never a
traceback; every API case must raise one clear error. The fixtures build the damaged files
(broken checkpoints, a planted pickle, populations with bad manifests, links, NaN weights)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from paths import CONF
from safetensors.torch import load_file, save_file

from dynamo_lightning.population import Population, architectures

pytestmark = pytest.mark.slow  # about fifty fresh processes: a few minutes on two cores

TINY = str(CONF / "dynamo_tiny.yaml")
POPULATION_TINY = str(CONF / "population_tiny.yaml")


class Planted:
    """Unpickling this runs code: it would create the file named in the payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (Path.touch, (Path(self.marker),))


def _damaged_population(source: Path, target: Path, damage: Callable[[Path, dict], None]) -> str:
    """A copy of ``source`` with ``damage(dir, manifest)`` applied (manifest rewritten)."""
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    damage(target, manifest)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return str(target)


def _nan_weights(folder: Path, manifest: dict) -> None:
    entry = manifest["members"][0]
    state = load_file(folder / entry["file"])
    first = next(iter(state))
    state[first] = torch.full_like(state[first], float("nan"))
    save_file(state, folder / entry["file"])
    entry["sha256"] = hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest()


def _link_outside(folder: Path, manifest: dict) -> None:
    entry = manifest["members"][0]
    outside = folder.parent / f"{folder.name}_outside.safetensors"
    shutil.move(folder / entry["file"], outside)
    (folder / entry["file"]).symlink_to(outside)


def _truncate_weights(folder: Path, manifest: dict) -> None:
    path = folder / manifest["members"][0]["file"]
    path.write_bytes(path.read_bytes()[:100])


def _changed_weights(folder: Path, manifest: dict) -> None:
    """Same ids, other weights: a retrained member under an old name."""
    entry = manifest["members"][0]
    state = load_file(folder / entry["file"])
    state = {k: v + 0.01 for k, v in state.items()}
    save_file(state, folder / entry["file"])
    entry["sha256"] = hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ctx(tiny_fit: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Paths of the good run and of every damaged input."""
    root = tmp_path_factory.mktemp("bad_inputs")
    pop = Path(tiny_fit["population"])
    ckpt = Path(tiny_fit["ckpt"])
    (root / "a_file").write_text("not a directory")
    (root / "junk.ckpt").write_text("not a checkpoint")
    (root / "truncated.ckpt").write_bytes(ckpt.read_bytes()[:3000])
    torch.save({"state_dict": {}, "hyper_parameters": {}, "x": Planted(root / "PWNED")},
               root / "planted.ckpt")
    (root / "empty").mkdir()
    foreign = root / "notes"
    foreign.mkdir()
    (foreign / "my_notes.txt").write_text("a week of work")
    populations = {
        "bad_json": lambda d, m: None,
        "float_schema": lambda d, m: m.update(schema_version=1.0),
        "no_members": lambda d, m: m.update(members=[]),
        "nan_weights": _nan_weights,
        "link_outside": _link_outside,
        "truncated_weights": _truncate_weights,
        "changed_weights": _changed_weights,
    }
    paths = {name: _damaged_population(pop, root / name, damage)
             for name, damage in populations.items()}
    (root / "bad_json" / "manifest.json").write_text("{ not json")
    cnn = architectures.build("cnn", num_members=2, seeds=[0, 1], input_size=8,
                              output_size=10, hidden_size=4)
    gru = architectures.build("gru", num_members=1, seeds=[0], input_size=8, output_size=10,
                              hidden_size=4)
    meta = [{"architecture": "cnn", "task": "digits", "seed": s} for s in (0, 1)]
    mixed = Population.concat([  # one meta-model cannot emulate both families
        Population.from_stack("cnn", cnn, ["cnn-0", "cnn-1"], meta),
        Population.from_stack("gru", gru, ["gru-0"], [{"architecture": "gru",
                                                       "task": "digits", "seed": 0}])])
    paths["mixed_families"] = str(mixed.save(root / "mixed_families"))
    return {"root": str(root), "pop": str(pop), "ckpt": str(ckpt), **paths}


def fit(ctx: dict, name: str, *extra: str, population: str | None = None) -> list[str]:
    return ["fit", "--config", TINY, f"--data.population={population or ctx['pop']}",
            f"--data.cache_dir={ctx['root']}/cache", f"--trainer.default_root_dir="
            f"{ctx['root']}/fit_{name}", *extra]


def analyze(ctx: dict, *extra: str, ckpt: str | None = None) -> list[str]:
    return ["analyze", "--ckpt", ckpt or ctx["ckpt"], "--out", f"{ctx['root']}/report",
            "--no-test", "--no-progress", *extra]


def place(ctx: dict, *extra: str, ckpt: str | None = None) -> list[str]:
    return ["place", "--ckpt_path", ckpt or ctx["ckpt"], "--population", ctx["pop"],
            "--out", f"{ctx['root']}/placement", "--no-progress", *extra]


def population(ctx: dict, *extra: str) -> list[str]:
    return ["population", "fit", "--config", POPULATION_TINY,
            f"--trainer.default_root_dir={ctx['root']}/pop_run",
            f"--population.path={ctx['root']}/pop_out", *extra]


CLI_CASES: dict[str, tuple[Callable[[dict], list[str]], str]] = {
    # dynamo fit: the population
    "fit-missing-population": (lambda c: fit(c, "a", population=f"{c['root']}/nowhere"),
                               "nowhere not found"),
    "fit-population-is-a-file": (lambda c: fit(c, "b", population=f"{c['root']}/a_file"),
                                 "a_file"),
    "fit-population-without-manifest": (lambda c: fit(c, "c", population=f"{c['root']}/empty"),
                                        "manifest.json"),
    "fit-manifest-not-json": (lambda c: fit(c, "d", population=c["bad_json"]), "manifest"),
    "fit-schema-version-float": (lambda c: fit(c, "e", population=c["float_schema"]),
                                 "schema_version"),
    "fit-no-members": (lambda c: fit(c, "f", population=c["no_members"]), "no members"),
    "fit-nan-weights": (lambda c: fit(c, "g", population=c["nan_weights"]),
                        "NaN or infinite"),
    "fit-link-outside": (lambda c: fit(c, "h", population=c["link_outside"]), "outside"),
    "fit-truncated-weights": (lambda c: fit(c, "i", population=c["truncated_weights"]),
                              "checksum mismatch"),
    "fit-recurrent-and-feed-forward": (lambda c: fit(c, "j", "--data.task",
                                                     '{"name": "digits"}',
                                                     population=c["mixed_families"]),
                                       "either recurrent or feed-forward members"),
    # dynamo fit: settings
    "fit-unknown-cell": (lambda c: fit(c, "k", "--model.meta.cell", "grux"), "grux"),
    "fit-unknown-conditioning": (lambda c: fit(c, "l", "--model.meta.conditioning", "nope"),
                                 "unknown conditioning 'nope'"),
    "fit-zero-embedding-dim": (lambda c: fit(c, "m", "--model.embedding_dim", "0"),
                               "embedding_dim must be a positive integer"),
    "fit-zero-components": (lambda c: fit(c, "n", "--data.num_components", "0"),
                            "num_components must be a positive integer"),
    "fit-negative-members-per-batch": (lambda c: fit(c, "o", "--data.members_per_batch", "-1"),
                                       "members_per_batch"),
    "fit-unknown-task": (lambda c: fit(c, "p", "--data.task", '{"name": "nope"}'),
                         "unknown task 'nope'"),
    "fit-typo-key": (lambda c: fit(c, "q", "--model.embeding_dim", "2"), "embeding_dim"),
    # a prefix of a flag is not that flag (argparse's abbreviations are off)
    "fit-abbreviated-flag": (lambda c: fit(c, "q2", "--trainer.max_epoch", "1"),
                             "unrecognized arguments: --trainer.max_epoch"),
    "fit-wrong-type": (lambda c: fit(c, "q3", "--trainer.max_epochs", "ten"),
                       "trainer.max_epochs: expected int or None, got 'ten'"),
    "fit-missing-config": (lambda c: ["fit", "--config", f"{c['root']}/none.yaml"],
                           "none.yaml"),
    "fit-unwritable-root": (lambda c: [*fit(c, "r"), f"--trainer.default_root_dir="
                                       f"{c['root']}/a_file/run"], "cannot write there"),
    "fit-missing-ckpt": (lambda c: fit(c, "s", "--ckpt_path", f"{c['root']}/none.ckpt"),
                         "none.ckpt not found"),
    "fit-junk-ckpt": (lambda c: fit(c, "t", "--ckpt_path", f"{c['root']}/junk.ckpt"),
                      "not a readable checkpoint"),
    # dynamo test / validate
    "test-planted-pickle": (lambda c: ["test", *fit(c, "u", "--ckpt_path",
                                                    f"{c['root']}/planted.ckpt")[1:]],
                            "never loaded"),
    "test-truncated-ckpt": (lambda c: ["test", *fit(c, "v", "--ckpt_path",
                                                    f"{c['root']}/truncated.ckpt")[1:]],
                            "truncated"),
    "test-changed-population": (lambda c: ["test", *fit(c, "w", "--ckpt_path", c["ckpt"],
                                                        population=c["changed_weights"])[1:]],
                                "not the one this checkpoint was fitted on"),
    "validate-junk-ckpt": (lambda c: ["validate", *fit(c, "x", "--ckpt_path",
                                                       f"{c['root']}/junk.ckpt")[1:]],
                           "not a readable checkpoint"),
    # dynamo analyze
    "analyze-missing-ckpt": (lambda c: analyze(c, ckpt=f"{c['root']}/none.ckpt"),
                             "not found"),
    "analyze-junk-ckpt": (lambda c: analyze(c, ckpt=f"{c['root']}/junk.ckpt"),
                          "not a readable checkpoint"),
    "analyze-planted-pickle": (lambda c: analyze(c, ckpt=f"{c['root']}/planted.ckpt"),
                               "never loaded"),
    "analyze-directory-as-ckpt": (lambda c: analyze(c, ckpt=c["root"]), "not found"),
    "analyze-unwritable-out": (lambda c: [*analyze(c), "--out", f"{c['root']}/a_file/r"],
                               "cannot write there"),
    "analyze-changed-population": (lambda c: analyze(c, "--population",
                                                     c["changed_weights"]), "checksum"),
    "analyze-not-a-population": (lambda c: analyze(c, "--population", f"{c['root']}/empty"),
                                 "manifest.json not found"),
    "analyze-bad-pairs": (lambda c: analyze(c, "--pairs", "a"), "--pairs"),
    "analyze-grid-resolution-1": (lambda c: analyze(c, "--grid-resolution", "1"),
                                  "grid_resolution"),
    "analyze-zero-trials": (lambda c: analyze(c, "--trials", "0"),
                            "trials must be a positive integer"),
    "analyze-unknown-baseline": (lambda c: analyze(c, "--baselines", "svcca"), "svcca"),
    "analyze-unknown-device": (lambda c: analyze(c, "--device", "gpu9"), "--device"),
    "analyze-no-ckpt": (lambda c: ["analyze", "--out", f"{c['root']}/report_x"],
                        "required: ckpt_path"),
    # dynamo place
    "place-missing-ckpt": (lambda c: place(c, ckpt=f"{c['root']}/none.ckpt"), "not found"),
    "place-not-a-population": (lambda c: [*place(c), "--population", f"{c['root']}/empty"],
                               "manifest.json not found"),
    "place-unwritable-out": (lambda c: [*place(c), "--out", f"{c['root']}/a_file/p"],
                             "cannot write there"),
    "place-unknown-key": (lambda c: place(c, "--key", "colour"), "colour"),
    # dynamo population fit
    "population-path-is-a-file": (lambda c: [*population(c),
                                              f"--population.path={c['root']}/a_file"],
                                  "a_file"),
    "population-path-holds-notes": (lambda c: [*population(c),
                                               f"--population.path={c['root']}/notes"],
                                    "my_notes.txt"),
    "population-unknown-architecture": (lambda c: population(c, "--model.architectures",
                                                             "[nope]"),
                                        "unknown architecture 'nope'"),
    "population-unknown-task": (lambda c: population(c, "--data.tasks", '[{"name": "nope"}]'),
                                "unknown task 'nope'"),
    "population-unknown-neurogym-env": (
        lambda c: population(c, "--data.tasks",
                             '[{"name": "neurogym", "config": {"env": "yang19.dm1"}}]'),
        "unknown neurogym env 'yang19.dm1' (close: yang19.dm1-v0"),
    "population-neurogym-envs-differ": (
        lambda c: population(c, "--data.tasks", '[{"name": "neurogym", "config": {"env": '
                                                '["yang19.dm1-v0", "GoNogo-v0"]}}]'),
        "neurogym envs differ in observation or action size"),
    "population-zero-batch": (lambda c: population(c, "--data.batch_size", "0"),
                              "batch_size must be a positive integer"),
    "population-zero-width": (lambda c: population(c, "--model.hidden_sizes", "[0]"),
                              "hidden_sizes[0] must be a positive integer"),
    "population-zero-lr": (lambda c: population(c, "--model.lr", "0"), "lr"),
    # dynamo demo and the dispatcher
    "demo-unwritable-out": (lambda c: ["demo", "--out", f"{c['root']}/a_file/demo"],
                            "a_file"),
    "demo-bad-max-steps": (lambda c: ["demo", "--max-steps", "many"], "many"),
    "demo-abbreviated-flag": (lambda c: ["demo", "--max_epoch", "1"],
                              "unrecognized arguments: --max_epoch"),
    "population-abbreviated-flag": (lambda c: population(c, "--trainer.max_step", "1"),
                                    "unrecognized arguments: --trainer.max_step"),
    "unknown-command": (lambda c: ["fitt"], "unknown command 'fitt'"),
}

if not torch.cuda.is_available():  # Lightning's MisconfigurationException is one line too
    CLI_CASES["fit-gpu-without-one"] = (
        lambda c: fit(c, "q4", "--trainer.accelerator", "gpu", "--trainer.devices", "1"),
        "No supported gpu backend found")


@pytest.fixture(scope="module")
def cli_results(ctx: dict) -> dict[str, subprocess.CompletedProcess]:
    """Every CLI case, run as a user runs it (a fresh process, cwd a scratch folder), two at
    a time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DYNAMO_TRACEBACK": ""}

    def run(name: str) -> tuple[str, subprocess.CompletedProcess]:
        argv = CLI_CASES[name][0](ctx)
        return name, subprocess.run([sys.executable, "-m", "dynamo_lightning.cli", *argv],
                                    cwd=ctx["root"], env=env, capture_output=True, text=True,
                                    timeout=600)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, CLI_CASES))


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_reports_the_mistake_in_one_line(name: str, cli_results: dict,
                                             ctx: dict) -> None:
    result = cli_results[name]
    expected = CLI_CASES[name][1]
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith("dynamo") and expected in errors[0], errors[0]
    assert not (Path(ctx["root"]) / "PWNED").exists()  # the planted pickle never ran


def test_one_line_errors_lose_no_work(cli_results: dict, ctx: dict) -> None:
    """Failed runs wrote no checkpoint, and the user's notes are where they were."""
    root = Path(ctx["root"])
    assert not list(root.glob("fit_*/checkpoints/*.ckpt"))
    assert (root / "notes" / "my_notes.txt").read_text() == "a week of work"
    assert not (root / "pop_out").exists() or not any((root / "pop_out").iterdir())


def test_traceback_flag_shows_the_trace(ctx: dict) -> None:
    argv = [*analyze(ctx, ckpt=f"{ctx['root']}/junk.ckpt"), "--traceback"]
    result = subprocess.run([sys.executable, "-m", "dynamo_lightning.cli", *argv],
                            cwd=ctx["root"], capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "Traceback" in result.stderr
    assert "CheckpointError" in result.stderr


def test_a_checkpoint_of_other_members_is_refused_before_any_trajectory_is_built(ctx: dict):
    """The checksum is compared before the data module runs the population: no cache entry
    is written for a run that is then refused."""
    cache = Path(ctx["root"]) / "cache_refused"
    argv = ["test", *fit(ctx, "w2", "--ckpt_path", ctx["ckpt"],
                         population=ctx["changed_weights"])[1:], f"--data.cache_dir={cache}"]
    result = subprocess.run([sys.executable, "-m", "dynamo_lightning.cli", *argv],
                            cwd=ctx["root"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "not the one this checkpoint" in result.stderr
    assert not cache.exists() or not any(cache.iterdir())
