"""The inputs on which members are compared: one task, or a mixture of the members' tasks.

DYNAMO needs every member to run on the *same* input distribution. By default that is the
members' own task (from their metadata); a population trained on several tasks that share
input/output sizes and sequence length is compared on a ``MixtureTask`` of them; an explicit
``{"name", "config"}`` overrides both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dynamo_lightning.population import Population
from dynamo_lightning.tasks.base import Task
from dynamo_lightning.tasks.mixture import (
    MixtureTask,
    normalize_task_spec,
    spec_label,
    task_from_spec,
)


def build_input_source(population: Population, task: dict[str, Any] | None = None) -> Task:
    """The task whose inputs all members are compared on.

    Args:
        population: the members; their metadata ``task``/``task_config`` are used when
            ``task`` is None.
        task: explicit ``{"name", "config"}`` (``name`` may be ``"mixture"``).

    Returns:
        The explicit task; else the members' shared task; else a ``MixtureTask`` of their
        distinct tasks.

    Raises:
        ValueError: members without task metadata and no explicit task; member tasks that
            cannot be mixed; a task whose input size does not fit some members.
    """
    if task is not None:
        source = task_from_spec(task)
    else:
        missing = [m.id for m in population if not m.metadata.get("task")]
        if missing:
            raise ValueError(f"members {_short(missing)} have no 'task' in their metadata; "
                             "pass the task explicitly (data.task={name, config})")
        by_spec: dict[str, list[str]] = {}
        for m in population:
            spec = normalize_task_spec({"name": m.metadata["task"],
                                        "config": m.metadata.get("task_config") or {}},
                                       f"task metadata of member {m.id!r}")
            by_spec.setdefault(json.dumps(spec, sort_keys=True), []).append(m.id)
        specs = [json.loads(s) for s in by_spec]
        if len(specs) == 1:
            source = task_from_spec(specs[0])
        else:
            built = [task_from_spec(s) for s in specs]
            for attr in ("input_size", "output_size", "seq_len", "output_kind"):
                values = {getattr(t, attr) for t in built}
                if len(values) > 1:
                    detail = "; ".join(f"{spec_label(s)} ({attr}={getattr(t, attr)}): members "
                                       f"{_short(ids)}" for s, t, ids
                                       in zip(specs, built, by_spec.values(), strict=True))
                    raise ValueError(f"members' tasks differ in {attr}, so they cannot share "
                                     f"inputs: {detail}; pass data.task explicitly")
            source = MixtureTask(specs)
    bad = [m.id for m in population if m.config.get("input_size") != source.input_size]
    if bad:
        raise ValueError(f"task {source.name!r} has input_size {source.input_size}, which does "
                         f"not fit members {_short(bad)}")
    return source


def _short(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")
