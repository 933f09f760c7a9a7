"""A run from ``--ckpt_path`` keeps the checkpoint's model: LightningCLI merges the
checkpoint's hyper-parameters over the config, so a model setting given with it
(``--model.meta.hidden_size 16`` on a checkpoint of 8) was silently replaced. This finds such
settings so that the command refuses them instead.

A setting counts as given when its value differs from the parser's default (the base config
included): a config that restates the checkpoint's values, or leaves them out, resumes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["changed_model_settings"]


def changed_model_settings(given: Any, defaults: Any, saved: Mapping[str, Any],
                           skip: Iterable[str] = ()) -> list[str]:
    """``model.<key> <given> (checkpoint: <saved>)`` for each model setting given (not the
    default) that differs from the checkpoint's.

    Args:
        given: the model's config before the checkpoint's values were merged in (a dict or a
            jsonargparse ``Namespace``).
        defaults: the parser's defaults for the model.
        saved: the checkpoint's ``hyper_parameters``.
        skip: top-level keys filled from the data (sizes, ids), not set by a user.
    """
    skipped = set(skip)
    given_leaves, default_leaves = _leaves(given), _leaves(defaults)
    saved_leaves = _leaves(dict(saved))
    changed = []
    for key, value in given_leaves.items():
        if key.split(".")[0] in skipped or key not in saved_leaves:
            continue
        if key in default_leaves and _same(value, default_leaves[key]):
            continue  # not given (or given as the default): the checkpoint's value holds
        if not _same(value, saved_leaves[key]):
            changed.append(f"model.{key} {value!r} (checkpoint: {saved_leaves[key]!r})")
    return changed


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings (and ``Namespace``s) flattened to ``{"meta.hidden_size": 8, ...}``."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if not isinstance(value, Mapping) or (prefix and not value):
        return {prefix.rstrip("."): value} if prefix else {}
    leaves: dict[str, Any] = {}
    for key, item in value.items():
        leaves.update(_leaves(item, f"{prefix}{key}."))
    return leaves


def _same(a: Any, b: Any) -> bool:
    """Equal as configs compare: 3 and 3.0 alike, tuples as lists."""
    if isinstance(a, tuple):
        a = list(a)
    if isinstance(b, tuple):
        b = list(b)
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False
