"""The report's PNGs, written next to ``report.json``; every figure is closed after saving.

- ``map_<key>.png``: the map coloured by one metadata key (``map.png`` when no key varies);
- ``emulation.png``: per-member hidden R², output agreement and task metric (meta vs member),
  or their distributions per architecture above ``LABELLED_UP_TO`` members;
- ``fixed_points_<id>.png``: member vs meta-model at θ_n, side by side;
- ``interpolation_<i>_<j>.png``: task metric and fixed-point counts along θ_i → θ_j;
- ``baselines.png``: the map beside an MDS picture of every similarity baseline.

Each writer records the file names it wrote in the matching section of the report.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from dynamo_lightning.analysis.baselines import comparison_figure
from dynamo_lightning.analysis.fixed_points import FixedPointSet
from dynamo_lightning.analysis.map_figure import map_figure
from dynamo_lightning.analysis.plots import (
    closed_on_error,
    fixed_point_figure,
    grid_figure,
    interpolation_figure,
)
from dynamo_lightning.analysis.report.compute import ReportData
from dynamo_lightning.analysis.report.sections import SCORE_KEYS
from dynamo_lightning.analysis.selection import representative_members
from dynamo_lightning.tasks.mixture import MIXTURE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
ANNOTATE_UP_TO = 8
"""Maps of at most this many members write each member's id next to its point."""
LABELLED_UP_TO = 60
"""``emulation.png`` shows each member up to this many; above, distributions per architecture."""


def write_figures(data: ReportData, out_dir: Path, figure_members: int = 4) -> list[str]:
    """Write every PNG into ``out_dir`` and name them in ``data.report``; returns the names."""
    report = data.report
    written = _map_pngs(data, out_dir)
    emulation = _emulation_png(report, out_dir)
    report["emulation"]["figure"] = emulation
    written += [emulation] if emulation else []
    written += _fixed_point_pngs(data, out_dir, figure_members)
    for entry, result in zip(report["interpolation"]["pairs"], data.interpolations, strict=True):
        name = f"interpolation_{entry['i']}_{entry['j']}.png"
        _save(interpolation_figure(result), out_dir / name)
        entry["figure"] = name
        written.append(name)
    if data.grid is not None and report.get("grid") is not None:
        fig = grid_figure(data.grid, torch.tensor([m["theta"] for m in report["members"]]))
        fig.suptitle("Topology map: the meta-model at every θ of a grid over the map")
        _save(fig, out_dir / "grid.png")
        report["grid"]["figure"] = "grid.png"
        written.append("grid.png")
    if report.get("baselines"):
        section = report["baselines"]
        metadata = [m["metadata"] for m in report["members"]]
        _save(comparison_figure(section, metadata, section["key"]), out_dir / "baselines.png")
        section["figure"] = "baselines.png"
        written.append("baselines.png")
    report["figures"] = written
    return written


def _map_pngs(data: ReportData, out_dir: Path) -> list[str]:
    report = data.report
    members = report["members"]
    ids = [m["id"] for m in members]
    metadata = [m["metadata"] for m in members]
    section = report["map"]
    dim = report["meta"]["embedding_dim"]
    keys = section["keys"] or [None]
    for key in keys:
        name = "map.png" if key is None else f"map_{safe_name(key)}.png"
        fig = map_figure(data.xy, ids, metadata, [] if key is None else [key],
                         section["method"], dim, annotate=len(ids) <= ANNOTATE_UP_TO)
        fig.suptitle(f"Model embedding map ({len(ids)} members)")
        _save(fig, out_dir / name)
        section["figures"][key or "members"] = name
    return list(section["figures"].values())


def _emulation_png(report: dict[str, Any], out_dir: Path) -> str | None:
    """Per-member markers for up to ``LABELLED_UP_TO`` members; above that (a member's tick
    label each would make a figure tens of thousands of pixels wide, minutes to draw), the
    scores' distribution per architecture, with the lowest member named per panel."""
    members = report["members"]
    if not report["emulation"]["keys"]:
        return None

    def values(key: str) -> np.ndarray:
        return np.array([np.nan if m["scores"][key] is None else m["scores"][key]
                         for m in members], dtype=float)

    panels = [("hidden_r2", "hidden R² (aligned states)"),
              ("output_agreement", "output agreement")]
    has_task = any(np.isfinite(values(k)).any() for k in SCORE_KEYS[3:])
    count = len(panels) + has_task
    if len(members) > LABELLED_UP_TO:
        fig = _emulation_distributions(report, values, panels, has_task)
    else:
        fig = _emulation_per_member(report, values, panels, has_task, count)
    _save(fig, out_dir / "emulation.png")
    return "emulation.png"


