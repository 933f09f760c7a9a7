"""Fenced code blocks of the project's Markdown files, for tests that run the docs as written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def code_blocks(markdown: str | Path, heading: str, language: str = "python") -> list[str]:
    """The ``language`` blocks under the Markdown heading ``heading`` (until the next heading
    of the same or a higher level), in order.

    Args:
        markdown: a path relative to the repository root (``"README.md"``) or absolute.
        heading: the heading's text without the ``#`` marks.

    Raises:
        LookupError: no such heading, or no block of that language under it.
    """
    text = (ROOT / markdown).read_text(encoding="utf-8")
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
