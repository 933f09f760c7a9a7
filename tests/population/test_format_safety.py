"""The population format never loses a user's data and never reads outside a population:
saves refuse foreign files, killed saves are recovered, the writer checks its path first,
and loading refuses links outside, non-finite weights, shared files and empty manifests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import safetensors.torch
import torch

import dynamo_lightning as dl
from dynamo_lightning.population import format as fmt
from dynamo_lightning.population.architectures import build
from dynamo_lightning.population.datamodule import TaskDataModule
from dynamo_lightning.population.destination import (
    check_destination,
    new_token,
    side_dir,
)
from dynamo_lightning.population.training import PopulationModule
from dynamo_lightning.population.writer import PopulationWriter


def _population(seeds: list[int], prefix: str = "gru") -> dl.Population:
    stack = build("gru", num_members=len(seeds), seeds=seeds, input_size=2, output_size=2,
                  hidden_size=4)
    return dl.Population.from_stack("gru", stack, [f"{prefix}-{s}" for s in seeds])


@pytest.fixture()
def old() -> dl.Population:
    return _population([0, 1])


@pytest.fixture()
def new() -> dl.Population:
    return _population([5, 6, 7], prefix="new")


@pytest.fixture()
def saved(old: dl.Population, tmp_path: Path) -> Path:
    return old.save(tmp_path / "pop")


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def _edit_manifest(root: Path, edit) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    edit(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


# ---------------------------------------------------------------------- 1: foreign files
def test_save_refuses_a_population_dir_holding_foreign_files(saved: Path, old: dl.Population,
                                                             new: dl.Population) -> None:
    (saved / "notes.txt").write_text("my notes")
    (saved / "report").mkdir()
    (saved / "report" / "figure.png").write_bytes(b"png")
    with pytest.raises(dl.PopulationFormatError) as info:
        new.save(saved)
    message = str(info.value)
    for word in (str(saved), "2 entries", "notes.txt", "report/", "new or empty directory"):
        assert word in message
    assert (saved / "notes.txt").read_text() == "my notes"
    assert (saved / "report" / "figure.png").read_bytes() == b"png"
    assert dl.Population.load(saved).checksum == old.checksum
    assert _siblings(saved) == ["pop"]


def test_save_refuses_foreign_files_inside_weights(saved: Path, new: dl.Population) -> None:
    (saved / "weights" / "README.txt").write_text("mine")
    with pytest.raises(dl.PopulationFormatError, match=r"weights/README\.txt"):
        new.save(saved)
    assert (saved / "weights" / "README.txt").read_text() == "mine"


def test_saving_over_a_population_replaces_it(saved: Path, new: dl.Population) -> None:
    new.save(saved, description="retrained")
    loaded = dl.Population.load(saved)
    assert loaded.ids == new.ids and loaded.checksum == new.checksum
    assert _siblings(saved) == ["pop"]


def test_check_destination_accepts_absent_empty_and_population(saved: Path,
                                                               tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for ok in (tmp_path / "a" / "b" / "absent", tmp_path / "empty", saved):
        assert check_destination(str(ok)) == ok
    assert not (tmp_path / "a").exists()  # the check changes nothing


@pytest.mark.parametrize("case", ["file", "parent_is_file", "symlink", "no_manifest"])
def test_check_destination_refuses_with_the_reason(tmp_path: Path, saved: Path,
                                                   case: str) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "weights").mkdir()
    (tmp_path / "link").symlink_to(saved)
    path, words = {"file": (tmp_path / "file.txt", ["is a file"]),
                   "parent_is_file": (tmp_path / "file.txt" / "pop", ["file.txt is a file"]),
                   "symlink": (tmp_path / "link", ["symbolic link", str(saved)]),
                   "no_manifest": (tmp_path / "mine", ["weights/", "did not write"])}[case]
    with pytest.raises(dl.PopulationFormatError) as info:
        check_destination(path)
    assert str(path) in str(info.value)
    for word in words:
        assert word in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_check_destination_refuses_an_unwritable_parent(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(dl.PopulationFormatError, match="not writable"):
            check_destination(locked / "pop")
    finally:
        locked.chmod(0o700)


# ---------------------------------------------------------------------- 2: interrupted saves
def _half_swapped(saved: Path, new: dl.Population, stage: str, pid: int) -> str:
    """Lay out what a save of ``new`` over ``saved`` by process ``pid`` leaves at ``stage``."""
    token = new_token(pid)
    staged = new.save(saved.parent / "staging")
    if stage == "writing":  # killed while writing: a partial new directory
        (staged / "manifest.json").unlink()
        staged.rename(side_dir(saved, "new", token))
    elif stage == "renamed_old":  # killed between the two renames: target missing
        saved.rename(side_dir(saved, "old", token))
        staged.rename(side_dir(saved, "new", token))
    elif stage == "renamed_old_no_new":  # as above with the new side gone: roll back
        saved.rename(side_dir(saved, "old", token))
        shutil.rmtree(staged)
    elif stage == "swapped":  # killed before deleting the old population
        saved.rename(side_dir(saved, "old", token))
        staged.rename(saved)
    return token


EXPECTED = {"writing": "old", "renamed_old": "new", "renamed_old_no_new": "old",
            "swapped": "new"}


@pytest.mark.parametrize("stage", sorted(EXPECTED))
@pytest.mark.parametrize("via", ["load", "save"])
def test_interrupted_save_is_recovered_on_next_load_or_save(
        saved: Path, old: dl.Population, new: dl.Population, stage: str, via: str) -> None:
    _half_swapped(saved, new, stage, _dead_pid())
    assert _siblings(saved) != ["pop"]
    expected = {"old": old, "new": new}[EXPECTED[stage]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if via == "load":
            assert dl.Population.load(saved).checksum == expected.checksum
        else:
            third = _population([9])
            third.save(saved)
            assert dl.Population.load(saved).checksum == third.checksum
    restored = [str(w.message) for w in caught if "interrupted save" in str(w.message)]
    if stage.startswith("renamed_old"):  # the target was missing: say what was done
        assert len(restored) == 1 and str(saved) in restored[0]
        assert ("finished" if EXPECTED[stage] == "new" else "rolled back") in restored[0]
    else:
        assert restored == []
    assert _siblings(saved) == ["pop"]


def test_recovery_leaves_live_saves_and_other_files_alone(saved: Path, new: dl.Population,
                                                          old: dl.Population) -> None:
    live = side_dir(saved, "new", new_token(os.getpid()))  # a save still running (us)
    other_host = saved.parent / f".pop.dynamo-new-zzzzzz-{_dead_pid()}-0123abcd"
    mine = [saved.parent / ".pop.tmp-1234", saved.parent / ".pop.dynamo-old-backup", live,
            other_host, side_dir(saved.parent / "other", "new", new_token(_dead_pid()))]
    for path in mine:
        path.mkdir()
        (path / "keep.txt").write_text("keep")
    stale = side_dir(saved, "new", new_token(_dead_pid()))
    stale.mkdir()
    assert dl.Population.load(saved).checksum == old.checksum
    assert not stale.exists()
    assert all((path / "keep.txt").read_text() == "keep" for path in mine)


KILLER = """
import os, signal, sys
import safetensors.torch
import dynamo_lightning as dl
from dynamo_lightning.population import destination

