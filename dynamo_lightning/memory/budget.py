"""The budget side of the memory checks: what is free on a device, the check itself and
its one-line refusal, an estimate's terms, and torch's out-of-memory error as one line.

Imports nothing of the package and torch only where a CUDA device is asked about, so that
the command line's error boundary can import it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SKIP_ENV = "DYNAMO_SKIP_MEMORY_CHECK"
"""Set to anything but ``""``/``0`` to skip every check."""
CHECKED_FROM = 2**28
"""Estimates below this many bytes are not checked (nothing is read for them)."""


class MemoryEstimateError(ValueError):
    """A stage would need more memory than its device has free (one line: the setting that
    drives the estimate, the estimate and what is free)."""


def skipped() -> bool:
    """Whether ``DYNAMO_SKIP_MEMORY_CHECK`` turns the checks off."""
    return os.environ.get(SKIP_ENV, "") not in ("", "0")


def format_bytes(n: float) -> str:
    """``43 GB``, ``4.3 GB``, ``512 MB`` (decimal units, as free memory is quoted)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{int(n)} B"


# ----------------------------------------------------------------------------- free memory
def available_bytes(device: Any = "cpu") -> int | None:
    """Bytes free on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``),
    or None where that is not known (other device types, no ``/proc`` and no ``sysconf``).

    CPU: ``MemAvailable`` of ``/proc/meminfo`` (else ``os.sysconf`` free pages), capped by
    the cgroup's limit less its usage. CUDA: ``torch.cuda.mem_get_info`` plus what torch's
    caching allocator holds unused.
    """
    kind, _, index = str(device).partition(":")
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            return None
        index_ = int(index) if index else torch.cuda.current_device()
        free, _total = torch.cuda.mem_get_info(index_)
        cached = torch.cuda.memory_reserved(index_) - torch.cuda.memory_allocated(index_)
        return int(free + max(0, cached))
    if kind != "cpu":
        return None
    free = _meminfo_available()
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    limit = _cgroup_headroom()
    return free if limit is None else min(free, limit)


def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom(root: str = "/sys/fs/cgroup") -> int | None:
    """This process's cgroup limit less what it holds (its reclaimable file cache not
    counted), v2 else v1; None without a limit."""
    for limit, usage, stat, cache in (
            ("memory.max", "memory.current", "memory.stat", "inactive_file"),
            ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes",
             "memory/memory.stat", "total_inactive_file")):
        try:
            cap = Path(root, limit).read_text().strip()
            if cap == "max" or int(cap) >= 2**60:
                return None
            used = int(Path(root, usage).read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            lines = Path(root, stat).read_text().splitlines()
            used -= next(int(line.split()[1]) for line in lines if line.startswith(cache + " "))
        except (OSError, ValueError, IndexError, StopIteration):
            pass
        return max(0, int(cap) - used)
    return None


# ----------------------------------------------------------------------------- the check
def check_fits(estimate_bytes: float, setting: str, device: Any = "cpu") -> None:
    """Refuse an estimate larger than what is free on ``device``.

    Args:
        estimate_bytes: the stage's estimated peak.
        setting: the setting that drives it, with its value (``"model.meta.hidden_size
            480000"``): the estimate's largest term.
        device: where the stage allocates.

    Raises:
        MemoryEstimateError: ``"<setting> needs ~480 GB, 20 GB free; lower it (or set
            DYNAMO_SKIP_MEMORY_CHECK=1 to run anyway)"``.
    """
    if estimate_bytes < CHECKED_FROM or skipped():
        return
    free = available_bytes(device)
    if free is None or estimate_bytes <= free:
        return
    where = "" if str(device) == "cpu" else f" on {device}"
    raise MemoryEstimateError(f"{setting} needs ~{format_bytes(estimate_bytes)}, "
                              f"{format_bytes(free)} free{where} (memory estimate); lower it, "
                              f"or set {SKIP_ENV}=1 to run anyway")


@dataclass(frozen=True)
class Estimate:
    """A stage's estimated peak: ``terms`` maps the setting that drives each part (with its
    value) to that part's bytes."""

    terms: Mapping[str, float]

    @property
    def total(self) -> float:
        return float(sum(self.terms.values()))

    @property
    def largest(self) -> str:
        """The setting of the largest term (what a refusal names)."""
        return max(self.terms, key=lambda k: self.terms[k])

    def check(self, device: Any = "cpu") -> None:
        """:func:`check_fits` of the total, naming the largest term's setting."""
        if self.terms:
            check_fits(self.total, self.largest, device)


def lead(*factors: tuple[str, float, float]) -> str:
    """Of a product's factors ``(label, value, typical value)``, the label of the one
    furthest above its typical value: the one to lower."""
    return max(factors, key=lambda f: f[1] / max(f[2], 1e-12))[0]


def add_term(terms: dict[str, float], setting: str, nbytes: float) -> None:
    """Add ``nbytes`` to the term of ``setting`` (terms of one setting add up)."""
    terms[setting] = terms.get(setting, 0.0) + nbytes


# ----------------------------------------------------------------------------- out of memory
ADVICE = "dynamo_advice"
"""Attribute a handler sets on an out-of-memory error: the one line to print for it."""


def is_out_of_memory(err: BaseException) -> bool:
    """torch's ``OutOfMemoryError`` (``torch.cuda.OutOfMemoryError``), recognised by name so
    that the command line need not import torch to ask, or the CPU allocator's failure (a
    ``RuntimeError`` that says ``DefaultCPUAllocator: can't allocate memory``)."""
    return any(cls.__name__ == "OutOfMemoryError" and cls.__module__.startswith("torch")
               for cls in type(err).__mro__) or (
        isinstance(err, RuntimeError) and "DefaultCPUAllocator: can't allocate" in str(err))


def out_of_memory_line(err: BaseException) -> str:
    """The one line for an out-of-memory error: what a handler attached (:data:`ADVICE`),
    else what torch tried to allocate and the settings that size a run."""
    advice = getattr(err, ADVICE, None)
    if advice:
        return str(advice)
    skip = f" ({SKIP_ENV} is set: the memory check was skipped)" if skipped() else ""
    return (f"{allocation(err)}; lower the batch (data.batch_size, data.members_per_batch, "
            "data.samples_per_member) or the model (model.hidden_sizes, "
            f"model.meta.hidden_size){skip}")


def allocation(err: BaseException) -> str:
    """``CUDA out of memory (tried to allocate 2.00 GiB)`` from torch's message (the CPU
    allocator's: ``out of memory (tried to allocate 43 GB)``)."""
    text = str(err)
    cuda = "CUDA out of memory" if "CUDA" in text or "cuda" in text else "out of memory"
    found = re.search(r"[Tt]ried to allocate ([\d.]+ ?[KMGT]?i?B)", text)
    size = found[1] if found else None
    raw = re.search(r"tried to allocate (\d+) bytes", text)
    if raw:
        size = format_bytes(int(raw[1]))
    return cuda + (f" (tried to allocate {size})" if size else "")
