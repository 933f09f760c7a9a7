"""The trajectory data's pre-flight memory checks (:mod:`dynamo_lightning.memory`): a
population directory before its members are read, the trajectories before any trial is
drawn."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dynamo_lightning.memory import Estimate, lead, skipped, stack_shape, trajectory_data
from dynamo_lightning.population import Population, architectures
from dynamo_lightning.population.manifest import read_manifest

__all__ = ["check_population_dir", "check_trajectory_data", "population_load"]

LOAD_COPIES = 4
"""The weights as read (1×); each group's stack drawn, stacked (2×) and filled from a
stacked copy of its members' weights (1×): measured peaks were 3.5-5.3×."""


def population_load(manifest: Mapping[str, Any]) -> Estimate | None:
    """Loading a population and stacking its groups, from its manifest's configs alone
    (each group's parameters from a meta-device build); None when a config cannot be
    built there (loading then reports it)."""
    groups: dict[tuple[str, str], tuple[str, dict[str, Any], int]] = {}
    for entry in manifest.get("members", []):
        name, config = str(entry["architecture"]), dict(entry["config"])
        key = (name, json.dumps(config, sort_keys=True))
        groups[key] = (name, config, groups.get(key, ("", {}, 0))[2] + 1)
    total, members, widest = 0, 0, 0
    for name, config, count in groups.values():
        shape = stack_shape(lambda n=name, c=config: architectures.build(
            n, num_members=1, seeds=[0], **c))
        if shape is None:
            return None
        total += LOAD_COPIES * 4 * shape.parameters * count
        members, widest = members + count, max(widest, shape.hidden_size)
    if not groups:
        return None
    setting = lead((f"population size {members}", members, 1024),
                   (f"member hidden_size {widest}", widest**2, 128**2))
    return Estimate({setting: total})


def check_population_dir(path: str | Path) -> None:
    """Refuse a population whose members do not fit in memory, before any is read. A
    manifest that cannot be read is left to ``Population.load`` to report."""
    if skipped():
        return
    try:  # the loader's own checks (schema, depth, links): a bad manifest is its to report
        estimate = population_load({"members": read_manifest(Path(path))})
    except (OSError, ValueError):
        return
    if estimate is not None:  # name the manifest the setting is in
        Estimate({f"{estimate.largest} in {Path(path) / 'manifest.json'}": estimate.total}
                 ).check("cpu")


def check_trajectory_data(population: Population, task: Any, trials: Mapping[str, int],
                          num_components: int, chunk_trials: int, cache: Path | None = None
                          ) -> None:
    """Refuse trajectory data that does not fit in memory: the trials and the population's
    states on them (before the first trial is drawn); with ``cache`` (the entry a cached
    data module would write), also the cache's arrays, unless that entry exists already (it
    is then memory-mapped, not built)."""
    if skipped() or (cache is not None and (cache / "meta.json").is_file()):
        return
    width = max(stack.state_size for _, stack in population.groups())
    estimate = trajectory_data(len(population), trials, int(task.seq_len),
                               int(task.input_size), int(task.output_size), num_components,
                               int(width), cached=cache is not None, chunk_trials=chunk_trials)
    estimate.check("cpu")