source, target, point = sys.argv[1], sys.argv[2], sys.argv[3]
pop = dl.Population.load(source)
real_replace, real_save = os.replace, safetensors.torch.save_file
calls = {"replace": 0, "save_file": 0}

def counted(name, real, limit):
    def run(*args, **kwargs):
        calls[name] += 1
        if calls[name] == limit:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return run

if point == "writing":
    safetensors.torch.save_file = counted("save_file", real_save, 2)
else:
    os.replace = counted("replace", real_replace, 2)  # 2nd rename: new -> target
pop.save(target)
"""


@pytest.mark.parametrize(("point", "winner"), [("writing", "old"), ("between_renames", "new")])
def test_save_killed_by_sigkill_is_recovered(saved: Path, old: dl.Population,
                                             new: dl.Population, point: str,
                                             winner: str) -> None:
    source = new.save(saved.parent / "source")
    proc = subprocess.run([sys.executable, "-c", KILLER, str(source), str(saved), point],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    shutil.rmtree(source)
    leftovers = [n for n in _siblings(saved) if n != "pop"]
    assert leftovers and all(".pop.dynamo-" in n for n in leftovers)
    expected = {"old": old, "new": new}[winner]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert dl.Population.load(saved).checksum == expected.checksum
    assert _siblings(saved) == ["pop"]


# ---------------------------------------------------------------------- 3: the writer
class _CountBatches(pl.Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_start(self, *args: object) -> None:
        self.batches += 1


@pytest.mark.parametrize("case", ["foreign", "parent_is_file"])
def test_writer_checks_its_path_before_training(tmp_path: Path, case: str) -> None:
    if case == "foreign":
        path = tmp_path / "out"
        path.mkdir()
        (path / "notes.txt").write_text("keep")
        word = "notes.txt"
    else:
        (tmp_path / "file.txt").write_text("x")
        path, word = tmp_path / "file.txt" / "pop", "is a file"
    tasks = [{"name": "flipflop", "config": {"n_bits": 2, "seq_len": 8}}]
    counter = _CountBatches()
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, default_root_dir=tmp_path,
                         callbacks=[PopulationWriter(path=str(path), eval_trials=4), counter])
    module = PopulationModule(tasks=tasks, hidden_sizes=[4], seeds=[0])
    with pytest.raises(dl.PopulationFormatError, match=word):
        trainer.fit(module, TaskDataModule(tasks, batch_size=4, steps_per_epoch=2))
    assert counter.batches == 0
    if case == "foreign":
        assert sorted(p.name for p in path.iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------------- 4: what loads
@pytest.mark.parametrize("what", ["file", "weights_dir"])
def test_links_outside_the_population_are_refused(saved: Path, tmp_path: Path,
                                                  what: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    if what == "file":
        target = outside / "gru-1.safetensors"
        (saved / "weights" / "gru-1.safetensors").rename(target)
        (saved / "weights" / "gru-1.safetensors").symlink_to(target)
    else:
        (saved / "weights").rename(outside / "weights")
        (saved / "weights").symlink_to(outside / "weights")
        target = outside / "weights" / "gru-0.safetensors"
    with pytest.raises(dl.PopulationFormatError) as info:
        dl.Population.load(saved)
    message = str(info.value)
    member = "'gru-1'" if what == "file" else "'gru-0'"
    for word in (member, str(target), "outside the population directory"):
        assert word in message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused(saved: Path, old: dl.Population, value: float,
                                        tmp_path: Path) -> None:
    file = saved / "weights" / "gru-1.safetensors"
    tensors = safetensors.torch.load_file(file)
    tensors["weight_hh"][0, 0] = value
    safetensors.torch.save_file(tensors, file)
    _edit_manifest(saved, lambda m: m["members"][1].update(sha256=fmt.sha256_file(file)))
    with pytest.raises(dl.PopulationFormatError) as info:
        dl.Population.load(saved)
    assert all(w in str(info.value) for w in ("'gru-1'", "'weight_hh'", str(file), "NaN"))
    bad = dl.Member("bad", "gru", old[0].config, {}, tensors)
    with pytest.raises(ValueError, match=r"'bad'.*'weight_hh'"):
        dl.Population([bad]).save(tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_two_members_sharing_a_weights_file_are_refused(saved: Path) -> None:
    def share(manifest: dict) -> None:
        first = manifest["members"][0]
        manifest["members"][1].update(file=first["file"], sha256=first["sha256"])

    _edit_manifest(saved, share)
    with pytest.raises(dl.PopulationFormatError) as info:
        dl.Population.load(saved)
    assert all(w in str(info.value) for w in ("'gru-0'", "'gru-1'", "gru-0.safetensors"))


@pytest.mark.parametrize("version", [1.0, True, "1"])
def test_schema_version_must_be_exactly_the_integer(saved: Path, version: object) -> None:
    _edit_manifest(saved, lambda m: m.update(schema_version=version))
    with pytest.raises(dl.PopulationFormatError, match="unknown schema_version"):
        dl.Population.load(saved)


def test_populations_without_members_neither_load_nor_save(saved: Path, tmp_path: Path) -> None:
    _edit_manifest(saved, lambda m: m.update(members=[]))
    with pytest.raises(dl.PopulationFormatError, match="no members") as info:
        dl.Population.load(saved)
    assert str(saved / "manifest.json") in str(info.value)
    with pytest.raises(ValueError, match="no members"):
        dl.Population([]).save(tmp_path / "empty")
    assert not (tmp_path / "empty").exists()


def test_weights_file_tensor_stays_on_load(saved: Path, old: dl.Population) -> None:
    """The checks above do not reject a sound population."""
    loaded = dl.Population.load(saved)
    assert loaded.ids == old.ids
    assert all(torch.equal(a.state[k], b.state[k]) for a, b in zip(old, loaded, strict=True)
               for k in a.state)
