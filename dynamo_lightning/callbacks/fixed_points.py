"""FixedPoints and Interpolation: the meta-model's dynamics at members' θ's and between them.

Both callbacks only coordinate: the maths is :mod:`dynamo_lightning.analysis.interpolation`
(one batched search per call), the figures :mod:`dynamo_lightning.analysis.plots`, and the
routing :func:`log_figure` / :func:`log_table`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from dynamo_lightning.analysis.fixed_points import KINDS
from dynamo_lightning.analysis.interpolation import (
    fixed_points_at,
    interpolate_pairs,
    member_index,
)
from dynamo_lightning.analysis.plots import fixed_point_figure, interpolation_figure
from dynamo_lightning.callbacks.figures import log_figure, log_table

if TYPE_CHECKING:
    import lightning.pytorch as pl

    from dynamo_lightning.analysis.fixed_points import FixedPoints as FixedPointSet
    from dynamo_lightning.analysis.interpolation import Interpolation as InterpolationResult

MemberKey = str | int


class _Analysis(Callback):
    """Timing, rank-0 only, eval mode + no grad (restored after) and resumable state."""

    def __init__(self, every_n_epochs: int, tol: float, max_iters: int, trials: int) -> None:
        super().__init__()
        self._every_n_epochs = _int(self, "every_n_epochs", every_n_epochs)
        if isinstance(tol, bool) or not isinstance(tol, Real) or not 0 < tol < math.inf:
            raise ValueError(f"{type(self).__name__}(tol={tol!r}): tol must be a positive "
                             "finite number")
        self._tol = float(tol)
        self._max_iters = _int(self, "max_iters", max_iters)
        self._trials = _int(self, "trials", trials)
        self._last_step: int | None = None  # global step of the last analysis
        self._num_drawn = 0

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if (trainer.current_epoch + 1) % self._every_n_epochs != 0:
            return
        self._run(trainer, pl_module)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self._run(trainer, pl_module)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self._last_step, "num_drawn": self._num_drawn}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_step = state_dict.get("last_step")
        self._num_drawn = state_dict.get("num_drawn", 0)

    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._last_step == trainer.global_step:  # already analysed at this step
            return
        was_training = pl_module.training
        pl_module.eval()
        try:  # validation hooks run under inference mode; the finder needs autograd
            with torch.inference_mode(False), torch.no_grad():
                done = self._analyse(trainer, pl_module)
        finally:
            pl_module.train(was_training)
        if done:
            self._last_step = trainer.global_step
            self._num_drawn += 1

    def _analyse(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        raise NotImplementedError


class FixedPoints(_Analysis):
    """Fixed points of the meta-model at chosen members' θ_n, all in one batched search.

    Logs per member and kind ``fixed_points/<id>/<kind>`` (and ``/total``) to every attached
    logger's ``log_metrics``, a table ``tables/fixed_points`` (member, θ, counts) and the
    figure ``figures/fixed_points`` (one panel per member, points on the top-2 PCs of the
    meta-model's trajectories at that θ). Runs after validation every ``every_n_epochs``
    epochs and at the end of fit. The search uses ``x_const = 0`` (no input), initial states
    from the meta-model's own trajectories on ``trials`` test trials of the module's task
    (see :func:`dynamo_lightning.analysis.interpolation.fixed_points_at`).

    Args:
        every_n_epochs: Analyse after validation every this many epochs.
        members: Member ids or indices; default up to 8, taken in turn from each
            architecture (metadata ``architecture``).
        inits_per_member: Initial states of the search per member.
        tol: A point is fixed once ``q = ½‖F(h) − h‖² < tol``.
        max_iters: Adam iterations of the search at most.
        trials: Task trials whose trajectories seed the search and are drawn.

    Raises:
        ValueError: A bad argument (named); at run time, a member the module does not have.

    Example::

        trainer = Trainer(callbacks=[FixedPoints(every_n_epochs=5, members=["gru-s0"])])
    """

    def __init__(self, every_n_epochs: int = 10, members: list[MemberKey] | None = None,
                 inits_per_member: int = 128, tol: float = 1e-8, max_iters: int = 2000,
                 trials: int = 32) -> None:
        super().__init__(every_n_epochs, tol, max_iters, trials)
        if members is not None:
            members = _keys(self, "members", members)
            if not members or len(set(members)) != len(members):
                raise ValueError(f"FixedPoints(members={members!r}): members must be a "
                                 "non-empty list of distinct member ids or indices")
        self._members = members
        self._inits = _int(self, "inits_per_member", inits_per_member)
        self.last_fixed_points: FixedPointSet | None = None  # of the latest analysis

    def _analyse(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        ids = [str(i) for i in pl_module.member_ids]
        chosen = ([member_index(pl_module, k) for k in self._members] if self._members
                  else default_members(pl_module.member_metadata))
        thetas = pl_module.embeddings()[chosen]
        fps, states = fixed_points_at(pl_module, thetas, trials=self._trials,
                                      inits_per_theta=self._inits, tol=self._tol,
                                      max_iters=self._max_iters)
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


class Interpolation(_Analysis):
    """Task metric and fixed-point counts along segments θ_a → θ_b between members.

    Logs, per pair, the figure ``figures/interpolation/<a>__<b>`` and one table
    ``tables/interpolation`` (pair, α, θ, task metric, counts per kind, bifurcation flag)
    after validation every ``every_n_epochs`` epochs and at the end of fit. All pairs' θ's go
    through one batched evaluation
    (:func:`dynamo_lightning.analysis.interpolation.interpolate_pairs`).

    Args:
        every_n_epochs: Analyse after validation every this many epochs.
        pairs: ``[[a, b], ...]`` member ids or indices; default one pair within an
            architecture and one across two architectures (metadata ``architecture``).
        steps: Points per segment (≥ 2), both members included.
        fixed_points: Also count fixed points along the segments.
        inits_per_theta, tol, max_iters: The fixed-point search per point of a segment.
        trials: Task trials scored at every point.

    Raises:
        ValueError: A bad argument (named); at run time, a member the module does not have.

    Example::

        trainer = Trainer(callbacks=[Interpolation(pairs=[["gru-s0", "lstm-s3"]], steps=21)])
    """

    def __init__(self, every_n_epochs: int = 10, pairs: list[list[MemberKey]] | None = None,
                 steps: int = 11, fixed_points: bool = True, inits_per_theta: int = 32,
                 tol: float = 1e-8, max_iters: int = 2000, trials: int = 128) -> None:
        super().__init__(every_n_epochs, tol, max_iters, trials)
        if pairs is not None:
            bad = (isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence)
                   or not pairs or any(isinstance(p, (str, bytes)) or not isinstance(p, Sequence)
                                       or len(p) != 2 for p in pairs))
            if bad:
                raise ValueError(f"Interpolation(pairs={pairs!r}): pairs must be a non-empty "
                                 "list of [a, b] member pairs")
            pairs = [_keys(self, "pairs", p) for p in pairs]
            if any(a == b for a, b in pairs):
                raise ValueError(f"Interpolation(pairs={pairs!r}): a pair joins a member to "
                                 "itself")
        self._pairs = pairs
        self._steps = _int(self, "steps", steps, minimum=2)
        if not isinstance(fixed_points, bool):
            raise ValueError(f"Interpolation(fixed_points={fixed_points!r}): must be a bool")
        self._fixed_points = fixed_points
        self._inits = _int(self, "inits_per_theta", inits_per_theta)
        self._warned = False
        self.last_results: list[InterpolationResult] = []  # of the latest analysis

    def _analyse(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        pairs = self._pairs or default_pairs(pl_module.member_ids, pl_module.member_metadata)
        if not pairs:
            if not self._warned:
                rank_zero_warn("Interpolation: fewer than two members, nothing to interpolate")
                self._warned = True
            return False
        results = interpolate_pairs(pl_module, pairs, self._steps, trials=self._trials,
                                    fixed_points=self._fixed_points,
                                    inits_per_theta=self._inits, tol=self._tol,
                                    max_iters=self._max_iters)
        step, rows = trainer.global_step, []
        for result in results:
            a, b = result.endpoints or ("?", "?")
            log_figure(trainer, interpolation_figure(result), f"figures/interpolation/{a}__{b}",
                       step=step)
            alphas = result.alphas.tolist()
            for s, alpha in enumerate(alphas):
                counts = [int(result.counts[k][s]) if result.counts else None for k in KINDS]
                middle = (alpha + alphas[s + 1]) / 2 if s + 1 < len(alphas) else math.nan
                after = any(abs(b - middle) < 1e-12 for b in result.bifurcations)
                rows.append([f"{a}__{b}", a, b, alpha, *map(float, result.thetas[s]),
                             float(result.task_metric[s]), *counts, after])
        dim = results[0].thetas.shape[1]
        columns = ["pair", "from", "to", "alpha", *(f"theta_{k + 1}" for k in range(dim)),
                   results[0].metric_name or "task_metric", *KINDS, "bifurcation_after"]
        log_table(trainer, "tables/interpolation", columns, rows, step=step)
        self.last_results = results
        return True


def default_members(metadata: Sequence[dict[str, Any]], limit: int = 8) -> list[int]:
    """Up to ``limit`` member indices, taken in turn from each architecture (first-seen
    order), so every architecture is represented before any gets a second member."""
    groups: dict[str, list[int]] = {}
    for index, meta in enumerate(metadata):
        groups.setdefault(str(meta.get("architecture", "?")), []).append(index)
    chosen: list[int] = []
    for rank in range(max((len(g) for g in groups.values()), default=0)):
        chosen += [g[rank] for g in groups.values() if rank < len(g)]
    return sorted(chosen[:limit])


def default_pairs(ids: Sequence[str], metadata: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One pair within an architecture (its first two members) and one across two
    architectures (their first members); fewer when the population cannot provide them."""
    groups: dict[str, list[str]] = {}
    for name, meta in zip(ids, metadata, strict=True):
        groups.setdefault(str(meta.get("architecture", "?")), []).append(str(name))
    pairs = [g[:2] for g in groups.values() if len(g) >= 2][:1]
    firsts = [g[0] for g in groups.values()]
    if len(firsts) >= 2:
        pairs.append(firsts[:2])
    return pairs


def _int(owner: Callback, name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{type(owner).__name__}({name}={value!r}): {name} must be an int "
                         f">= {minimum}")
    return value


def _keys(owner: Callback, name: str, values: Any) -> list[MemberKey]:
    """A list of member ids (str) or indices (int >= 0), else ValueError naming ``name``."""
    ok = (not isinstance(values, (str, bytes)) and isinstance(values, Sequence)
          and all((isinstance(v, str) and v) or (isinstance(v, int) and not isinstance(v, bool)
                                                 and v >= 0) for v in values))
    if not ok:
        raise ValueError(f"{type(owner).__name__}({name}={values!r}): {name} must list member "
                         "ids (str) or indices (int >= 0)")
    return list(values)
