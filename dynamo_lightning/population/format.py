"""The on-disk population format: a JSON manifest plus one safetensors file per member.

::

    population/
      manifest.json        # {"schema_version": 1, "members": [{id, architecture, config,
                           #   metadata, file, sha256}, ...], optional "created_by", "description"}
      weights/<id>.safetensors

Saving is atomic: everything is written into a hidden sibling directory that replaces the
target only once complete (``destination.py``: the swap, its recovery after a crash, and the
check that a save never deletes what it did not write). Loading reads JSON and safetensors
only (never pickle) and checks the schema, every checksum, every tensor shape, that weights
are finite, that each member has its own weights file and that no file lies outside the
population; each fault is one ``PopulationFormatError`` naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import Tensor

from dynamo_lightning.checks import is_int
from dynamo_lightning.files import fsync, sha256_file
from dynamo_lightning.population import architectures
from dynamo_lightning.population.destination import (
    MANIFEST,
    WEIGHTS_DIR,
    check_destination,
    new_token,
    recover,
    side_dir,
    swap_into_place,
)
from dynamo_lightning.population.errors import PopulationFormatError
from dynamo_lightning.population.member import Member, check_member_id
from dynamo_lightning.registry import UnknownNameError

__all__ = ["MANIFEST", "SCHEMA_VERSION", "WEIGHTS_DIR", "check_destination", "load_population",
           "save_population", "sha256_file"]

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
_ENTRY_TYPES = {"id": str, "architecture": str, "config": dict, "metadata": dict, "file": str,
                "sha256": str}


WRITER_THREADS = 8
"""Threads that write member files in parallel (see ``_write_directory``)."""


def save_population(members: Iterable[Member], path: str | Path, *,
                    created_by: str | None = None, description: str | None = None) -> Path:
    """Write ``members`` as a population directory at ``path``, atomically.

    ``path`` must be absent, empty or a population holding only the format's own files
    (``check_destination``); an existing population is replaced as a whole, anything else
    is refused and left alone. A save interrupted earlier is first finished or rolled back,
    and side directories of dead saves are deleted (``destination.recover``).

    Returns:
        The population directory.

    Raises:
        ValueError: no members, duplicate or unsafe ids, or weights that do not fit their
            architecture or are not finite.
        PopulationFormatError: ``path`` is not a place a population may be written.
    """
    members, path = list(members), Path(path)
    _check_for_save(members)
    target = Path(os.path.abspath(path))  # side directories go next to its real name
    recover(target)
    check_destination(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    token = new_token()
    tmp = side_dir(target, "new", token)
    try:
        _write_directory(members, tmp, created_by, description)
        swap_into_place(tmp, target, token)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _write_directory(members: list[Member], root: Path, created_by: str | None,
                     description: str | None) -> None:
    """Write the manifest and weights of ``members`` into the new directory ``root``."""
    (root / WEIGHTS_DIR).mkdir(parents=True)
    # Member files are independent: write (serialise, fsync, hash) them on a few threads,
    # which all release the GIL in that work; thousands of members save in seconds.
    with ThreadPoolExecutor(max_workers=min(WRITER_THREADS, len(members))) as pool:
        entries = list(pool.map(lambda m: _write_member(m, root), members))
    manifest: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    manifest.update({k: v for k, v in (("created_by", created_by),
                                       ("description", description)) if v is not None})
    manifest["members"] = entries
    with open(root / MANIFEST, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    fsync(root / WEIGHTS_DIR)
    fsync(root)


def _write_member(m: Member, root: Path) -> dict[str, Any]:
    """Write one member's weights file (fsynced) and return its manifest entry."""
    file = f"{WEIGHTS_DIR}/{m.id}.safetensors"
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in m.state.items()}
    safetensors.torch.save_file(tensors, root / file, metadata={"id": m.id})
    fsync(root / file)
    return {"id": m.id, "architecture": m.architecture, "config": m.config,
            "metadata": m.metadata, "file": file, "sha256": sha256_file(root / file)}


def _check_for_save(members: list[Member]) -> None:
    if not members:
        raise ValueError("cannot save a population with no members; add at least one member")
    seen: set[str] = set()
    shapes: dict[tuple[str, str], dict[str, tuple[int, ...]]] = {}
    for m in members:
        if not isinstance(m, Member):
            raise TypeError(f"expected Member objects, got {type(m).__name__}")
        problem = check_member_id(m.id)
        if problem or m.id in seen:
            raise ValueError(problem or f"duplicate member id {m.id!r}")
        seen.add(m.id)
        refusal = getattr(architectures.get(m.architecture), "save_refusal", None)
        if refusal is not None:  # e.g. 'module' members, which run a user's code
            raise ValueError(refusal(m))
        if m.group_key not in shapes:
            shapes[m.group_key] = _expected_shapes(m.architecture, m.config)
        architectures.check_member_state(m.state, shapes[m.group_key], f"member {m.id!r}")
        bad = non_finite_tensors(m.state)
        if bad:
            raise ValueError(f"member {m.id!r} has NaN or infinite values in tensor(s) {bad}; "
                             "a population stores finite weights only, so drop or fix it")


