"""Reading a population's ``manifest.json`` as untrusted data.

The manifest must be a file inside the population directory (a link that leaves it is
refused, like a member's weights file that does), nested no deeper than
:data:`MAX_JSON_DEPTH` (checked on the text before the JSON parser recurses into it), and
follow the schema: ``{"schema_version": 1, "members": [{id, architecture, config, metadata,
file, sha256}, ...]}``. Each fault is one ``PopulationFormatError`` naming the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dynamo_lightning.checks import is_int
from dynamo_lightning.population.destination import MANIFEST
from dynamo_lightning.population.errors import PopulationFormatError

__all__ = ["MAX_JSON_DEPTH", "SCHEMA_VERSION", "SUPPORTED_SCHEMA_VERSIONS", "json_too_deep",
           "outside_link", "read_manifest"]

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a manifest may have (saved ones have about 5)."""
_ENTRY_TYPES = {"id": str, "architecture": str, "config": dict, "metadata": dict, "file": str,
                "sha256": str}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON ``text`` nests arrays/objects deeper than ``limit``: a scan of its
    brackets outside strings, so that a hostile file never reaches the recursive parser."""
    depth = 0
    for bracket in _BRACKET.finditer(_STRING.sub('""', text)):
        if bracket.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def outside_link(path: Path, real_root: Path) -> Path | None:
    """Where ``path`` really is when that is outside the directory ``real_root`` (resolved),
    else None."""
    real = path.resolve()
    return None if real.is_relative_to(real_root) else real


def read_manifest(root: Path) -> list[dict[str, Any]]:
    """The validated ``members`` list of the manifest of population directory ``root``."""
    manifest_path = root / MANIFEST

    def fail(fault: str) -> PopulationFormatError:
        return PopulationFormatError(f"{fault} in {manifest_path}", manifest_path)

    if not manifest_path.is_file():
        raise PopulationFormatError(f"missing manifest: {manifest_path} not found", manifest_path)
    real = outside_link(manifest_path, root.resolve())
    if real is not None:
        raise PopulationFormatError(
            f"manifest {manifest_path} is a link to {real}, outside the population directory; "
            f"copy the file into {root} instead of linking to it", manifest_path)
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise fail(f"invalid JSON: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if json_too_deep(text):
        raise fail(f"invalid manifest: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise fail(f"invalid JSON at line {err.lineno} column {err.colno} ({err.msg})") from None
    if not isinstance(manifest, dict):
        raise fail(f"manifest must be a JSON object, got {type(manifest).__name__}")
    missing = [key for key in ("schema_version", "members") if key not in manifest]
    if missing:
        raise fail(f"missing key(s) {missing} at the top level")
    version = manifest["schema_version"]
    if not is_int(version) or version not in SUPPORTED_SCHEMA_VERSIONS:
        raise fail(f"unknown schema_version {version!r} (supported: "
                   f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))})")
    _check_members(manifest["members"], fail)
    return manifest["members"]


def _check_members(members: object, fail: Callable[[str], PopulationFormatError]) -> None:
    """Raise ``fail(fault)`` unless ``members`` is a non-empty list of well-typed entries."""
    if not isinstance(members, list):
        raise fail(f"'members' must be a list, got {type(members).__name__}")
    if not members:
        raise fail("no members listed ('members' is empty); a population needs at least one "
                   "member, so save one with members")
    for i, entry in enumerate(members):
        if not isinstance(entry, dict):
            raise fail(f"members[{i}] must be an object, got {type(entry).__name__}")
        missing = [key for key in _ENTRY_TYPES if key not in entry]
        if missing:
            raise fail(f"members[{i}] is missing key(s) {missing}")
        for key, kind in _ENTRY_TYPES.items():
            if not isinstance(entry[key], kind):
                raise fail(f"members[{i}].{key} must be {kind.__name__}, "
                           f"got {type(entry[key]).__name__} {entry[key]!r}")
