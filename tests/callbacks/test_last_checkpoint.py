"""LastCheckpoint replaces ``last.ckpt`` atomically: the new file is written beside the old
one and renamed over it, so a save that dies midway (or whose temporary lives on another
filesystem) never leaves a torn or empty checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from dynamo_lightning.callbacks import LastCheckpoint
from dynamo_lightning.callbacks.last_checkpoint import LOCK_NAME, claim_folder


def fake_trainer(write) -> SimpleNamespace:
    """The parts of a Trainer that ``_save_checkpoint`` touches, saving through ``write``."""
    return SimpleNamespace(save_checkpoint=lambda path, weights_only=False: write(Path(path)),
                           is_global_zero=True, global_step=7, loggers=[],
                           strategy=SimpleNamespace(barrier=lambda name=None: None))


def test_the_new_checkpoint_is_written_beside_the_old_and_renamed_over_it(
        tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old epoch")
    written: list[Path] = []

    def write(path: Path) -> None:
        assert path.parent == tmp_path  # same folder, so same filesystem: a rename, not a copy
        assert not path.name.endswith(".ckpt")  # `--ckpt_path last` never picks it up
        assert target.read_bytes() == b"old epoch"  # untouched while the new one is written
        path.write_bytes(b"new epoch")
        written.append(path)

    callback = LastCheckpoint(dirpath=tmp_path)
    callback._save_checkpoint(fake_trainer(write), str(target))
    assert target.read_bytes() == b"new epoch"
    assert not written[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert callback._last_checkpoint_saved == str(target)
    assert callback._last_global_step_saved == 7


def test_a_save_that_dies_midway_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old epoch")

    def write(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        LastCheckpoint(dirpath=tmp_path)._save_checkpoint(fake_trainer(write), str(target))
    assert target.read_bytes() == b"old epoch"


def test_a_folder_another_live_fit_writes_into_is_refused(tmp_path: Path) -> None:
    """Two runs with ``logger: false`` and one default_root_dir share a checkpoint folder."""
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(str(other.pid))
        with pytest.raises(ValueError, match=rf"in use by another fit \(process {other.pid}\)"):
            claim_folder(tmp_path)
    finally:
        other.kill()
        other.wait()
    lock = claim_folder(tmp_path)  # the holder is gone: its claim is taken over
    assert lock.read_text() == str(os.getpid())
    assert claim_folder(tmp_path) == lock  # this process again (a second fit in one session)

