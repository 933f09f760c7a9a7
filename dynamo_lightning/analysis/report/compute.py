"""Everything the analysis report says, computed from a fitted module and its population.

``m`` is read duck-typed (``DynamoModule`` fits): ``embeddings()`` ``[N, d]``, ``member_ids``,
``member_metadata``, ``meta`` (the ``MetaRNN``), ``task``, ``hparams`` (optional:
``population_path``/``population_checksum``) and, after a test pass, ``member_scores``.
Nothing here imports Lightning; the test pass that produces the emulation scores belongs to
the caller (``dynamo analyze`` runs it).

Fixed points are searched under constant zero input (the no-input condition that holds a
flip-flop's memories, Sussillo & Barak 2013) on both sides of the comparison: each member's
own step map (members of one architecture and shape stacked, one search per stack) and the
meta-model at every θ_n (all N embeddings in one batched search). Both searches start from,
and are anchored to, their own states on the same ``fixed_point_trials`` test trials.

A feed-forward meta-model (``MetaCNN``, for CNN members) has no step map: the report then
says that fixed points do not apply, interpolates the task metric only (no topology map) and
shows the emulation per stage (``emulation.stages``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from dynamo_lightning.analysis.fitted_map import FittedMap
from dynamo_lightning.analysis.fixed_point_search import search_progress
from dynamo_lightning.analysis.fixed_points import FixedPointSet
from dynamo_lightning.analysis.interpolation import (
    GridResult,
    InterpolationResult,
    fixed_points_at,
    interpolate_grid,
    interpolate_pairs,
)
from dynamo_lightning.analysis.member_dynamics import member_fixed_points
from dynamo_lightning.analysis.projection import project
from dynamo_lightning.analysis.report.pairs import resolve_pairs
from dynamo_lightning.analysis.report.schema import plain
from dynamo_lightning.analysis.report.sections import (
    SCORE_KEYS,
    bifurcations_section,
    check_population,
    emulation_section,
    fixed_points_section,
    map_section,
    member_scores,
    members_section,
    meta_section,
    not_applicable_section,
    pairs_section,
    stage_section,
)
from dynamo_lightning.analysis.report.timing import threads as _threads
from dynamo_lightning.analysis.report.timing import timed as _timed
from dynamo_lightning.analysis.report.uses import (
    averaging_section,
    baselines_section,
    parse_methods,
)
from dynamo_lightning.analysis.search_options import SearchOptions
from dynamo_lightning.analysis.theta_evaluation import draw_trials
from dynamo_lightning.checks import (
    boolean,
    int_at_least,
    is_int,
    non_negative_int,
    non_negative_real,
    optional_positive_int,
    positive_int,
    positive_real,
    seed,
)
from dynamo_lightning.population import Population
from dynamo_lightning.tasks import Task

OWNER = "report options"

__all__ = ["SCORE_KEYS", "ReportData", "ReportOptions", "build_report", "compute_report",
           "make_options"]


@dataclass
class ReportOptions:
    """How much the report computes (``report.json``'s ``meta.timings`` says what each
    stage took; docs/report.md gives measured times).

    Args:
        trials: test trials scored at every θ along an interpolation.
        inits_per_member: initial states per member, and per θ_n, of the fixed-point search.
        pairs: ``"auto"`` (see :func:`~.pairs.auto_pairs`), ``"none"`` or ``[(i, j), ...]``.
        steps: points per interpolation segment, both ends included.
        seed: seed of the trials and initial states.
        progress: show a progress bar over the long stages.
        fixed_point_trials: test trials whose states seed and anchor the fixed-point search.
        interpolation_inits: initial states per θ along an interpolation.
        max_iters: Adam iterations of every fixed-point search.
        tol: a point is fixed once ``q = ½‖F(h) − h‖² < tol``.
        init_noise: noise of the initial states, × the per-unit std of the states.
        figure_members: members that get a ``fixed_points_<id>.png`` (one per cluster first).
        grid_resolution: for a 2-D map, the task metric and stable-point count on a
            ``grid_resolution²`` grid over it (:func:`~..interpolation.interpolate_grid`):
            the map as a field, where regions of one topology and the borders between them
            show. 0 skips it.
        grid_inits: initial states per grid θ.
        baselines: similarity baselines to compare the map with (``"all"``, ``"none"``, or
            names from ``cka``, ``procrustes``, ``weights``, ``dsa``; see ``uses.py``).
        similarity_trials: test trials every baseline runs the members on.
        averaging: compute the model-averaging section (centroid networks per computation).
        threads: torch intra-op threads while computing (restored after); None leaves
            torch's setting. The searches are thousands of small ops, and an extra thread
            waiting for a busy core stalls each of them (measured in docs/report.md).
    """

    trials: int = 256
    inits_per_member: int = 128
    pairs: Any = "auto"
    steps: int = 11
    seed: int = 0
    progress: bool = True
    fixed_point_trials: int = 64
    interpolation_inits: int = 128
    max_iters: int = 3000
    tol: float = 1e-8
    init_noise: float = 0.1
    figure_members: int = 4
    grid_resolution: int = 7
    grid_inits: int = 64
    baselines: Any = "all"
    similarity_trials: int = 64
    averaging: bool = True
    threads: int | None = 1

    def __post_init__(self) -> None:
        for name in ("trials", "inits_per_member", "steps", "fixed_point_trials",
                     "interpolation_inits", "max_iters", "grid_inits", "similarity_trials"):
            positive_int(name, getattr(self, name), OWNER)
        int_at_least("steps", self.steps, 2, OWNER)
        resolution = self.grid_resolution
        if not is_int(resolution) or resolution < 0 or resolution == 1:
            raise ValueError(f"{OWNER}: grid_resolution must be 0 (no grid) or an integer "
                             f">= 2, got {resolution!r}")
        optional_positive_int("threads", self.threads, OWNER)
        self.baselines = parse_methods(self.baselines)
        boolean("averaging", self.averaging, OWNER)
        positive_real("tol", self.tol, OWNER)
        non_negative_real("init_noise", self.init_noise, OWNER)
        non_negative_int("figure_members", self.figure_members, OWNER)
        seed("seed", self.seed, OWNER)

    def search(self, trials: int, inits: int) -> SearchOptions:
        """One stage's fixed-point search: its trials and initial states, the rest shared."""
        return SearchOptions(trials=trials, seed=self.seed, inits=inits, tol=self.tol,
                             max_iters=self.max_iters, init_noise=self.init_noise)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "progress"}


