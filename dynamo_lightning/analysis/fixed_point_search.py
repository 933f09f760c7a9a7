"""The optimisation behind :func:`~.fixed_points.find_fixed_points`: batched Adam on q with
per-row freezing and compaction, a hand-off to damped Newton steps once a row is close,
and Jacobians by ``torch.func``.

Step functions follow :func:`~.fixed_points.find_fixed_points`'s contract (rows
independent, or a ``subset(rows)`` method where row r depends on its position r).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

StepFn = Callable[[Tensor, Tensor], Tensor]
_ADAM_EPS, _BETA1 = 1e-8, 0.9
_BETA2 = 0.9  # Adam's β₂ with the Newton hand-off (torch's 0.999 without it, see minimise)
_CHECK_EVERY = 10  # iterations between checks that every row has converged
_COMPACT = 0.75  # drop frozen rows from the batch once the active ones are fewer than this
_GRAPH_COMPACT = 0.5  # the same with CUDA graphs: each new batch shape costs a capture
_GRAPH_WARMUP = 2  # eager iterations before a capture
_NEWTON_STEPS = (1.0, 0.5, 0.25, 0.1)  # step lengths tried by each Newton step
_JACOBIAN_BUDGET = 2**24  # elements of one chunk of vector-Jacobian products
_HANDOFF_SHRINK = 1e-2  # the next round's hand-off threshold, for rows Newton left
_POLISH_STEPS = 10  # Newton steps at most per hand-off (10 finished 951 of 1,024 GRU rows)
_POLISH_GAIN = 0.5  # a row leaves the polish once a step fails to halve its q
_REACH = 30.0  # a hand-off Newton step moves a row ≤ this × ‖F(h) − h‖ (stays local)
_STALL_EVERY = 200  # iterations over which an active row must halve its q ...
_STALL_GAIN = 0.5  # ... or leave Adam as stalled (a minimum of q above 0: a slow point)


def q_values(step_fn: StepFn, h: Tensor, x: Tensor) -> Tensor:
    """Per-row ``½‖F(h) − h‖²`` ``[M]``."""
    return 0.5 * (step_fn(h, x) - h).pow(2).sum(-1)


def subset(fn: StepFn | None, rows: Tensor) -> StepFn | None:
    """``fn`` restricted to ``rows``: its ``subset(rows)`` if it has one (row r depends on
    its position r), else ``fn`` itself (rows independent of their position)."""
    restrict = getattr(fn, "subset", None)
    return fn if restrict is None else restrict(rows)


def minimise(step_fn: StepFn, x: Tensor, h: Tensor, tol: float, max_iters: int,
             lr: float, graphs: bool = True, jacobian_fn: StepFn | None = None,
             handoff: float | None = 1e-4) -> tuple[Tensor, int]:
    """Every row of ``h`` driven towards ``q < tol``: Adam while far, Newton once close.

    A row leaves Adam once its q falls below ``handoff`` (or tol), or once it stalls (its q
    fails to halve in ``_STALL_EVERY`` iterations: a minimum of q above zero, which Adam
    would circle until ``max_iters``). When no row is left in Adam, the rows that left are
    Newton-polished together (:func:`polish`); handed-off rows that Newton cannot bring
    below tol go back to Adam, with fresh moments, until their q is ``_HANDOFF_SHRINK``
    times lower, and so on; the last round (threshold tol) is Adam alone, then a polish.
    Adam's fixed step length makes it circle a root rather than close in, so Adam alone
    spends most of a search on the last decades of q; the Newton polish ends them in a few
    steps, which is also what lets Adam's β₂ be 0.9 (``_BETA2``) rather than 0.999: a
    short memory of the gradient's scale, so rows that crossed steep ground early are not
    left crawling for a thousand iterations afterwards.

    ``handoff`` None: the search as it was before, Adam alone down to tol with torch's
    β₂ = 0.999 and no stall check. Returns the rows and the Adam iterations run in all.
    """
    if handoff is None:
        return adam(step_fn, x, h, tol, max_iters, lr, graphs, beta2=0.999, stall=False)[:2]
    out, rows, iterations = h.clone(), torch.arange(h.shape[0], device=h.device), 0
    threshold = max(handoff, tol)
    while rows.numel() and iterations < max_iters:
        step, xs = subset(step_fn, rows), x[rows]
        part, used, stalled = adam(step, xs, out[rows], threshold, max_iters - iterations,
                                   lr, graphs, done=iterations)
        iterations += used
        with torch.no_grad():
            q = q_values(step, part, xs)
        todo = (torch.isfinite(q) & (q >= tol)).nonzero().flatten()
        part[todo], q[todo] = polish(subset(step, todo), subset(subset(jacobian_fn, rows), todo),
                                     xs[todo], part[todo], tol)
        out[rows] = part
        if threshold <= tol:
            break
        rows = rows[torch.isfinite(q) & (q >= tol) & ~stalled]  # back to Adam
        threshold = max(threshold * _HANDOFF_SHRINK, tol)
    return out, iterations


def adam(step_fn: StepFn, x: Tensor, h: Tensor, tol: float, max_iters: int, lr: float,
         graphs: bool = True, beta2: float = _BETA2, stall: bool = True, done: int = 0
         ) -> tuple[Tensor, int, Tensor]:
    """Adam on Σ q over all rows at once; a row freezes once its q < tol, turns NaN or
    (with ``stall``) stops improving. Returns the rows, the iterations run and which rows
    stalled ``[M]`` bool (``done``: iterations of earlier rounds, for the progress bar).

    Adam is torch's (``torch.optim.Adam``'s update, written out in place so that a frozen
    row's first moment is zeroed and it moves no further). Every ``_CHECK_EVERY`` iterations
    (one device sync) the search stops if no row is active, and drops frozen rows from the
    batch once they are ``1 − _COMPACT`` of it, so converged rows stop costing.

    On CUDA (with ``graphs``) each batch shape's iteration is captured once as a CUDA graph
    and replayed: eagerly, a search of 280 iterations launched ~60,000 small kernels (H200
    profile), and launching them one by one from Python cost more than running them (see
    :class:`_Rows`). Capture needs the rows' GPU to be the current one (each DDP rank's is);
    elsewhere the search runs eagerly.
    """
    rows = _Rows(step_fn, x, h, tol, beta2)
    use_graphs = (graphs and h.is_cuda
                  and h.device == torch.device("cuda", torch.cuda.current_device()))
    iterations = 0
    for t in range(1, max_iters + 1):
        if use_graphs:
            use_graphs = rows.replay(t, lr)
        if not use_graphs:
            rows.iterate(t, lr)
        if stall and t % _STALL_EVERY == 1:
            rows.check_stalls()
        if t % _CHECK_EVERY == 1:
            live = rows.active[:, 0] > 0
            count = int(live.sum())
            _report(done + t, count, done + max_iters)
            if count == 0:
                break
            if count < (_GRAPH_COMPACT if use_graphs else _COMPACT) * live.numel():
                rows.keep(live, step_fn)
        iterations = t
    out, stalled = rows.result()
    return out, iterations, stalled


def polish(step_fn: StepFn, jacobian_fn: StepFn | None, x: Tensor, h: Tensor, tol: float
           ) -> tuple[Tensor, Tensor]:
    """Damped Newton steps (:func:`newton`) on every row until its q < tol, or a step
    fails to halve it, or ``_POLISH_STEPS``: the rows ``[M, H]`` and their q ``[M]``."""
    h = h.clone()
    with torch.no_grad():
        q = q_values(step_fn, h, x)
    rows = torch.arange(h.shape[0], device=h.device)
    for _ in range(_POLISH_STEPS):
        if rows.numel() == 0:
            break
        step = subset(step_fn, rows)
        h[rows] = newton(step, x[rows], h[rows], subset(jacobian_fn, rows), _REACH)
        with torch.no_grad():
            new_q = q_values(step, h[rows], x[rows])
        going = (new_q >= tol) & (new_q < _POLISH_GAIN * q[rows])
        q[rows] = new_q
        rows = rows[going]
    return h, q


_PROGRESS: ContextVar[Any] = ContextVar("fixed_point_progress", default=None)


@contextlib.contextmanager
def search_progress(desc: str, enabled: bool = True) -> Iterator[Any]:
    """A progress bar for every search started in the block: iterations of the batched Adam
    and the rows still unconverged (a stage of many searches, e.g. one per stack, shows each
    in turn). Shown on a terminal only; one device sync per ``_CHECK_EVERY`` iterations, as
    the search makes anyway."""
    bar = tqdm(desc=desc, unit="it", leave=False, disable=None if enabled else True)
    token = _PROGRESS.set(bar)
    try:
        yield bar
    finally:
        _PROGRESS.reset(token)
        bar.close()


def _report(iteration: int, active: int, max_iters: int) -> None:
    bar = _PROGRESS.get()
    if bar is not None:
        if iteration == 1:
            bar.reset(total=max_iters)
        bar.n = iteration
        bar.set_postfix(unconverged=active, refresh=True)


class _Rows:
    """The search's state — positions, Adam moments, active mask — for the rows still in the
    batch, updated in place so that one iteration can be captured and replayed.

    ``iterate`` runs an iteration eagerly; ``replay`` runs it from a CUDA graph of the
    current batch, captured after ``_GRAPH_WARMUP`` eager iterations (warm-up the capture
    needs; they are real iterations of the search). ``keep`` compacts the batch, which
    drops the graph: the next ``replay`` captures one for the new shape.
    """

    def __init__(self, step_fn: StepFn, x: Tensor, h: Tensor, tol: float, beta2: float
                 ) -> None:
        self.out, self.tol, self.beta2 = h.clone(), tol, beta2
        self.index = torch.arange(h.shape[0], device=h.device)
        self.step, self.x, self.h = step_fn, x, h
        self.m, self.v = torch.zeros_like(h), torch.zeros_like(h)
        self.active = torch.ones_like(h[:, :1])
        self.q = torch.full_like(h[:, 0], math.inf)  # each row's q before the last step
        self.q_then = self.q.clone()  # ... at the last stall check
        self.stalled = torch.zeros_like(h[:, 0], dtype=torch.bool)  # over all rows
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warm = 0
        self.scalars = torch.zeros(2, dtype=h.dtype, device=h.device)  # step size, eps

    def iterate(self, t: int, lr: float) -> None:
        step_size, eps = _adam_scalars(t, lr, self.beta2)
        self._body(step_size, eps)

    def check_stalls(self) -> None:
        """Freeze the active rows whose q has not halved since the last check."""
        stalled = (self.active[:, 0] > 0) & ~(self.q < _STALL_GAIN * self.q_then)
        self.active.mul_(~stalled[:, None])
        self.stalled[self.index] |= stalled
        self.q_then.copy_(self.q)

    def replay(self, t: int, lr: float) -> bool:
        """One iteration from the graph (capturing it first if needed); False if this step
        function cannot be captured (the search then goes on eagerly)."""
        if self.graph is None:
            if self.warm < _GRAPH_WARMUP:
                self.warm += 1
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    self.iterate(t, lr)
                torch.cuda.current_stream().wait_stream(stream)
                return True
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):  # "global" mode: a bad capture raises
                    self._body(self.scalars[0], self.scalars[1])
            except RuntimeError as err:  # e.g. a step function that syncs with the host
                warnings.warn(f"fixed-point search: CUDA graph capture failed ({err}); "
                              "running eagerly", RuntimeWarning, stacklevel=4)
                return False
            self.graph = graph
        self.scalars.copy_(torch.tensor(_adam_scalars(t, lr, self.beta2)), non_blocking=True)
        self.graph.replay()
        return True

    def keep(self, live: Tensor, step_fn: StepFn) -> None:
        """Drop the rows where ``live`` is False from the batch (their positions are kept)."""
        self.out[self.index] = self.h
        self.index = self.index[live]
        self.h, self.x, self.m, self.v, self.active, self.q, self.q_then = (
            t[live] for t in (self.h, self.x, self.m, self.v, self.active, self.q, self.q_then))
        self.step = subset(step_fn, self.index)
        self.graph, self.warm = None, 0

    def result(self) -> tuple[Tensor, Tensor]:
        """All rows ``[M, H]`` and which of them stalled ``[M]``."""
        self.out[self.index] = self.h
        return self.out.detach(), self.stalled

    def _body(self, step_size: float | Tensor, eps: float | Tensor) -> None:
        leaf = self.h.detach().requires_grad_(True)
        q = q_values(self.step, leaf, self.x)
        (grad,) = torch.autograd.grad(q.sum(), leaf)
        self.q.copy_(q.detach())
        self.active.mul_(self.q[:, None] >= self.tol)  # NaN compares False: frozen
        b1, b2 = _BETA1, self.beta2
        self.m.mul_(b1).add_(grad, alpha=1 - b1).mul_(self.active)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denominator = self.v.sqrt().add_(eps)
        if isinstance(step_size, Tensor):  # graphed: the scalars live on the device
            self.h.addcdiv_(self.m * step_size, denominator, value=-1.0)
        else:
            self.h.addcdiv_(self.m, denominator, value=-step_size)


def _adam_scalars(t: int, lr: float, b2: float) -> tuple[float, float]:
    """Iteration t's step size and ε, bias corrections folded in (torch's Adam)."""
    b1 = _BETA1
    correction = math.sqrt(1 - b2**t)
    return lr * correction / (1 - b1**t), _ADAM_EPS * correction


def newton(step_fn: StepFn, x: Tensor, h: Tensor, jacobian_fn: StepFn | None,
           reach: float | None = None) -> Tensor:
    """One batched, damped Newton step on F(h) − h = 0: per row, the step length of
    ``_NEWTON_STEPS`` with the lowest q, kept only where it lowers q. (Near a slow direction
    J − I is nearly singular and the full step overshoots; a shorter one still helps.)"""
    residual = (step_fn(h, x) - h).detach()
    eye = torch.eye(h.shape[1], dtype=h.dtype, device=h.device)
    system = jacobians(step_fn, h, x, jacobian_fn).detach() - eye
    delta, info = torch.linalg.solve_ex(system, residual)
    delta = torch.where((info == 0)[:, None], delta, 0.0)
    if reach is not None:
        cap = reach * residual.norm(dim=-1, keepdim=True)
        delta = delta * (cap / delta.norm(dim=-1, keepdim=True).clamp_min(1e-30)).clamp(max=1.0)
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
