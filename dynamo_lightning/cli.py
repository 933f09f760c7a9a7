"""The ``dynamo`` command.

    dynamo population fit --config configs/population/flipflop.yaml   # train a population
    dynamo demo                                                       # the built-in default

Every ``fit``-style command is a LightningCLI run: all Trainer flags work and the resolved
config is saved with the run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from dynamo_lightning.population.datamodule import TaskDataModule
from dynamo_lightning.population.training import PopulationModule
from dynamo_lightning.population.writer import PopulationWriter

COMMANDS = {
    "population": "train a population of networks (LightningCLI: fit | validate)",
    "demo": "train the built-in default population and write it under runs/demo/",
}


class PopulationCLI(LightningCLI):
    """LightningCLI for population training; adds the ``population:`` writer section and
    links ``data.tasks`` to ``model.tasks`` so the task list is written once."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(PopulationWriter, "population")
        parser.link_arguments("data.tasks", "model.tasks", apply_on="parse")


def population_main(args: Sequence[str]) -> PopulationCLI:
    """``dynamo population <fit|validate> ...``."""
    return PopulationCLI(PopulationModule, TaskDataModule, args=list(args),
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
    if command == "demo":
        from dynamo_lightning.demo import run_demo

        run_demo(rest)
        return 0
    print(f"dynamo: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
    return 2


def _usage() -> str:
    lines = ["usage: dynamo <command> [options]", "", "commands:"]
    lines += [f"  {name:<12}{text}" for name, text in COMMANDS.items()]
    lines += ["", "Run 'dynamo <command> --help' for a command's options."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
