"""Small file helpers shared by the population format and the trajectory cache: a file's
checksum, and flushing a file's or a directory's entries to disk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["fsync", "sha256_file"]


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync(path: str | Path) -> None:
    """Flush a file's or a directory's entries to disk where the OS allows it (a no-op
    where it does not, e.g. directories on some filesystems)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
