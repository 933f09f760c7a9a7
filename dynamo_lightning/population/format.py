"""The on-disk population format: a JSON manifest plus one safetensors file per member.

::

    population/
      manifest.json        # {"schema_version": 1, "members": [{id, architecture, config,
                           #   metadata, file, sha256}, ...], optional "created_by", "description"}
      weights/<id>.safetensors

Saving is atomic: everything is written into a hidden sibling directory that replaces the
target only once complete (``destination.py``: the swap, its recovery after a crash, and the
check that a save never deletes what it did not write). Loading reads JSON and safetensors
only (never pickle) and checks the manifest (``manifest.py``: its schema, and JSON nested no
deeper than ``MAX_JSON_DEPTH``), every checksum, every tensor's shape and dtype (the
architecture's ``parameter_dtype``; ``convert_dtypes=True`` converts instead), that weights
are finite, that each member has its own weights file (not a file, a hard link or a copy of
another member's) and that no file it reads, the manifest included, lies outside the
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
from dynamo_lightning.population.manifest import (
    MAX_JSON_DEPTH,
    SCHEMA_VERSION,
    json_too_deep,
    outside_link,
    read_manifest,
)
from dynamo_lightning.population.member import Member, check_member_id
from dynamo_lightning.registry import UnknownNameError

__all__ = ["MANIFEST", "SCHEMA_VERSION", "WEIGHTS_DIR", "check_destination", "load_population",
           "save_population", "sha256_file"]

WRITER_THREADS = 8
"""Threads that write member files in parallel (see ``_write_directory``)."""


def save_population(members: Iterable[Member], path: str | Path, *,
                    created_by: str | None = None, description: str | None = None) -> Path:
    """Write ``members`` as a population directory at ``path``, atomically.

    ``path`` must be absent, empty or a population holding only the format's own files
    (``check_destination``); an existing population is replaced as a whole, anything else
    is refused and left alone. A save interrupted earlier is first finished or rolled back,
    and side directories of dead saves are deleted (``destination.recover``).
    Floating-point weights are stored in their architecture's ``parameter_dtype`` (float32
    for the built-in ones), e.g. a stack trained in float64 is saved as float32.

    Returns:
        The population directory.

    Raises:
        ValueError: no members, duplicate or unsafe ids, a config or metadata nested too
            deep for the manifest, or weights that do not fit their architecture or are not
            finite floating-point numbers.
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
    dtype = architectures.get(m.architecture).parameter_dtype
    tensors = {k: v.detach().cpu().to(dtype).contiguous().clone() for k, v in m.state.items()}
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
        _check_nesting(m)
        refusal = getattr(architectures.get(m.architecture), "save_refusal", None)
        if refusal is not None:  # e.g. 'module' members, which run a user's code
            raise ValueError(refusal(m))
        if m.group_key not in shapes:
            shapes[m.group_key] = _expected_shapes(m.architecture, m.config)
        architectures.check_member_state(m.state, shapes[m.group_key], f"member {m.id!r}")
        bad = [name for name, t in m.state.items() if not t.is_floating_point()]
        if bad:
            raise ValueError(f"member {m.id!r} has tensor(s) {bad} of dtype "
                             f"{m.state[bad[0]].dtype}, not floating-point; store weights as "
                             "float tensors (e.g. t.float())")
        dtype = architectures.get(m.architecture).parameter_dtype
        bad = non_finite_tensors({k: t.to(dtype) for k, t in m.state.items()})  # as stored
        if bad:
            raise ValueError(f"member {m.id!r} has NaN or infinite values in tensor(s) {bad}; "
                             "a population stores finite weights only, so drop or fix it")


ENTRY_DEPTH = 3
"""Levels of the manifest above a member's config or metadata (top object, list, entry)."""


def _check_nesting(m: Member) -> None:
    """Refuse a config or metadata nested so deep that loading would refuse the manifest."""
    for what, value in (("config", m.config), ("metadata", m.metadata)):
        if json_too_deep(json.dumps(value), MAX_JSON_DEPTH - ENTRY_DEPTH):
            raise ValueError(f"the {what} of member {m.id!r} is nested deeper than "
                             f"{MAX_JSON_DEPTH - ENTRY_DEPTH} levels; a manifest is read "
                             f"only up to {MAX_JSON_DEPTH} levels, so flatten it")


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


def load_population(path: str | Path, *, convert_dtypes: bool = False) -> list[Member]:
    """Read and validate a population directory; members keep the manifest's order.

    A save interrupted earlier is first finished or rolled back (``destination.recover``).

    Args:
        path: the population directory.
        convert_dtypes: convert real-valued tensors of another dtype (e.g. float16, float64 or
            int32) to the architecture's ``parameter_dtype`` instead of refusing them.

    Raises:
        PopulationFormatError: anything missing, malformed or inconsistent (one line, naming
            the file and the fault).
    """
    root = Path(path)
    recover(os.path.abspath(root))
    if not root.is_dir():
        raise PopulationFormatError(f"population directory {root} not found", root)
    loader = _Loader(root, convert_dtypes)
    return [loader.member(i, entry) for i, entry in enumerate(read_manifest(root))]


