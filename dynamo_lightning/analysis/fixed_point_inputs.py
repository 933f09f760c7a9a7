"""The checks at :func:`~.fixed_points.find_fixed_points`'s boundary.

Everything a search could otherwise trip over deep inside torch, or answer with no points and
no word, is caught here before it starts: shapes, a non-finite constant input, non-finite
initial states (dropped with a warning while some rows are left, an error when none is), and
initial states of a size the step function does not take (learned from the step function's
``state_size``, else from one call on a single row, without gradients).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from dynamo_lightning.analysis.fixed_point_search import StepFn, subset
from dynamo_lightning.checks import is_int


@dataclass
class Call:
    """A checked search: the rows it runs (non-finite inits dropped) and their systems."""

    step_fn: StepFn
    jacobian_fn: StepFn | None
    x: Tensor  # [M, I]
    inits: Tensor  # [M, H]
    groups: Tensor  # [M] long
    num_groups: int


def check_call(step_fn: StepFn, x_const: Tensor, inits: Tensor, groups: Tensor | None,
               tol: float, slow_tol: float | None, jacobian_fn: StepFn | None) -> Call:
    """Validate :func:`~.fixed_points.find_fixed_points`'s arguments (see its docstring).

    Raises:
        ValueError: bad shapes, tolerances or groups; a non-finite ``x_const``; ``inits``
            with no finite row, or of another state size than ``step_fn``'s.
    """
    if not isinstance(inits, Tensor) or inits.dim() != 2 or not inits.is_floating_point():
        raise ValueError(f"inits must be a float tensor [M, H], got "
                         f"{getattr(inits, 'shape', type(inits))}")
    x = _constant_input(x_const, inits)
    if not tol > 0 or (slow_tol is not None and not slow_tol > tol):
        raise ValueError(f"need 0 < tol < slow_tol, got tol={tol}, slow_tol={slow_tol}")
    runs = getattr(step_fn, "num_rows", None)
    if is_int(runs) and runs != inits.shape[0]:
        raise ValueError(f"step_fn runs {runs} rows (θ's × inits per θ, stacked θ-major), "
                         f"got inits {tuple(inits.shape)}")
    groups, num_groups = _groups(step_fn, groups, inits)
    call = Call(step_fn, jacobian_fn, x, inits, groups, num_groups)
    call = _finite_rows(call)
    check_state_size(call.step_fn, call.x, call.inits)
    return call


def check_state_size(step_fn: StepFn, x: Tensor, inits: Tensor) -> None:
    """Raise unless ``step_fn`` maps states of ``inits``' size ``[M, H]`` to states of that
    size: its ``state_size`` (and ``input_size``) if it states them, else one call on the
    first row, without gradients.

    Raises:
        ValueError: naming the state size ``step_fn`` takes or returns and ``inits``' shape.
    """
    size = inits.shape[1]
    expected = getattr(step_fn, "state_size", None)
    if is_int(expected) and expected != size:
        raise ValueError(f"inits must be [M, {expected}] (the state size of step_fn's "
                         f"network), got {tuple(inits.shape)}")
    inputs = getattr(step_fn, "input_size", None)
    if is_int(inputs) and x.shape[1] != inputs:
        raise ValueError(f"x_const must be [{inputs}] or [M, {inputs}] (step_fn's input "
                         f"size), got {x.shape[1]} input values a row")
    if inits.shape[0] == 0:
        return
    probe = subset(step_fn, torch.zeros(1, dtype=torch.long, device=inits.device))
    assert probe is not None
    try:
        with torch.no_grad():
            out = probe(inits[:1], x[:1])
    except RuntimeError as err:  # torch's shape errors, deep inside the step function
        raise ValueError(f"step_fn failed on one row of inits {tuple(inits.shape)} with "
                         f"x_const [{x.shape[1]}] ({err}); inits must be [M, H] with H the "
                         "state size step_fn takes, x_const its input size") from err
    if not isinstance(out, Tensor) or tuple(out.shape) != (1, size):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"step_fn maps one row of inits [1, {size}] to {got}, not [1, {size}]: "
                         f"inits must be [M, H] with H the state size step_fn takes and "
                         f"returns, got {tuple(inits.shape)}")


def _constant_input(x_const: Tensor, inits: Tensor) -> Tensor:
    """``x_const`` as ``[M, I]`` on ``inits``' device, finite."""
    rows = inits.shape[0]
    x = torch.as_tensor(x_const, device=inits.device)
    x = x if x.is_floating_point() else x.to(inits.dtype)
    if x.dim() not in (1, 2) or (x.dim() == 2 and x.shape[0] != rows):
        raise ValueError(f"x_const must be [I] or [{rows}, I], got {tuple(x.shape)}")
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"x_const must be finite, got {bad} NaN/Inf value(s) in x_const "
                         f"{tuple(x.shape)}")
    return x.expand(rows, -1) if x.dim() == 1 else x


def _groups(step_fn: StepFn, groups: Tensor | None, inits: Tensor) -> tuple[Tensor, int]:
    """``groups [M]`` (given, ``step_fn.groups`` or all 0) and their number G."""
    rows = inits.shape[0]
    if groups is None:
        groups = getattr(step_fn, "groups", None)
    if groups is None:
        return torch.zeros(rows, dtype=torch.long, device=inits.device), 1
    groups = torch.as_tensor(groups, device=inits.device)
    if groups.shape != (rows,) or groups.is_floating_point() or bool((groups < 0).any()):
        raise ValueError(f"groups must be [{rows}] non-negative ints, got "
                         f"{tuple(groups.shape)} {groups.dtype}")
    return groups.long(), int(groups.max()) + 1 if rows else 1


def _finite_rows(call: Call) -> Call:
    """``call`` without its non-finite initial states (a warning names how many), the step
    and Jacobian functions restricted to the rows left; G is kept (a group may end empty).

    Raises:
        ValueError: no row of ``inits`` is finite.
    """
    finite = torch.isfinite(call.inits).all(1)
    rows, kept = finite.numel(), int(finite.sum())
    if kept == rows:
        return call
    if kept == 0:
        raise ValueError(f"inits has no finite row: all {rows} rows of inits "
                         f"{tuple(call.inits.shape)} hold NaN/Inf")
    warnings.warn(f"find_fixed_points: {rows - kept} of {rows} rows of inits hold NaN/Inf; "
                  f"searching from the other {kept}", RuntimeWarning, stacklevel=4)
    index = finite.nonzero().flatten()
    step_fn = subset(call.step_fn, index)
    assert step_fn is not None
    return Call(step_fn, subset(call.jacobian_fn, index), call.x[index], call.inits[index],
                call.groups[index], call.num_groups)
