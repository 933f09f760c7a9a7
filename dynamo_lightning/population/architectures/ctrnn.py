"""Continuous-time rate RNN (leaky, Euler-discretised), as neurogym's tutorials and PsychRNN
write it, stacked.

Two forms of the same continuous-time model ``τ dr/dt = -r + f(W_in x + W r + b)`` with
``α = dt/τ``, in the row-vector convention (``x @ W``, weights input-major):

- ``form="rate"`` (neurogym's CTRNN tutorial): the state is the rates ``h``,
  ``h' = (1-α) h + α f(u + h W_eff + b_hh)`` with ``u = x W_ih + b_ih``; ``y = h W_o + b_o``.
- ``form="current"`` (PsychRNN's BasicRNN, neurogym's EIRNN tutorial): the state is the
  currents ``v``, ``v' = (1-α) v + α (u + f(v) W_eff + b_hh)``; ``y = f(v) W_o + b_o``.

``W_eff`` is ``weight_hh`` unless Dale's law (``dale_ratio``) or ``autapses=False`` shape it:
with Dale the first ``int(dale_ratio * H)`` units are excitatory and the rest inhibitory, and
``W_eff = |weight_hh| * sign[:, None]`` (row ``j`` holds presynaptic unit ``j``'s outgoing
weights, so each keeps one sign whatever the optimiser does to ``weight_hh``); without
autapses the diagonal of ``W_eff`` is zero. ``forward`` computes ``W_eff`` once per call,
not once per step.

Recurrent noise (``noise_std`` σ) is drawn only in training mode (members of a population
are frozen in eval mode, so their ``step`` and ``forward`` are deterministic). Both forms'
noise is written as noise on the projected input ``u``, before the cell, with the same
standard deviation ``sqrt(2/α) σ``: inside ``f`` for the rate form (Yang et al. 2019), and for
the current form ``sqrt(2α) σ ξ`` added to ``v`` after the update (PsychRNN, EIRNN), which is
``α · (sqrt(2α) σ ξ / α)`` inside the update. So the cell itself is noise-free.

With ``fused`` set (on a GPU; see :mod:`.recurrent`), ``forward`` runs the leaky cells of
:mod:`.fused_recurrence` (``ctrnn_rate``, ``ctrnn_current``) with ``W_eff`` computed before
the kernel. ``fused_recurrence.FASTER_UP_TO`` leaves them out until a GPU has timed them, so
neither the trainer nor ``Population.use_fused_kernels`` fuses a ctrnn stack by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dynamo_lightning.checks import boolean, finite_real, fraction, positive_real
from dynamo_lightning.population.architectures.recurrent import RecurrentArchitecture
from dynamo_lightning.population.architectures.registry import register_architecture

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu, "tanh": torch.tanh, "softplus": F.softplus}
"""The unit nonlinearities ``f`` by name (softplus with β = 1, torch's default)."""
FORMS = ("rate", "current")
DEFAULT_ALPHA = 0.2
"""``dt/τ`` with dt = 20 ms, τ = 100 ms (neurogym's tutorials)."""


@register_architecture("ctrnn")
class CTRNN(RecurrentArchitecture):
    """Leaky rate RNN; see the module doc for the equations.

    Args:
        input_size, output_size, hidden_size, num_members, seeds: as every architecture.
        alpha: ``dt/τ`` in (0, 1] (default 0.2); or give ``dt`` and ``tau`` instead.
        dt: integration step (any unit, with ``tau``); needs ``tau``.
        tau: membrane time constant; needs ``dt``. ``alpha``, if given too, must equal
            ``dt/tau``.
        activation: ``f``: "relu" (default), "tanh" or "softplus".
        form: "rate" (default; the state is the rates) or "current" (the state is the
            currents ``v``, read out through ``f(v)``).
        noise_std: recurrent noise σ ≥ 0, drawn only in training mode (default 0).
        dale_ratio: None, or the share of excitatory units in (0, 1).
        autapses: False zeroes ``W_eff``'s diagonal (no self-connections).

    Raises:
        ValueError: an option out of range, naming it and its value.
    """

    gates = 1
    fused_cell = "ctrnn"
    """A marker for the base class's check that a subclass kept the recurrence; the
    kernel's cell is per stack (:meth:`fused_kernel`)."""

    def __init__(self, input_size: int, output_size: int, hidden_size: int,
                 num_members: int = 1, seeds: Sequence[int] | None = None, *,
                 alpha: float | None = None, dt: float | None = None, tau: float | None = None,
                 activation: str = "relu", form: str = "rate", noise_std: float = 0.0,
                 dale_ratio: float | None = None, autapses: bool = True) -> None:
        owner = type(self).__name__
        options: dict[str, Any] = {"alpha": resolve_alpha(alpha, dt, tau, owner)}
        if dt is not None:
            options.update(dt=float(dt), tau=float(tau))  # type: ignore[arg-type]
        options["activation"] = _choice("activation", activation, tuple(ACTIVATIONS), owner)
        options["form"] = _choice("form", form, FORMS, owner)
        options["noise_std"] = finite_real("noise_std", noise_std, lambda v: v >= 0, ">= 0",
                                           owner)
        options["dale_ratio"] = (None if dale_ratio is None
                                 else fraction("dale_ratio", dale_ratio, owner))
        options["autapses"] = boolean("autapses", autapses, owner)
        super().__init__(input_size, output_size, hidden_size, num_members, seeds, **options)
        self.alpha: float = options["alpha"]
        self.activation: Callable[[Tensor], Tensor] = ACTIVATIONS[options["activation"]]
        self.noise_scale = math.sqrt(2.0 / self.alpha) * options["noise_std"]
        mask = connectivity_mask(hidden_size, options["dale_ratio"], options["autapses"])
        self.register_buffer("hh_mask", mask, persistent=False)
        self._weight_in_use: Tensor | None = None  # W_eff during a forward

    # ----------------------------------------------------------------- parameters
    @property
    def excitatory_size(self) -> int | None:
        """Number of excitatory units (the first ones), or None without Dale's law."""
        ratio = self.options["dale_ratio"]
        return None if ratio is None else int(ratio * self.hidden_size)

    def init_member(self, generator: torch.Generator) -> dict[str, Tensor]:
        """The base fan-in init; with Dale, ``weight_hh`` is made non-negative and the
        excitatory rows are scaled by ``n_I / n_E`` (neurogym's EIRNN), so that at the start
        each unit's expected excitatory and inhibitory input balance."""
        params = super().init_member(generator)
        n_exc = self.excitatory_size
        if n_exc is not None:
            weight = params["weight_hh"].abs()
            n_inh = self.hidden_size - n_exc
            if n_exc and n_inh:
                weight[:n_exc] *= n_inh / n_exc
            params["weight_hh"] = weight
        return params

    def effective_weight_hh(self) -> Tensor:
        """The recurrent weights the cell uses, ``[G, H, H]`` (row = presynaptic unit):
        ``weight_hh`` itself without Dale and with autapses."""
        if self.hh_mask is None:
            return self.weight_hh
        weight = self.weight_hh.abs() if self.options["dale_ratio"] is not None else self.weight_hh
        return weight * self.hh_mask

    # ----------------------------------------------------------------- dynamics
    def recurrent_input(self, h: Tensor) -> Tensor:
        """``h W_eff + b_hh`` for ``h [G, B, H]`` (rates), one batched matmul."""
        weight = self._weight_in_use
        if weight is None:
            weight = self.effective_weight_hh()
        return torch.baddbmm(self.bias_hh.unsqueeze(1), h, weight)

    def cell(self, h: Tensor, u: Tensor) -> Tensor:
        if self.options["form"] == "rate":
            return torch.lerp(h, self.activation(u + self.recurrent_input(h)), self.alpha)
        return torch.lerp(h, u + self.recurrent_input(self.activation(h)), self.alpha)

    def readout(self, h: Tensor) -> Tensor:
        """Outputs ``[G, ..., O]`` of states ``h [G, ..., H]``: of the rates ``f(v)`` in the
        current form."""
        return super().readout(h if self.options["form"] == "rate" else self.activation(h))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        with self._effective_weight_once():
            return super().forward(x)

    @contextmanager
    def _effective_weight_once(self) -> Iterator[None]:
        """Compute ``W_eff`` once for a whole sequence (its per-step cost and the backward
        through it would otherwise repeat at every step)."""
        self._weight_in_use = self.effective_weight_hh()
        try:
            yield
        finally:
            self._weight_in_use = None

    def fused_kernel(self) -> str | None:  # type: ignore[override]
        """The fused cell of this stack's form (``ctrnn_rate`` or ``ctrnn_current``; α and f
        are the kernel's arguments), or None where a subclass changed the recurrence."""
        kept = super().fused_kernel()
        return None if kept is None else f"ctrnn_{self.options['form']}"

    def _fused_hidden(self, x: Tensor, shared: bool) -> Tensor | None:
        """States from the leaky fused kernel, or None where it does not apply (see the
        base class); ``W_eff`` is the one this forward computed."""
        cell = self.fused_kernel()
        if cell is None:
            return None
        from dynamo_lightning.population.architectures import fused_recurrence  # Triton

        weight = self._weight_in_use
        if weight is None:
            weight = self.effective_weight_hh()
        if not fused_recurrence.applies(x, self.weight_ih, weight, self.bias_hh,
                                        hidden_size=self.hidden_size):
            return None
        return fused_recurrence.fused_recurrence(
            self._project_rows(x, shared), weight, self.bias_hh, cell, alpha=self.alpha,
            activation=self.options["activation"])

    def _project_rows(self, x: Tensor, shared: bool) -> Tensor:
        """The base projections ``x W_ih + b_ih`` ``[G, B, T, H]``, plus the recurrent noise
        ``sqrt(2/α) σ ξ`` in training mode (see the module doc)."""
        u = super()._project_rows(x, shared)
        if self.training and self.noise_scale > 0:
            u = u + self.noise_scale * torch.randn_like(u)
        return u


def resolve_alpha(alpha: object, dt: object, tau: object, owner: str) -> float:
    """``alpha`` from ``alpha`` or ``dt/tau`` (default 0.2), checked to lie in (0, 1].

    Raises:
        ValueError: only one of ``dt``/``tau``, a non-positive one, ``dt/tau`` above 1, or
            an ``alpha`` that disagrees with ``dt/tau``.
    """
    def in_range(name: str, value: object) -> float:
        return finite_real(name, value, lambda v: 0 < v <= 1, "in (0, 1]", owner)

    if (dt is None) != (tau is None):
        raise ValueError(f"{owner}: dt and tau must be given together, got dt={dt!r}, "
                         f"tau={tau!r}")
    if dt is None:
        return DEFAULT_ALPHA if alpha is None else in_range("alpha", alpha)
    ratio = positive_real("dt", dt, owner) / positive_real("tau", tau, owner)
    in_range(f"alpha = dt/tau = {dt!r}/{tau!r}", ratio)
    if alpha is None:
        return ratio
    given = in_range("alpha", alpha)
    if not math.isclose(given, ratio, rel_tol=1e-9, abs_tol=1e-12):
        raise ValueError(f"{owner}: alpha={alpha!r} disagrees with dt/tau = {dt!r}/{tau!r} = "
                         f"{ratio!r}; give alpha, or dt and tau")
    return given


def connectivity_mask(hidden_size: int, dale_ratio: float | None,
                      autapses: bool) -> Tensor | None:
    """``[H, H]`` factor of ``W_eff``: row ``j`` is presynaptic unit ``j``'s sign (+1 for the
    first ``int(dale_ratio * H)`` units, -1 for the rest; 1 without Dale), the diagonal 0
    without autapses. None when it would be all ones."""
    if dale_ratio is None and autapses:
        return None
    sign = torch.ones(hidden_size)
    if dale_ratio is not None:
        sign[int(dale_ratio * hidden_size):] = -1.0
    mask = sign[:, None].expand(hidden_size, hidden_size).clone()
    if not autapses:
        mask.fill_diagonal_(0.0)
    return mask


def _choice(name: str, value: object, valid: tuple[str, ...], owner: str) -> str:
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"{owner}: {name} must be one of {', '.join(map(repr, valid))}, "
                         f"got {value!r}")
    return value
