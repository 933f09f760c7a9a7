"""A fit killed with SIGKILL resumes with ``--ckpt_path last`` and ends exactly where an
uninterrupted fit ends: same embeddings, same learning-rate schedule, no epoch trained twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from paths import CONF, REPO

from dynamo_lightning.cli import main
from dynamo_lightning.module import read_checkpoint
from dynamo_lightning.population import Population

EPOCHS = 4
KILLED_IN = 2  # the subprocess dies during epoch 2 (0-based): epoch 1's checkpoint is the last


def run_config(root: Path, population: Path, kill: bool) -> Path:
    """The tiny fit config with a resumable checkpoint, an epoch log and maybe a killer."""
    config = yaml.safe_load((CONF / "dynamo_tiny.yaml").read_text())
    config["trainer"].update(default_root_dir=str(root), max_epochs=EPOCHS, deterministic=True)
    config["trainer"]["callbacks"] = [
        {"class_path": "dynamo_lightning.callbacks.LastCheckpoint",
         "init_args": {"dirpath": str(root / "checkpoints")}},
        {"class_path": "run_probes.EpochLog", "init_args": {"path": str(root / "epochs.jsonl")}},
        *([{"class_path": "run_probes.KillDuringEpoch", "init_args": {"epoch": KILLED_IN}}]
          if kill else [])]
    config["data"].update(population=str(population), cache_dir=str(root.parent / "cache"))
    path = root.parent / f"{root.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def epochs(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "epochs.jsonl").read_text().splitlines()]


def test_killed_fit_resumes_to_the_same_embeddings(tiny_population, tmp_path: Path) -> None:
    population = tiny_population.save(tmp_path / "population")
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert main(["fit", "--config", str(run_config(whole, population, kill=False))]) == 0

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"),
                                                        os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([sys.executable, "-m", "dynamo_lightning.cli", "fit", "--config",
                             str(run_config(broken, population, kill=True))],
                            env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    saved = read_checkpoint(broken / "checkpoints" / "last.ckpt")
    assert saved["epoch"] == KILLED_IN - 1  # the checkpoint of the last finished epoch

    resumed_config = run_config(broken, population, kill=False)
    assert main(["fit", "--config", str(resumed_config), "--ckpt_path", "last"]) == 0
    trained = [e["epoch"] for e in epochs(broken)]
    assert trained == [*range(KILLED_IN + 1), *range(KILLED_IN, EPOCHS)]  # one epoch redone
    reference = {e["epoch"]: e["lr"] for e in epochs(whole)}
    assert all(e["lr"] == pytest.approx(reference[e["epoch"]]) for e in epochs(broken))

    end_whole = read_checkpoint(whole / "checkpoints" / "last.ckpt")
    end_broken = read_checkpoint(broken / "checkpoints" / "last.ckpt")
    assert end_whole["global_step"] == end_broken["global_step"]
    torch.testing.assert_close(end_broken["state_dict"]["theta.weight"],
                               end_whole["state_dict"]["theta.weight"], rtol=0, atol=1e-6)
    assert (end_broken["lr_schedulers"][0]["last_epoch"]
            == end_whole["lr_schedulers"][0]["last_epoch"])


def population_config(root: Path, kill: bool) -> Path:
    """The tiny population run with a resumable checkpoint and maybe a killer."""
    config = yaml.safe_load((CONF / "population_tiny.yaml").read_text())
    config["trainer"].pop("enable_checkpointing", None)
    config["trainer"].update(default_root_dir=str(root), deterministic=True)
    config["trainer"]["callbacks"] = [
        {"class_path": "dynamo_lightning.callbacks.LastCheckpoint",
         "init_args": {"dirpath": str(root / "checkpoints")}},
        *([{"class_path": "run_probes.KillDuringEpoch", "init_args": {"epoch": 1}}]
          if kill else [])]
    config["population"]["path"] = str(root / "population")
    path = root.parent / f"{root.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_killed_population_training_resumes_to_the_same_members(tmp_path: Path) -> None:
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert main(["population", "fit", "--config", str(population_config(whole, False))]) == 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"),
                                                        os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([sys.executable, "-m", "dynamo_lightning.cli", "population", "fit",
                             "--config", str(population_config(broken, True))],
                            env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (broken / "population").exists()  # killed before writing it
    assert main(["population", "fit", "--config", str(population_config(broken, False)),
                 "--ckpt_path", "last"]) == 0
    done, reference = Population.load(broken / "population"), Population.load(
        whole / "population")
    assert done.ids == reference.ids  # the step-0 and step-3 snapshots survived the kill
    for member in reference:
        for name, value in member.state.items():
            torch.testing.assert_close(done[member.id].state[name], value, rtol=0, atol=1e-6)


@pytest.mark.parametrize("command", ["fit", "population fit"])
def test_sigterm_exits_non_zero_says_so_and_keeps_the_checkpoint(
        command: str, tiny_population, tmp_path: Path) -> None:
    """A scheduler's SIGTERM is not a success: Lightning stops the loop and would exit 0."""
    root = tmp_path / "run"
    if command == "fit":
        config = run_config(root, tiny_population.save(tmp_path / "population"), kill=False)
    else:
        config = population_config(root, kill=False)
    spec = yaml.safe_load(config.read_text())
    spec["trainer"]["callbacks"].append({"class_path": "run_probes.SignalDuringEpoch",
                                         "init_args": {"epoch": 1}})
    config.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"),
                                                        os.environ.get("PYTHONPATH", "")])}
    stopped = subprocess.run([sys.executable, "-m", "dynamo_lightning.cli", *command.split(),
                              "--config", str(config)],
                             env=env, capture_output=True, text=True, timeout=600)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    assert "interrupted by SIGTERM" in last and "--ckpt_path last" in last
    assert read_checkpoint(root / "checkpoints" / "last.ckpt")["epoch"] == 0  # epoch 0's


