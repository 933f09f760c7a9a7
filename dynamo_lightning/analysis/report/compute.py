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
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

import dynamo_lightning
from dynamo_lightning.analysis.fixed_points import (
    KINDS,
    FixedPoints,
    find_fixed_points,
    sample_inits,
)
from dynamo_lightning.analysis.interpolation import (
    Interpolation,
    fixed_points_at,
    interpolate_pairs,
)
from dynamo_lightning.analysis.map_figure import default_keys
from dynamo_lightning.analysis.projection import project
from dynamo_lightning.analysis.report.pairs import cluster_of, resolve_pairs
from dynamo_lightning.analysis.report.schema import SCHEMA_VERSION, plain

SCORE_KEYS = ("hidden_r2", "output_r2", "output_agreement", "task_metric_meta",
              "task_metric_member")
"""Per-member emulation scores of a test pass (``DynamoModule.member_scores``)."""


@dataclass
class ReportOptions:
    """How much the report computes. The defaults take about a minute for 16 members with
    64-unit meta-model on 2 CPU cores.

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
    """

    trials: int = 256
    inits_per_member: int = 128
    pairs: Any = "auto"
    steps: int = 11
    seed: int = 0
    progress: bool = True
    fixed_point_trials: int = 64
    interpolation_inits: int = 32
    max_iters: int = 1000
    tol: float = 1e-8
    init_noise: float = 0.1
    figure_members: int = 4

    def __post_init__(self) -> None:
        for name in ("trials", "inits_per_member", "steps", "fixed_point_trials",
                     "interpolation_inits", "max_iters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"report option {name} must be a positive int, got {value!r}")
        if self.steps < 2:
            raise ValueError(f"report option steps must be >= 2, got {self.steps}")
        if not (isinstance(self.tol, (int, float)) and self.tol > 0):
            raise ValueError(f"report option tol must be a positive number, got {self.tol!r}")

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "progress"}


@dataclass
class ReportData:
    """The report (``report.json`` content) and what its figures are drawn from."""

    report: dict[str, Any]
    xy: np.ndarray  # map coordinates [N, 2]
    member_states: dict[int, Tensor] = field(default_factory=dict)  # [B, T, H] per member
    member_points: list[FixedPoints | None] = field(default_factory=list)
    meta_states: Tensor | None = None  # [N, B, T, state]
    meta_points: list[FixedPoints] = field(default_factory=list)
    interpolations: list[Interpolation] = field(default_factory=list)


