"""The result of a fixed-point search: :class:`FixedPointSet`, points of one or several
systems (groups) with their q, Jacobian eigenvalues and kinds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from itertools import accumulate

import torch
from torch import Tensor

KINDS = ("stable", "saddle", "unstable", "slow")
"""The kinds of point, by their Jacobian's eigenvalues (``slow``: ``tol ≤ q < slow_tol``)."""

__all__ = ["KINDS", "FixedPointSet"]


@dataclass
class FixedPointSet:
    """Unique fixed (and optionally slow) points found by :func:`find_fixed_points`.

    Attributes:
        points: states ``[F, H]``, sorted by group, then q.
        q: ``½‖F(h, x*) − h‖²`` at each point ``[F]``.
        eigvals: eigenvalues of ``∂F/∂h`` at each point ``[F, H]`` complex, by decreasing |λ|.
        is_stable: all ``|λ| < 1`` ``[F]`` bool.
        n_unstable: number of ``|λ| > 1`` ``[F]`` long.
        kind: per point ``"stable"`` (``is_stable``), ``"unstable"`` (every direction
            unstable), ``"saddle"`` (the rest) or ``"slow"`` (``tol ≤ q < slow_tol``,
            whatever its eigenvalues).
        group: which system (θ) of the call each point belongs to ``[F]`` long.
        distance_to_data: distance to the nearest reference state ``[F]`` (NaN without one).
        num_groups: G, the number of systems of the call (groups may have no point).
        iterations: Adam iterations run.
    """

    points: Tensor
    q: Tensor
    eigvals: Tensor
    is_stable: Tensor
    n_unstable: Tensor
    kind: list[str]
    group: Tensor
    distance_to_data: Tensor
    num_groups: int = 1
    iterations: int = 0

    def __len__(self) -> int:
        return self.points.shape[0]

    def count(self, kind: str | None = None, group: int | None = None) -> int:
        """Number of points of ``kind`` (any if None) in ``group`` (any if None)."""
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
        return int(self._mask(kind, group).sum())

    def select(self, mask: Tensor | Sequence[bool]) -> FixedPointSet:
        """The points where ``mask [F]`` (bool, or indices) holds."""
        index = torch.as_tensor(mask, device=self.points.device).reshape(-1)
        if index.dtype == torch.bool:
            if index.shape != (len(self),):
                raise ValueError(f"mask must be [{len(self)}] bool, got {tuple(index.shape)}")
            index = index.nonzero().flatten()
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in values.items():
            if isinstance(value, Tensor):
                values[name] = value[index]
        values["kind"] = [self.kind[i] for i in index.tolist()]
        return FixedPointSet(**values)

    def cpu(self) -> FixedPointSet:
        """The same points with every tensor on the CPU (for figures, JSON, comparisons)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return FixedPointSet(**{k: v.cpu() if isinstance(v, Tensor) else v
                              for k, v in values.items()})

    def split(self) -> list[FixedPointSet]:
        """One :class:`FixedPointSet` per group, ordered 0..G-1 (empty ones included).

        One sort by group and views cut from it, each group's points in their order here: a
        mask per group would read every point G times and, on a GPU, sync G times (a report
        of 10,000 members splits 24,000 meta-model points into 10,000 groups)."""
        order = torch.argsort(self.group, stable=True)
        counts = torch.bincount(self.group, minlength=self.num_groups).tolist()
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        runs = {name: value[order].split(counts) for name, value in values.items()
                if isinstance(value, Tensor)}
        kinds = [self.kind[i] for i in order.tolist()]
        starts = [0, *accumulate(counts)]
        return [FixedPointSet(**{**values, **{name: run[g] for name, run in runs.items()},
                                 "kind": kinds[starts[g]:starts[g + 1]]})
                for g in range(self.num_groups)]

    def summary(self) -> dict:
        """Counts per kind, overall and per group (JSON-serialisable)."""
        def counts(group: int | None) -> dict[str, int]:
            return {"total": int(self._mask(None, group).sum()),
                    **{k: int(self._mask(k, group).sum()) for k in KINDS}}
        return {**counts(None), "groups": [counts(g) for g in range(self.num_groups)]}

    def _mask(self, kind: str | None, group: int | None) -> Tensor:
        mask = torch.ones(len(self), dtype=torch.bool)
        if kind is not None:
            mask &= torch.tensor([k == kind for k in self.kind], dtype=torch.bool)
        if group is not None:
            mask &= (self.group == group).cpu()
        return mask
