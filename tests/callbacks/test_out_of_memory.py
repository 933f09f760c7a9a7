"""Out of memory during a fit (``callbacks/out_of_memory.py``): ``last.ckpt`` is saved as the
model was after the last completed step, the command ends with one line naming the setting
to lower (status 2), and ``--ckpt_path last`` resumes from that checkpoint. The CUDA error
is raised on the CPU by a patched training step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from paths import CONF

from dynamo_lightning.cli import main
from dynamo_lightning.memory import is_out_of_memory, out_of_memory_line
from dynamo_lightning.module import DynamoModule, read_checkpoint
from dynamo_lightning.population.training import PopulationModule

OOM_AT_STEP = 3
MESSAGE = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
           "79.19 GiB of which 1.06 GiB is free.")


def raise_at(cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cls.training_step`` raises CUDA's out-of-memory error at step ``OOM_AT_STEP``."""
    step = cls.training_step

    def training_step(self, batch, batch_idx):
        if self.global_step == OOM_AT_STEP:
            raise torch.cuda.OutOfMemoryError(MESSAGE)
        return step(self, batch, batch_idx)

    monkeypatch.setattr(cls, "training_step", training_step)


def errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if ": error: " in line]


def test_a_fit_out_of_memory_saves_last_ckpt_and_says_what_to_lower(
        tiny_fit, tmp_path: Path, monkeypatch, capsys) -> None:
    run = tmp_path / "run"
    argv = ["fit", "--config", str(CONF / "dynamo_tiny.yaml"),
            f"--data.population={tiny_fit['population']}", f"--data.cache_dir={tmp_path}/c",
            f"--trainer.default_root_dir={run}"]
    raise_at(DynamoModule, monkeypatch)
    assert main(argv) == 2
    lines = errors(capsys.readouterr().err)
    ckpt = run / "checkpoints" / "last.ckpt"
    assert lines == [f"dynamo fit: error: CUDA out of memory (tried to allocate 2.00 GiB) at "
                     f"step {OOM_AT_STEP}; saved {ckpt}: lower data.members_per_batch (now 2), "
                     "then resume with --ckpt_path last"]
    assert read_checkpoint(ckpt)["global_step"] == OOM_AT_STEP  # the steps that completed
    monkeypatch.undo()
    assert main([*argv, "--ckpt_path", "last"]) == 0  # resumes from it and finishes
    assert read_checkpoint(ckpt)["global_step"] > OOM_AT_STEP


def test_population_training_out_of_memory_names_its_batch(tmp_path: Path, monkeypatch,
                                                           capsys) -> None:
    argv = ["population", "fit", "--config", str(CONF / "population_tiny.yaml"),
            f"--trainer.default_root_dir={tmp_path}/run",
            f"--population.path={tmp_path}/pop", "--trainer.enable_checkpointing=true",
            "--trainer.callbacks+=LastCheckpoint"]
    raise_at(PopulationModule, monkeypatch)
    assert main(argv) == 2
    (line,) = errors(capsys.readouterr().err)
    assert line.startswith(f"dynamo population: error: CUDA out of memory (tried to allocate "
                           f"2.00 GiB) at step {OOM_AT_STEP}; saved ")
    assert "lower data.batch_size (now 8), then resume with --ckpt_path last" in line
    assert list((tmp_path / "run").rglob("last.ckpt"))
    assert not (tmp_path / "pop").exists()  # nothing half-written


def test_without_a_checkpoint_callback_the_line_lists_the_sizes() -> None:
    err = torch.cuda.OutOfMemoryError(MESSAGE)
    assert is_out_of_memory(err)
    assert out_of_memory_line(err).startswith("CUDA out of memory (tried to allocate 2.00 GiB);"
                                              " lower the batch (data.batch_size")
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                       "can't allocate memory: you tried to allocate 43200000000 bytes.")
    assert is_out_of_memory(cpu)
    assert out_of_memory_line(cpu).startswith("out of memory (tried to allocate 43 GB);")
    assert not is_out_of_memory(RuntimeError("a bug"))