def build_report(m: Any, population: Any, task: Any = None, *,
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


def compute_report(m: Any, population: Any, task: Any = None, *,
                   scores: dict[str, list[float]] | None = None, checkpoint: str | None = None,
                   options: ReportOptions | None = None) -> ReportData:
    """:func:`build_report`, keeping the states, points and interpolations for the figures."""
    opts = options or ReportOptions()
    ids, metadata = [str(i) for i in m.member_ids], [dict(x) for x in m.member_metadata]
    _check_population(population, ids)
    task = task if task is not None else m.task
    if task is None:
        raise ValueError("the module names no task (hparams.task_spec); pass task=... so the "
                         "report has inputs to run the networks on")
    theta = torch.as_tensor(m.embeddings()).detach().cpu().float()
    xy = project(theta, method="pca")
    timings: dict[str, float] = {}
    pairs = resolve_pairs(opts.pairs, ids, metadata)
    stages = ["member fixed points", "meta-model fixed points"] + (
        ["interpolation"] if pairs else [])
    data = ReportData(report={}, xy=xy)
    with tqdm(total=len(stages), desc="report", disable=not opts.progress, unit="stage") as bar:
        with _timed(timings, "fixed_points"):
            x, _ = _draw(task, opts.fixed_point_trials, opts.seed)
            x_const = torch.zeros(x.shape[-1])
            bar.set_postfix_str(stages[0])
            member_points, member_states = _member_fixed_points(population, x, x_const, opts)
            bar.update()
            bar.set_postfix_str(stages[1])
            meta_points, meta_states = fixed_points_at(
                m, theta, trials=opts.fixed_point_trials, seed=opts.seed,
                inits_per_theta=opts.inits_per_member, x_const=x_const, tol=opts.tol,
                max_iters=opts.max_iters, init_noise=opts.init_noise)
            bar.update()
        interpolations: list[Interpolation] = []
        if pairs:
            bar.set_postfix_str(f"interpolation ({len(pairs)} pairs × {opts.steps})")
            with _timed(timings, "interpolation"):
                interpolations = interpolate_pairs(
                    m, pairs, opts.steps, trials=opts.trials, seed=opts.seed,
                    inits_per_theta=opts.interpolation_inits, tol=opts.tol,
                    max_iters=opts.max_iters, init_noise=opts.init_noise)
            bar.update()
    data.member_points, data.member_states = member_points, member_states
    data.meta_points, data.meta_states = meta_points.split(), meta_states
    data.interpolations = interpolations
    members = _members_section(ids, metadata, theta, xy, _scores(m, scores, len(ids)))
    data.report = {
        "meta": _meta_section(m, population, task, checkpoint, theta, opts, timings),
        "members": members,
        "emulation": _emulation_section(members),
        "map": _map_section(metadata, theta.shape[1]),
        "fixed_points": _fixed_points_section(ids, metadata, data, opts),
        "interpolation": {"pairs": _pairs_section(pairs, ids, metadata, interpolations)},
        "bifurcations": [{"i": i, "j": j, "id_i": ids[i], "id_j": ids[j],
                          "alphas": list(r.bifurcations)}
                         for (i, j), r in zip(pairs, interpolations, strict=True)],
        "figures": [],
    }
    data.report = plain(data.report)
    return data


# ----------------------------------------------------------------------------- computing
def _draw(task: Any, trials: int, seed: int) -> tuple[Tensor, Tensor]:
    """The test-split trials ``interpolation`` draws for the same ``trials`` and ``seed``."""
    generator = torch.Generator().manual_seed(int(seed))
    with_ids = getattr(task, "sample_with_ids", None)
    if callable(with_ids):
        x, y, _ = with_ids(trials, generator=generator, split="test")
    else:
        x, y = task.sample(trials, generator=generator, split="test")
    return x.float(), y


class _StackStep:
    """Step function over a stack of G members: row r runs member ``member_of_row[r]``.

    Rows are scattered into a zero-padded ``[G, n_max, H]`` batch, stepped in one stacked
    call and gathered back; ``subset(rows)`` (which :func:`find_fixed_points` uses once
    rows converge) keeps each row with its member.
    """

    def __init__(self, stack: torch.nn.Module, member_of_row: Tensor) -> None:
        self.stack, self.groups = stack, member_of_row
        onehot = torch.nn.functional.one_hot(member_of_row, stack.num_members)
        self._rank = (onehot.cumsum(0) - 1).gather(1, member_of_row[:, None]).squeeze(1)
        self._width = int(onehot.sum(0).max()) if member_of_row.numel() else 0

    def subset(self, rows: Tensor) -> _StackStep:
        return _StackStep(self.stack, self.groups[rows.to(self.groups.device)])

    def __call__(self, h: Tensor, x: Tensor) -> Tensor:
        index = (self.groups.to(h.device), self._rank.to(h.device))
        g = self.stack.num_members
        padded_h = h.new_zeros(g, self._width, h.shape[-1]).index_put(index, h)
        padded_x = x.new_zeros(g, self._width, x.shape[-1]).index_put(index, x)
        return self.stack.step(padded_h, padded_x)[index]


@torch.no_grad()
def _member_states(population: Any, x: Tensor) -> list[Tensor]:
    traj = population.trajectories(x)
    return [h.cpu() for h in traj.hidden]


def _member_fixed_points(population: Any, x: Tensor, x_const: Tensor, opts: ReportOptions
                         ) -> tuple[list[FixedPoints | None], dict[int, Tensor]]:
    """Each recurrent member's fixed points: one batched search per stack of members."""
    states = _member_states(population, x)
    generator = torch.Generator().manual_seed(int(opts.seed) + 1)
    found: list[FixedPoints | None] = [None] * len(population)
    for indices, stack in population.groups():
        if not getattr(stack, "recurrent", False):
            continue  # feed-forward members have no step map
        mine = [states[i] for i in indices]
        inits = torch.cat([sample_inits(s, opts.inits_per_member, opts.init_noise, generator)
                           for s in mine]).to(population.device)
        rows = torch.arange(len(indices)).repeat_interleave(opts.inits_per_member)
        step = _StackStep(stack, rows.to(population.device))
        points = find_fixed_points(step, x_const.to(inits), inits, opts.tol, groups=step.groups,
                                   max_iters=opts.max_iters, reference=mine)
        for i, part in zip(indices, points.split(), strict=True):
            found[i] = part
    return found, {i: s for i, s in enumerate(states) if found[i] is not None}


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - start, 3)


