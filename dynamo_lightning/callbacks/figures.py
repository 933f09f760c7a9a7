"""Send figures and tables to whatever loggers a Trainer has, and keep a copy on disk.

Every figure callback goes through :func:`log_figure` (and :func:`log_table` for its data), so
routing, file names and figure cleanup live in one place:

- TensorBoard: ``add_figure`` (images tab); W&B: ``wandb.Image`` / ``wandb.Table``;
  CSV and other loggers: only the files below.
- Files: ``<run_dir>/figures/<key with / → _>_step<k>.png`` and a stable ``<key>.png`` that
  always holds the latest version (tables: the same names with ``.csv``).

Both helpers are safe under ``@rank_zero_only``: they use no collective calls (in particular
not ``trainer.log_dir``, which broadcasts) and do nothing but close the figure on other ranks.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

if TYPE_CHECKING:
    from lightning.pytorch import Trainer
    from matplotlib.figure import Figure

__all__ = ["log_figure", "log_table", "run_dir"]


def run_dir(trainer: Trainer) -> Path:
    """The run directory, as ``trainer.log_dir`` would give it, but without its broadcast.

    TensorBoard/CSV first logger: its versioned ``log_dir``; another logger: its ``save_dir``;
    no logger (or no directory): ``trainer.default_root_dir``.
    """
    path = None
    if trainer.loggers:
        first = trainer.loggers[0]
        versioned = isinstance(first, (TensorBoardLogger, CSVLogger))
        path = first.log_dir if versioned else first.save_dir
    return Path(path if path is not None else trainer.default_root_dir)


def log_figure(
    trainer: Trainer,
    fig: Figure,
    key: str,
    step: int | None = None,
    png_dir: str | Path | None = None,
) -> Path | None:
    """Log ``fig`` to every attached logger, save it as PNG, and always close it.

    Args:
        trainer: The running Trainer (its ``loggers`` receive the figure).
        fig: A matplotlib figure; closed on return, also when a logger raises.
        key: Logged name, ``{stage}/{name}`` style (``"figures/map"``).
        step: Step to log at; default ``trainer.global_step``.
        png_dir: Folder for the PNGs; default ``<run_dir(trainer)>/figures``.

    Returns:
        Path of the per-step PNG, or ``None`` on ranks other than 0 (which only close ``fig``).

    Raises:
        Whatever a logger raises; the PNGs are written before any logger is called.

    Example::

        fig, ax = plt.subplots()
        ax.plot(losses)
        log_figure(trainer, fig, "figures/loss_curve")
    """
    try:
        if not trainer.is_global_zero:
            return None
        step = trainer.global_step if step is None else int(step)
        folder = _output_dir(trainer, png_dir)
        path = folder / f"{_file_stem(key)}_step{step}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        shutil.copyfile(path, folder / f"{_file_stem(key)}.png")  # the latest, at a stable name
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(key, fig, global_step=step, close=False)
            elif isinstance(logger, WandbLogger):
                import wandb

                logger.experiment.log({key: wandb.Image(fig), "trainer/global_step": step})
        return path
    finally:
        plt.close(fig)


def log_table(
    trainer: Trainer,
    key: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    step: int | None = None,
    csv_dir: str | Path | None = None,
) -> Path | None:
    """Log a table to W&B (``wandb.Table``) and TensorBoard (Markdown text), and write it as
    CSV next to the figures.

    Cells that are not plain scalars (dicts, lists) are stored as JSON strings.

    Args:
        trainer: The running Trainer.
        key: Logged name (``"tables/embeddings"``).
        columns: Column names.
        rows: One sequence of ``len(columns)`` cells per row.
        step: Step to log at; default ``trainer.global_step``.
        csv_dir: Folder for the CSVs; default ``<run_dir(trainer)>/figures``.

    Returns:
        Path of the per-step CSV, or ``None`` on ranks other than 0.

    Raises:
        ValueError: If a row does not have ``len(columns)`` cells.
    """
    if not trainer.is_global_zero:
        return None
    columns = [str(c) for c in columns]
    cells = [[_plain(v) for v in row] for row in rows]
    for i, row in enumerate(cells):
        if len(row) != len(columns):
            raise ValueError(f"row {i} of table {key!r} has {len(row)} cells, expected "
                             f"{len(columns)} ({', '.join(columns)})")
    step = trainer.global_step if step is None else int(step)
    folder = _output_dir(trainer, csv_dir)
    path = folder / f"{_file_stem(key)}_step{step}.csv"
    for target in (path, folder / f"{_file_stem(key)}.csv"):
        with open(target, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(cells)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            table = wandb.Table(columns=columns, data=cells)
            logger.experiment.log({key: table, "trainer/global_step": step})
        elif isinstance(logger, TensorBoardLogger):  # TensorBoard has no tables: text
            logger.experiment.add_text(key, _markdown(columns, cells), global_step=step)
    return path


def _markdown(columns: list[str], cells: list[list[Any]]) -> str:
    """A Markdown table (what TensorBoard's text tab renders)."""
    def line(values: Sequence[Any]) -> str:
        return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"
    return "\n".join([line(columns), line(["---"] * len(columns)), *map(line, cells)])


def _output_dir(trainer: Trainer, folder: str | Path | None) -> Path:
    out = Path(folder) if folder is not None else run_dir(trainer) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _file_stem(key: str) -> str:
    """``"figures/map"`` → ``"figures_map"``: a file name that cannot leave its folder."""
    stem = key.strip("/").replace("/", "_").replace("\\", "_")
    if not stem or stem in {".", ".."}:
        raise ValueError(f"key must name a figure, got {key!r}")
    return stem


def _plain(value: Any) -> Any:
    """A CSV/W&B-friendly cell: scalars as they are, numpy/torch scalars unwrapped, else JSON."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return json.dumps(value, default=str, sort_keys=True)
