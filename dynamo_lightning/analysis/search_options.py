"""The fixed-point search's settings as one object, from a config or the CLI down to the
search: the callbacks, the report and the analysis calls all pass a :class:`SearchOptions`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dynamo_lightning.checks import finite_real, non_negative_int, positive_int, positive_real

__all__ = ["SearchOptions"]


@dataclass(frozen=True)
class SearchOptions:
    """How fixed points are searched for, per system (a member, or the meta-model at one θ).

    Attributes:
        trials: task trials run per system; their states seed the search and anchor it
            (``reference``), and along interpolations the task metric is scored on them.
        seed: seed of the trials and of the initial states' noise.
        inits: initial states per system, sampled from those states.
        tol: a point has converged, and counts as fixed, once ``q = ½‖F(h) − h‖² < tol``.
        max_iters: Adam iterations at most.
        init_noise: noise added to the initial states, × the per-unit std of the states.
        slow_tol: also keep slow points (``tol ≤ q < slow_tol``) as kind ``"slow"``, e.g. an
            integrator's line attractor; None keeps fixed points only.

    Raises:
        ValueError: a setting out of range, named (``slow_tol`` must exceed ``tol``).

    Example::

        search = SearchOptions(inits=128, max_iters=3000, slow_tol=1e-4)
        interpolate(module, "gru-s0", "lstm-s3", search=search)
    """

    trials: int = 256
    seed: int = 0
    inits: int = 64
    tol: float = 1e-8
    max_iters: int = 2000
    init_noise: float = 0.1
    slow_tol: float | None = None

    def __post_init__(self) -> None:
        owner = "SearchOptions"
        fixed = {
            "trials": positive_int("trials", self.trials, owner),
            "seed": non_negative_int("seed", self.seed, owner),
            "inits": positive_int("inits", self.inits, owner),
            "tol": positive_real("tol", self.tol, owner),
            "max_iters": positive_int("max_iters", self.max_iters, owner),
            "init_noise": finite_real("init_noise", self.init_noise, lambda v: v >= 0, ">= 0",
                                      owner),
        }
        if self.slow_tol is not None:
            fixed["slow_tol"] = finite_real("slow_tol", self.slow_tol,
                                            lambda v: v > fixed["tol"], f"> tol ({self.tol})",
                                            owner)
        for name, value in fixed.items():  # plain int/float, whatever was passed
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> SearchOptions:
        """A copy with ``changes`` (checked like the constructor's arguments)."""
        return dataclasses.replace(self, **changes)