# ----------------------------------------------------------------------------- sections
def _check_population(population: Any, ids: list[str]) -> None:
    if list(population.ids) != ids:
        extra = sorted(set(population.ids) ^ set(ids))[:5]
        raise ValueError(f"the population's members ({len(population)}) are not the module's "
                         f"({len(ids)}) in the same order; differing ids: {extra or 'order'}")


def _scores(m: Any, scores: dict[str, list[float]] | None, n: int) -> dict[str, list[Any]]:
    scores = scores if scores is not None else dict(getattr(m, "member_scores", None) or {})
    out = {}
    for key in SCORE_KEYS:
        values = list(scores.get(key) or [None] * n)
        if len(values) != n:
            raise ValueError(f"scores[{key!r}] has {len(values)} values for {n} members")
        out[key] = values
    return out


def _members_section(ids: list[str], metadata: list[dict], theta: Tensor, xy: np.ndarray,
                     scores: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [{"index": i, "id": ids[i], "cluster": cluster_of(metadata[i]),
             "metadata": metadata[i], "theta": theta[i].tolist(), "map": xy[i].tolist(),
             "scores": {k: scores[k][i] for k in SCORE_KEYS}} for i in range(len(ids))]


def _emulation_section(members: list[dict[str, Any]]) -> dict[str, Any]:
    median: dict[str, float | None] = {}
    for key in SCORE_KEYS:
        values = np.array([np.nan if x["scores"][key] is None else float(x["scores"][key])
                           for x in members])
        finite = values[np.isfinite(values)]
        median[key] = float(np.median(finite)) if finite.size else None
    keys = [k for k in SCORE_KEYS if median[k] is not None]
    return {"keys": keys, "median": median, "figure": None}


def _map_section(metadata: list[dict], dim: int) -> dict[str, Any]:
    return {"method": "pca" if dim > 2 else "theta", "projected": dim > 2,
            "keys": default_keys(metadata), "figures": {}}


def counts_of(points: FixedPoints | None) -> dict[str, int] | None:
    """``{"total", "stable", "saddle", "unstable", "slow"}`` point counts (None: no search)."""
    if points is None:
        return None
    return {"total": len(points), **{k: points.count(k) for k in KINDS}}


def _fixed_points_section(ids: list[str], metadata: list[dict], data: ReportData,
                          opts: ReportOptions) -> dict[str, Any]:
    rows = []
    for i, member_id in enumerate(ids):
        own, meta = counts_of(data.member_points[i]), counts_of(data.meta_points[i])
        match = None if own is None else own["stable"] == meta["stable"]
        rows.append({"index": i, "id": member_id, "member": own, "meta": meta,
                     "match": match})
    judged = [r["match"] for r in rows if r["match"] is not None]
    settings = {k: getattr(opts, k) for k in ("fixed_point_trials", "inits_per_member",
                                               "max_iters", "tol", "init_noise", "seed")}
    return {"input": "zeros", "kinds": list(KINDS), "settings": settings, "members": rows,
            "match_fraction": sum(judged) / len(judged) if judged else None, "figures": {}}


def _pairs_section(pairs: list[tuple[int, int]], ids: list[str], metadata: list[dict],
                   results: list[Interpolation]) -> list[dict[str, Any]]:
    out = []
    for (i, j), result in zip(pairs, results, strict=True):
        ci, cj = cluster_of(metadata[i]), cluster_of(metadata[j])
        out.append({"i": i, "j": j, "id_i": ids[i], "id_j": ids[j],
                    "relation": "within" if ci == cj else "across", "clusters": [ci, cj],
                    "figure": None, "result": result.to_dict()})
    return out


def _meta_section(m: Any, population: Any, task: Any, checkpoint: str | None, theta: Tensor,
                  opts: ReportOptions, timings: dict[str, float]) -> dict[str, Any]:
    hparams = getattr(m, "hparams", None) or {}
    expected = hparams.get("population_checksum")
    checksum = population.checksum
    device = next(m.meta.parameters()).device
    return {
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "package": {"name": "dynamo_lightning", "version": dynamo_lightning.__version__},
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "population": {"path": hparams.get("population_path"), "checksum": checksum,
                       "checkpoint_checksum": expected,
                       "checksum_matches": None if expected is None else expected == checksum},
        "num_members": int(theta.shape[0]), "embedding_dim": int(theta.shape[1]),
        "task": {"name": task.name, "config": task.config()},
        "metric_name": str(getattr(task, "metric_name", "")),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "cpu_count": os.cpu_count() or 1,
                    "threads": torch.get_num_threads(),
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda"
                    else device.type},
        "options": opts.as_dict(), "timings": timings,
    }
