"""The common Trainer flags, checked as soon as a LightningCLI command line is parsed: before
the model and the data module are built (trajectories, a population's grid) and in the
project's wording, ``trainer.max_epochs must be an integer >= -1 (-1: no limit), got -5``.

Lightning refuses some bad values itself, but only once the Trainer is built, and lets others
through to fail in the first epoch (``accumulate_grad_batches: 0`` and
``check_val_every_n_epoch: 0`` divide by zero) or to do harm without a word (a negative
``gradient_clip_val`` turns every clipped gradient around). Values that only Lightning can
judge (a time format, a device string, an accelerator) stay Lightning's; the Trainer's own
refusals are reported on one line too (``SafeCheckpointCLI.instantiate_trainer``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from dynamo_lightning.checks import finite_real, int_at_least, is_int, non_negative_real

__all__ = ["PROFILERS", "check_trainer_flags"]

PROFILERS = ("simple", "advanced", "pytorch", "xla")
"""The profiler names Lightning's Trainer takes as a string."""

COUNTS: dict[str, tuple[int, str | None]] = {
    "max_epochs": (-1, "-1: no limit"),
    "max_steps": (-1, "-1: no limit"),
    "min_epochs": (0, None),
    "min_steps": (0, None),
    "check_val_every_n_epoch": (1, "null: validate by val_check_interval alone"),
    "log_every_n_steps": (0, None),
    "accumulate_grad_batches": (1, None),
    "num_sanity_val_steps": (-1, "-1: every validation batch"),
    "num_nodes": (1, None),
    "reload_dataloaders_every_n_epochs": (0, None),
}
"""Integer flags: the smallest value Lightning can run with, and what a special value means.
None is left to the flag's type (``max_epochs: null`` is Lightning's default)."""

BATCH_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches",
                "limit_predict_batches", "overfit_batches")
"""Flags that are a fraction of the batches in [0, 1] or a count of them."""


def check_trainer_flags(trainer: Any, prefix: str = "trainer.") -> None:
    """Refuse a common Trainer flag that cannot work.

    Args:
        trainer: the parsed ``trainer`` section (a jsonargparse ``Namespace`` or a dict).
        prefix: how the messages name the section.

    Raises:
        ValueError: the first bad flag, named with ``prefix``, its value and what is valid.
    """
    def get(name: str) -> Any:
        return trainer.get(name) if hasattr(trainer, "get") else getattr(trainer, name, None)

    for name, (minimum, note) in COUNTS.items():
        value = get(name)
        if value is not None:
            _noted(note, int_at_least, prefix + name, value, minimum)
    for name in BATCH_LIMITS:
        value = get(name)
        if value is not None:
            finite_real(prefix + name, value, lambda v: 0 <= v <= 1 or _whole(v, 0),
                        "in [0, 1] (a fraction of the batches) or a whole number >= 0 "
                        "(a count)")
    interval = get("val_check_interval")
    if isinstance(interval, (int, float)):  # a time (str, dict, timedelta) is Lightning's
        finite_real(prefix + "val_check_interval", interval,
                    lambda v: 0 < v <= 1 or _whole(v, 1),
                    "in (0, 1] (a fraction of an epoch) or a whole number >= 1 (batches), "
                    "or a time 'DD:HH:MM:SS'")
    clip = get("gradient_clip_val")
    if clip is not None:
        _noted("0 or null: no clipping", non_negative_real, prefix + "gradient_clip_val", clip)
    limit = get("max_time")
    if isinstance(limit, str) and not re.fullmatch(r"\s*\d+:\d\d:\d\d:\d\d\s*", limit):
        raise ValueError(f"{prefix}max_time must be a time 'DD:HH:MM:SS' (e.g. '00:12:00:00') "
                         f"or a mapping such as {{hours: 12}}, got {limit!r}")
    _check_devices(prefix + "devices", get("devices"))
    _check_profiler(prefix + "profiler", get("profiler"))


def _whole(value: float, minimum: int) -> bool:
    return value >= minimum and float(value).is_integer()


def _noted(note: str | None, check: Callable[..., object], *args: object) -> None:
    """``check(*args)``; its ``ValueError`` gains `` (note)``."""
    try:
        check(*args)
    except ValueError as err:
        if note is None:
            raise
        raise ValueError(f"{err} ({note})") from None


def _check_devices(name: str, value: Any) -> None:
    """An int must be >= 1 or -1 (every device); a list, device indices. Strings (``auto``,
    ``"0,1"``) are Lightning's to read, but for a plain number (the command line's ``-3``)."""
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if is_int(value) and value < 1 and value != -1:
        raise ValueError(f"{name} must be a number of devices >= 1, -1 (all of them), a list "
                         f"of device indices or 'auto', got {value!r}")
    if isinstance(value, (list, tuple)) and (
            not value or not all(is_int(v) and v >= 0 for v in value)):
        raise ValueError(f"{name} must be a non-empty list of device indices >= 0, "
                         f"got {list(value)!r}")


def _check_profiler(name: str, value: Any) -> None:
    """A name Lightning knows, or a ``class_path`` (with ``init_args``) of a Profiler."""
    if isinstance(value, str):
        ok = value.lower() in PROFILERS
    elif isinstance(value, dict) or type(value).__name__ == "Namespace":
        ok = bool(value.get("class_path"))
    else:
        return  # a Profiler instance (or None): Lightning's to take
    if not ok:
        raise ValueError(f"{name} must be one of {', '.join(PROFILERS)} or a class_path of a "
                         f"Profiler (with init_args), got {value!r}")
