"""Fit θ (and optionally a new alignment map) with the meta-model frozen.

This is how a new network is placed on an existing map, and how few labels pick a model:
only ``d`` numbers (plus, for hidden-state fits, one ``k × H̃`` affine map) are optimised.
Pure torch; ``DynamoModule.fit_embedding`` builds the loss and calls ``fit_theta``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class EmbeddingFit:
    """Result of ``fit_theta``.

    Attributes:
        theta: the fitted embedding ``[d]``.
        losses: loss at every optimisation step.
        extra: fitted extra parameters (e.g. ``align_weight [k, H̃]``, ``align_bias [k]``).
        init_index: which candidate initialisation was used (row of ``candidates``).
    """

    theta: Tensor
    losses: list[float]
    extra: dict[str, Tensor] = field(default_factory=dict)
    init_index: int = 0


def fit_theta(loss_fn: Callable[[Tensor, dict[str, Tensor]], Tensor], candidates: Tensor,
              extra: dict[str, Tensor] | None = None, steps: int = 300, lr: float = 0.05,
              ) -> EmbeddingFit:
    """Minimise ``loss_fn(theta, extra)`` over θ (and ``extra``) with Adam.

    The landscape in θ is not convex, so the fit starts from the candidate with the lowest
    loss (typically the existing members' embeddings: a new network usually lands near
    the members it resembles).

    Args:
        loss_fn: scalar loss of ``theta [d]`` and the extra parameters.
        candidates: initial θ's to choose from, ``[C, d]``.
        extra: extra tensors optimised jointly (copied; the originals are untouched).
        steps: Adam steps.
        lr: Adam learning rate.

    Raises:
        ValueError: no candidates, non-positive steps or lr, or a non-finite loss.
    """
    if candidates.dim() != 2 or candidates.shape[0] == 0:
        raise ValueError(f"candidates must be [C, d] with C >= 1, got {tuple(candidates.shape)}")
    if steps < 1 or lr <= 0:
        raise ValueError(f"steps must be >= 1 and lr > 0, got steps={steps}, lr={lr}")
    params = {k: nn.Parameter(v.detach().clone()) for k, v in (extra or {}).items()}
    with torch.no_grad():
        start = [float(loss_fn(c, params)) for c in candidates]
    best = min(range(len(start)), key=start.__getitem__)
    theta = nn.Parameter(candidates[best].detach().clone())
    optimizer = torch.optim.Adam([theta, *params.values()], lr=lr)
    losses: list[float] = []
    best_loss, best_state = start[best], _snapshot(theta, params)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(theta, params)
        if not torch.isfinite(loss):
            raise ValueError(f"embedding fit diverged (loss {loss.item()}); lower lr")
        if loss.item() < best_loss:  # the loss at the parameters before this step
            best_loss, best_state = loss.item(), _snapshot(theta, params)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = float(loss_fn(theta, params))
    if final < best_loss:
        best_state = _snapshot(theta, params)
    # Adam can overshoot: return the best parameters seen, never worse than the start.
    return EmbeddingFit(best_state[0], losses, best_state[1], best)


def _snapshot(theta: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    return theta.detach().clone(), {k: v.detach().clone() for k, v in params.items()}


def least_squares_map(states: Tensor, targets: Tensor,
                      ridge: float = 1e-4) -> tuple[Tensor, Tensor]:
    """Affine map ``targets ≈ states @ W.T + b`` by ridge least squares.

    Args:
        states: ``[P, H]``; targets: ``[P, k]``.

    Returns:
        ``W [k, H]`` and ``b [k]``.
    """
    ones = torch.ones(states.shape[0], 1, dtype=states.dtype, device=states.device)
    design = torch.cat([states, ones], 1)
    gram = design.T @ design + ridge * torch.eye(design.shape[1], dtype=states.dtype,
                                                 device=states.device)
    solution = torch.linalg.solve(gram, design.T @ targets)
    return solution[:-1].T.contiguous(), solution[-1].contiguous()


def map_grid(thetas: Tensor, max_dim: int = 3, points: int = 225, margin: float = 0.1
             ) -> Tensor:
    """A regular grid over the bounding box of ``thetas [N, d]``, widened by ``margin`` of
    its size a side: ``points ** (1/d)`` (at least 2) points an axis, ``[G, d]``; empty
    ``[0, d]`` when ``d > max_dim`` (a grid in many dimensions is too large to help).

    Candidate starts for :func:`fit_theta`: between the members lie networks none of them is
    (a held-out task variant), and a start near them keeps the fit out of the wrong basin.
    """
    d = thetas.shape[1]
    if d > max_dim or thetas.shape[0] == 0:
        return thetas.new_zeros(0, d)
    per_axis = max(2, round(points ** (1.0 / d)))
    low, high = thetas.min(0).values, thetas.max(0).values
    pad = margin * (high - low).clamp_min(1e-3)
    axes = [torch.linspace(float(lo - p), float(hi + p), per_axis, dtype=thetas.dtype,
                           device=thetas.device) for lo, hi, p in zip(low, high, pad, strict=True)]
    return torch.cartesian_prod(*axes).reshape(-1, d)
