"""Fenced code blocks of the project's Markdown files, for tests that run the docs as written."""

from __future__ import annotations

import ast
import builtins
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


@dataclass(frozen=True)
class Block:
    """One fenced block: its language (``""`` when the fence names none), its text and the
    1-based line of its opening fence."""

    language: str
    body: str
    line: int


@dataclass(frozen=True)
class Command:
    """One command of a shell block: its words (continuation lines joined, the comment
    dropped) and the 1-based line of the file where it starts."""

    words: list[str]
    line: int

    @property
    def text(self) -> str:
        """The command as one line (quoted as a shell would need it)."""
        return shlex.join(self.words)


def _read(markdown: str | Path) -> str:
    return (ROOT / markdown).read_text(encoding="utf-8")


def fenced_blocks(markdown: str | Path) -> list[Block]:
    """Every fenced block of ``markdown`` (relative to the repository root, or absolute), in
    document order."""
    text = _read(markdown)
    return [Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
            for m in _FENCE.finditer(text)]


def shell_commands(block: Block) -> list[Command]:
    """The commands of a shell block: lines ending in ``\\`` joined with the next, comments
    (``# ...``, whole lines or the rest of one) and blank lines dropped.

    Raises:
        ValueError: a line that does not split as a shell would (an open quote), named.
    """
    commands: list[Command] = []
    pending, start = "", 0
    for offset, line in enumerate(block.body.splitlines(), start=block.line + 1):
        if not pending:
            start = offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        pending += line
        try:
            words = shlex.split(pending, comments=True)
        except ValueError as err:
            raise ValueError(f"line {start}: {pending!r} does not split: {err}") from None
        if words:
            commands.append(Command(words, start))
        pending = ""
    if pending.strip():
        raise ValueError(f"line {start}: the block ends inside a continued line")
    return commands


def undefined_names(code: str) -> set[str]:
    """Names that ``code`` reads but neither assigns, imports, defines nor gets from builtins:
    what a block would need from an earlier one. (Scopes are not told apart: an argument of a
    function defined in the block counts as defined everywhere in it.)"""
    tree = ast.parse(code)
    used: set[str] = set()
    defined: set[str] = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            defined.add(node.name)
    return used - defined


def code_blocks(markdown: str | Path, heading: str, language: str = "python") -> list[str]:
    """The ``language`` blocks under the Markdown heading ``heading`` (until the next heading
    of the same or a higher level), in order.

    Args:
        markdown: a path relative to the repository root (``"README.md"``) or absolute.
        heading: the heading's text without the ``#`` marks.

    Raises:
        LookupError: no such heading, or no block of that language under it.
    """
    text = _read(markdown)
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.M)
    if match is None:
        raise LookupError(f"{markdown}: no heading {heading!r}")
    level = len(match.group(1))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    section = rest[: end.start()] if end else rest
    blocks = [body for lang, body in _FENCE.findall(section) if lang == language]
    if not blocks:
        raise LookupError(f"{markdown}: no {language} block under {heading!r}")
    return blocks
