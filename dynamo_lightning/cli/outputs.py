"""Output locations are checked before any work: a run that cannot write its checkpoint,
report or figures fails at once, not after the fit or the analysis it would lose."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

__all__ = ["check_run_outputs", "run_folder_of", "writable_dir"]


def writable_dir(path: str | Path, what: str) -> Path:
    """Create ``path`` if needed and prove a file can be written there.

    Args:
        path: the directory.
        what: how the user named it, for the message (``"--out"``, ``"checkpoint dirpath"``).

    Raises:
        ValueError: ``path`` is a file, lies under one, or cannot be created or written to.
    """
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ValueError(f"{what} {path}: cannot write there ({err.strerror or err})") from None
    return path


def check_run_outputs(trainer: Any) -> None:
    """Every directory a Lightning run will write to (its root, its loggers', its
    checkpoints', the map figure's folder) exists or can be made, and is writable.

    Raises:
        ValueError: naming the first directory that is not writable and who writes there.
    """
    targets = {"trainer.default_root_dir": trainer.default_root_dir}
    for logger in trainer.loggers:
        save_dir = getattr(logger, "save_dir", None)
        if save_dir:
            targets[f"logger {type(logger).__name__} save_dir"] = save_dir
    for callback in trainer.callbacks:
        for attribute in ("dirpath", "_map_path"):
            folder = getattr(callback, attribute, None)
            if folder:
                folder = Path(folder).parent if attribute == "_map_path" else folder
                targets[f"{type(callback).__name__} {attribute.strip('_')}"] = folder
    for what, folder in targets.items():
        writable_dir(folder, what)


def run_folder_of(ckpt: str | Path) -> Path:
    """The run folder a checkpoint belongs to, where ``analyze`` and ``place`` write by
    default: its parent's parent when it lies in a ``checkpoints/`` folder (the layout every
    run writes: ``<run>/checkpoints/last.ckpt``), else its parent."""
    ckpt = Path(ckpt)
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