@dataclass
class ReportData:
    """The report (``report.json`` content) and what its figures are drawn from."""

    report: dict[str, Any]
    xy: np.ndarray  # map coordinates [N, 2]
    member_states: dict[int, Tensor] = field(default_factory=dict)  # [B, T, H] per member
    member_points: list[FixedPointSet | None] = field(default_factory=list)
    meta_states: Tensor | None = None  # [N, B, T, state]
    meta_points: list[FixedPointSet] = field(default_factory=list)
    interpolations: list[InterpolationResult] = field(default_factory=list)
    grid: GridResult | None = None


def build_report(m: FittedMap, population: Population, task: Task | None = None, *,
                 scores: dict[str, list[float]] | None = None, checkpoint: str | None = None,
                 **options: Any) -> dict[str, Any]:
    """The ``report.json`` content (see ``docs/report.md``) for a fitted module.

    Args:
        m: the fitted module (read duck-typed, see the module docstring).
        population: the ``Population`` it was fitted on (same ids, same order).
        task: the task whose inputs drive the analysis (default ``m.task``).
        scores: per-member emulation scores ``{name: [N]}`` (``m.member_scores`` after a
            test pass); default ``m.member_scores`` if it has any.
        checkpoint: the checkpoint's path, recorded in ``meta``.
        **options: :class:`ReportOptions` fields (``trials``, ``inits_per_member``,
            ``pairs``, ``steps``, ``seed``, ``progress``, ...).

    Raises:
        ValueError: the population does not match the module, no task, a bad option.
    """
    return compute_report(m, population, task, scores=scores, checkpoint=checkpoint,
                          options=make_options(options)).report


def make_options(options: dict[str, Any]) -> ReportOptions:
    """:class:`ReportOptions` from keywords, naming unknown ones."""
    known = set(ReportOptions.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown report option(s) {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(known))})")
    return ReportOptions(**options)