def _emulation_per_member(report: dict[str, Any], values: Any, panels: list[tuple[str, str]],
                          has_task: bool, count: int) -> Figure:
    ids = [m["id"] for m in report["members"]]
    x = np.arange(len(ids))
    fig, axes = plt.subplots(count, 1, figsize=(max(6.0, 0.45 * len(ids) + 2), 2.4 * count),
                             sharex=True, squeeze=False, layout="constrained")
    with closed_on_error(fig):
        # Markers on a zoomed axis, not bars from 0: the scores sit near 1, where bars
        # would hide every difference between members.
        for ax, (key, label) in zip(axes[:, 0], panels, strict=False):
            ax.plot(x, values(key), "o", color="tab:blue", ms=5)
            _zoom(ax, values(key))
            ax.set_ylabel(label, fontsize=8)
            ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
        if has_task:
            ax = axes[-1, 0]
            own, meta = values("task_metric_member"), values("task_metric_meta")
            ax.plot(x - 0.1, own, "o", label="member", color="tab:gray", ms=5)
            ax.plot(x + 0.1, meta, "D", label="meta-model at θ_n", color="tab:green", ms=4)
            _zoom(ax, np.concatenate([own, meta]))
            ax.set_ylabel(_task_metric_label(report), fontsize=8)
            ax.legend(fontsize=7, loc="lower right")
        axes[-1, 0].set_xticks(x, ids, rotation=60, ha="right", fontsize=7)
        fig.suptitle("Emulation of each member (test pass)")
    return fig


def _emulation_distributions(report: dict[str, Any], values: Any,
                             panels: list[tuple[str, str]], has_task: bool) -> Figure:
    members = report["members"]
    # One box per architecture, and per computation too where members differ in it: their
    # task metrics are different measures, and their emulation may differ as much.
    tasks = {str(m["metadata"].get("task", "")) for m in members}
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(members):
        name = str(m["metadata"].get("architecture", "all"))
        if len(tasks) > 1:
            name += f"\n{m['metadata'].get('task', '?')}"
        groups.setdefault(name, []).append(i)
    names = list(groups)
    labels = [f"{name}\n({len(groups[name])})" for name in names]
    count = len(panels) + has_task
    fig, axes = plt.subplots(count, 1, figsize=(max(6.0, 1.1 * len(names) + 2), 2.4 * count),
                             sharex=True, squeeze=False, layout="constrained")
    with closed_on_error(fig):
        for ax, (key, label) in zip(axes[:, 0], panels, strict=False):
            scores = values(key)
            _boxes(ax, [scores[groups[n]] for n in names], np.arange(len(names)), "tab:blue")
            _zoom(ax, scores)
            ax.set_ylabel(label, fontsize=8)
            ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
            if np.isfinite(scores).any():
                low = int(np.nanargmin(scores))
                ax.set_title(f"lowest: {members[low]['id']} ({scores[low]:.3g}); median "
                             f"{np.nanmedian(scores):.3g}", fontsize=7, loc="left")
        if has_task:
            ax = axes[-1, 0]
            own, meta = values("task_metric_member"), values("task_metric_meta")
            at = np.arange(len(names))
            _boxes(ax, [own[groups[n]] for n in names], at - 0.18, "tab:gray", "member")
            _boxes(ax, [meta[groups[n]] for n in names], at + 0.18, "tab:green",
                   "meta-model at θ_n")
            _zoom(ax, np.concatenate([own, meta]))
            ax.set_ylabel(_task_metric_label(report), fontsize=8)
            ax.legend(fontsize=7, loc="lower right")
        axes[-1, 0].set_xticks(np.arange(len(names)), labels, fontsize=7)
        by = "architecture and task" if len(tasks) > 1 else "architecture"
        fig.suptitle(f"Emulation of {len(members)} members by {by} (test pass)")
    return fig


