"""The on-disk population format: a JSON manifest plus one safetensors file per member.

::

    population/
      manifest.json        # {"schema_version": 1, "members": [{id, architecture, config,
                           #   metadata, file, sha256}, ...], optional "created_by", "description"}
      weights/<id>.safetensors

Saving is atomic: everything is written into a hidden sibling directory that replaces the
target only once complete. Loading reads JSON and safetensors only (never pickle) and checks
the schema, every checksum and every tensor shape; each fault is one
``PopulationFormatError`` naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import safetensors.torch
from safetensors import SafetensorError
from torch import Tensor

from dynamo_lightning.checks import is_int
from dynamo_lightning.population import architectures
from dynamo_lightning.population.errors import PopulationFormatError
from dynamo_lightning.population.member import Member, check_member_id
from dynamo_lightning.registry import UnknownNameError

MANIFEST = "manifest.json"
WEIGHTS_DIR = "weights"
SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
_ENTRY_TYPES = {"id": str, "architecture": str, "config": dict, "metadata": dict, "file": str,
                "sha256": str}


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_population(members: Iterable[Member], path: str | Path, *,
                    created_by: str | None = None, description: str | None = None) -> Path:
    """Write ``members`` as a population directory at ``path``, atomically.

    An existing population at ``path`` is replaced as a whole; anything else there is left
    alone and refused.

    Returns:
        The population directory.

    Raises:
        ValueError: duplicate or unsafe ids, or weights that do not fit their architecture.
        FileExistsError: ``path`` exists and is not a population directory (nor empty).
    """
    members, path = list(members), Path(path)
    _check_for_save(members)
    if path.exists() and not (path.is_dir() and ((path / MANIFEST).is_file()
                                                  or not any(path.iterdir()))):
        raise FileExistsError(f"refusing to overwrite {path}: it exists and is not a population "
                              f"directory (no {MANIFEST})")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / WEIGHTS_DIR).mkdir(parents=True)
        entries = []
        for m in members:
            file = f"{WEIGHTS_DIR}/{m.id}.safetensors"
            tensors = {k: v.detach().cpu().contiguous().clone() for k, v in m.state.items()}
            safetensors.torch.save_file(tensors, tmp / file, metadata={"id": m.id})
            entries.append({"id": m.id, "architecture": m.architecture, "config": m.config,
                            "metadata": m.metadata, "file": file,
                            "sha256": sha256_file(tmp / file)})
        manifest: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        manifest.update({k: v for k, v in (("created_by", created_by),
                                           ("description", description)) if v is not None})
        manifest["members"] = entries
        with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        _swap_into_place(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _check_for_save(members: list[Member]) -> None:
    seen: set[str] = set()
    shapes: dict[tuple[str, str], dict[str, tuple[int, ...]]] = {}
    for m in members:
        if not isinstance(m, Member):
            raise TypeError(f"expected Member objects, got {type(m).__name__}")
        problem = check_member_id(m.id)
        if problem or m.id in seen:
            raise ValueError(problem or f"duplicate member id {m.id!r}")
        seen.add(m.id)
        if m.group_key not in shapes:
            shapes[m.group_key] = _expected_shapes(m.architecture, m.config)
        architectures.check_member_state(m.state, shapes[m.group_key], f"member {m.id!r}")


def _expected_shapes(name: str, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Per-member parameter shapes of architecture ``name`` with ``config``."""
    cls = architectures.get(name)
    try:
        return cls(num_members=1, seeds=[0], **config).parameter_shapes()
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"bad config for architecture {name!r}: {err}") from None


