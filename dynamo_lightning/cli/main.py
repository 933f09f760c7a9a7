"""The ``dynamo`` command.

    dynamo population fit --config configs/population/flipflop.yaml   # train a population
    dynamo fit --config configs/dynamo/flipflop.yaml                  # train the meta-model
    dynamo analyze --ckpt_path <run>/last.ckpt --out <run>/report     # the analysis report
    dynamo place --ckpt_path <run>/last.ckpt --population <dir>       # new networks on the map
    dynamo demo                                                       # the built-in default

Every ``fit``-style command is a LightningCLI run (``lightning_cli.py``): all Trainer flags
work and the resolved config is saved with the run. Each command's module is imported only
when it runs, so ``dynamo --help`` stays light.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.metadata import version

from dynamo_lightning.cli.errors import EXIT_USER_ERROR, run_command, split_traceback_flag

COMMANDS = {
    "population": "train a population of networks (LightningCLI: fit | validate)",
    "fit": "train the DYNAMO meta-model on a population (LightningCLI)",
    "validate": "evaluate a DYNAMO checkpoint on validation trials (LightningCLI)",
    "test": "evaluate a DYNAMO checkpoint on test trials (LightningCLI)",
    "analyze": "write the analysis report (report.html, report.json, PNGs) of a checkpoint",
    "place": "place new networks on a checkpoint's map (placement.json, .png, .md)",
    "demo": "train the built-in default population and write it under runs/demo/",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dynamo`` console script; returns the exit status (2 for a user
    error, reported on one line: see :mod:`~.errors`)."""
    args, traceback = split_traceback_flag(list(sys.argv[1:] if argv is None else argv))
    if not args or args[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    if args[0] in {"-V", "--version"}:
        print(f"dynamo (dynamo-lightning) {version('dynamo-lightning')}")
        return 0
    command = args[0]
    if command not in COMMANDS:
        print(f"dynamo: error: unknown command {command!r} (commands: {', '.join(COMMANDS)}; "
              "see dynamo --help)", file=sys.stderr)
        return EXIT_USER_ERROR
    return run_command(command, lambda: _dispatch(command, args[1:]), traceback)


def _dispatch(command: str, rest: list[str]) -> int:
    """Run one command (its module imported only now, so ``dynamo --help`` stays light)."""
    if command == "population":
        from dynamo_lightning.cli.lightning_cli import population_main

        population_main(rest)
    elif command in {"fit", "validate", "test"}:
        from dynamo_lightning.cli.lightning_cli import dynamo_main

        dynamo_main([command, *rest])
    elif command == "analyze":
        from dynamo_lightning.cli.analyze import analyze_main

        return analyze_main(rest)
    elif command == "place":
        from dynamo_lightning.cli.place import place_main

        return place_main(rest)
    else:
        from dynamo_lightning.cli.demo import run_demo

        run_demo(rest)
    return 0


def _usage() -> str:
    lines = ["usage: dynamo <command> [options]   (dynamo --version)", "", "commands:"]
    lines += [f"  {name:<12}{text}" for name, text in COMMANDS.items()]
    lines += ["", "Run 'dynamo <command> --help' for a command's options. A mistake in the input "
              "is reported", "on one line (exit status 2); add --traceback (or set "
              "DYNAMO_TRACEBACK=1) for the full trace."]
    return "\n".join(lines)


