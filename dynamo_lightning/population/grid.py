"""The population grid: tasks × architectures (× crossed options) × hidden sizes × seeds,
grouped for stacking.

Members that share a task, an architecture and a shape form one *group* and train as one
stacked module (one batched call per group). The grid is plain data so it can be built,
inspected and tested without Lightning.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from dynamo_lightning import tasks as task_registry
from dynamo_lightning.checks import positive_int, seed
from dynamo_lightning.population import architectures
from dynamo_lightning.population.member import check_member_id
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

    @property
    def name(self) -> str:
        """The members' common id, the seed left out (``ctxdm1-ctrnn_dale-h64``): unique
        per group, where task and architecture name alone are not (two configs of one
        architecture, or two widths)."""
        return self.ids[0].rsplit("-s", 1)[0] if self.ids else (
            f"{self.task.label}-{self.architecture}")


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


@dataclass(frozen=True)
class ArchitectureSpec:
    """One architecture entry of the grid: registered ``name``, its ``options`` (a list value
    is crossed: one group per value) and a ``label`` unique within the grid (member ids)."""

    name: str
    options: dict[str, Any]
    label: str


ArchitectureEntry = str | dict[str, Any]
"""A ``model.architectures`` entry: a registered name, or ``{name, config?, label?}``."""


def parse_architecture_specs(entries: list[ArchitectureEntry],
                             architecture_options: dict[str, dict[str, Any]] | None = None,
                             ) -> list[ArchitectureSpec]:
    """Validate ``model.architectures`` (plain names, or mappings ``{name: ctrnn, config:
    {alpha: [0.1, 0.2]}, label?}``) together with ``model.architecture_options`` (options per
    name, for the plain-name entries).

    Raises:
        ValueError: an empty list, a bad entry, an entry's options given in both places,
            options for an architecture not in the grid, option names the architecture does
            not take, or two entries with one label (two entries of one architecture need
            distinct labels).
        UnknownNameError: an unknown architecture.
    """
    options = dict(architecture_options or {})
    if not isinstance(entries, list) or not entries:
        raise ValueError("architectures must be a non-empty list (an empty axis is a grid of "
                         f"no members), got {entries!r}")
    specs = [_architecture_spec(i, entry, options) for i, entry in enumerate(entries)]
    unused = set(options) - {s.name for s in specs}
    if unused:
        raise ValueError("architecture_options names architectures not in the grid: "
                         f"{sorted(unused)}")
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"architectures has duplicates: {labels} (entries of one "
                         "architecture need distinct 'label's)")
    return specs


def _architecture_spec(index: int, entry: object,
                       options: dict[str, dict[str, Any]]) -> ArchitectureSpec:
    where = f"architectures[{index}]"
    if isinstance(entry, str):
        name, config, label = entry, options.get(entry, {}), entry
    elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
        unknown = set(entry) - {"name", "config", "label"}
        if unknown:
            raise ValueError(f"{where} has unknown keys {sorted(unknown)} "
                             "(allowed: name, config, label)")
        name, config = entry["name"], entry.get("config") or {}
        if not isinstance(config, dict):
            raise ValueError(f"{where}.config must be a mapping of options, got {config!r}")
        if config and options.get(name):
            raise ValueError(f"{where} gives options for {name!r} in its config and in "
                             "architecture_options; give them in one place")
        config = config or options.get(name, {})
        label = entry.get("label", name)
        if not isinstance(label, str) or check_member_id(label) is not None:
            raise ValueError(f"{where}.label must be a name of letters, digits, '-', '_' "
                             f"and '.', got {label!r}")
    else:
        raise ValueError(f"{where} must be an architecture name or a mapping with a 'name' "
                         f"key, got {entry!r}")
    sizes = sorted(set(config) & {"input_size", "output_size", "hidden_size"})
    if sizes:
        raise ValueError(f"{where}: {', '.join(sizes)} come from the grid (the task and "
                         "hidden_sizes), not from an architecture's options")
    unknown_options = architectures.unknown_options(name, config)  # also: unknown name
    if unknown_options:
        raise ValueError(f"{where}: {unknown_options}")
    return ArchitectureSpec(name, dict(config), label)


def expand_grid(tasks: list[TaskSpec], architecture_names: list[ArchitectureEntry],
                hidden_sizes: list[int], seeds: list[int],
                architecture_options: dict[str, dict[str, Any]] | None = None,
                ) -> list[GroupSpec]:
    """Every (task, architecture, hidden size, crossed option) group with one member per seed.

    An architecture option given as a list (``{"cnn": {"n_layers": [2, 3]}}`` in
    ``architecture_options``, or an entry ``{"name": "ctrnn", "config": {"alpha": [0.1,
    0.2]}}`` of ``architecture_names``) is crossed like ``hidden_sizes``: one group per value,
    several lists giving every combination. Member ids read
    ``<task label>-<architecture label>-h<hidden>[-<option><value>...]-s<seed>``, the crossed
    options in the order given (``flipflop-ctrnn-h8-alpha0.1-dale_ratio0.8-s0``).

    Raises:
        ValueError: a bad architecture entry (see :func:`parse_architecture_specs`), empty
            or duplicate axes, bad sizes, a feed-forward architecture paired with a task
            that needs an output per step, or ids that are not unique.
        UnknownNameError: an unknown architecture.
    """
    specs = parse_architecture_specs(architecture_names, architecture_options)
    for axis, values in (("hidden_sizes", hidden_sizes), ("seeds", seeds)):
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"{axis} must be a non-empty list (an empty axis is a grid of no "
                             f"members), got {values!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"{axis} has duplicates: {values}")
    for i, h in enumerate(hidden_sizes):
        positive_int(f"hidden_sizes[{i}]", h)
    for i, s in enumerate(seeds):
        seed(f"seeds[{i}]", s)
    groups = []
    for spec in tasks:
        task = spec.build()
        for arch in specs:
            if not architectures.get(arch.name).recurrent and task.output_kind != "classification":
                raise ValueError(f"architecture {arch.name!r} is feed-forward (one output per "
                                 f"input) but task {spec.name!r} needs an output at every "
                                 "time step")
            for hidden in hidden_sizes:
                for chosen in crossed_options(arch.label, arch.options):
                    config = {"input_size": task.input_size, "output_size": task.output_size,
                              "hidden_size": hidden, **chosen}
                    tag = "".join(f"-{k}{v}" for k, v in chosen.items()
                                  if isinstance(arch.options[k], list))
                    ids = tuple(f"{spec.label}-{arch.label}-h{hidden}{tag}-s{s}" for s in seeds)
                    groups.append(GroupSpec(spec, arch.name, config, tuple(seeds), ids))
    _check_ids([i for group in groups for i in group.ids])
    return groups


def _check_ids(ids: list[str]) -> None:
    """Raise on a member id that is not unique or not a safe file name (an option value
    with a space, say): before training, not when the population is written."""
    for member_id in ids:
        problem = check_member_id(member_id)
        if problem:
            raise ValueError(f"{problem}; it comes from an option value in the grid")
    if len(set(ids)) != len(ids):
        repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise ValueError(f"the grid gives repeated member ids {repeated[:3]}; cross the "
                         "options that differ (a list) or give the entries distinct labels")


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