def _swap_into_place(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``, replacing an old population there as a whole."""
    if not path.exists():
        os.replace(tmp, path)
        return
    old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except OSError:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def load_population(path: str | Path) -> list[Member]:
    """Read and validate a population directory; members keep the manifest's order.

    Raises:
        PopulationFormatError: anything missing, malformed or inconsistent (one line, naming
            the file and the fault).
    """
    root = Path(path)
    if not root.is_dir():
        raise PopulationFormatError(f"population directory {root} not found", root)
    manifest_path = root / MANIFEST
    entries = _read_manifest(manifest_path)
    members: list[Member] = []
    seen: set[str] = set()
    shapes: dict[tuple[str, str], dict[str, tuple[int, ...]]] = {}
    for i, entry in enumerate(entries):
        members.append(_load_member(root, manifest_path, i, entry, seen, shapes))
    return members


def _read_manifest(manifest_path: Path) -> list[dict[str, Any]]:
    """The validated ``members`` list of a manifest."""
    def fail(fault: str) -> PopulationFormatError:
        return PopulationFormatError(f"{fault} in {manifest_path}", manifest_path)

    if not manifest_path.is_file():
        raise PopulationFormatError(f"missing manifest: {manifest_path} not found", manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise fail(f"invalid JSON at line {err.lineno} column {err.colno} ({err.msg})") from None
    except UnicodeDecodeError as err:
        raise fail(f"invalid JSON: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not isinstance(manifest, dict):
        raise fail(f"manifest must be a JSON object, got {type(manifest).__name__}")
    missing = [key for key in ("schema_version", "members") if key not in manifest]
    if missing:
        raise fail(f"missing key(s) {missing} at the top level")
    version = manifest["schema_version"]
    if not is_int(version) or version not in SUPPORTED_SCHEMA_VERSIONS:
        raise fail(f"unknown schema_version {version!r} (supported: "
                   f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))})")
    if not isinstance(manifest["members"], list):
        raise fail(f"'members' must be a list, got {type(manifest['members']).__name__}")
    for i, entry in enumerate(manifest["members"]):
        if not isinstance(entry, dict):
            raise fail(f"members[{i}] must be an object, got {type(entry).__name__}")
        missing = [key for key in _ENTRY_TYPES if key not in entry]
        if missing:
            raise fail(f"members[{i}] is missing key(s) {missing}")
        for key, kind in _ENTRY_TYPES.items():
            if not isinstance(entry[key], kind):
                raise fail(f"members[{i}].{key} must be {kind.__name__}, "
                           f"got {type(entry[key]).__name__} {entry[key]!r}")
    return manifest["members"]


def _load_member(root: Path, manifest_path: Path, i: int, entry: dict[str, Any], seen: set[str],
                 shapes: dict[tuple[str, str], dict[str, tuple[int, ...]]]) -> Member:
    """Validate ``members[i]`` against its weights file and build the Member."""
    where = f"members[{i}] of {manifest_path}"
    member_id, name = entry["id"], entry["architecture"]
    problem = check_member_id(member_id)
    if problem:
        raise PopulationFormatError(f"{problem} in {where}", manifest_path)
    if member_id in seen:
        raise PopulationFormatError(f"duplicate member id {member_id!r} in {where}", manifest_path)
    seen.add(member_id)
    try:
        architectures.get(name)
    except UnknownNameError:
        raise PopulationFormatError(f"unknown architecture {name!r} in {where} "
                                    f"(known: {', '.join(architectures.names())})",
                                    manifest_path) from None
    weights = _weights_path(root, entry["file"], where, manifest_path)
    data = weights.read_bytes()
    actual, expected = hashlib.sha256(data).hexdigest(), entry["sha256"].lower()
    if actual != expected:
        raise PopulationFormatError(f"checksum mismatch for {weights} (member {member_id!r}): "
                                    f"manifest says {expected[:12]}…, file has {actual[:12]}…",
                                    weights)
    try:
        state: dict[str, Tensor] = safetensors.torch.load(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise PopulationFormatError(f"corrupted safetensors file {weights} (member "
                                    f"{member_id!r}): {err}", weights) from None
    key = (name, json.dumps(entry["config"], sort_keys=True))
    try:
        if key not in shapes:
            shapes[key] = _expected_shapes(name, entry["config"])
    except ValueError as err:
        raise PopulationFormatError(f"{err} in {where}", manifest_path) from None
    try:
        architectures.check_member_state(state, shapes[key], f"member {member_id!r}")
    except ValueError as err:
        raise PopulationFormatError(f"{err} in {weights}", weights) from None
    return Member(id=member_id, architecture=name, config=entry["config"],
                  metadata=entry["metadata"], state=state)


def _weights_path(root: Path, file: str, where: str, manifest_path: Path) -> Path:
    """The weights file named by a manifest entry; it must lie inside the population."""
    weights = root / file
    if Path(file).is_absolute() or ".." in Path(file).parts:
        raise PopulationFormatError(f"weights file {file!r} in {where} must be a relative path "
                                    "inside the population directory", manifest_path)
    if not weights.is_file():
        raise PopulationFormatError(f"missing weights file {weights} (named in {where})", weights)
    return weights
