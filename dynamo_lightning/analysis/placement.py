"""Placing new networks on a fitted map: θ for each, its nearest members and group centre.

A network that was not in the fit gets its θ from ``m.fit_embedding`` (the meta-model
frozen) on fresh trials of the module's own task; where it lands says which members it
computes like. Nearest members and the nearest *group centre* (the centroid of the fitted
members' θ's per value of a metadata key, e.g. ``task``) turn that into a prediction
that can be checked when the new network's own metadata has the key.

Pure torch (the figure is in ``placement_figure.py``); the module ``m`` is read duck-typed
(``embeddings()``, ``member_ids``, ``member_metadata``, ``task``, ``fit_embedding``,
``hparams``), so nothing here imports Lightning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from dynamo_lightning.analysis.fitted_map import FittedMap
from dynamo_lightning.analysis.map_figure import _sort_key
from dynamo_lightning.analysis.theta_evaluation import draw_trials
from dynamo_lightning.checks import positive_int
from dynamo_lightning.population import Population

__all__ = ["Placement", "check_placeable", "group_centres", "locate", "place"]


@dataclass
class Placement:
    """New members placed on a map (M of them; G groups of fitted members by ``key``).

    Attributes:
        key: the metadata key the groups are formed by.
        ids, metadata: the placed members' ids and metadata (M each).
        thetas: their fitted θ's ``[M, d]``.
        losses: each fit's final (lowest) loss (M; NaN when not known).
        neighbours: per placed member, its nearest fitted members ``[(id, distance), ...]``,
            nearest first.
        groups: the group values (as strings), ``[G]``.
        centres: the groups' centroids ``[G, d]``.
        group_sizes: fitted members per group (G).
        centre_distances: distance of each placed θ to each centre ``[M, G]``.
        diameter: the map's diameter, the largest distance between two fitted θ's.
    """

    key: str
    ids: list[str]
    metadata: list[dict[str, Any]]
    thetas: Tensor
    losses: list[float]
    neighbours: list[list[tuple[str, float]]]
    groups: list[str]
    centres: Tensor
    group_sizes: list[int]
    centre_distances: Tensor
    diameter: float

    @property
    def nearest_centre(self) -> list[str]:
        """The value of the nearest group centre, per placed member (M)."""
        return [self.groups[int(i)] for i in self.centre_distances.argmin(1)]

    @property
    def correct(self) -> list[bool | None]:
        """Whether the nearest centre is the member's own group (None: no ``key`` in its
        metadata, or a map with one group, where every member is "nearest" to it and the
        check cannot fail)."""
        if len(self.groups) < 2:
            return [None] * len(self.ids)
        return [None if meta.get(self.key) is None else str(meta[self.key]) == near
                for meta, near in zip(self.metadata, self.nearest_centre, strict=True)]

    @property
    def fraction_correct(self) -> float | None:
        """Fraction of the checkable members whose nearest centre is their own group."""
        known = [c for c in self.correct if c is not None]
        return sum(known) / len(known) if known else None

    def relative(self, distance: float) -> float | None:
        """``distance`` as a fraction of the map's diameter (None for a one-point map)."""
        return distance / self.diameter if self.diameter > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (no NaN: an unknown loss is None): the groups, then one record per
        placed member."""
        members = []
        for i, member_id in enumerate(self.ids):
            distances = [float(v) for v in self.centre_distances[i]]
            near = int(np.argmin(distances))
            members.append({
                "id": member_id, "metadata": self.metadata[i],
                "theta": [float(v) for v in self.thetas[i]],
                "loss": self.losses[i] if math.isfinite(self.losses[i]) else None,
                "neighbours": [self._distance_record("id", n, d) for n, d in self.neighbours[i]],
                "nearest_centre": self._distance_record("value", self.groups[near],
                                                        distances[near]),
                "centre_distances": dict(zip(self.groups, distances, strict=True)),
                "correct": self.correct[i]})
        return {"key": self.key, "diameter": self.diameter,
                "groups": [{"value": g, "centre": [float(v) for v in c], "members": n}
                           for g, c, n in zip(self.groups, self.centres, self.group_sizes,
                                              strict=True)],
                "members": members, "fraction_correct": self.fraction_correct}

    def to_markdown(self) -> str:
        """One table row per placed member: θ, nearest members, nearest centre, correct."""
        rows = [f"| member | θ | nearest members | nearest {self.key} centre | correct |",
                "|---|---|---|---|---|"]
        for i, record in enumerate(self.to_dict()["members"]):
            theta = "(" + ", ".join(f"{v:.3g}" for v in record["theta"]) + ")"
            near = ", ".join(f"{n['id']} {_distance_text(n)}" for n in record["neighbours"])
            centre = record["nearest_centre"]
            ok = {True: "yes", False: "no", None: "–"}[self.correct[i]]
            rows.append(f"| {record['id']} | {theta} | {near} | {centre['value']} "
                        f"{_distance_text(centre)} | {ok} |")
        return "\n".join(rows)

    def _distance_record(self, name: str, value: str, distance: float) -> dict[str, Any]:
        return {name: value, "distance": distance, "relative_distance": self.relative(distance)}


def place(m: FittedMap, population: Population, trials: int = 256, seed: int = 0, steps: int = 300,
          key: str = "task", use_hidden: bool = True, neighbours: int = 3,
          progress: bool = False) -> Placement:
    """Fit θ for every member of ``population`` on ``m``'s map and locate it there.

    Every member runs on the same ``trials`` fresh test trials of ``m.task`` (a mixture's
    too), and ``m.fit_embedding`` fits its θ to its outputs (and hidden states, when
    ``use_hidden``): the same evidence the fitted members were embedded from.

    Args:
        m: a fitted ``DynamoModule`` (read duck-typed).
        population: the new members (a ``Population``); they need not be in the fit, but
            must take the module's input size and give its output size.
        trials: trials ``[trials, T, I]`` each member is run on; ``seed`` draws them.
        steps: Adam steps of each θ fit.
        key: metadata key the fitted members are grouped by for the centres.
        use_hidden: fit to the hidden states ``[B, T, H]`` as well as the outputs.
        neighbours: nearest fitted members reported per placed member.
        progress: show a progress bar over the members.

    Returns:
        The :class:`Placement`, members in ``population`` order.

    Raises:
        ValueError: see :func:`check_placeable`; bad ``trials``/``steps``/``neighbours``.

    Example::

        placed = da.place(m, dl.Population.load("new_members"), key="task")
        placed.nearest_centre, placed.fraction_correct
    """
    check_placeable(m, population, key, trials=trials, steps=steps, neighbours=neighbours)
    x, _, _ = draw_trials(m.task, trials, torch.Generator().manual_seed(int(seed)))
    thetas, losses = [], []
    for member in tqdm(population, desc="place", unit="member", disable=not progress):
        with torch.no_grad():
            outputs, hidden = member.module(x)
        fit = m.fit_embedding(x, outputs=outputs, hidden=hidden if use_hidden else None,
                              steps=steps, return_details=True)
        thetas.append(fit.theta.detach().cpu().float())
        losses.append(float(min(fit.losses)) if fit.losses else float("nan"))
    return locate(m.embeddings(), m.member_ids, m.member_metadata, torch.stack(thetas),
                  population.ids, [dict(p.metadata) for p in population], key=key,
                  losses=losses, neighbours=neighbours)


def check_placeable(m: FittedMap, population: Population, key: str, **counts: int) -> None:
    """Raise before any fitting when ``population`` cannot be placed on ``m``'s map.

    Args:
        counts: integer settings of :func:`place` (``trials``, ``steps``, ``neighbours``),
            each checked to be ≥ 1.

    Raises:
        ValueError: an empty population, a module without a task, no fitted member with
            metadata ``key``, members whose input/output size does not fit the module, or a
            count below 1.
    """
    for name, value in counts.items():
        positive_int(name, value)
    if len(population) == 0:
        raise ValueError("the population to place has no members")
    if m.task is None:
        raise ValueError("the checkpoint names no task to draw trials from")
    group_centres(m.embeddings(), m.member_metadata, key)
    for name in ("input_size", "output_size"):
        size = m.hparams.get(name)
        bad = [f"{p.id!r} ({p.config.get(name)})" for p in population
               if p.config.get(name) != size]
        if bad:
            shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
            raise ValueError(f"the module takes {name} {size}, which does not fit "
                             f"{len(bad)} member(s) to place: {shown}")


def group_centres(thetas: Tensor, metadata: list[dict[str, Any]], key: str
                  ) -> tuple[list[str], Tensor, list[int]]:
    """The centroid of the fitted θ's ``[N, d]`` per value of ``metadata[key]``.

    Values are compared as strings (JSON keys); members without ``key`` join no group.

    Returns:
        Group values (in the map figure's order), centres ``[G, d]``, members per group.

    Raises:
        ValueError: no member has ``key`` (the error lists the keys they have).
    """
    labels = [None if meta.get(key) is None else str(meta[key]) for meta in metadata]
    groups = sorted({label for label in labels if label is not None}, key=_sort_key)
    if not groups:
        known = sorted({k for meta in metadata for k in meta})
        raise ValueError(f"no fitted member has metadata key {key!r} (keys: "
                         f"{', '.join(known) or 'none'})")
    rows = [[i for i, label in enumerate(labels) if label == g] for g in groups]
    centres = torch.stack([thetas[r].float().mean(0) for r in rows])
    return groups, centres, [len(r) for r in rows]


def locate(fitted: Tensor, fitted_ids: list[str], fitted_metadata: list[dict[str, Any]],
           thetas: Tensor, ids: list[str], metadata: list[dict[str, Any]], key: str = "task",
           losses: list[float] | None = None, neighbours: int = 3) -> Placement:
    """Nearest fitted members and group centres of θ's already fitted (no fitting here).

    Args:
        fitted: the map's θ's ``[N, d]`` with their ids and metadata (N each).
        thetas: the placed θ's ``[M, d]`` with their ids and metadata (M each).
        key, neighbours: as in :func:`place`; losses: per placed θ (NaN when None).
    """
    fitted, thetas = fitted.detach().cpu().float(), thetas.detach().cpu().float()
    groups, centres, sizes = group_centres(fitted, fitted_metadata, key)
    to_members = torch.cdist(thetas, fitted)  # [M, N]
    k = min(neighbours, fitted.shape[0])
    distance, index = to_members.topk(k, dim=1, largest=False)
    near = [[(fitted_ids[int(j)], float(d)) for d, j in zip(dr, ir, strict=True)]
            for dr, ir in zip(distance, index, strict=True)]
    return Placement(key=key, ids=list(ids), metadata=[dict(m) for m in metadata],
                     thetas=thetas, losses=list(losses or [float("nan")] * len(ids)),
                     neighbours=near, groups=groups, centres=centres, group_sizes=sizes,
                     centre_distances=torch.cdist(thetas, centres),
                     diameter=float(torch.cdist(fitted, fitted).max()))


def _distance_text(record: dict[str, Any]) -> str:
    relative = record["relative_distance"]
    share = "" if relative is None else f", {100 * relative:.0f}% of map"
    return f"({record['distance']:.3g}{share})"
