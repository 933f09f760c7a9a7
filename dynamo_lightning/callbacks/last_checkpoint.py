"""LastCheckpoint: one resumable checkpoint, ``<run>/checkpoints/last.ckpt``, kept current.

Lightning's ``ModelCheckpoint(save_last=True, save_top_k=0)`` writes ``last.ckpt`` only when
the fit ends, so a run killed at epoch 23 of 30 leaves nothing to resume. This is a
``ModelCheckpoint`` configured so that the one file it keeps *is* ``last.ckpt``: rewritten
every ``every_n_epochs`` epochs (or ``every_n_train_steps`` steps), each time atomically
(Lightning writes to a temporary file and renames it), so a kill at any moment leaves the
previous or the new checkpoint, never a torn one. Resume with ``--ckpt_path last``.

Without a ``dirpath`` it writes into the run's own folder, ``<run_dir>/checkpoints`` (the
folder that holds the run's config copy, figures and map; see
:func:`~dynamo_lightning.callbacks.figures.run_dir`), for every logger alike; Lightning's
``ModelCheckpoint`` would nest ``<save_dir>/<name>/<version>`` once more for a W&B run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lightning.pytorch.callbacks import ModelCheckpoint
from typing_extensions import override

from dynamo_lightning.callbacks.figures import run_dir
from dynamo_lightning.checks import positive_int

if TYPE_CHECKING:
    import lightning.pytorch as pl

__all__ = ["LastCheckpoint"]


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
