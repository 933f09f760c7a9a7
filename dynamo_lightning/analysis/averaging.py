"""Model averaging: the network at the centroid of members' θ's, against averaging weights.

Averaging trained networks' *weights* rarely gives a working network (hidden units are
permuted between seeds, and architectures differ), but averaging their *embeddings* is
always defined: the meta-model at the centroid θ̄ of a group of members is one network that
shares what the group has in common. :func:`averaging_table` compares the two on fresh
trials; :func:`weight_average` is the naive baseline.

``m`` is read duck-typed (``embeddings()``, ``member_ids``, ``member_metadata``,
``meta_model_at(theta)``, ``task``): ``DynamoModule`` fits. Nothing here imports Lightning.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dynamo_lightning import tasks as task_registry
from dynamo_lightning.analysis.fitted_map import FittedMap
from dynamo_lightning.analysis.plain import plain
from dynamo_lightning.analysis.theta_evaluation import draw_trials, network_metric
from dynamo_lightning.checks import positive_int
from dynamo_lightning.population import Population
from dynamo_lightning.population.member import Member

__all__ = ["average", "averaging_table", "weight_average"]


def average(m: FittedMap, member_ids: Sequence[str]) -> tuple[Tensor, nn.Module]:
    """The centroid of some members' embeddings and the meta-model there.

    Args:
        m: a fitted module (``embeddings()``, ``member_ids``, ``meta_model_at``).
        member_ids: ids of the members to average (each once).

    Returns:
        ``theta_bar [d]`` (the mean of their rows of ``m.embeddings()``) and
        ``m.meta_model_at(theta_bar)``, a network with a member's calling convention.

    Raises:
        ValueError: an empty list, a bare string, a duplicate id or an unknown id.
    """
    known = [str(k) for k in m.member_ids]
    ids = _checked_ids(member_ids, known, "the fitted module")
    rows = torch.tensor([known.index(i) for i in ids])
    theta_bar = m.embeddings()[rows].mean(0)
    return theta_bar, m.meta_model_at(theta_bar)


def weight_average(population: Population, member_ids: Sequence[str],
                   member_id: str | None = None) -> Member:
    """The naive baseline: a member whose parameters are the mean of the members'.

    Only defined for members of one architecture and configuration (same parameter shapes).

    Args:
        population: a ``Population`` (indexable by id, ``ids``).
        member_ids: ids of the members to average.
        member_id: id of the result (default ``"weight-average-of-<n>"``).

    Returns:
        A ``Member`` with the shared architecture and config; its metadata keeps the entries
        all members agree on (task, task_config, hidden_size, ...) plus ``averaged_members``.

    Raises:
        ValueError: empty/duplicate/unknown ids, or members whose architecture or config
            differ (the message names which members have which).
    """
    ids = _checked_ids(member_ids, list(population.ids), "the population")
    members = [population[i] for i in ids]
    by_key: dict[tuple[str, str], list[str]] = {}
    for member in members:
        by_key.setdefault(member.group_key, []).append(member.id)
    if len(by_key) > 1:
        detail = "; ".join(f"{arch} {config}: {', '.join(group)}"
                           for (arch, config), group in by_key.items())
        raise ValueError("weight_average needs members of one architecture and config, "
                         f"got {detail}")
    first = members[0]
    state = {}
    for name, tensor in first.state.items():
        stacked = torch.stack([member.state[name] for member in members])
        state[name] = (stacked.double().mean(0).to(tensor.dtype) if tensor.is_floating_point()
                       else tensor.clone())
    shared = {k: v for k, v in first.metadata.items()
              if all(member.metadata.get(k, None) == v for member in members)
              and k not in ("seed", "task_metric")}
    return Member(member_id or f"weight-average-of-{len(ids)}", first.architecture,
                  dict(first.config), {**shared, "averaged_members": ids}, state)


def averaging_table(m: FittedMap, population: Population, key: str = "task", trials: int = 256,
                    seed: int = 0) -> list[dict[str, Any]]:
    """Centroid network vs its members vs their weight average, one row per group.

    Members are grouped by ``metadata[key]`` (``"architecture"`` also reads the member's
    architecture); groups of fewer than two members are left out. Each group is scored on
    ``trials`` fresh test trials (``torch.Generator().manual_seed(seed)``), the same trials
    for members, centroid and weight averages. The task is the module's, except for a
    mixture module: a group whose members share one task (metadata ``task``/``task_config``)
    is scored on that task alone, since the mixture's mean metric mixes scales; a group that
    spans several tasks is scored on the mixture.

    Args:
        m: a fitted module (see the module docstring); its members must be in ``population``.
        population: the members (a ``Population``).
        key: the metadata entry that groups members.
        trials: test trials per group.
        seed: seed of the trials.

    Returns:
        One plain-JSON dict per group: ``key``, ``group`` (the value of ``metadata[key]``),
        ``members`` (ids), ``task`` (``{"name", "config"}``), ``metric_name``,
        ``higher_is_better``, ``member_metrics`` (per member, in ``members`` order),
        ``members_mean``, ``centroid`` (the centroid network's metric), ``theta_bar`` (the
        centroid, ``d`` floats), ``ratio`` (centroid / members' mean; None when the mean is
        ≤ 0 or not finite, as an R² can be), ``weight_average`` (``{label: metric}`` for
        each architecture/config with at least two members in the group; the label is the
        architecture, with ``-h<hidden>`` added when one architecture has several configs)
        and ``weight_average_members`` (``{label: [ids]}``). NaN metrics are None.

    Raises:
        ValueError: bad ``trials``, or module members missing from ``population``.
    """
    trials = positive_int("trials", trials)
    ids = [str(k) for k in m.member_ids]
    known = set(population.ids)  # a property that builds its list: once, not per member
    missing = [i for i in ids if i not in known]
    if missing:
        raise ValueError(f"members {missing[:5]} of the fitted module are not in the population")
    groups: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for member_id in ids:
        member = population[member_id]
        value = member.architecture if key == "architecture" else member.metadata.get(key)
        if value is None:
            continue
        slot = json.dumps(value, sort_keys=True)
        groups.setdefault(slot, []).append(member_id)
        values[slot] = value
    return [_row(m, population, key, values[slot], group, trials, seed)
            for slot, group in groups.items() if len(group) >= 2]


def _row(m: FittedMap, population: Population, key: str, value: Any, group: list[str], trials: int,
         seed: int) -> dict[str, Any]:
    """One row of :func:`averaging_table` for the members ``group``."""
    task = _group_task(m, population, group)
    x, y, task_ids = draw_trials(task, trials, torch.Generator().manual_seed(int(seed)))
    x = x.float()
    member_metrics = stacked_member_metrics(task, population, group, x, y, task_ids)
    theta_bar, centroid = average(m, group)
    centroid_metric = network_metric(task, centroid, x, y, task_ids)
    finite = [v for v in member_metrics if math.isfinite(v)]
    mean = sum(finite) / len(finite) if finite else math.nan
    ratio = centroid_metric / mean if math.isfinite(mean) and mean > 0 else math.nan
    by_arch = _architecture_groups(population, group)
    averages = {label: plain(network_metric(task, weight_average(population, same).module, x, y,
                                      task_ids)) for label, same in by_arch.items()}
    return {"key": key, "group": value, "members": list(group),
            "task": {"name": task.name, "config": task.config()},
            "metric_name": str(task.metric_name), "higher_is_better": bool(task.higher_is_better),
            "member_metrics": [plain(v) for v in member_metrics], "members_mean": plain(mean),
            "centroid": plain(centroid_metric), "theta_bar": theta_bar.tolist(),
            "ratio": plain(ratio), "weight_average": averages,
            "weight_average_members": by_arch}


@torch.no_grad()
def stacked_member_metrics(task: Any, population: Population, ids: list[str], x: Tensor,
                           y: Tensor, task_ids: Tensor | None = None) -> list[float]:
    """``task``'s metric of each member in ``ids`` on ``x [B, T, I]``, in ``ids`` order: the
    members of each stacked group run in one call on the population's device (what
    :func:`network_metric` gives member by member, without building a network per member:
    at thousands of members that loop took most of the averaging table)."""
    position = {member_id: n for n, member_id in enumerate(population.ids)}
    metrics = [math.nan] * len(ids)
    inputs = x.float().to(population.device)
    for rows, stack in population.groups_of([position[i] for i in ids]):
        outputs = stack(inputs)[0].float().cpu()
        for k, out in zip(rows, outputs, strict=True):
            metrics[k] = float(task.metric(out, y, task_ids))
    return metrics


def _group_task(m: FittedMap, population: Population, group: list[str]) -> Any:
    """The module's task, or for a mixture the group's own task when its members share one."""
    task = m.task
    if task is None:
        raise ValueError("averaging_table needs the module's task, which it does not name")
    if len(task.sub_tasks) < 2:
        return task
    specs = {json.dumps([population[i].metadata.get("task"),
                         population[i].metadata.get("task_config") or {}], sort_keys=True)
             for i in group}
    if len(specs) != 1:
        return task
    name, config = json.loads(specs.pop())
    return task if name is None else task_registry.get(name, **config)


def _architecture_groups(population: Population, group: list[str]) -> dict[str, list[str]]:
    """Members of ``group`` by architecture and config, only those with ≥ 2 members."""
    by_key: dict[tuple[str, str], list[str]] = {}
    for member_id in group:
        by_key.setdefault(population[member_id].group_key, []).append(member_id)
    archs = [arch for arch, _ in by_key]
    out = {}
    for (arch, config), same in by_key.items():
        if len(same) < 2:
            continue
        label = arch if archs.count(arch) == 1 else f"{arch}-h{json.loads(config)['hidden_size']}"
        out[label] = same
    return out


def _checked_ids(member_ids: Sequence[str], known: list[str], where: str) -> list[str]:
    """``member_ids`` as a list, checked to be non-empty, unique and all in ``known``."""
    if isinstance(member_ids, str):
        raise ValueError(f"member_ids must be a list of ids, got the string {member_ids!r}")
    ids = [str(i) for i in member_ids]
    if not ids:
        raise ValueError("member_ids is empty: name at least one member to average")
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"member_ids repeats {repeated}; name each member once")
    unknown = [i for i in ids if i not in known]
    if unknown:
        shown = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
        raise ValueError(f"unknown member ids {unknown} in {where} (known: {shown})")
    return ids
