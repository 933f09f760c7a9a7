"""Interpolation: task metric and fixed-point counts along segments between members' θ's
(the task metric alone for a feed-forward meta-model, which has no fixed points).

Only coordinates: the maths is :mod:`dynamo_lightning.analysis.interpolation`, the figure
:mod:`dynamo_lightning.analysis.plots`, the routing :func:`log_figure` / :func:`log_table`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lightning.pytorch.utilities import rank_zero_warn

from dynamo_lightning.analysis.fixed_points import KINDS
from dynamo_lightning.analysis.interpolation import interpolate_pairs
from dynamo_lightning.analysis.plots import interpolation_figure
from dynamo_lightning.analysis.search_options import SearchOptions
from dynamo_lightning.analysis.selection import auto_pairs
from dynamo_lightning.callbacks.analysis_base import (
    MemberKey,
    _Analysis,
    _keys,
)
from dynamo_lightning.callbacks.figures import log_figure, log_table
from dynamo_lightning.checks import boolean, int_at_least

if TYPE_CHECKING:
    import lightning.pytorch as pl

    from dynamo_lightning.analysis.interpolation import InterpolationResult


INTERPOLATION_SEARCH = SearchOptions(trials=128, inits=32)
"""The default search while training: few trials, so that an analysis does not hold up the
fit."""


class Interpolation(_Analysis):
    """Task metric and fixed-point counts along segments θ_a → θ_b between members.

    Logs, per pair, the figure ``figures/interpolation/<a>__<b>`` and one table
    ``tables/interpolation`` (pair, α, θ, task metric, counts per kind, bifurcation flag)
    after validation every ``every_n_epochs`` epochs and at the end of fit. All pairs' θ's go
    through one batched evaluation
    (:func:`dynamo_lightning.analysis.interpolation.interpolate_pairs`).

    Args:
        every_n_epochs: Analyse after validation every this many epochs.
        pairs: ``[[a, b], ...]`` member ids or indices; default one pair within a cluster
            (metadata ``task`` × ``architecture``) and one across two, as the report picks
            them (:func:`dynamo_lightning.analysis.selection.auto_pairs`).
        steps: Points per segment (≥ 2), both members included.
        fixed_points: Also count fixed points along the segments (ignored for a
            feed-forward meta-model: only the task metric is interpolated).
        search: The task trials scored at every point and the fixed-point search's
            settings there (in YAML, a mapping of the settings to change).

    Raises:
        ValueError: A bad argument (named); at run time, a member the module does not have.

    Example::

        trainer = Trainer(callbacks=[Interpolation(pairs=[["gru-s0", "lstm-s3"]], steps=21)])
    """

    def __init__(self, every_n_epochs: int = 10, pairs: list[list[MemberKey]] | None = None,
                 steps: int = 11, fixed_points: bool = True,
                 search: SearchOptions = INTERPOLATION_SEARCH) -> None:
        super().__init__(every_n_epochs, search)
        if pairs is not None:
            bad = (isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence)
                   or not pairs or any(isinstance(p, (str, bytes)) or not isinstance(p, Sequence)
                                       or len(p) != 2 for p in pairs))
            if bad:
                raise ValueError("Interpolation: pairs must be a non-empty list of [a, b] member "
                                 f"pairs, got {pairs!r}")
            pairs = [_keys(self, "pairs", p) for p in pairs]
            if any(a == b for a, b in pairs):
                raise ValueError(f"Interpolation: a pair joins a member to itself, got {pairs!r}")
        self._pairs = pairs
        self._steps = int_at_least("steps", steps, 2, "Interpolation")
        self._fixed_points = boolean("fixed_points", fixed_points, "Interpolation")
        self._warned = False
        self.last_results: list[InterpolationResult] = []  # of the latest analysis

    def _analyse(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        ids = [str(i) for i in pl_module.member_ids]
        pairs = self._pairs or [[ids[a], ids[b]] for a, b in auto_pairs(
            pl_module.member_metadata, within=1, across=1)]
        if not pairs:
            if not self._warned:
                rank_zero_warn("Interpolation: fewer than two members, nothing to interpolate")
                self._warned = True
            return False
        recurrent = getattr(pl_module.meta, "recurrent", True)
        results = interpolate_pairs(pl_module, pairs, self._steps, search=self._search,
                                    fixed_points=self._fixed_points and recurrent)
        step, rows = trainer.global_step, []
        for result in results:
            a, b = result.endpoints or ("?", "?")
            log_figure(trainer, interpolation_figure(result), f"figures/interpolation/{a}__{b}",
                       step=step)
            alphas = result.alphas.tolist()
            for s, alpha in enumerate(alphas):
                counts = [int(result.counts[k][s]) if result.counts else None for k in KINDS]
                middle = (alpha + alphas[s + 1]) / 2 if s + 1 < len(alphas) else math.nan
                after = any(abs(x - middle) < 1e-4 for x in result.bifurcations)  # rounded
                by_task = [float(v[s]) for v in result.task_metrics.values()]
                rows.append([f"{a}__{b}", a, b, alpha, *map(float, result.thetas[s]),
                             float(result.task_metric[s]), *by_task, *counts, after])
        dim = results[0].thetas.shape[1]
        columns = ["pair", "from", "to", "alpha", *(f"theta_{k + 1}" for k in range(dim)),
                   results[0].metric_name or "task_metric", *results[0].task_metrics, *KINDS,
                   "bifurcation_after"]
        log_table(trainer, "tables/interpolation", columns, rows, step=step)
        self.last_results = results
        return True
