"""Fixed and slow points of recurrent maps (Sussillo & Barak 2013), batched over systems.

A fixed point of ``h ↦ F(h, x*)`` minimises ``q(h) = ½‖F(h, x*) − h‖²`` to zero. The search:

1. Adam on the *sum* of the per-row q's (so each row's gradient is its own) for all M
   initial states of a call at once, handing each row to Newton once it is close: a row
   leaves Adam once ``q < handoff`` (or ``tol``), or once its q stops falling (a minimum
   of q above zero); frozen rows leave the batch, so they stop costing. The rows that left
   get damped Newton steps, and those Newton cannot finish go back to Adam with a lower
   threshold (``fixed_point_search.minimise``). Adam alone circles a root at its fixed
   step length instead of closing in: on the demo's flip-flop members it ran 1,300–5,000
   iterations where the hand-off needs 170–1,400, with the same attractors.
2. Rows closer than the de-duplication radius are merged (lowest q kept), so the O(H²)-per-
   row steps below run on one row per cluster. Converged rows also merge within
   ``_RESIDUAL_SLACK · ‖F(h) − h‖`` of each other: their distance to their fixed point if
   the map contracts by ≥ 10% per step there (slower ones are left to step 4).
3. A few batched, damped Newton steps ``h ← h − α (J − I)⁻¹(F(h) − h)``, kept where they
   lower q (α from ``fixed_point_search._NEWTON_STEPS``: near a slow direction J − I is
   nearly singular and the full step overshoots).
4. Filtering: q below ``tol`` (or ``slow_tol``), distance to the data (below), and a final
   de-duplication in which two points also merge when their distance is within their
   *Newton lengths* ``‖(J − I)⁻¹(F(h) − h)‖`` — how far the linearisation puts each from
   its exact fixed point. (A point on a slow attractor, |λ| ≈ 0.998, meets ``q < tol``
   while still 0.02 away from it; without this, flip-flop nets show duplicate attractors.)
5. Jacobian eigenvalues, classification.

Rows may belong to different systems (``groups``: e.g. the meta-model at G embeddings θ,
see :func:`meta_step_fn`): all G·n rows are one optimisation; de-duplication and outlier
removal stay within each group.

Why the search is anchored to data: on gated cells (GRU, LSTM), q also vanishes far outside
the states the network visits, where the update gates saturate and ``F(h) ≈ h`` trivially;
an unanchored search drifts there (FixedPointFinder's defaults find ‖h‖ ≈ 41 against a data
radius of 1.8, and no stable point, on GRU flip-flop nets). So initial states come from
trajectories (:func:`sample_inits`), every point reports its distance to the nearest
reference state, and points farther than ``max_distance`` × the RMS radius of the reference
cloud (the root-mean-square distance of its states from their mean) are dropped.

Jacobians are ``torch.func.jacrev`` of the row-summed map ``h ↦ Σ_r F(h)_r`` (rows are
independent, so its Jacobian w.r.t. row r is row r's own): the same vmapped vector-Jacobian
products as vmapping a single-row map over rows, but also valid for step functions whose
row r depends on r, like :func:`meta_step_fn`'s (row r runs at its own θ).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import Tensor

from dynamo_lightning.analysis.eigenvalues import eigenvalues
from dynamo_lightning.analysis.fixed_point_filters import (
    distances,
    newton_length,
    references,
    scales,
    unique,
)
from dynamo_lightning.analysis.fixed_point_inputs import check_call
from dynamo_lightning.analysis.fixed_point_search import (
    StepFn,
    jacobians,
    minimise,
    newton,
    q_values,
    subset,
)
from dynamo_lightning.analysis.fixed_point_set import KINDS, FixedPointSet

_SLACK_CAP = 0.05  # de-duplication slack at most this × the reference RMS radius
_RESIDUAL_SLACK = 10.0  # pre-Newton slack: ‖F(h) − h‖ / (1 − ρ) for a contraction ρ ≤ 0.9


def find_fixed_points(
    step_fn: StepFn,
    x_const: Tensor,
    inits: Tensor,
    tol: float = 1e-8,
    *,
    groups: Tensor | None = None,
    max_iters: int = 5000,
    lr: float = 1e-2,
    newton_steps: int = 3,
    dedupe_tol: float = 1e-3,
    slow_tol: float | None = None,
    reference: Tensor | Sequence[Tensor] | None = None,
    max_distance: float | None = 2.0,
    jacobian_fn: StepFn | None = None,
    cuda_graphs: bool = True,
    handoff: float | None = 1e-4,
) -> FixedPointSet:
    """Find the unique fixed points of ``h ↦ step_fn(h, x_const)`` near the data.

    Args:
        step_fn: ``(h [M, H], x [M, I]) -> h_next [M, H]``, rows independent. If row r's
            map depends on its position r (as :func:`meta_step_fn`'s does), the function
            must have ``subset(rows) -> step_fn`` for a batch of those rows only. Enters
            its ``frozen()`` context, if any, for the whole search.
        x_const: the constant input ``[I]`` (or ``[M, I]``, one per row).
        inits: initial states ``[M, H]`` (see :func:`sample_inits`).
        tol: a point has converged, and counts as fixed, once ``q < tol``.
        groups: ``[M]`` long in ``[0, G)``: the system each row belongs to (default:
            ``step_fn.groups`` if set, else one group). De-duplication and outlier removal
            stay within a group.
        max_iters: Adam iterations at most (stops earlier once every row has converged).
        lr: Adam learning rate.
        newton_steps: Newton refinements after Adam, each kept only where it lowers q.
        dedupe_tol: points closer than ``dedupe_tol`` × the reference RMS radius (absolute
            without a reference) are one point, the lowest-q one kept; converged points
            also merge within their Newton lengths (module docstring, step 4).
        slow_tol: if set, points with ``tol ≤ q < slow_tol`` are kept as kind ``"slow"``.
        reference: states the network visits, ``[R, H]`` for all groups or one ``[R_g, H]``
            per group; enables ``distance_to_data`` and outlier removal.
        max_distance: drop points farther than this × the reference RMS radius from the
            nearest reference state (None: keep all, still report the distance).
        jacobian_fn: ``(h [M, H], x [M, I]) -> ∂F/∂h [M, H, H]``, for step functions that
            ``torch.func`` cannot transform (called on subsets of rows, like ``step_fn``).
        cuda_graphs: on CUDA, replay each Adam iteration from a CUDA graph (the same
            kernels, launched at once); a step function that cannot be captured (one that
            syncs with the host, say) runs eagerly instead. No effect on the CPU.
        handoff: q below which a row leaves Adam for Newton steps (module docstring,
            step 1). None, ``newton_steps=0`` or a ``slow_tol``: Adam alone (β₂ = 0.999)
            down to ``tol``, the search as it was before the hand-off — with ``slow_tol``
            because Newton would carry the rows that trace a slow manifold (a line
            attractor's, say) onto its few exact fixed points.

    Returns:
        :class:`FixedPointSet`, sorted by group, then q.

    Warns:
        RuntimeWarning: some rows of ``inits`` hold NaN/Inf (how many); they are dropped.

    Raises:
        ValueError: inconsistent shapes or out-of-range options (named in the message):
            ``inits`` of another state size than ``step_fn`` takes (probed on one row),
            a NaN/Inf in ``x_const``, or no finite row in ``inits``.

    Example::

        inits = sample_inits(hidden, 1024, noise=0.05)                 # hidden [B, T, H]
        fps = find_fixed_points(member_step_fn(net), torch.zeros(3), inits, reference=hidden)
        fps.count("stable")
    """
    call = check_call(step_fn, x_const, inits, groups, tol, slow_tol, jacobian_fn)
    num_groups = call.num_groups
    refs = references(reference, num_groups, call.inits.shape[1])
    scale = scales(refs, num_groups, call.inits)
    systems = _Systems(call.groups, num_groups, scale, dedupe_tol)
    frozen = getattr(step_fn, "frozen", contextlib.nullcontext)
    with torch.enable_grad(), frozen():
        h, iterations = minimise(call.step_fn, call.x, call.inits.detach().clone(), tol,
                                 max_iters, lr, cuda_graphs, call.jacobian_fn,
                                 None if newton_steps == 0 or slow_tol is not None else handoff)
        h, _, systems, residual, jac = _refine(call.step_fn, call.jacobian_fn, h, call.x,
                                               systems, tol, newton_steps)
    q = 0.5 * residual.pow(2).sum(-1)
    keep = torch.isfinite(q) & (q < (tol if slow_tol is None else slow_tol))
    distance = distances(h, systems.groups, keep, refs)
    if refs is not None and max_distance is not None:
        keep &= distance <= max_distance * systems.row_scale
    keep &= systems.unique(h, q, keep, newton_length(jac, residual) * (q < tol))
    index = keep.nonzero().flatten()
    index = index[torch.argsort(q[index], stable=True)]
    index = index[torch.argsort(systems.groups[index], stable=True)]
    return _collect(h[index], q[index], jac[index], systems.groups[index], distance[index],
                    tol, num_groups, iterations)


class _Systems:
    """Which system each row belongs to, with what the de-duplication needs of them."""

    def __init__(self, groups: Tensor, num_groups: int, scale: Tensor, dedupe_tol: float
                 ) -> None:
        self.groups, self.num_groups, self.scale = groups, num_groups, scale
        self.dedupe_tol = dedupe_tol

    @property
    def row_scale(self) -> Tensor:
        """Each row's system's reference RMS radius ``[M]``."""
        return self.scale[self.groups]

    def rows(self, rows: Tensor) -> _Systems:
        return _Systems(self.groups[rows], self.num_groups, self.scale, self.dedupe_tol)

    def unique(self, h: Tensor, q: Tensor, keep: Tensor, slack: Tensor) -> Tensor:
        """:func:`unique` within each system, the merge slack capped at
        ``_SLACK_CAP`` × the system's radius."""
        slack = torch.minimum(slack, _SLACK_CAP * self.row_scale)
        return unique(h, q, self.groups, keep, self.dedupe_tol * self.scale, slack,
                      self.num_groups)


def _refine(step_fn: StepFn, jacobian_fn: StepFn | None, h: Tensor, x: Tensor,
            systems: _Systems, tol: float, newton_steps: int
            ) -> tuple[Tensor, Tensor, _Systems, Tensor, Tensor]:
    """One row per cluster of the minimised rows, Newton-polished: ``h, x, systems`` of
    those rows and their residual ``F(h) − h`` and Jacobian (Newton and Jacobians cost
    O(rows · H²), so duplicates are merged first; module docstring, steps 2–3)."""
    q = q_values(step_fn, h, x).detach()
    slack = _RESIDUAL_SLACK * (2 * q).sqrt() * (q < tol)
    rows = systems.unique(h, q, torch.isfinite(q), slack).nonzero().flatten()
    step, jac_fn = subset(step_fn, rows), subset(jacobian_fn, rows)
    h, x, systems = h[rows], x[rows], systems.rows(rows)
    for _ in range(newton_steps):
        h = newton(step, x, h, jac_fn)
    residual = (step(h, x) - h).detach()
    return h, x, systems, residual, jacobians(step, h, x, jac_fn).detach()


def _collect(h: Tensor, q: Tensor, jac: Tensor, groups: Tensor, distance: Tensor,
             tol: float, num_groups: int, iterations: int) -> FixedPointSet:
    """Eigenvalues (by decreasing |λ|, computed in float64 on the CPU's cores, whatever the
    device: :mod:`.eigenvalues` says why) and kinds of the kept points."""
    eig = eigenvalues(jac)
    eig = torch.gather(eig, 1, eig.abs().argsort(dim=1, descending=True))
    n_unstable = (eig.abs() > 1).sum(1)
    is_stable = (eig.abs() < 1).all(1)
    kind = ["slow" if qi >= tol else "stable" if s else "unstable" if n == h.shape[1]
            else "saddle" for qi, s, n in zip(q.tolist(), is_stable.tolist(),
                                              n_unstable.tolist(), strict=True)]
    return FixedPointSet(points=h.detach(), q=q, eigvals=eig.to(_complex(h)), is_stable=is_stable,
                       n_unstable=n_unstable, kind=kind, group=groups, distance_to_data=distance,
                       num_groups=num_groups, iterations=iterations)


def _complex(h: Tensor) -> torch.dtype:
    return torch.complex128 if h.dtype == torch.float64 else torch.complex64


# Re-exported: the helpers live in their own file but belong to this API.
from dynamo_lightning.analysis.step_functions import (  # noqa: E402
    ModuleStep,
    frozen_parameters,
    member_step_fn,
    meta_step_fn,
    sample_inits,
)

__all__ = ["KINDS", "FixedPointSet", "ModuleStep", "find_fixed_points", "frozen_parameters",
           "member_step_fn", "meta_step_fn", "sample_inits"]
