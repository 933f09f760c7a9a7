"""Where a run writes: everything follows ``trainer.default_root_dir`` unless a path is given.

A run config names one folder, ``trainer.default_root_dir``; each run gets its own folder
below it, the logger's versioned one (CSV/TensorBoard: ``<root>/version_<k>/``; W&B:
``<root>/<run id>/``), holding its ``config.yaml``, metrics, ``checkpoints/last.ckpt``,
``figures/`` and ``map.png``. So two runs never overwrite each other's files, and pointing
``--trainer.default_root_dir`` elsewhere moves all of them. The shipped configs say so with
the one placeholder the configs know, ``save_dir: ${trainer.default_root_dir}`` (in a
logger's or a callback's ``init_args``, alone or at the start of a path); a path the user
sets instead wins.

``--ckpt_path last`` resumes the newest run below the root (its ``last.ckpt``). With CSV or
TensorBoard the resumed fit is a new run folder (``version_<k+1>``; its ``config.yaml``
records the checkpoint it started from): continuing the old one would make Lightning's
CSVLogger delete that folder's ``metrics.csv``. A W&B run continues: the same run id, folder
and W&B run, unless the config names an id itself.

These functions work on the parsed config (jsonargparse namespaces) before anything is
instantiated, so the logger and the callbacks are built with the settled paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["ROOT", "RUN_CHECKPOINT", "find_last_checkpoint", "resume_run", "run_root",
           "settle_root"]

ROOT = "${trainer.default_root_dir}"
"""Stands for the run's ``trainer.default_root_dir`` in a logger's or callback's arguments."""

RUN_CHECKPOINT = Path("checkpoints") / "last.ckpt"
"""A run's resumable checkpoint, relative to its folder (see ``LastCheckpoint``)."""

_VERSIONED = ("CSVLogger", "TensorBoardLogger")  # <save_dir>/<name>/version_<k>
_BY_RUN_ID = ("WandbLogger",)  # <save_dir>/<run id> (DynamoWandbLogger), subclasses by suffix


def settle_root(trainer: Any) -> None:
    """Replace :data:`ROOT` at the start of any string argument of the configured loggers and
    callbacks by ``trainer.default_root_dir`` (the working directory when that is unset)."""
    root = str(trainer.get("default_root_dir") or ".")
    for entry in (*_entries(trainer, "logger"), *_entries(trainer, "callbacks")):
        init_args = entry.get("init_args")
        for key, value in (vars(init_args).items() if init_args is not None else ()):
            if isinstance(value, str) and value.startswith(ROOT):
                init_args[key] = root + value[len(ROOT):]


def run_root(trainer: Any) -> Path:
    """The folder that holds one folder per run: the first logger's ``<save_dir>/<name>``
    (W&B: its ``save_dir``), else ``trainer.default_root_dir``."""
    loggers = list(_loggers(trainer))
    default = Path(trainer.get("default_root_dir") or ".")
    if not loggers:
        return default
    first = loggers[0]
    args = first.get("init_args") or {}
    save_dir = Path(args.get("save_dir") or default)
    if _kind(first) == "versioned":
        return save_dir / str(args.get("name") or "")
    return save_dir


def find_last_checkpoint(root: Path) -> Path | None:
    """The newest ``<root>/<run>/checkpoints/last.ckpt`` (or ``<root>/checkpoints/last.ckpt``,
    a run without a logger), by modification time; ``None`` if there is none."""
    found = [p for p in (*root.glob(f"*/{RUN_CHECKPOINT.as_posix()}"), root / RUN_CHECKPOINT)
             if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns, default=None)


def resume_run(trainer: Any, checkpoint: Path) -> None:
    """A W&B first logger continues the run that wrote ``checkpoint`` (its folder is named by
    the run id); other loggers start a new run folder (see the module docstring)."""
    loggers = list(_loggers(trainer))
    if not loggers or _kind(loggers[0]) != "run_id" or checkpoint.parent.parent == run_root(
            trainer):
        return
    init_args = loggers[0].get("init_args")
    if init_args is not None and not init_args.get("id"):
        init_args["id"] = checkpoint.parent.parent.name


def _loggers(trainer: Any) -> Iterator[Any]:
    return _entries(trainer, "logger")


def _entries(trainer: Any, key: str) -> Iterator[Any]:
    """The class entries (``class_path`` + ``init_args``) of ``trainer.<key>``: a bool, one
    entry, or a list."""
    value = trainer.get(key)
    entries = value if isinstance(value, list) else [value]
    yield from (e for e in entries if e is not None and not isinstance(e, bool)
                and hasattr(e, "get") and e.get("class_path"))


def _kind(logger: Any) -> str:
    name = str(logger.get("class_path")).rsplit(".", 1)[-1]
    if name in _VERSIONED:
        return "versioned"
    if any(name.endswith(suffix) for suffix in _BY_RUN_ID):
        return "run_id"
    return "other"
