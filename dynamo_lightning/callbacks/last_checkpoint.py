"""LastCheckpoint: one resumable checkpoint, ``<dirpath>/last.ckpt``, kept current during fit.

Lightning's ``ModelCheckpoint(save_last=True, save_top_k=0)`` writes ``last.ckpt`` only when
the fit ends, so a run killed at epoch 23 of 30 leaves nothing to resume. This is a
``ModelCheckpoint`` configured so that the one file it keeps *is* ``last.ckpt``: rewritten
every ``every_n_epochs`` epochs (or ``every_n_train_steps`` steps), each time atomically
(Lightning writes to a temporary file and renames it), so a kill at any moment leaves the
previous or the new checkpoint, never a torn one. Resume with ``--ckpt_path last``.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint

from dynamo_lightning.checks import positive_int

__all__ = ["LastCheckpoint"]


class LastCheckpoint(ModelCheckpoint):
    """``<dirpath>/last.ckpt``, rewritten during the fit, for ``--ckpt_path last``.

    Args:
        dirpath: the folder; default ``<the logger's run folder>/checkpoints`` as for
            ``ModelCheckpoint``.
        every_n_epochs: save every this many epochs (default 1, when no step interval).
        every_n_train_steps: save every this many optimiser steps instead.

    Example::

        trainer = Trainer(callbacks=[LastCheckpoint("runs/my_fit/checkpoints")])
        trainer.fit(module, datamodule, ckpt_path="last")  # resumes if one was written
    """

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
