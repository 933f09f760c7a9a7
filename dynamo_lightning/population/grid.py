"""The population grid: tasks × architectures × hidden sizes × seeds, grouped for stacking.

Members that share a task, an architecture and a shape form one *group* and train as one
stacked module (one batched call per group). The grid is plain data so it can be built,
inspected and tested without Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dynamo_lightning import tasks as task_registry
from dynamo_lightning.checks import positive_int
from dynamo_lightning.population import architectures
from dynamo_lightning.tasks.base import Task


@dataclass(frozen=True)
class TaskSpec:
    """One task variant of the grid: registered ``name``, its ``config`` and a ``label``
    unique within the grid (used in member ids and logged keys)."""

    name: str
    config: dict[str, Any]
    label: str

    def build(self) -> Task:
        return task_registry.get(self.name, **self.config)


@dataclass(frozen=True)
class GroupSpec:
    """Members trained as one stack: same task, architecture and shape, one seed each."""

    task: TaskSpec
    architecture: str
    config: dict[str, Any]
    seeds: tuple[int, ...]
    ids: tuple[str, ...] = field(default=())


def parse_task_specs(entries: list[dict[str, Any]]) -> list[TaskSpec]:
    """Validate the ``tasks`` list of a config: ``[{name, config?, label?}, ...]``.

    Raises:
        ValueError: an entry is not a mapping, lacks ``name``, has unknown keys, names an
            unknown task, or two entries share a label.
    """
    if not isinstance(entries, list) or not entries:
        raise ValueError("tasks must be a non-empty list of {name, config} entries, "
                         f"got {entries!r}")
    specs: list[TaskSpec] = []
    names = [e.get("name") if isinstance(e, dict) else None for e in entries]
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"tasks[{i}] must be a mapping with a 'name' key, got {entry!r}")
        unknown = set(entry) - {"name", "config", "label"}
        if unknown:
            raise ValueError(f"tasks[{i}] has unknown keys {sorted(unknown)} "
                             "(allowed: name, config, label)")
        config = dict(entry.get("config") or {})
        default_label = entry["name"] if names.count(entry["name"]) == 1 else f"{entry['name']}{i}"
        spec = TaskSpec(entry["name"], config, str(entry.get("label") or default_label))
        try:
            spec.build()
        except (KeyError, ValueError) as err:
            raise ValueError(f"tasks[{i}]: {err}") from None
        specs.append(spec)
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"task labels must be unique, got {labels}")
    return specs


def expand_grid(tasks: list[TaskSpec], architecture_names: list[str], hidden_sizes: list[int],
                seeds: list[int], architecture_options: dict[str, dict[str, Any]] | None = None,
                ) -> list[GroupSpec]:
    """Every (task, architecture, hidden size, crossed option) group with one member per seed.

    An architecture option given as a list (``{"cnn": {"n_layers": [2, 3]}}``) is crossed
    like ``hidden_sizes``: one group per value. Member ids read
    ``<task label>-<architecture>-h<hidden>[-<option><value>...]-s<seed>``, the crossed
    options in the order given.

    Raises:
        ValueError: unknown architecture, empty or duplicate axes, bad sizes, or a
            feed-forward architecture paired with a task that needs an output per step.
    """
    options = architecture_options or {}
    for axis, values in (("architectures", architecture_names), ("hidden_sizes", hidden_sizes),
                         ("seeds", seeds)):
        if not values:
            raise ValueError(f"{axis} must not be empty")
        if len(set(values)) != len(values):
            raise ValueError(f"{axis} has duplicates: {values}")
    for i, h in enumerate(hidden_sizes):
        positive_int(f"hidden_sizes[{i}]", h)
    unused = set(options) - set(architecture_names)
    if unused:
        raise ValueError("architecture_options names architectures not in the grid: "
                         f"{sorted(unused)}")
    groups = []
    for spec in tasks:
        task = spec.build()
        for name in architecture_names:
            cls = architectures.get(name)
            if not cls.recurrent and task.output_kind != "classification":
                raise ValueError(f"architecture {name!r} is feed-forward (one output per input) "
                                 f"but task {spec.name!r} needs an output at every time step")
            for hidden in hidden_sizes:
                for chosen in crossed_options(name, options.get(name, {})):
                    config = {"input_size": task.input_size, "output_size": task.output_size,
                              "hidden_size": hidden, **chosen}
                    tag = "".join(f"-{k}{v}" for k, v in chosen.items()
                                  if isinstance(options[name][k], list))
                    ids = tuple(f"{spec.label}-{name}-h{hidden}{tag}-s{s}" for s in seeds)
                    groups.append(GroupSpec(spec, name, config, tuple(seeds), ids))
    return groups


def crossed_options(architecture: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of ``options`` whose list values are crossed (scalars kept).

    Raises:
        ValueError: an empty or repeating list, naming the architecture and the option.
    """
    combos: list[dict[str, Any]] = [{}]
    for key, value in options.items():
        values = value if isinstance(value, list) else [value]
        if not values or len({repr(v) for v in values}) != len(values):
            raise ValueError(f"architecture_options.{architecture}.{key} must be a value or a "
                             f"non-empty list without repeats, got {value!r}")
        combos = [{**combo, key: v} for combo in combos for v in values]
    return combos
