"""``load_module``: a ``DynamoModule`` from a checkpoint file, read safely (tensors and plain
data only) with one clear error for a missing, truncated or foreign file."""

from __future__ import annotations

from pathlib import Path

import torch

from dynamo_lightning.module.checkpoints import (
    UNREADABLE,
    CheckpointError,
    first_line,
    read_checkpoint,
)
from dynamo_lightning.module.dynamo_module import DynamoModule

__all__ = ["load_module"]


def load_module(path: str | Path, map_location: str | torch.device = "cpu") -> DynamoModule:
    """The ``DynamoModule`` of a checkpoint file, in eval mode.

    Raises:
        CheckpointError: as :func:`read_checkpoint`, or a checkpoint of another model.
    """
    read_checkpoint(path)  # one clear error for missing, truncated or foreign files
    try:
        module = DynamoModule.load_from_checkpoint(path, map_location=map_location,
                                                   weights_only=True)
    except (*UNREADABLE, ValueError) as err:
        raise CheckpointError(f"{path} is not a DynamoModule checkpoint "
                              f"({first_line(err)})") from None
    return module.eval()
