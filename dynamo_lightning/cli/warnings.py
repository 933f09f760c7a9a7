"""Warnings that are expected in the ``dynamo`` commands and would only confuse users."""

from __future__ import annotations

import warnings


def quiet_known_warnings() -> None:
    """Silence warnings that are expected here and would only confuse users."""
    # We pass `args` ourselves because `dynamo <command>` consumes argv[1].
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")
    # Our task streams are single-process IterableDatasets with an exact length.
    warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")
    # A resumed fit writes a new run folder (cli/run_folders.py): the checkpoint's old
    # folder is expected to differ, and LastCheckpoint keeps no best-k state to lose.
    warnings.filterwarnings("ignore", message=".*The dirpath has changed from.*")
