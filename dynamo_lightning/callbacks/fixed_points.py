"""FixedPoints: the meta-model's fixed points at members' θ's while it trains.

Only coordinates: the maths is :mod:`dynamo_lightning.analysis.interpolation` (one batched
search for all θ's), the figure :mod:`dynamo_lightning.analysis.plots`, the routing
:func:`log_figure` / :func:`log_table`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning.pytorch.utilities import rank_zero_info

from dynamo_lightning.analysis.fixed_points import KINDS
from dynamo_lightning.analysis.interpolation import fixed_points_at, member_index
from dynamo_lightning.analysis.plots import fixed_point_figure
from dynamo_lightning.analysis.search_options import SearchOptions
from dynamo_lightning.analysis.selection import representative_members
from dynamo_lightning.callbacks.analysis_base import (
    MemberKey,
    _Analysis,
    _keys,
)
from dynamo_lightning.callbacks.figures import log_figure, log_table

if TYPE_CHECKING:
    import lightning.pytorch as pl

    from dynamo_lightning.analysis.fixed_points import FixedPointSet


MAX_MEMBERS = 8
"""Members analysed when none are named."""
FIXED_POINTS_SEARCH = SearchOptions(trials=32, inits=128)
"""The default search while training: few trials, so that an analysis does not hold up the
fit."""


class FixedPoints(_Analysis):
    """Fixed points of the meta-model at chosen members' θ_n, all in one batched search.

    Logs per member and kind ``fixed_points/<id>/<kind>`` (and ``/total``) to every attached
    logger's ``log_metrics``, a table ``tables/fixed_points`` (member, θ, counts) and the
    figure ``figures/fixed_points`` (one panel per member, points on the top-2 PCs of the
    meta-model's trajectories at that θ). Runs after validation every ``every_n_epochs``
    epochs and at the end of fit. The search uses ``x_const = 0`` (no input), initial states
    from the meta-model's own trajectories on ``trials`` test trials of the module's task
    (see :func:`dynamo_lightning.analysis.interpolation.fixed_points_at`).

    A feed-forward meta-model (``MetaCNN``) has no step map: the callback then says so once
    (rank-zero info) and does nothing, so one shared config serves RNN and CNN fits.

    Args:
        every_n_epochs: Analyse after validation every this many epochs.
        members: Member ids or indices; default up to 8, taken in turn from each cluster
            (metadata ``task`` × ``architecture``), as the report picks them
            (:func:`dynamo_lightning.analysis.selection.representative_members`).
        search: The search's settings (trials whose trajectories seed the search and are
            drawn, initial states per member, tolerance, ...). In YAML, a mapping of the
            settings to change: ``search: {inits: 256}``.

    Raises:
        ValueError: A bad argument (named); at run time, a member the module does not have.

    Example::

        trainer = Trainer(callbacks=[FixedPoints(every_n_epochs=5, members=["gru-s0"],
                                              search=SearchOptions(inits=256))])
    """

    def __init__(self, every_n_epochs: int = 10, members: list[MemberKey] | None = None,
                 search: SearchOptions = FIXED_POINTS_SEARCH) -> None:
        super().__init__(every_n_epochs, search)
        if members is not None:
            members = _keys(self, "members", members)
            if not members or len(set(members)) != len(members):
                raise ValueError("FixedPoints: members must be a non-empty list of distinct "
                                 f"member ids or indices, got {members!r}")
        self._members = members
        self._told = False  # said once that a feed-forward meta-model has no fixed points
        self.last_fixed_points: FixedPointSet | None = None  # of the latest analysis

    def _analyse(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        if not getattr(pl_module.meta, "recurrent", True):
            if not self._told:
                rank_zero_info("FixedPoints: the meta-model is feed-forward "
                               f"({type(pl_module.meta).__name__}); fixed points do not apply, "
                               "nothing to analyse")
                self._told = True
            return False
        ids = [str(i) for i in pl_module.member_ids]
        chosen = ([member_index(pl_module, k) for k in self._members] if self._members
                  else sorted(representative_members(pl_module.member_metadata, MAX_MEMBERS)))
        thetas = pl_module.embeddings()[chosen]
        fps, states = fixed_points_at(pl_module, thetas, search=self._search)
        step, names = trainer.global_step, [ids[i] for i in chosen]
        counts = fps.summary()["groups"]
        metrics = {f"fixed_points/{name}/{kind}": float(c[kind])
                   for name, c in zip(names, counts, strict=True) for kind in ("total", *KINDS)}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        columns = ["member", *(f"theta_{k + 1}" for k in range(thetas.shape[1])), "total",
                   *KINDS]
        rows = [[name, *map(float, theta), c["total"], *(c[k] for k in KINDS)]
                for name, theta, c in zip(names, thetas, counts, strict=True)]
        log_table(trainer, "tables/fixed_points", columns, rows, step=step)
        fig = fixed_point_figure(list(states), fps, titles=names)
        fig.suptitle(f"Fixed points of the meta-model at θ_n (x = 0), step {step}")
        log_figure(trainer, fig, "figures/fixed_points", step=step)
        self.last_fixed_points = fps
        return True
