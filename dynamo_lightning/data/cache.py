"""An atomic, memory-mapped on-disk cache of numpy arrays, keyed by content.

A cache entry is a directory ``<cache_dir>/<key>/`` holding one ``.npy`` per array and a
``meta.json`` that lists every array's shape, dtype and the SHA-256 of its file. It is
written into a temporary sibling directory and moved into place with ``os.replace``, so
readers see a complete entry or none; an entry damaged or changed afterwards (truncated file,
edited JSON, array values changed in place) is reported with a warning naming the file and
treated as absent, so the caller rebuilds it. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dynamo_lightning.files import fsync, sha256_file

#: Bump when the layout or meaning of cached arrays changes: old entries stop matching.
#: 2: every array's file checksum is stored and verified before reuse.
CACHE_FORMAT_VERSION = 2

_META = "meta.json"


def cache_key(**parts: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``parts`` plus ``CACHE_FORMAT_VERSION``.

    Args:
        **parts: JSON-serialisable values that determine the cached content (population
            checksum, task spec, seeds, sizes, ...). Key order does not matter.

    Raises:
        TypeError: a part is not JSON-serialisable.
    """
    payload = {"format_version": CACHE_FORMAT_VERSION, "parts": parts}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def write_cache(cache_dir: str | Path, key: str, arrays: dict[str, np.ndarray],
                meta: dict[str, Any]) -> Path:
    """Write ``arrays`` (one ``<name>.npy`` each) and ``meta`` atomically under ``<dir>/<key>``.

    An existing damaged entry is replaced. An intact one (another process, e.g. a second fit
    of the same population, moved its complete entry into place first) is kept and ours is
    discarded: the key fixes the content, and that process may be reading its entry.

    Args:
        cache_dir: parent directory (created when missing).
        key: entry name, usually from ``cache_key``.
        arrays: name → array; names must be plain file stems.
        meta: JSON-serialisable description stored in ``meta.json`` (under ``"meta"``).

    Returns:
        The entry's directory.
    """
    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    for name in arrays:
        if not name or Path(name).name != name or name.startswith("."):
            raise ValueError(f"cache array name {name!r} is not a plain file name")
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=root))
    try:
        listing = {}
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            if array.dtype == object:
                raise ValueError(f"cache array {name!r} has dtype object (would need pickle)")
            np.save(tmp / f"{name}.npy", array, allow_pickle=False)
            listing[name] = {"shape": list(array.shape), "dtype": array.dtype.str,
                             "sha256": sha256_file(tmp / f"{name}.npy")}
        record = {"format_version": CACHE_FORMAT_VERSION, "key": key, "arrays": listing,
                  "meta": meta}
        (tmp / _META).write_text(json.dumps(record, indent=1, sort_keys=True))
        for file in [*tmp.iterdir(), tmp]:
            fsync(file)
        if final.exists():
            if _intact(root, key):  # another fit of the same key wrote it first: the same
                return final        # content, and that fit may be reading it right now
            trash = root / f".{key}.old-{uuid.uuid4().hex}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / _META).exists():
                raise
        fsync(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _intact(root: Path, key: str) -> bool:
    """Whether the entry ``<root>/<key>`` reads back whole (its damage, if any, is the
    caller's warning to give, not a second one here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_cache(root, key) is not None


def read_cache(cache_dir: str | Path, key: str, verify: bool = True
               ) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Open the entry ``<dir>/<key>`` memory-mapped (read-only).

    Every array file is checked against the SHA-256 stored when it was written (one read of
    the file), so an entry whose values were changed in place is never reused.

    Args:
        verify: hash the files (False only for an entry this process has just written and
            hashed: at thousands of members a pass over the files takes seconds).

    Returns:
        ``(arrays, meta)`` with arrays as ``np.memmap`` (``np.load(mmap_mode="r")``), or None
        when there is no entry or it is damaged or changed (then a ``UserWarning`` names the
        bad file and says it will be rebuilt).
    """
    entry = Path(cache_dir) / key
    meta_file = entry / _META
    if not entry.is_dir():
        return None
    try:
        record = json.loads(meta_file.read_text())
        listing = record["arrays"]
        if record.get("format_version") != CACHE_FORMAT_VERSION:
            raise ValueError(f"format version {record.get('format_version')!r} is not "
                             f"{CACHE_FORMAT_VERSION}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        warnings.warn(f"ignoring damaged trajectory cache {meta_file}: {err}; rebuilding",
                      stacklevel=2)
        return None
    arrays: dict[str, np.ndarray] = {}
    for name, spec in listing.items():
        path = entry / f"{name}.npy"
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            if list(array.shape) != list(spec["shape"]) or array.dtype.str != spec["dtype"]:
                raise ValueError(f"has shape {array.shape} and dtype {array.dtype.str}, "
                                 f"expected {tuple(spec['shape'])} and {spec['dtype']}")
            actual = sha256_file(path) if verify else spec["sha256"]
            if actual != spec["sha256"]:
                raise ValueError(f"its contents changed since the cache was written (sha256 "
                                 f"{actual[:12]}…, stored {str(spec['sha256'])[:12]}…)")
        except (OSError, ValueError, KeyError, TypeError, EOFError) as err:
            arrays.clear()
            warnings.warn(f"ignoring damaged trajectory cache {path}: {err}; rebuilding",
                          stacklevel=2)
            return None
        arrays[name] = array
    return arrays, record.get("meta", {})
