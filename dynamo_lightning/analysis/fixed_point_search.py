"""The optimisation behind :func:`~.fixed_points.find_fixed_points`: batched Adam on q with
per-row freezing and compaction, damped Newton steps, and Jacobians by ``torch.func``.

Step functions follow :func:`~.fixed_points.find_fixed_points`'s contract (rows
independent, or a ``subset(rows)`` method where row r depends on its position r).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

StepFn = Callable[[Tensor, Tensor], Tensor]
_ADAM_BETAS, _ADAM_EPS = (0.9, 0.999), 1e-8
_CHECK_EVERY = 10  # iterations between checks that every row has converged
_COMPACT = 0.75  # drop frozen rows from the batch once the active ones are fewer than this
_NEWTON_STEPS = (1.0, 0.5, 0.25, 0.1)  # step lengths tried by each Newton step
_JACOBIAN_BUDGET = 2**24  # elements of one chunk of vector-Jacobian products


def q_values(step_fn: StepFn, h: Tensor, x: Tensor) -> Tensor:
    """Per-row ``½‖F(h) − h‖²`` ``[M]``."""
    return 0.5 * (step_fn(h, x) - h).pow(2).sum(-1)


def subset(fn: StepFn | None, rows: Tensor) -> StepFn | None:
    """``fn`` restricted to ``rows``: its ``subset(rows)`` if it has one (row r depends on
    its position r), else ``fn`` itself (rows independent of their position)."""
    restrict = getattr(fn, "subset", None)
    return fn if restrict is None else restrict(rows)


def minimise(step_fn: StepFn, x: Tensor, h: Tensor, tol: float, max_iters: int,
              lr: float) -> tuple[Tensor, int]:
    """Adam on Σ q over all rows at once; a row freezes once its q < tol (or turns NaN).

    Adam is torch's (``torch.optim.Adam``'s update, written out in place so that a frozen
    row's first moment is zeroed and it moves no further). Every ``_CHECK_EVERY`` iterations
    (one device sync) the search stops if no row is active, and drops frozen rows from the
    batch once they are ``1 − _COMPACT`` of it, so converged rows stop costing.
    """
    out, rows, step = h.clone(), torch.arange(h.shape[0], device=h.device), step_fn
    m, v = torch.zeros_like(h), torch.zeros_like(h)
    (b1, b2), active = _ADAM_BETAS, torch.ones_like(h[:, :1])
    iterations = 0
    for t in range(1, max_iters + 1):
        leaf = h.requires_grad_(True)
        q = q_values(step, leaf, x)
        (grad,) = torch.autograd.grad(q.sum(), leaf)
        h = leaf.detach()
        active.mul_(q.detach()[:, None] >= tol)  # NaN compares False: frozen, dropped later
        if t % _CHECK_EVERY == 1:
            live = active[:, 0] > 0
            count = int(live.sum())
            if count == 0:
                break
            if count < _COMPACT * rows.numel():
                out[rows] = h
                rows, h, x, m, v, active, grad = (rows[live], h[live], x[live], m[live],
                                                  v[live], active[live], grad[live])
                step = subset(step_fn, rows)
        iterations = t
        correction = math.sqrt(1 - b2**t)
        m.mul_(b1).add_(grad, alpha=1 - b1).mul_(active)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denominator = v.sqrt().add_(_ADAM_EPS * correction)
        h = h.addcdiv(m, denominator, value=-lr * correction / (1 - b1**t))
    out[rows] = h
    return out.detach(), iterations


def newton(step_fn: StepFn, x: Tensor, h: Tensor, jacobian_fn: StepFn | None) -> Tensor:
    """One batched, damped Newton step on F(h) − h = 0: per row, the step length of
    ``_NEWTON_STEPS`` with the lowest q, kept only where it lowers q. (Near a slow direction
    J − I is nearly singular and the full step overshoots; a shorter one still helps.)"""
    residual = (step_fn(h, x) - h).detach()
    eye = torch.eye(h.shape[1], dtype=h.dtype, device=h.device)
    system = jacobians(step_fn, h, x, jacobian_fn).detach() - eye
    delta, info = torch.linalg.solve_ex(system, residual)
    delta = torch.where((info == 0)[:, None], delta, 0.0)
    best, best_q = h, 0.5 * residual.pow(2).sum(-1)
    for alpha in _NEWTON_STEPS:
        candidate = h - alpha * delta
        q = q_values(step_fn, candidate, x).detach()
        better = torch.isfinite(q) & (q < best_q)
        best = torch.where(better[:, None], candidate, best)
        best_q = torch.where(better, q, best_q)
    return best


def jacobians(step_fn: StepFn, h: Tensor, x: Tensor, jacobian_fn: StepFn | None) -> Tensor:
    """``∂F/∂h`` per row ``[M, H, H]`` (see the module docstring for the row-sum form)."""
    if jacobian_fn is not None:
        return jacobian_fn(h.detach(), x)
    chunk = max(1, _JACOBIAN_BUDGET // max(1, h.numel()))
    jac = torch.func.jacrev(lambda v: step_fn(v, x).sum(0), chunk_size=chunk)(h.detach())
    return jac.transpose(0, 1)  # [H_out, M, H_in] → [M, H_out, H_in]
