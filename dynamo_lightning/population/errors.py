"""The one error type for bad population files."""

from __future__ import annotations

from pathlib import Path


class PopulationFormatError(ValueError):
    """A population directory, manifest or weights file is missing, malformed or inconsistent.

    The message is one line that names the offending file and the fault, e.g.
    ``unknown architecture 'gruu' in members[3] of /p/manifest.json (known: vanilla, gru, ...)``.

    Args:
        message: what is wrong; the path is prefixed when the message does not name it.
        path: the file or directory at fault (kept as ``.path``).
    """

    def __init__(self, message: str, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) not in message:
            message = f"{path}: {message}"
        super().__init__(message)
