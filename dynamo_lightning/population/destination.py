"""Where a population is written: the destination check, the atomic swap and its recovery.

A save writes into a hidden sibling ``.<name>.dynamo-new-<token>`` and swaps it in: an old
population is renamed to ``.<name>.dynamo-old-<token>``, the new one to ``<name>``, then the
old one is deleted. ``<token>`` is ``<host>-<pid>-<random>``: it tells which save a side
directory belongs to and whether that save's process is still alive. ``recover(path)`` (run
by every load and save) repairs what a killed save left:

- ``<name>`` missing and an ``old`` side directory: the swap is finished when its ``new``
  twin exists (it was complete before the swap began), else rolled back (old → ``<name>``);
- every other side directory of a dead save is deleted.

Side directories of a live process (a save in progress), of another host, and anything not
named this way are never touched. A destination must be absent, empty or a population
(``manifest.json``, ``weights/*.safetensors``): a save never deletes what it did not write.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import uuid
import warnings
from pathlib import Path

from dynamo_lightning.files import fsync
from dynamo_lightning.population.errors import PopulationFormatError

MANIFEST = "manifest.json"
WEIGHTS_DIR = "weights"
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_SIDE = re.compile(r"\.(?P<name>.+)\.dynamo-(?P<kind>new|old)-"
                   r"(?P<token>(?P<host>[0-9a-f]{6})-(?P<pid>[0-9]+)-[0-9a-f]{8})")
_SHOWN = 5


def new_token(pid: int | None = None) -> str:
    """A fresh side-directory token ``<host>-<pid>-<random>`` (``pid``: default this one)."""
    return f"{_HOST}-{os.getpid() if pid is None else pid}-{uuid.uuid4().hex[:8]}"


def side_dir(path: Path, kind: str, token: str) -> Path:
    """The hidden sibling of ``path`` that a save with ``token`` uses (kind: new or old)."""
    return path.parent / f".{path.name}.dynamo-{kind}-{token}"


def foreign_entries(path: Path) -> list[str]:
    """Entries of directory ``path`` that the population format does not write.

    The format writes ``manifest.json`` and ``weights/<id>.safetensors`` (plain files, no
    links); a non-empty directory without a manifest is not a population, so all of it is
    foreign.
    """
    entries = sorted(path.iterdir())
    if entries and not _plain_file(path / MANIFEST):
        return [_shown(e, path) for e in entries]
    foreign = []
    for entry in entries:
        if entry.name == WEIGHTS_DIR and entry.is_dir() and not entry.is_symlink():
            foreign += [_shown(w, path) for w in sorted(entry.iterdir())
                        if w.suffix != ".safetensors" or not _plain_file(w)]
        elif entry.name != MANIFEST:
            foreign.append(_shown(entry, path))
    return foreign


def check_destination(path: str | Path) -> Path:
    """``path`` as a ``Path`` if a population may be saved there; changes nothing.

    A destination must be absent, an empty directory or a population directory holding
    nothing but the format's own files, and its nearest existing ancestor must be a
    writable directory.

    Raises:
        PopulationFormatError: naming the destination, what is wrong and what to do.
    """
    path = Path(path)
    if path.is_symlink():
        raise _refuse(path, f"it is a symbolic link to {os.readlink(path)}; save to the "
                            "directory it points to, or to a new directory")
    if path.exists():
        if not path.is_dir():
            raise _refuse(path, "it is a file, not a directory; choose a new or empty directory")
        foreign = foreign_entries(path)
        if foreign:
            shown = ", ".join(foreign[:_SHOWN]) + (", ..." if len(foreign) > _SHOWN else "")
            count = "1 entry" if len(foreign) == 1 else f"{len(foreign)} entries"
            raise _refuse(path, f"it holds {count} that the population format did not write "
                                f"({shown}), which saving would delete; choose a new or empty "
                                "directory")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise _refuse(path, f"{parent} is a file, not a directory; choose another location")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _refuse(path, f"its parent {parent} is not writable; choose a writable location")
    return path


def swap_into_place(new: Path, path: Path, token: str) -> None:
    """Move the complete population ``new`` to ``path``, replacing a population there."""
    if not path.exists():
        os.replace(new, path)
        fsync(path.parent)
        return
    check_destination(path)  # again, just before the swap: nothing foreign got in meanwhile
    old = side_dir(path, "old", token)
    os.replace(path, old)
    try:
        os.replace(new, path)
    except OSError:
        os.replace(old, path)
        raise
    fsync(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def recover(path: str | Path) -> None:
    """Repair an interrupted save at ``path`` and delete its dead saves' side directories.

    Raises:
        PopulationFormatError: ``path`` is missing and could not be restored from the side
            directory that holds it.
    """
    path = Path(path)
    sides = _dead_sides(path)
    if not path.exists() and not path.is_symlink():
        olds = [token for token, kinds in sides.items() if "old" in kinds]
        if olds:
            token = max(olds, key=lambda t: sides[t]["old"].stat().st_mtime_ns)
            _restore(sides[token], path)
    for kinds in sides.values():
        for side in kinds.values():
            if side.exists():
                shutil.rmtree(side, ignore_errors=True)


def _restore(kinds: dict[str, Path], path: Path) -> None:
    """Finish (new → path) or roll back (old → path) one interrupted swap."""
    source = kinds.get("new", kinds["old"])
    what = "finished" if source is kinds.get("new") else "rolled back"
    try:
        os.replace(source, path)
    except OSError as err:
        if path.exists():  # another process restored it first
            return
        raise PopulationFormatError(f"{path} is missing after an interrupted save and could not "
                                    f"be restored from {source} ({err}); rename {source} to "
                                    f"{path} by hand", path) from None
    fsync(path.parent)
    warnings.warn(f"population {path} was missing after an interrupted save; {what} the swap "
                  f"from {source.name}", stacklevel=3)


def _dead_sides(path: Path) -> dict[str, dict[str, Path]]:
    """``{token: {kind: dir}}`` of ``path``'s side directories whose save process is dead."""
    if not path.parent.is_dir():
        return {}
    sides: dict[str, dict[str, Path]] = {}
    for entry in path.parent.iterdir():
        match = _SIDE.fullmatch(entry.name)
        if (match and match["name"] == path.name and entry.is_dir() and not entry.is_symlink()
                and _process_gone(match["host"], int(match["pid"]))):
            sides.setdefault(match["token"], {})[match["kind"]] = entry
    return sides


def _process_gone(host: str, pid: int) -> bool:
    """Whether the save process ``pid`` on ``host`` has ended (unknown on another host)."""
    if host != _HOST or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def _plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _shown(entry: Path, root: Path) -> str:
    name = entry.relative_to(root).as_posix()
    return name + "/" if entry.is_dir() and not entry.is_symlink() else name


def _refuse(path: Path, why: str) -> PopulationFormatError:
    return PopulationFormatError(f"cannot save a population to {path}: {why}", path)
