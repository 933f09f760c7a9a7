"""Reading DYNAMO checkpoints safely: tensors and plain data only, one clear error per fault.

Every checkpoint the package opens goes through here (``dynamo analyze``, ``dynamo place``,
the API) or through Lightning with ``weights_only=True`` (``dynamo fit|validate|test
--ckpt_path``, set in the shared base config), so a planted pickle never runs, whatever
torch's default. A checkpoint also records the checksum of the population it was fitted on;
:func:`check_population` compares it with the population a run is given.
"""

from __future__ import annotations

import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

__all__ = ["UNREADABLE", "CheckpointError", "check_population", "first_line", "read_checkpoint"]

REQUIRED_KEYS = ("state_dict", "hyper_parameters")
UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, TypeError,
               AttributeError, zipfile.BadZipFile, UnicodeDecodeError)


class CheckpointError(ValueError):
    """A file that is not a readable DYNAMO checkpoint, or one fitted on other members."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, loaded with ``weights_only=True`` on the CPU.

    Raises:
        CheckpointError: no file there, a file torch cannot read as a checkpoint (truncated,
            not a checkpoint, or holding code rather than data), or one without a model.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # whatever torch trips over in a user's file, it is the file's
        if isinstance(err, MemoryError):
            raise
        raise CheckpointError(f"{path} is not a readable checkpoint ({_why(path, err)}); "
                              "pass the last.ckpt a `dynamo fit` wrote") from None
    damaged = _failed_crc(path)
    if damaged:
        raise CheckpointError(f"{path} is damaged: {damaged} (bytes changed since it was "
                              "written); use another checkpoint or fit again")
    missing = [k for k in REQUIRED_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise CheckpointError(f"{path} is not a DYNAMO checkpoint (no {', '.join(missing)})")
    return checkpoint


def _failed_crc(path: Path) -> str | None:
    """What fails the CRC-32 checks of a zip checkpoint's entries (torch's format since 1.6
    stores one per entry; ``torch.load`` does not check them, so a flipped byte in a tensor
    loads as a wrong weight), or None."""
    if not zipfile.is_zipfile(path):
        return None  # torch.load read it: an older, non-zip checkpoint
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as err:
        return f"its zip structure is broken ({err})"
    return None if bad is None else f"entry {bad} fails its CRC check"


def check_population(recorded: str | None, given: str | None, where: str,
                     allow_change: bool = False) -> None:
    """Refuse a population whose checksum differs from the one a checkpoint was fitted on.

    Args:
        recorded: the checkpoint's ``population_checksum`` (None for old checkpoints).
        given: the checksum of the population this run uses.
        where: the population's location, for the message.
        allow_change: accept a deliberate change (the members were retrained on purpose).

    Raises:
        CheckpointError: both checksums known and different, and no ``allow_change``.
    """
    if allow_change or not recorded or not given or recorded == given:
        return
    raise CheckpointError(
        f"the population at {where} (checksum {given[:12]}…) is not the one this checkpoint "
        f"was fitted on ({recorded[:12]}…): its members changed under the same ids; point "
        "data.population at the original, or pass --allow_population_change true to go on")


def first_line(err: BaseException) -> str:
    """An error's first line, for one-line messages."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _why(path: Path, err: BaseException) -> str:
    """Why torch could not read ``path``, in words a user can act on."""
    if not zipfile.is_zipfile(path):
        return "truncated, or not a PyTorch file at all: torch saves checkpoints as zip archives"
    if isinstance(err, pickle.UnpicklingError):
        return ("it holds Python objects beyond tensors and plain data, which are never "
                "loaded: loading them could run code")
    return first_line(err)[:160]
