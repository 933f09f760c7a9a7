"""Filtering found points for :func:`~.fixed_points.find_fixed_points`: reference clouds and
their radii, distances to the data, Newton lengths and greedy per-group de-duplication.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

_PAIR_BUDGET = 2**24  # elements of one chunk of pairwise distances
_EXACT = "donot_use_mm_for_euclid_dist"  # the matmul form loses ~1e-3 at |h| ~ 5


def references(reference: Tensor | Sequence[Tensor] | None, num_groups: int,
                size: int) -> list[Tensor] | None:
    """One ``[R_g, H]`` reference per group (the shared one repeated), or None."""
    if reference is None:
        return None
    refs = [reference] * num_groups if isinstance(reference, Tensor) else list(reference)
    if len(refs) != num_groups:
        raise ValueError(f"reference: got {len(refs)} per-group tensors for {num_groups} groups")
    out = []
    for g, ref in enumerate(refs):
        ref = ref.detach().reshape(-1, ref.shape[-1]) if ref.dim() >= 2 else ref
        if ref.dim() != 2 or ref.shape[1] != size or ref.shape[0] == 0:
            raise ValueError(f"reference of group {g} must be [R>0, {size}], got "
                             f"{tuple(ref.shape)}")
        out.append(ref)
    return out


def scales(refs: list[Tensor] | None, num_groups: int, like: Tensor) -> Tensor:
    """Each group's reference RMS radius ``[G]`` (1 without a reference): the root mean
    square distance of its reference states from their mean."""
    scale = torch.ones(num_groups, dtype=like.dtype, device=like.device)
    shared = refs is not None and all(r is refs[0] for r in refs)
    for g, ref in enumerate((refs[:1] if shared else refs) or []):
        ref = ref.to(like)
        scale[slice(None) if shared else g] = (ref - ref.mean(0)).pow(2).sum(-1).mean().sqrt()
    return scale.clamp_min(1e-12)


def distances(h: Tensor, groups: Tensor, keep: Tensor,
               refs: list[Tensor] | None) -> Tensor:
    """Distance of each kept row to its group's nearest reference state ``[M]`` (NaN
    elsewhere or without a reference)."""
    distance = torch.full_like(h[:, 0], math.nan)
    if refs is None:
        return distance
    shared = all(r is refs[0] for r in refs)
    for g, ref in enumerate(refs[:1] if shared else refs):
        rows = (keep if shared else keep & (groups == g)).nonzero().flatten()
        step = max(1, _PAIR_BUDGET // ref.shape[0])
        for start in range(0, rows.numel(), step):
            part = rows[start : start + step]
            distance[part] = torch.cdist(h[part], ref.to(h), compute_mode=_EXACT).min(1).values
    return distance


def newton_length(jac: Tensor, residual: Tensor) -> Tensor:
    """``‖(J − I)⁻¹ (F(h) − h)‖`` per row: how far the linearisation puts each point from its
    exact fixed point (0 where J − I is singular)."""
    eye = torch.eye(jac.shape[-1], dtype=jac.dtype, device=jac.device)
    delta, info = torch.linalg.solve_ex(jac - eye, residual)
    return torch.where(info == 0, delta.norm(dim=-1), 0.0).nan_to_num(0.0, 0.0, 0.0)


def unique(h: Tensor, q: Tensor, groups: Tensor, keep: Tensor, radius: Tensor,
           slack: Tensor, num_groups: int) -> Tensor:
    """Greedy clustering within each group: a kept row is dropped when a lower-q kept row
    of its group lies within ``radius[group]`` + both rows' ``slack`` (their Newton
    lengths).

    Computed leader by leader: each group's lowest-q undecided row is kept and drops every
    undecided row of its group within reach, so the loop runs once per point kept (not per
    row), all groups at once, and needs one row's distances at a time (no pairwise matrix).
    It keeps exactly the rows that visiting the rows in q order would.
    """
    rows = keep.nonzero().flatten()
    unique = torch.zeros_like(keep)
    if rows.numel() == 0:
        return unique
    rows = rows[torch.argsort(q[rows], stable=True)]
    rows = rows[torch.argsort(groups[rows], stable=True)]
    counts = torch.bincount(groups[rows], minlength=num_groups)
    rank = torch.arange(rows.numel(), device=h.device) - (counts.cumsum(0) - counts)[groups[rows]]
    slot = torch.full((num_groups, int(counts.max())), -1, dtype=torch.long, device=h.device)
    slot[groups[rows], rank] = rows
    padded, margin = h[slot.clamp_min(0)], slack[slot.clamp_min(0)]  # [G, n, H], [G, n]
    undecided = slot >= 0
    every = torch.arange(num_groups, device=h.device)
    while True:
        live = undecided.any(1)
        if not bool(live.any()):
            return unique
        g = every[live]
        leader = undecided[g].to(torch.uint8).argmax(1)  # the first undecided: lowest q
        unique[slot[g, leader]] = True
        reach = radius[g, None] + margin[g, leader, None] + margin[g]
        near = (padded[g] - padded[g, leader, None]).norm(dim=-1) <= reach
        near[torch.arange(g.numel(), device=h.device), leader] = True
        undecided[g] &= ~near
