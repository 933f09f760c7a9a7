"""Step functions for the fixed-point finder: members and the meta-model as ``step_fn``.

``find_fixed_points`` takes any ``step_fn(h [M, H], x [M, I]) -> h_next``. These helpers
wrap networks so that their parameters never accumulate ``.grad`` during a search, and so
that the meta-model at many θ's runs as one batch (row ``r`` at ``θ[r // n_per_group]``).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from dynamo_lightning.checks import is_int, positive_int
from dynamo_lightning.detached import DetachedCall
from dynamo_lightning.modes import frozen


def sample_inits(trajectories: Tensor, n: int, noise: float = 0.0,
                 generator: torch.Generator | None = None) -> Tensor:
    """Initial states drawn from visited states: ``n`` random rows of ``trajectories
    [..., H]`` plus Gaussian noise of ``noise`` × the data's per-unit std. Returns ``[n, H]``."""
    states = trajectories.detach().reshape(-1, trajectories.shape[-1])
    if states.shape[0] == 0 or n < 1:
        raise ValueError(f"need n >= 1 and some states, got n={n}, {tuple(trajectories.shape)}")
    pick = torch.randint(states.shape[0], (n,), generator=generator)
    picked = states[pick.to(states.device)]
    if noise == 0 or states.shape[0] < 2:
        return picked.clone()
    std = states.std(0)
    eps = torch.randn(picked.shape, generator=generator, dtype=picked.dtype)
    return picked + noise * std * eps.to(picked.device)


def frozen_parameters(module: nn.Module) -> contextlib.AbstractContextManager:
    """``requires_grad=False`` on ``module``'s parameters for a block (each restored as it
    was), so a search builds no graph through them and never touches their ``.grad``."""
    return frozen(module, eval_mode=False)


class ModuleStep:
    """``step_fn(h [M, H], x [M, I])`` over a module's ``step``, never touching its ``.grad``;
    with ``theta_rows [M, d]``, row r runs at ``theta_rows[r]`` (see :func:`meta_step_fn`).

    Trainable parameters are replaced by detached views (``torch.func.functional_call``);
    :func:`find_fixed_points` instead enters :meth:`frozen` around its whole search, which
    skips that per-call swap. ``groups [M]`` (or None) names each row's θ.
    """

    def __init__(self, module: nn.Module, theta_rows: Tensor | None = None,
                 groups: Tensor | None = None) -> None:
        if not callable(getattr(module, "step", None)):
            raise TypeError(f"{type(module).__name__} has no step(): not a recurrent network")
        self.module = module
        self.theta_rows = None if theta_rows is None else theta_rows.detach()
        self.groups = groups
        self._call = DetachedCall(module)

    def frozen(self) -> contextlib.AbstractContextManager[None]:
        """Context in which the module's parameters do not require grad (restored after)."""
        return frozen_parameters(self.module)

    @property
    def state_size(self) -> int | None:
        """The size of the states ``h`` the module steps (None if it does not say)."""
        return _size(self.module, "state_size")

    @property
    def input_size(self) -> int | None:
        """The size of the inputs ``x`` the module takes (None if it does not say)."""
        return _size(self.module, "input_size")

    @property
    def num_rows(self) -> int | None:
        """The rows ``M`` a call takes (θ's × inits per θ), or None: any number."""
        return None if self.theta_rows is None else int(self.theta_rows.shape[0])

    def subset(self, rows: Tensor) -> ModuleStep:
        """This step function on rows ``rows`` of its batch only."""
        if self.theta_rows is None:
            return self
        rows = rows.to(self.theta_rows.device)
        return ModuleStep(self.module, self.theta_rows[rows], self.groups[rows])

    def __call__(self, h: Tensor, x: Tensor) -> Tensor:
        size = self.state_size
        if size is not None and (h.dim() != 2 or h.shape[1] != size):
            raise ValueError(f"h must be [M, {size}] (the state size of the "
                             f"{type(self.module).__name__}), got {tuple(h.shape)}")
        args: tuple[Tensor, ...] = (h, x)
        if self.theta_rows is not None:
            if h.shape[0] != self.theta_rows.shape[0]:
                raise ValueError(f"this step function runs {self.theta_rows.shape[0]} rows "
                                 f"(θ's × inits per θ), got h {tuple(h.shape)}")
            args = (h, x, self.theta_rows.to(h.device))
        return self._call("step", *args)


def member_step_fn(member: nn.Module) -> ModuleStep:
    """The step function of a recurrent member (``member.step(h, x)``), e.g. ``pop[i].module``
    or an ``EmbeddedNetwork``."""
    return ModuleStep(member)


def meta_step_fn(meta: nn.Module, thetas: Tensor, n_per_group: int) -> ModuleStep:
    """The meta-model at G embeddings in one step function: row r runs
    ``meta.step(h, x, θ[r // n_per_group])``, so a call takes ``M = G · n_per_group`` rows
    (stack the inits θ-major) and its ``groups`` are found by :func:`find_fixed_points`."""
    n_per_group = positive_int("n_per_group", n_per_group, "meta_step_fn")
    d = _size(meta, "embedding_dim")
    if thetas.dim() != 2 or thetas.shape[0] < 1 or (d is not None and thetas.shape[1] != d):
        raise ValueError(f"meta_step_fn: thetas must be [G>=1, {'d' if d is None else d}] "
                         f"(the meta-model's embedding_dim), got {tuple(thetas.shape)}")
    if not bool(torch.isfinite(thetas).all()):
        bad = (~torch.isfinite(thetas)).any(1).nonzero().flatten().tolist()
        raise ValueError(f"meta_step_fn: thetas must be finite, got NaN/Inf in row(s) {bad} "
                         f"of thetas {tuple(thetas.shape)}")
    groups = torch.arange(thetas.shape[0], device=thetas.device)
    return ModuleStep(meta, thetas.repeat_interleave(n_per_group, 0),
                      groups.repeat_interleave(n_per_group))


def _size(module: nn.Module, name: str) -> int | None:
    """``module.<name>`` if it is an integer, else None."""
    value = getattr(module, name, None)
    return int(value) if is_int(value) else None
