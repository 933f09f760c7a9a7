"""The sections of ``report.json`` (schema: ``schema.py`` and ``docs/report.md``), each built
from computed results; numbers may still be tensors or NaN here (``schema.plain`` makes the
whole report JSON-safe)."""

from __future__ import annotations

import datetime as dt
import os
import platform
from typing import Any

import numpy as np
import torch
from torch import Tensor

import dynamo_lightning
from dynamo_lightning.analysis.fitted_map import FittedMap
from dynamo_lightning.analysis.fixed_points import KINDS, FixedPointSet
from dynamo_lightning.analysis.interpolation import InterpolationResult
from dynamo_lightning.analysis.map_figure import default_keys
from dynamo_lightning.analysis.report.schema import SCHEMA_VERSION
from dynamo_lightning.analysis.selection import cluster_of
from dynamo_lightning.population import Population
from dynamo_lightning.tasks import Task

SCORE_KEYS = ("hidden_r2", "output_r2", "output_agreement", "task_metric_meta",
              "task_metric_member")
"""Per-member emulation scores of a test pass (``DynamoModule.member_scores``)."""


def check_population(population: Population, ids: list[str]) -> None:
    """Raise ValueError unless ``population`` holds the members ``ids``, in that order."""
    if list(population.ids) != ids:
        extra = sorted(set(population.ids) ^ set(ids))[:5]
        raise ValueError(f"the population's members ({len(population)}) are not the module's "
                         f"({len(ids)}) in the same order; differing ids: {extra or 'order'}")


def member_scores(m: FittedMap, scores: dict[str, list[float]] | None, n: int
                  ) -> dict[str, list[Any]]:
    """``{key: [N]}`` for every :data:`SCORE_KEYS` (None where not given); ``scores``
    defaults to ``m.member_scores``."""
    scores = scores if scores is not None else dict(getattr(m, "member_scores", None) or {})
    out = {}
    for key in SCORE_KEYS:
        values = list(scores.get(key) or [None] * n)
        if len(values) != n:
            raise ValueError(f"scores[{key!r}] has {len(values)} values for {n} members")
        out[key] = values
    return out


def members_section(ids: list[str], metadata: list[dict], theta: Tensor, xy: np.ndarray,
                    scores: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [{"index": i, "id": ids[i], "cluster": cluster_of(metadata[i]),
             "metadata": metadata[i], "theta": theta[i].tolist(), "map": xy[i].tolist(),
             "scores": {k: scores[k][i] for k in SCORE_KEYS}} for i in range(len(ids))]


def emulation_section(members: list[dict[str, Any]]) -> dict[str, Any]:
    median: dict[str, float | None] = {}
    for key in SCORE_KEYS:
        values = np.array([np.nan if x["scores"][key] is None else float(x["scores"][key])
                           for x in members])
        finite = values[np.isfinite(values)]
        median[key] = float(np.median(finite)) if finite.size else None
    keys = [k for k in SCORE_KEYS if median[k] is not None]
    return {"keys": keys, "median": median, "figure": None}


def map_section(metadata: list[dict], dim: int) -> dict[str, Any]:
    return {"method": "pca" if dim > 2 else "theta", "projected": dim > 2,
            "keys": default_keys(metadata), "figures": {}}


def counts_of(points: FixedPointSet | None) -> dict[str, int] | None:
    """``{"total", "stable", "saddle", "unstable", "slow"}`` point counts (None: no search)."""
    if points is None:
        return None
    return {"total": len(points), **{k: points.count(k) for k in KINDS}}


def fixed_points_section(ids: list[str], member_points: list[FixedPointSet | None],
                         meta_points: list[FixedPointSet], settings: dict[str, Any]
                         ) -> dict[str, Any]:
    rows = []
    for i, member_id in enumerate(ids):
        own, meta = counts_of(member_points[i]), counts_of(meta_points[i])
        match = None if own is None else own["stable"] == meta["stable"]
        rows.append({"index": i, "id": member_id, "member": own, "meta": meta,
                     "match": match})
    judged = [r["match"] for r in rows if r["match"] is not None]
    return {"input": "zeros", "kinds": list(KINDS), "settings": settings, "applies": True,
            "note": None, "members": rows,
            "match_fraction": sum(judged) / len(judged) if judged else None, "figures": {}}


def not_applicable_section(ids: list[str], meta_name: str) -> dict[str, Any]:
    """The fixed-point section of a feed-forward fit: fixed points do not apply."""
    return {"input": "none", "kinds": list(KINDS), "settings": {}, "applies": False,
            "note": f"The members and the meta-model ({meta_name}) are feed-forward: they "
                    "have no step map, so fixed points do not apply. See the emulation per "
                    "stage and the task metric along the interpolations instead.",
            "members": [{"index": i, "id": member_id, "member": None, "meta": None,
                         "match": None} for i, member_id in enumerate(ids)],
            "match_fraction": None, "figures": {}}


def stage_section(m: FittedMap, scores: dict[str, list[Any]] | None, n: int
                  ) -> dict[str, Any] | None:
    """Per-stage hidden R² of a feed-forward fit (``stage_hidden_r2``, ``[N][S̃]`` from the
    test pass): per member and stage, the median per stage and over all; None otherwise."""
    scores = scores if scores is not None else dict(getattr(m, "member_scores", None) or {})
    values = scores.get("stage_hidden_r2")
    if not values or len(values) != n:
        return None
    table = np.array([[np.nan if v is None else float(v) for v in row] for row in values])
    per_stage = [float(np.median(c[np.isfinite(c)])) if np.isfinite(c).any() else None
                 for c in table.T]
    finite = table[np.isfinite(table)]
    return {"hidden_r2": table.tolist(), "median_per_stage": per_stage,
            "median": float(np.median(finite)) if finite.size else None}


def pairs_section(pairs: list[tuple[int, int]], ids: list[str], metadata: list[dict],
                  results: list[InterpolationResult]) -> list[dict[str, Any]]:
    out = []
    for (i, j), result in zip(pairs, results, strict=True):
        ci, cj = cluster_of(metadata[i]), cluster_of(metadata[j])
        out.append({"i": i, "j": j, "id_i": ids[i], "id_j": ids[j],
                    "relation": "within" if ci == cj else "across", "clusters": [ci, cj],
                    "figure": None, "result": result.to_dict()})
    return out


def bifurcations_section(pairs: list[tuple[int, int]], ids: list[str],
                         results: list[InterpolationResult]) -> list[dict[str, Any]]:
    return [{"i": i, "j": j, "id_i": ids[i], "id_j": ids[j], "alphas": list(r.bifurcations)}
            for (i, j), r in zip(pairs, results, strict=True)]


def meta_section(m: FittedMap, population: Population, task: Task, checkpoint: str | None,
                 theta: Tensor,
                 options: dict[str, Any], threads: int | None,
                 timings: dict[str, float]) -> dict[str, Any]:
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
                    "threads": threads or torch.get_num_threads(),
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda"
                    else device.type},
        "options": options, "timings": timings,
    }