def _task_metric_label(report: dict[str, Any]) -> str:
    """The task-metric axis: a mixture scores each member on its own computation (the
    dynamo module's test pass), so the axis holds one metric per computation."""
    if (report["meta"].get("task") or {}).get("name") == MIXTURE:
        return "own task's metric"
    return report["meta"]["metric_name"] or "task metric"


def _boxes(ax: Any, samples: list[np.ndarray], positions: np.ndarray, color: str,
           label: str | None = None) -> None:
    """One box per sample (NaNs dropped; an empty sample draws nothing)."""
    kept = [(p, v[np.isfinite(v)]) for p, v in zip(positions, samples, strict=True)]
    kept = [(p, v) for p, v in kept if v.size]
    if not kept:
        return
    parts = ax.boxplot([v for _, v in kept], positions=[p for p, _ in kept], widths=0.3,
                       patch_artist=True, showfliers=True, manage_ticks=False,
                       flierprops={"markersize": 2, "markerfacecolor": color,
                                   "markeredgecolor": color},
                       medianprops={"color": "black"})
    for box in parts["boxes"]:
        box.set_facecolor(color)
        box.set_alpha(0.6)
    if label:
        parts["boxes"][0].set_label(label)


def _zoom(ax: Any, values: np.ndarray) -> None:
    """Y-limits that show the spread of ``values`` (NaNs ignored), with 1.0 in view."""
    finite = values[np.isfinite(values)]
    if finite.size:
        low, high = float(finite.min()), max(float(finite.max()), 1.0)
        pad = max(0.01, 0.1 * (high - low))
        ax.set_ylim(low - pad, high + pad)


def _fixed_point_pngs(data: ReportData, out_dir: Path, count: int) -> list[str]:
    section = data.report["fixed_points"]
    members = data.report["members"]
    chosen = representative_members([m["metadata"] for m in members], count,
                            [p is not None for p in data.member_points])
    written = []
    for i in chosen:
        own, meta = data.member_points[i], data.meta_points[i]
        assert own is not None and data.meta_states is not None
        states, points = side_by_side([data.member_states[i], data.meta_states[i]],
                                      [own, meta])
        member_id = members[i]["id"]
        fig = fixed_point_figure(states, points, [f"member {member_id}",
                                                  f"meta-model at θ[{member_id}]"])
        fig.suptitle("Fixed points under zero input", fontsize=10)
        name = f"fixed_points_{safe_name(member_id)}.png"
        _save(fig, out_dir / name)
        section["figures"][member_id] = name
        written.append(name)
    return written


def side_by_side(states: list[Tensor], points: list[FixedPointSet]
                 ) -> tuple[list[Tensor], FixedPointSet]:
    """Systems of different state sizes as one :class:`FixedPointSet` (group g = system g).

    States and points are zero-padded to the widest system: the padded units have zero
    variance, so each panel's PCA (fitted on its own states) is exactly the unpadded one.
    """
    width = max(s.shape[-1] for s in states)

    def pad(t: Tensor) -> Tensor:
        return torch.nn.functional.pad(t.detach().cpu(), (0, width - t.shape[-1]))

    return [pad(s) for s in states], FixedPointSet(
        points=torch.cat([pad(p.points) for p in points]),
        q=torch.cat([p.q.cpu() for p in points]),
        eigvals=torch.cat([pad(p.eigvals.to(torch.complex128)) for p in points]),
        is_stable=torch.cat([p.is_stable.cpu() for p in points]),
        n_unstable=torch.cat([p.n_unstable.cpu() for p in points]),
        kind=[k for p in points for k in p.kind],
        group=torch.cat([torch.full((len(p),), g, dtype=torch.long)
                         for g, p in enumerate(points)]),
        distance_to_data=torch.cat([p.distance_to_data.cpu() for p in points]),
        num_groups=len(points))


def safe_name(text: str) -> str:
    """``text`` as a file-name part: letters, digits, ``-``, ``_`` and ``.`` only."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", str(text)).strip(".") or "_"


def _save(fig: Figure, path: Path) -> None:
    try:
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
