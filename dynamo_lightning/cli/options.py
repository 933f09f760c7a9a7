"""The parser of ``dynamo analyze``, ``place`` and ``demo``: the same dialect as the
LightningCLI commands (jsonargparse): ``--config file.yaml`` (several allowed, the last wins),
``--print_config`` to see the resolved options, ``--name_with_underscores`` (the old dashed
spellings still work), defaults shown in ``--help``, and mistakes on one line."""

from __future__ import annotations

import argparse

from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter

from dynamo_lightning.cli.config_files import guard_yaml_loading
from dynamo_lightning.cli.errors import OneLineErrors

__all__ = ["CommandParser", "command_parser"]


class CommandParser(OneLineErrors, ArgumentParser):
    """A jsonargparse parser whose errors are one line (see :mod:`~.errors`)."""


class _Formatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help (types and defaults shown), the description kept as written."""


def command_parser(prog: str, description: str | None) -> CommandParser:
    """A command's parser with ``--config`` (and, with it, ``--print_config``)."""
    guard_yaml_loading()
    parser = CommandParser(prog=prog, description=description, formatter_class=_Formatter)
    parser.add_argument("--config", action=ActionConfigFile,
                        help="a YAML file of these options (keys with underscores)")
    return parser