def non_finite_tensors(state: dict[str, Tensor]) -> list[str]:
    """Names of the floating-point tensors in ``state`` holding a NaN or an infinity."""
    return [name for name, t in state.items()
            if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all())]


def _expected_shapes(name: str, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Per-member parameter shapes of architecture ``name`` with ``config``."""
    cls = architectures.get(name)
    try:
        return cls(num_members=1, seeds=[0], **config).parameter_shapes()
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"bad config for architecture {name!r}: {err}") from None


def load_population(path: str | Path) -> list[Member]:
    """Read and validate a population directory; members keep the manifest's order.

    A save interrupted earlier is first finished or rolled back (``destination.recover``).

    Raises:
        PopulationFormatError: anything missing, malformed or inconsistent (one line, naming
            the file and the fault).
    """
    root = Path(path)
    recover(os.path.abspath(root))
    if not root.is_dir():
        raise PopulationFormatError(f"population directory {root} not found", root)
    loader = _Loader(root)
    return [loader.member(i, entry) for i, entry in enumerate(_read_manifest(loader.manifest))]


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
    if not manifest["members"]:
        raise fail("no members listed ('members' is empty); a population needs at least one "
                   "member, so save one with members")
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


class _Loader:
    """Builds members entry by entry, checking them against each other as it goes."""

    def __init__(self, root: Path) -> None:
        self.root, self.manifest = root, root / MANIFEST
        self.real_root = root.resolve()
        self.ids: set[str] = set()
        self.files: dict[Path, str] = {}  # resolved weights file -> "'id' (members[i])"
        self.shapes: dict[tuple[str, str], dict[str, tuple[int, ...]]] = {}

    def fail(self, fault: str, path: Path | None = None) -> PopulationFormatError:
        return PopulationFormatError(fault, path or self.manifest)

    def member(self, i: int, entry: dict[str, Any]) -> Member:
        """Validate ``members[i]`` against its weights file and build the Member."""
        where = f"members[{i}] of {self.manifest}"
        member_id, name = entry["id"], entry["architecture"]
        problem = check_member_id(member_id)
        if problem:
            raise self.fail(f"{problem} in {where}")
        if member_id in self.ids:
            raise self.fail(f"duplicate member id {member_id!r} in {where}")
        self.ids.add(member_id)
        try:
            architectures.get(name)
        except UnknownNameError:
            raise self.fail(f"unknown architecture {name!r} in {where} "
                            f"(known: {', '.join(architectures.names())})") from None
        weights = self.weights_path(entry["file"], f"member {member_id!r} ({where})")
        state = self.read_weights(weights, member_id, entry["sha256"])
        key = (name, json.dumps(entry["config"], sort_keys=True))
        try:
            if key not in self.shapes:
                self.shapes[key] = _expected_shapes(name, entry["config"])
        except ValueError as err:
            raise self.fail(f"{err} in {where}") from None
        try:
            architectures.check_member_state(state, self.shapes[key], f"member {member_id!r}")
        except ValueError as err:
            raise self.fail(f"{err} in {weights}", weights) from None
        bad = non_finite_tensors(state)
        if bad:
            raise self.fail(f"member {member_id!r} has NaN or infinite values in tensor(s) {bad} "
                            f"in {weights}; retrain the member or remove it from the manifest",
                            weights)
        self.files[weights.resolve()] = f"{member_id!r} (members[{i}])"
        return Member(id=member_id, architecture=name, config=entry["config"],
                      metadata=entry["metadata"], state=state)

    def weights_path(self, file: str, who: str) -> Path:
        """The weights file named by an entry: inside the population, used by no other one."""
        weights = self.root / file
        if Path(file).is_absolute() or ".." in Path(file).parts:
            raise self.fail(f"weights file {file!r} of {who} must be a relative path inside the "
                            "population directory")
        if not weights.is_file():
            raise self.fail(f"missing weights file {weights} (named by {who})", weights)
        real = weights.resolve()
        if not real.is_relative_to(self.real_root):
            raise self.fail(f"weights file {weights} of {who} is a link to {real}, outside the "
                            f"population directory; copy the file into {self.root / WEIGHTS_DIR} "
                            "instead of linking to it", weights)
        if real in self.files:
            raise self.fail(f"members {self.files[real]} and {who} both name the weights file "
                            f"{weights}; each member needs its own file", weights)
        return weights

    def read_weights(self, weights: Path, member_id: str, sha256: str) -> dict[str, Tensor]:
        """The tensors of a weights file whose bytes match the manifest's checksum."""
        data = weights.read_bytes()
        actual, expected = hashlib.sha256(data).hexdigest(), sha256.lower()
        if actual != expected:
            raise self.fail(f"checksum mismatch for {weights} (member {member_id!r}): manifest "
                            f"says {expected[:12]}…, file has {actual[:12]}…", weights)
        try:
            return safetensors.torch.load(data)
        except (SafetensorError, ValueError, RuntimeError) as err:
            raise self.fail(f"corrupted safetensors file {weights} (member {member_id!r}): "
                            f"{err}", weights) from None