def test_a_second_fit_into_a_folder_in_use_is_refused_and_the_claim_ends_with_the_fit(
        tiny_population, tmp_path: Path) -> None:
    from dynamo_lightning.callbacks.last_checkpoint import LOCK_NAME

    root = tmp_path / "run"
    config = run_config(root, tiny_population.save(tmp_path / "population"), kill=False)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (root / "checkpoints").mkdir(parents=True)
        (root / "checkpoints" / LOCK_NAME).write_text(str(holder.pid))
        refused = subprocess.run([sys.executable, "-m", "dynamo_lightning.cli", "fit",
                                  "--config", str(config)], capture_output=True, text=True,
                                 timeout=600, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                     [str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])})
    finally:
        holder.kill()
        holder.wait()
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "in use by another fit" in refused.stderr.strip().splitlines()[-1]
    assert not (root / "checkpoints" / "last.ckpt").exists()
    assert main(["fit", "--config", str(config)]) == 0  # the holder is gone: taken over
    assert (root / "checkpoints" / "last.ckpt").is_file()
    assert not (root / "checkpoints" / LOCK_NAME).exists()


def test_a_model_setting_that_differs_from_the_checkpoint_is_refused_on_resume(
        tiny_population, tmp_path: Path, capsys) -> None:
    """LightningCLI merges the checkpoint's hyper-parameters over the flags: without this
    check `--model.meta.hidden_size 16` ran the checkpoint's width without a word."""
    root = tmp_path / "run"
    config = run_config(root, tiny_population.save(tmp_path / "population"), kill=False)
    spec = yaml.safe_load(config.read_text())
    spec["trainer"]["max_epochs"] = 1
    config.write_text(yaml.safe_dump(spec))
    assert main(["fit", "--config", str(config)]) == 0
    ckpt = root / "checkpoints" / "last.ckpt"
    width = read_checkpoint(ckpt)["hyper_parameters"]["meta"]["hidden_size"]
    capsys.readouterr()
    assert main(["test", "--config", str(config), "--ckpt_path", str(ckpt),
                 "--model.meta.hidden_size", str(width + 8)]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"model.meta.hidden_size {width + 8} (checkpoint: {width})" in line
    assert "leave the setting out to resume" in line
    assert main(["test", "--config", str(config), "--ckpt_path", str(ckpt)]) == 0
    assert main(["test", "--config", str(config), "--ckpt_path", str(ckpt),  # restated: fine
                 "--model.meta.hidden_size", str(width)]) == 0