def compute_report(m: FittedMap, population: Population, task: Task | None = None, *,
                   scores: dict[str, list[float]] | None = None, checkpoint: str | None = None,
                   options: ReportOptions | None = None) -> ReportData:
    """:func:`build_report`, keeping the states, points and interpolations for the figures."""
    opts = options or ReportOptions()
    ids, metadata = [str(i) for i in m.member_ids], [dict(x) for x in m.member_metadata]
    check_population(population, ids)
    if task is None:
        task = m.task
    else:
        m = _WithTask(m, task)  # the meta-model's searches and interpolation use it too
    if task is None:
        raise ValueError("the module names no task (hparams.task_spec); pass task=... so the "
                         "report has inputs to run the networks on")
    theta = torch.as_tensor(m.embeddings()).detach().cpu().float()
    pairs = resolve_pairs(opts.pairs, ids, metadata)
    timings: dict[str, float] = {}
    data = ReportData(report={}, xy=project(theta, method="pca"))
    with _threads(opts.threads):
        _search(m, population, task, theta, pairs, opts, timings, data)
        with _timed(timings, "baselines"):
            baselines = baselines_section(m, population, task, theta, metadata, opts.baselines,
                                          opts.similarity_trials, opts.seed)
        with _timed(timings, "averaging"):
            averaging = (averaging_section(m, population, metadata, opts.trials, opts.seed)
                         if opts.averaging else None)
    members = members_section(ids, metadata, theta, data.xy,
                              member_scores(m, scores, len(ids)))
    recurrent = bool(getattr(m.meta, "recurrent", True))
    settings = {k: getattr(opts, k) for k in ("fixed_point_trials", "inits_per_member",
                                               "max_iters", "tol", "init_noise", "seed")}
    report = {
        "meta": meta_section(m, population, task, checkpoint, theta, opts.as_dict(),
                             opts.threads, timings),
        "members": members,
        "emulation": {**emulation_section(members),
                      "stages": stage_section(m, scores, len(ids))},
        "map": map_section(metadata, theta.shape[1]),
        "fixed_points": fixed_points_section(ids, data.member_points, data.meta_points,
                                             settings) if recurrent else
        not_applicable_section(ids, type(m.meta).__name__),
        "interpolation": {"pairs": pairs_section(pairs, ids, metadata, data.interpolations)},
        "bifurcations": bifurcations_section(pairs, ids, data.interpolations),
        "grid": None if data.grid is None else {
            "resolution": opts.grid_resolution, "inits_per_theta": opts.grid_inits,
            "figure": None, "result": data.grid.to_dict()},
        "baselines": baselines,
        "averaging": averaging,
        "figures": [],
    }
    data.report = plain(report)
    return data


def _search(m: FittedMap, population: Population, task: Task, theta: Tensor,
            pairs: list[tuple[int, int]],
            opts: ReportOptions, timings: dict[str, float], data: ReportData) -> None:
    """The long stages (fixed points of members and meta-model, interpolation, the topology
    map of a 2-D map) into ``data``."""
    recurrent = bool(getattr(m.meta, "recurrent", True))
    if not recurrent:  # no step map: no fixed points, no topology; accuracy along segments
        data.member_points = [None] * len(theta)
        if pairs:
            with _timed(timings, "interpolation"):
                data.interpolations = interpolate_pairs(
                    m, pairs, opts.steps, fixed_points=False,
                    search=opts.search(opts.trials, opts.interpolation_inits))
        return
    stages = ["member fixed points", "meta-model fixed points"]
    stages += [f"interpolation ({len(pairs)} pairs × {opts.steps})"] if pairs else []
    grid = opts.grid_resolution if theta.shape[1] == 2 else 0
    stages += [f"topology map ({grid}×{grid})"] if grid else []
    with tqdm(total=len(stages), desc="report", disable=not opts.progress, unit="stage") as bar:
        with _timed(timings, "fixed_points"):
            # the trials interpolation draws for the same count and seed
            generator = torch.Generator().manual_seed(int(opts.seed))
            x = draw_trials(task, opts.fixed_point_trials, generator)[0].float()
            x_const = torch.zeros(x.shape[-1])
            bar.set_postfix_str(stages[0])
            search = opts.search(opts.fixed_point_trials, opts.inits_per_member)
            with search_progress(stages[0], opts.progress):
                data.member_points, data.member_states = member_fixed_points(
                    population, x, x_const, search)
            bar.update()
            bar.set_postfix_str(stages[1])
            with search_progress(stages[1], opts.progress):
                points, data.meta_states = fixed_points_at(m, theta, search=search,
                                                           x_const=x_const)
            data.meta_points = points.split()
            bar.update()
        if pairs:
            bar.set_postfix_str(stages[2])
            with _timed(timings, "interpolation"), search_progress(stages[2], opts.progress):
                data.interpolations = interpolate_pairs(
                    m, pairs, opts.steps, search=opts.search(opts.trials, opts.interpolation_inits))
            bar.update()
        if grid:
            bar.set_postfix_str(stages[-1])
            with _timed(timings, "grid"), search_progress(stages[-1], opts.progress):
                data.grid = interpolate_grid(
                    m, grid, search=opts.search(opts.trials, opts.grid_inits))
            bar.update()


# ----------------------------------------------------------------------------- computing
class _WithTask:
    """``m`` with another ``task`` (everything else read through to ``m``)."""

    def __init__(self, m: FittedMap, task: Task) -> None:
        self._m, self.task = m, task

    def __getattr__(self, name: str) -> Any:
        return getattr(self._m, name)
