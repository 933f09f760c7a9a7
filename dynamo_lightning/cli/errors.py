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
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from dynamo_lightning.memory import is_out_of_memory, out_of_memory_line
from dynamo_lightning.registry import PluginLoadError, UnknownNameError

TRACEBACK_FLAG = "--traceback"
TRACEBACK_ENV = "DYNAMO_TRACEBACK"
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, UnknownNameError,
                                                 PluginLoadError)
"""What counts as the user's error (a bad input), not the package's."""
EXIT_USER_ERROR = 2
EXIT_SIGTERM = 128 + 15
"""The shell's status for a process ended by SIGTERM: a scheduler's kill is not a success."""


def split_traceback_flag(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--traceback``, and whether a full trace was asked for (the flag, or
    ``DYNAMO_TRACEBACK`` set to anything but ``""``/``0``)."""
    wanted = TRACEBACK_FLAG in argv or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")
    return [a for a in argv if a != TRACEBACK_FLAG], wanted


def run_command(command: str, run: Callable[[], int], traceback: bool = False) -> int:
    """``run()``'s exit status; a user error becomes one line on stderr and status 2."""
    try:
        return run()
    except SystemExit as stop:
        # Lightning turns SIGTERM into SIGTERMException, a SystemExit without a code (status
        # 0); recognised by name so that `dynamo --help` need not import Lightning.
        if type(stop).__name__ != "SIGTERMException":
            raise
        print(f"dynamo {command}: interrupted by SIGTERM before the run finished; the last "
              "checkpoint it wrote (checkpoints/last.ckpt in the run folder) is kept: run the "
              "same command with --ckpt_path last to resume", file=sys.stderr)
        return EXIT_SIGTERM
    except Exception as err:
        if is_out_of_memory(err) and not traceback:  # the setting to lower, in one line
            print(f"dynamo {command}: error: {out_of_memory_line(err)}", file=sys.stderr)
            return EXIT_USER_ERROR
        if traceback or not is_user_error(err):
            raise
        print(f"dynamo {command}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR


def is_user_error(err: BaseException) -> bool:
    """One of :data:`USER_ERRORS`, or Lightning's ``MisconfigurationException`` (its word for
    a Trainer flag that cannot work here, e.g. ``--trainer.accelerator gpu`` on a machine
    without one), recognised by name so that ``dynamo --help`` need not import Lightning."""
    return isinstance(err, USER_ERRORS) or any(
        cls.__name__ == "MisconfigurationException"
        and cls.__module__.startswith(("lightning", "pytorch_lightning"))
        for cls in type(err).__mro__)


class OneLineErrors:
    """Mixin for the commands' (jsonargparse) parsers: a bad argument or config is reported
    like every other user error, one line ``<prog>: error: <message>`` and status 2 (the
    usage stays behind ``--help``), a value of the wrong type as ``key: expected int or None,
    got 'ten'``. Abbreviated flags are refused: argparse would take ``--max_epoch`` for
    ``--max_epochs``, so a typo in a flag ran another command than the one typed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not getattr(self, "exit_on_error", True):  # jsonargparse trying alternatives
            super().error(message, ex)  # type: ignore[misc]
        parser = getattr(ex, "subcommand_parser", None) or self
        report_usage_error(parser.prog, readable_type_error(message))  # type: ignore[attr-defined]
        sys.exit(EXIT_USER_ERROR)


_NOT_FINITE = ("nan", "inf", "infinity", ".nan", ".inf")
"""What a float flag was given when jsonargparse refuses it as not a float: NaN or ∞."""
_KEY = re.compile(r'^Parser key "(?P<key>[^"]+)":\s*(?P<rest>.*)$', re.DOTALL)
_CLASS = re.compile(r"<class '(?:[\w.]+\.)?(?P<name>\w+)'>")


def readable_type_error(message: str) -> str:
    """jsonargparse's message for a value of the wrong type, as ``key: expected T1 or T2, got
    'value'``; any other message unchanged.

    jsonargparse says ``Parser key "trainer.max_epochs": Does not validate against any of the
    Union subtypes Subtypes: [<class 'int'>, <class 'NoneType'>] Errors: - Expected a <class
    'int'> ... Given value type: <class 'str'> Given value: ten``.
    """
    match = _KEY.match(" ".join(message.split()))
    if match is None:
        return message
    key, rest = match["key"], match["rest"]
    union = re.search(r"Subtypes: \[(?P<types>.*?)\] Errors:.*Given value: (?P<value>.*)$",
                      rest)
    single = re.search(r"^Expected a (?P<types>.*?)\. Got value: (?P<value>.*)$", rest)
    found = union or single
    if found is None:
        return message
    reason = union_reason(rest) if union else None
    if reason is not None:
        return f"{key}: {reason}"
    names = [m["name"] for m in _CLASS.finditer(found["types"])] or [found["types"]]
    if "float" in names and found["value"].strip().lower().lstrip("+-") in _NOT_FINITE:
        return f"{key}: expected a finite number, got {found['value']!r}"
    expected = " or ".join("None" if n == "NoneType" else n for n in names)
    return f"{key}: expected {expected}, got {found['value']!r}"


_UNION = re.compile(r"Does not validate against any of the Union subtypes .*?Errors: "
                    r"(?P<errors>.*?) Given value type: ")
_NOT_A_REASON = ("Expected a ", "Expected an ", "Does not validate against", "Not a valid ")
"""How jsonargparse's own subtype errors start: that the value is not of that type."""


def union_reason(message: str) -> str | None:
    """The reason in a jsonargparse union error, where one subtype did take the value and
    then refused it: a settings dataclass (``Optimization | dict | None``) whose check
    raised ``DynamoModule: optim.lr must be a finite number > 0, got -1.0``, reported by
    jsonargparse among the other subtypes' ``Expected a <class 'dict'>`` as ``Does not
    validate against any of the Union subtypes ... Given value: Namespace(...)``. None when
    every subtype only says that the value is not of its type.
    """
    match = _UNION.search(" ".join(message.split()))
    if match is None:
        return None
    errors = [e.strip() for e in re.split(r"(?:^| )- ", match["errors"]) if e.strip()]
    reasons = [e for e in errors if not e.startswith(_NOT_A_REASON)]
    return reasons[0] if reasons else None


def report_usage_error(prog: str, message: str) -> None:
    """Print a command line's error as one line naming where to read the options."""
    prog = prog.replace(" [options]", "")
    print(f"{prog}: error: {' '.join(message.split())} (options: {prog} --help)",
          file=sys.stderr)


def one_line(err: BaseException) -> str:
    """The error's message on one line (its type's name when it has none); of a
    jsonargparse union error, the one subtype's reason (:func:`union_reason`)."""
    message = " ".join(str(err).split())
    return union_reason(message) or message or type(err).__name__
