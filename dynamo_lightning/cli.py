"""The ``dynamo`` command.

    dynamo population fit --config configs/population/flipflop.yaml   # train a population
    dynamo fit --config configs/dynamo/flipflop.yaml                  # train the meta-model
    dynamo analyze --ckpt <run>/last.ckpt --out <run>/report          # the analysis report
    dynamo place --ckpt_path <run>/last.ckpt --population <dir>       # new networks on the map
    dynamo demo                                                       # the built-in default

Every ``fit``-style command is a LightningCLI run: all Trainer flags work and the resolved
config is saved with the run.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from dynamo_lightning.data import TrajectoryDataModule
from dynamo_lightning.module import DynamoModule
from dynamo_lightning.population.datamodule import TaskDataModule
from dynamo_lightning.population.training import PopulationModule
from dynamo_lightning.population.writer import PopulationWriter

COMMANDS = {
    "population": "train a population of networks (LightningCLI: fit | validate)",
    "fit": "train the DYNAMO meta-model on a population (LightningCLI)",
    "validate": "evaluate a DYNAMO checkpoint on validation trials (LightningCLI)",
    "test": "evaluate a DYNAMO checkpoint on test trials (LightningCLI)",
    "analyze": "write the analysis report (report.html, report.json, PNGs) of a checkpoint",
    "place": "place new networks on a checkpoint's map (placement.json, .png, .md)",
    "demo": "train the built-in default population and write it under runs/demo/",
}


class PopulationCLI(LightningCLI):
    """LightningCLI for population training; adds the ``population:`` writer section and
    links ``data.tasks`` to ``model.tasks`` so the task list is written once."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(PopulationWriter, "population")
        parser.link_arguments("data.tasks", "model.tasks", apply_on="parse")


# Sizes and the population's identity are read from the data module and written once.
DATA_TO_MODEL = ("num_members", "input_size", "output_size", "num_components", "output_kind",
                 "member_ids", "member_metadata", "population_path", "population_checksum",
                 "task_spec")


class DynamoCLI(LightningCLI):
    """LightningCLI for the meta-model; links the data module's sizes into the model."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for name in DATA_TO_MODEL:
            parser.link_arguments(f"data.{name}", f"model.{name}", apply_on="instantiate")


def dynamo_main(args: Sequence[str] | dict[str, Any]) -> DynamoCLI:
    """``dynamo <fit|validate|test> ...``; ``args`` may be a config dict ``{"fit": {...}}``."""
    _quiet_known_warnings()
    return DynamoCLI(DynamoModule, TrajectoryDataModule,
                     args=args if isinstance(args, dict) else list(args),
                     save_config_kwargs={"overwrite": True}, parser_kwargs={"prog": "dynamo"})


def population_main(args: Sequence[str] | dict[str, Any]) -> PopulationCLI:
    """``dynamo population <fit|validate> ...``; ``args`` may also be a config dict
    ``{"fit": {...}}`` (how ``dynamo demo`` calls it)."""
    _quiet_known_warnings()
    return PopulationCLI(PopulationModule, TaskDataModule,
                         args=args if isinstance(args, dict) else list(args),
                         save_config_kwargs={"overwrite": True},
                         parser_kwargs={"prog": "dynamo population"})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dynamo`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    command, rest = args[0], args[1:]
    if command == "population":
        population_main(rest)
        return 0
    if command in {"fit", "validate", "test"}:
        dynamo_main(args)
        return 0
    if command == "analyze":
        return analyze_main(rest)
    if command == "place":
        return place_main(rest)
    if command == "demo":
        from dynamo_lightning.demo import run_demo

        run_demo(rest)
        return 0
    print(f"dynamo: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
    return 2


def analyze_main(args: Sequence[str]) -> int:
    """``dynamo analyze --ckpt <path> --out <dir> ...`` (see ``dynamo_lightning.analyze``)."""
    from dynamo_lightning.analyze import analyze_main as run

    return run(args)


def place_main(args: Sequence[str]) -> int:
    """``dynamo place --ckpt_path <path> --population <dir> ...`` (see
    ``dynamo_lightning.place``)."""
    from dynamo_lightning.place import place_main as run

    return run(args)


def _quiet_known_warnings() -> None:
    """Silence warnings that are expected here and would only confuse users."""
    # We pass `args` ourselves because `dynamo <command>` consumes argv[1].
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")
    # Our task streams are single-process IterableDatasets with an exact length.
    warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")


def _usage() -> str:
    lines = ["usage: dynamo <command> [options]", "", "commands:"]
    lines += [f"  {name:<12}{text}" for name, text in COMMANDS.items()]
    lines += ["", "Run 'dynamo <command> --help' for a command's options."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
