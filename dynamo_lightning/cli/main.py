"""The ``dynamo`` command.

    dynamo population fit --config configs/population/flipflop.yaml   # train a population
    dynamo fit --config configs/dynamo/flipflop.yaml                  # train the meta-model
    dynamo analyze --ckpt <run>/last.ckpt --out <run>/report          # the analysis report
    dynamo place --ckpt_path <run>/last.ckpt --population <dir>       # new networks on the map
    dynamo demo                                                       # the built-in default

Every ``fit``-style command is a LightningCLI run (``lightning_cli.py``): all Trainer flags
work and the resolved config is saved with the run. Each command's module is imported only
when it runs, so ``dynamo --help`` stays light.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

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
    """Entry point of the ``dynamo`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    command, rest = args[0], args[1:]
    if command == "population":
        from dynamo_lightning.cli.lightning_cli import population_main

        population_main(rest)
        return 0
    if command in {"fit", "validate", "test"}:
        from dynamo_lightning.cli.lightning_cli import dynamo_main

        dynamo_main(args)
        return 0
    if command == "analyze":
        from dynamo_lightning.cli.analyze import analyze_main

        return analyze_main(rest)
    if command == "place":
        from dynamo_lightning.cli.place import place_main

        return place_main(rest)
    if command == "demo":
        from dynamo_lightning.cli.demo import run_demo

        run_demo(rest)
        return 0
    print(f"dynamo: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
    return 2


def _usage() -> str:
    lines = ["usage: dynamo <command> [options]", "", "commands:"]
    lines += [f"  {name:<12}{text}" for name, text in COMMANDS.items()]
    lines += ["", "Run 'dynamo <command> --help' for a command's options."]
    return "\n".join(lines)


