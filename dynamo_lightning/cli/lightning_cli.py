"""The LightningCLI runs: ``dynamo population fit|validate`` and ``dynamo fit|validate|test``.

Every run is a plain LightningCLI: all Trainer flags work and the resolved config is saved
with the run. ``dynamo demo`` and the experiments call the same runners with a config dict.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from dynamo_lightning.cli.warnings import quiet_known_warnings
from dynamo_lightning.data import TrajectoryDataModule
from dynamo_lightning.module import DynamoModule
from dynamo_lightning.population.datamodule import TaskDataModule
from dynamo_lightning.population.training import PopulationModule
from dynamo_lightning.population.writer import PopulationWriter

# Sizes and the population's identity are read from the data module and written once.
DATA_TO_MODEL = ("num_members", "input_size", "output_size", "num_components", "output_kind",
                 "member_ids", "member_metadata", "population_path", "population_checksum",
                 "task_spec")

# The shared base of every dynamo fit/validate/test run (parser defaults, below any --config).
DYNAMO_BASE = Path(__file__).resolve().parent / "defaults" / "dynamo_fit.yaml"
DYNAMO_SUBCOMMANDS = ("fit", "validate", "test")


class PopulationCLI(LightningCLI):
    """LightningCLI for population training; adds the ``population:`` writer section and
    links ``data.tasks`` to ``model.tasks`` so the task list is written once."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(PopulationWriter, "population")
        parser.link_arguments("data.tasks", "model.tasks", apply_on="parse")


class DynamoCLI(LightningCLI):
    """LightningCLI for the meta-model; links the data module's sizes into the model."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for name in DATA_TO_MODEL:
            parser.link_arguments(f"data.{name}", f"model.{name}", apply_on="instantiate")


def dynamo_main(args: Sequence[str] | dict[str, Any]) -> DynamoCLI:
    """``dynamo <fit|validate|test> ...``; ``args`` may be a config dict ``{"fit": {...}}``.
    Either way the shared base ``DYNAMO_BASE`` lies below it (``dynamo_subcommand_kwargs``)."""
    quiet_known_warnings()
    return DynamoCLI(DynamoModule, TrajectoryDataModule,
                     args=args if isinstance(args, dict) else list(args),
                     save_config_kwargs={"overwrite": True},
                     parser_kwargs={"prog": "dynamo", **dynamo_subcommand_kwargs()})


def dynamo_subcommand_kwargs() -> dict[str, dict[str, Any]]:
    """Each subcommand parser's own kwargs (LightningCLI adds to them): the shared base
    ``DYNAMO_BASE`` as its default config file (escaped: jsonargparse globs the name)."""
    return {name: {"default_config_files": [glob.escape(str(DYNAMO_BASE))]}
            for name in DYNAMO_SUBCOMMANDS}


def population_main(args: Sequence[str] | dict[str, Any]) -> PopulationCLI:
    """``dynamo population <fit|validate> ...``; ``args`` may also be a config dict
    ``{"fit": {...}}`` (how ``dynamo demo`` calls it)."""
    quiet_known_warnings()
    return PopulationCLI(PopulationModule, TaskDataModule,
                         args=args if isinstance(args, dict) else list(args),
                         save_config_kwargs={"overwrite": True},
                         parser_kwargs={"prog": "dynamo population"})
