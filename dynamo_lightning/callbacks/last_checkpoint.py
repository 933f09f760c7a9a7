"""LastCheckpoint: one resumable checkpoint, ``<run>/checkpoints/last.ckpt``, kept current.

Lightning's ``ModelCheckpoint(save_last=True, save_top_k=0)`` writes ``last.ckpt`` only when
the fit ends, so a run killed at epoch 23 of 30 leaves nothing to resume. This is a
``ModelCheckpoint`` configured so that the one file it keeps *is* ``last.ckpt``: rewritten
every ``every_n_epochs`` epochs (or ``every_n_train_steps`` steps), each time atomically,
so a kill at any moment leaves the previous or the new checkpoint, never a torn one. Resume
with ``--ckpt_path last``. The new checkpoint is written to ``.last.ckpt.partial`` beside
the old one, flushed to disk and renamed over it: Lightning's own save goes through a
temporary file in the system's temp folder, and where that is another filesystem than the run
folder the final move is a copy into the truncated target (a kill during it left 0 bytes).

Without a ``dirpath`` it writes into the run's own folder, ``<run_dir>/checkpoints`` (the
folder that holds the run's config copy, figures and map; see
:func:`~dynamo_lightning.callbacks.figures.run_dir`), for every logger alike; Lightning's
``ModelCheckpoint`` would nest ``<save_dir>/<name>/<version>`` once more for a W&B run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from weakref import proxy

from lightning.pytorch.callbacks import ModelCheckpoint
from typing_extensions import override

from dynamo_lightning.callbacks.figures import run_dir
from dynamo_lightning.callbacks.out_of_memory import save_on_out_of_memory
from dynamo_lightning.checks import positive_int
from dynamo_lightning.files import fsync

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = ["LOCK_NAME", "LastCheckpoint", "claim_folder"]


class LastCheckpoint(ModelCheckpoint):
    """``<dirpath>/last.ckpt``, rewritten during the fit, for ``--ckpt_path last``.

    Args:
        dirpath: the folder; default ``<run_dir>/checkpoints``, the run's own folder.
        every_n_epochs: save every this many epochs (default 1, when no step interval).
        every_n_train_steps: save every this many optimiser steps instead.

    Example::

        trainer = Trainer(callbacks=[LastCheckpoint("runs/my_fit/checkpoints")])
        trainer.fit(module, datamodule, ckpt_path="last")  # resumes if one was written
    """

    _own_folder: bool = False  # no dirpath given: the run's folder, settled at setup
    _lock: Path | None = None  # the folder's claim while this process fits into it

    def __init__(self, dirpath: str | Path | None = None, every_n_epochs: int | None = None,
                 every_n_train_steps: int | None = None) -> None:
        if every_n_epochs is not None:
            positive_int("every_n_epochs", every_n_epochs, "LastCheckpoint")
        if every_n_train_steps is not None:
            positive_int("every_n_train_steps", every_n_train_steps, "LastCheckpoint")
            if every_n_epochs is not None:
                raise ValueError("LastCheckpoint: give every_n_epochs or every_n_train_steps, "
                                 "not both")
        super().__init__(dirpath=dirpath, filename=self.CHECKPOINT_NAME_LAST, monitor=None,
                         save_top_k=1, save_last=False, enable_version_counter=False,
                         every_n_epochs=every_n_epochs, every_n_train_steps=every_n_train_steps)
        self._own_folder = dirpath is None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._own_folder:  # Lightning broadcasts rank 0's choice in super().setup
            self.dirpath = str(run_dir(trainer) / "checkpoints")
        super().setup(trainer, pl_module, stage)
        if stage == "fit" and trainer.is_global_zero:
            self._lock = claim_folder(Path(self.dirpath))

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._release()
        super().teardown(trainer, pl_module, stage)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        save_on_out_of_memory(self, trainer, pl_module, exception)  # last.ckpt, one line
        self._release()  # Lightning skips teardown when the fit raises

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.unlink(missing_ok=True)
            self._lock = None

    @override
    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        """Lightning's ``_save_checkpoint``, through a partial file beside ``filepath``."""
        target = Path(filepath)
        partial = target.with_name(f".{target.name}.partial")  # not *.ckpt: never resumed
        trainer.save_checkpoint(str(partial), self.save_weights_only)
        if trainer.is_global_zero:
            fsync(partial)
            os.replace(partial, target)
            fsync(target.parent)
        trainer.strategy.barrier("LastCheckpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:  # as Lightning does, once the file is in place
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))


LOCK_NAME = ".fit.pid"
"""The file that says which live process fits into a checkpoint folder."""


def claim_folder(folder: Path) -> Path:
    """Claim ``folder`` for this process's fit: ``<folder>/.fit.pid`` holds its pid.

    Two fits into one folder (two runs with ``logger: false`` and the same
    ``default_root_dir``) would overwrite each other's ``last.ckpt``; the second is refused.
    A claim left by a process that is gone (killed) is taken over, so ``--ckpt_path last``
    resumes after a crash.

    Raises:
        ValueError: a live process other than this one holds the claim.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _live_owner(lock)
            if owner is not None and owner != os.getpid():
                raise ValueError(
                    f"checkpoint folder {folder} is in use by another fit (process {owner}): "
                    "its last.ckpt would be overwritten; give this run its own folder "
                    "(trainer.default_root_dir, or a logger, which versions the runs)") from None
            lock.unlink(missing_ok=True)  # a dead process's claim, or our own
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return lock
    raise ValueError(f"checkpoint folder {folder}: could not claim it ({lock} keeps coming "
                     "back); is another fit starting there?")


def _live_owner(lock: Path) -> int | None:
    """The pid in ``lock`` if that process is alive, else None (unreadable: None)."""
    try:
        pid = int(lock.read_text().strip())
        os.kill(pid, 0)
    except PermissionError:
        return pid  # alive, another user's
    except (OSError, ValueError):
        return None
    return pid
