"""One error boundary for every ``dynamo`` command: a user's mistake is one line, a bug is a
traceback.

The package raises ``ValueError`` (and its kinds: ``PopulationFormatError``,
``CheckpointError``, …) for bad arguments, configs and files, ``UnknownNameError`` for an
unknown plugin name, and the OS raises ``OSError`` for paths; those reach a command-line user
as ``dynamo <command>: error: <message>`` on stderr with exit status 2, the work done so far
kept. Anything else is a bug and keeps its traceback. ``--traceback`` (anywhere on the command
line) or ``DYNAMO_TRACEBACK=1`` shows the full trace of a user error too, for bug reports.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

from dynamo_lightning.registry import PluginLoadError, UnknownNameError

TRACEBACK_FLAG = "--traceback"
TRACEBACK_ENV = "DYNAMO_TRACEBACK"
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, UnknownNameError,
                                                 PluginLoadError)
"""What counts as the user's error (a bad input), not the package's."""
EXIT_USER_ERROR = 2


def split_traceback_flag(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--traceback``, and whether a full trace was asked for (the flag, or
    ``DYNAMO_TRACEBACK`` set to anything but ``""``/``0``)."""
    wanted = TRACEBACK_FLAG in argv or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")
    return [a for a in argv if a != TRACEBACK_FLAG], wanted


def run_command(command: str, run: Callable[[], int], traceback: bool = False) -> int:
    """``run()``'s exit status; a user error becomes one line on stderr and status 2."""
    try:
        return run()
    except USER_ERRORS as err:
        if traceback:
            raise
        print(f"dynamo {command}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR


class OneLineErrors:
    """Mixin for the commands' (jsonargparse) parsers: a bad argument or config is reported
    like every other user error, one line ``<prog>: error: <message>`` and status 2 (the
    usage stays behind ``--help``)."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not getattr(self, "exit_on_error", True):  # jsonargparse trying alternatives
            super().error(message, ex)  # type: ignore[misc]
        parser = getattr(ex, "subcommand_parser", None) or self
        report_usage_error(parser.prog, message)  # type: ignore[attr-defined]
        sys.exit(EXIT_USER_ERROR)


def report_usage_error(prog: str, message: str) -> None:
    """Print a command line's error as one line naming where to read the options."""
    prog = prog.replace(" [options]", "")
    print(f"{prog}: error: {' '.join(message.split())} (options: {prog} --help)",
          file=sys.stderr)


def one_line(err: BaseException) -> str:
    """The error's message on one line (its type's name when it has none)."""
    return " ".join(str(err).split()) or type(err).__name__
