"""The report's sections on the map's uses: the similarity baselines and model averaging.

- ``baselines``: the map's clustering beside those of CKA, Procrustes, weight distance and
  DSA on the same population and inputs (:func:`~..baselines.compare_methods`), scored
  against every metadata key;
- ``averaging``: per group of members (a metadata key, by default the computation), the
  meta-model at the group's centroid θ beside the members' mean task metric and the naive
  weight average (:func:`~..averaging.averaging_table`).

Both read the module duck-typed, like the rest of the report; nothing here imports Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from dynamo_lightning.analysis.averaging import averaging_table
from dynamo_lightning.analysis.baselines import compare_methods
from dynamo_lightning.analysis.fitted_map import FittedMap
from dynamo_lightning.analysis.theta_evaluation import draw_trials
from dynamo_lightning.population import Population
from dynamo_lightning.tasks import Task

COMPUTATION_KEYS = ("task_label", "task")
"""Metadata keys that name a member's computation, most specific first."""


def computation_key(metadata: Sequence[dict[str, Any]]) -> str:
    """The metadata key that tells members' computations apart: the first of
    :data:`COMPUTATION_KEYS` with two or more distinct values (``"task"`` if none does).

    ``task_label`` comes first because task variants that share a registered name (e.g.
    integrators with different leaks) are different computations.
    """
    for key in COMPUTATION_KEYS:
        values = {str(m.get(key)) for m in metadata if m.get(key) is not None}
        if len(values) >= 2:
            return key
    return "task"


def baselines_section(m: FittedMap, population: Population, task: Task, theta: Tensor,
                      metadata: list[dict[str, Any]], methods: Sequence[str], trials: int,
                      seed: int) -> dict[str, Any] | None:
    """The comparison of the map with the similarity baselines (None when ``methods`` is
    empty). Every method sees the same ``trials`` test trials of ``task``."""
    if not methods:
        return None
    generator = torch.Generator().manual_seed(int(seed))
    x = draw_trials(task, trials, generator)[0].float()
    result = compare_methods(theta.numpy(), population, x, metadata, methods=tuple(methods),
                             key=computation_key(metadata))
    result.pop("dissimilarity", None)  # N² numbers per method: the figure shows them
    for entry in result["methods"].values():
        entry.pop("dissimilarity", None)
    return {**result, "trials": int(trials), "figure": None}


def averaging_section(m: FittedMap, population: Population, metadata: list[dict[str, Any]],
                      trials: int,
                      seed: int) -> dict[str, Any]:
    """Model averaging per computation: centroid network vs members' mean vs weight average."""
    key = computation_key(metadata)
    rows = averaging_table(m, population, key=key, trials=trials, seed=seed)
    return {"key": key, "trials": int(trials), "groups": rows}


BASELINE_METHODS = ("cka", "procrustes", "weights", "dsa")
"""The similarity baselines the report can compare the map with (all by default)."""


def parse_methods(value: Any) -> tuple[str, ...]:
    """Baseline methods from an option: ``"all"``, ``"none"``, ``"cka,dsa"`` or a sequence.

    Raises:
        ValueError: an unknown method, naming the known ones.
    """
    if value is None or value == "none":
        return ()
    if value == "all":
        return BASELINE_METHODS
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    unknown = [n for n in names if n not in BASELINE_METHODS]
    if unknown or not all(isinstance(n, str) for n in names):
        raise ValueError(f"report option baselines: unknown method(s) {unknown or names} "
                         f"(known: {', '.join(BASELINE_METHODS)}; or 'all' / 'none')")
    return tuple(dict.fromkeys(names))