class _Loader:
    """Builds members entry by entry, checking them against each other as it goes."""

    def __init__(self, root: Path, convert_dtypes: bool) -> None:
        self.root, self.manifest = root, root / MANIFEST
        self.real_root = root.resolve()
        self.convert_dtypes = convert_dtypes
        self.ids: set[str] = set()
        self.files: dict[Path, str] = {}  # resolved weights file -> "'id' (members[i])"
        # (device, inode) and sha256 of each weights file read -> (its member, its path)
        self.seen: dict[tuple[int, int] | str, tuple[str, Path]] = {}
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
            cls = architectures.get(name)
        except UnknownNameError:
            raise self.fail(f"unknown architecture {name!r} in {where} "
                            f"(known: {', '.join(architectures.names())})") from None
        who = f"{member_id!r} (members[{i}])"
        weights = self.weights_path(entry["file"], who)
        state = self.read_weights(weights, member_id, entry["sha256"], who)
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
        state = self.with_dtype(state, cls.parameter_dtype, weights, member_id, name)
        bad = non_finite_tensors(state)
        if bad:
            raise self.fail(f"member {member_id!r} has NaN or infinite values in tensor(s) {bad} "
                            f"in {weights}; retrain the member or remove it from the manifest",
                            weights)
        self.files[weights.resolve()] = who
        return Member(id=member_id, architecture=name, config=entry["config"],
                      metadata=entry["metadata"], state=state)

    def weights_path(self, file: str, who: str) -> Path:
        """The weights file named by member ``who``'s entry: inside the population, used by
        no other entry."""
        weights = self.root / file
        if Path(file).is_absolute() or ".." in Path(file).parts:
            raise self.fail(f"weights file {file!r} of member {who} in {self.manifest} must be "
                            "a relative path inside the population directory")
        if not weights.is_file():
            raise self.fail(f"missing weights file {weights} (named by member {who} in "
                            f"{self.manifest})", weights)
        real = outside_link(weights, self.real_root)
        if real is not None:
            raise self.fail(f"weights file {weights} of member {who} is a link to {real}, "
                            f"outside the population directory; copy the file into "
                            f"{self.root / WEIGHTS_DIR} instead of linking to it", weights)
        if weights.resolve() in self.files:
            raise self.fail(f"members {self.files[weights.resolve()]} and {who} both name the "
                            f"weights file {weights.resolve()} (as {weights}); each member "
                            "needs its own file", weights)
        return weights

    def read_weights(self, weights: Path, member_id: str, sha256: str,
                     who: str) -> dict[str, Tensor]:
        """The tensors of a weights file whose bytes match the manifest's checksum and are no
        other member's file (a hard link to it) or a copy of one."""
        info = weights.stat()
        self.refuse_seen((info.st_dev, info.st_ino), weights, who, "the same file (hard links)")
        data = weights.read_bytes()
        actual, expected = hashlib.sha256(data).hexdigest(), sha256.lower()
        if actual != expected:
            raise self.fail(f"checksum mismatch for {weights} (member {member_id!r}): manifest "
                            f"says {expected[:12]}…, file has {actual[:12]}…", weights)
        self.refuse_seen(actual, weights, who, f"identical copies (sha256 {actual[:12]}…)")
        self.seen[(info.st_dev, info.st_ino)] = self.seen[actual] = (who, weights)
        try:
            return safetensors.torch.load(data)
        except (SafetensorError, ValueError, RuntimeError) as err:
            raise self.fail(f"corrupted safetensors file {weights} (member {member_id!r}): "
                            f"{err}", weights) from None

    def refuse_seen(self, key: tuple[int, int] | str, weights: Path, who: str,
                    what: str) -> None:
        """Refuse a weights file another member's file already had ``key`` (inode, sha256)."""
        if key in self.seen:
            other, other_path = self.seen[key]
            raise self.fail(f"the weights files of members {other} and {who} are {what}: "
                            f"{other_path} and {weights}; each member needs its own weights "
                            "file", weights)

    def with_dtype(self, state: dict[str, Tensor], dtype: torch.dtype, weights: Path,
                   member_id: str, name: str) -> dict[str, Tensor]:
        """``state`` if every tensor has ``dtype``; converted when asked and real-valued."""
        wrong = {k: t.dtype for k, t in state.items() if t.dtype != dtype}
        if not wrong:
            return state
        real = not any(d.is_complex or d == torch.bool for d in wrong.values())
        if self.convert_dtypes and real:
            return {k: t.to(dtype) for k, t in state.items()}
        groups: dict[str, list[str]] = {}
        for k, d in sorted(wrong.items()):
            groups.setdefault(str(d).removeprefix("torch."), []).append(k)
        found = " and ".join(f"{d} tensor(s) {names}" for d, names in groups.items())
        fix = ("convert it once with Population.load(path, convert_dtypes=True) and save it "
               "again" if real else "complex and bool tensors cannot be converted")
        raise self.fail(f"weights file {weights} (member {member_id!r}) holds {found}, "
                        f"but {name!r} parameters are {str(dtype).removeprefix('torch.')}; "
                        f"{fix}", weights)
