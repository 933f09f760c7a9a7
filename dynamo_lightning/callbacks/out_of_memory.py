"""Running out of memory during a fit: ``last.ckpt`` is saved, and the error carries the one
line ``dynamo`` prints for it, naming the setting to lower.

The pre-flight checks (:mod:`dynamo_lightning.memory`) refuse what clearly cannot fit; what
still runs out (another process took the GPU, an estimate off by more than its margin) ends
here: :class:`~.last_checkpoint.LastCheckpoint` calls :func:`save_on_out_of_memory` from its
``on_exception``, which writes the model as it was after the last completed step, and
attaches to the error (``memory.ADVICE``) e.g. ``CUDA out of memory (tried to allocate 2.00
GiB) at step 120; saved runs/x/checkpoints/last.ckpt: lower data.samples_per_member (now
32), then resume with --ckpt_path last``. Under several processes (DDP) nothing is saved:
the other ranks would wait for this one forever.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynamo_lightning.memory import ADVICE, groups_estimate, is_out_of_memory
from dynamo_lightning.memory.budget import allocation
from dynamo_lightning.module.config import MetaModelConfig
from dynamo_lightning.module.dynamo_module import DynamoModule
from dynamo_lightning.module.memory_check import fit_estimate
from dynamo_lightning.population.architectures import build as build_architecture
from dynamo_lightning.population.training import PopulationModule

if TYPE_CHECKING:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

__all__ = ["save_on_out_of_memory", "setting_to_lower"]


def save_on_out_of_memory(checkpoint: ModelCheckpoint, trainer: pl.Trainer,
                          pl_module: pl.LightningModule, exception: BaseException) -> None:
    """For an out-of-memory ``exception`` during a fit: save ``<checkpoint.dirpath>/
    last.ckpt`` (one process only) and attach the line to print (``memory.ADVICE``)."""
    if not is_out_of_memory(exception) or trainer.state.fn != "fit":
        return
    saved = _save(checkpoint, trainer, pl_module)
    where = (f"saved {saved}" if saved is not None else "no checkpoint saved")
    resume = ", then resume with --ckpt_path last" if saved is not None else ""
    setattr(exception, ADVICE, f"{allocation(exception)} at step {trainer.global_step}; "
                               f"{where}: lower {setting_to_lower(trainer, pl_module)}{resume}")


def setting_to_lower(trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
    """The setting of the largest term of the fit's memory estimate, with its value
    (``data.samples_per_member (now 32)``); generic words for other modules."""
    data = getattr(trainer, "datamodule", None)
    label = None
    try:
        if isinstance(pl_module, DynamoModule):
            sizes = tuple(int(getattr(data, name)) for name in (
                "members_per_batch", "samples_per_member", "seq_len", "input_size",
                "output_size"))
            label = fit_estimate(pl_module.meta, MetaModelConfig(**pl_module.hparams.meta),
                                 pl_module.hparams.num_members,
                                 pl_module.hparams.num_components, sizes).largest
        elif isinstance(pl_module, PopulationModule):
            estimate = groups_estimate(pl_module.groups, pl_module.tasks, build_architecture,
                                       getattr(data, "batch_size", None),
                                       getattr(data, "val_batch_size", None))
            label = None if estimate is None else estimate.largest
    except (AttributeError, TypeError, ValueError):
        label = None
    if label is None:
        return "the batch size or the model's size"
    found = re.fullmatch(r"(.*\S) (\d+)", label)
    return f"{found[1]} (now {found[2]})" if found else label


def _save(checkpoint: ModelCheckpoint, trainer: pl.Trainer,
          pl_module: pl.LightningModule) -> Path | None:
    """Write ``last.ckpt`` into the callback's folder after freeing what the failed step
    held; None when it cannot be written here (no folder yet, several processes)."""
    if checkpoint.dirpath is None or trainer.world_size != 1:
        return None
    import torch

    pl_module.zero_grad(set_to_none=True)  # not part of a checkpoint
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    name = f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}"  # last.ckpt
    path = Path(checkpoint.dirpath) / name
    saver: Any = getattr(checkpoint, "_save_checkpoint", None)
    try:
        if saver is not None:
            saver(trainer, str(path))
        else:
            trainer.save_checkpoint(str(path))
    except (OSError, RuntimeError):  # out of memory again, or the disk: keep the first error
        return None
    return path
