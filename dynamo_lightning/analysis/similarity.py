"""Pairwise dissimilarity of a population's members: the baselines DYNAMO's map is compared with.

Pure numpy/torch; no Lightning. Every method compares all ``N(N-1)/2`` pairs, so its cost is
O(N²) pairs by nature (DYNAMO's map costs one embedding per member instead); what is batched
here is the arithmetic of the pairs, not their number.

- ``cka``: 1 − linear CKA (Kornblith et al. 2019) of the members' hidden states on the same
  inputs, states flattened over batch and time and centred. Invariant to rotation and scale of
  the state, and defined across widths. Feed-forward members of different depths (unequal
  numbers of stages) are compared on their whole representation of each input instead: all
  stages concatenated, ``[B, S_n · H_n]`` (``procrustes`` too).
- ``procrustes``: the angular orthogonal-Procrustes shape distance of Williams et al. (2021),
  ``arccos ‖XᵀY‖_*`` for centred states of unit Frobenius norm, in radians, in [0, π/2].
  Narrower members are zero-padded to the largest width; padding adds zero rows to ``XᵀY``,
  which leaves its singular values unchanged, so the padding is implicit.
- ``weights``: Euclidean distance between flattened parameter vectors (``member.state``, by
  parameter name). Only members of one architecture and config (same parameter shapes) have
  comparable vectors; across them the entry is NaN. Not invariant to relabelling hidden
  units, which is the point of showing it.
- ``dsa``: Dynamical Similarity Analysis (Ostrow et al. 2023) through the optional
  ``dsa-metric`` package: one DMD per member on delay embeddings of its states, then every
  pair's DMD matrices compared (see :func:`similarity` for the options).

Example::

    from dynamo_lightning import analysis as da

    d = da.similarity(pop, x, method="cka")     # x [B, T, I] -> d [N, N]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from dynamo_lightning.analysis.member_dynamics import member_states
from dynamo_lightning.analysis.pca import pca
from dynamo_lightning.checks import optional_positive_int

if TYPE_CHECKING:
    from dynamo_lightning.population import Population

METHODS = ("cka", "procrustes", "weights", "dsa")
"""Dissimilarity methods :func:`similarity` knows."""

BLOCK_BYTES = 1 << 27
"""Cross-covariance blocks are computed this many bytes (128 MiB) of float64 at a time."""

DSA_DEFAULTS: dict[str, Any] = {"n_delays": 8, "rank": 16, "score_method": "wasserstein",
                                "iterations": 1500, "n_components": 10}
"""DSA options when not given: see :func:`similarity`."""

INSTALL_HINT = "pip install 'dynamo-lightning[baselines]'"


def similarity(pop: Population, inputs: Tensor, method: str = "cka",
               batch_size: int | None = None, **options: Any) -> np.ndarray:
    """Dissimilarity between every pair of members of ``pop``.

    Args:
        pop: the population (N members).
        inputs: ``[B, T, I]`` shared by all members (unused by ``weights``). The trajectory
            methods compare the ``B·T`` states each member visits on these inputs.
        method: one of :data:`METHODS`.
        batch_size: trials per stacked call when running the members (None: all at once).
        **options: only for ``dsa``: ``n_delays`` (delay-embedding length, default 8, or
            T // 2 for shorter sequences; must be below T), ``rank`` (DMD rank, default 16,
            capped at ``n_delays`` × the smallest width so that every DMD matrix has the
            same size), ``score_method``
            (``"wasserstein"``, the default: Wasserstein distance between DMD eigenvalues,
            cheap; or ``"angular"``: the paper's metric, an optimisation over orthogonal
            similarity transforms per pair, far slower at the package default of 1,500
            iterations; benchmarks/README.md has the times), ``iterations`` (for
            ``angular``, default 1500), ``n_components``
            (each member's states are first projected on their own top principal components,
            default 10, as DSA is usually applied to neural data; this bounds the delay
            matrix at ``n_delays × n_components`` columns whatever the width, which makes
            the per-member DMD fit cheap; None keeps every unit).

    Returns:
        ``float64`` ``[N, N]``: symmetric, zero diagonal; NaN where undefined (``weights``
        across architectures or shapes; ``cka``/``procrustes`` rows of members whose states
        never vary).

    Raises:
        ValueError: unknown method, unknown options, or options given to a method without any.
        ImportError: ``dsa`` without the ``dsa-metric`` package (:data:`INSTALL_HINT`).
    """
    if method not in _METHODS:
        raise ValueError(f"unknown similarity method {method!r} (known: {', '.join(METHODS)})")
    if method != "dsa" and options:
        raise ValueError(f"method {method!r} takes no options, got {sorted(options)}")
    if method == "weights":
        return weight_distance(pop)
    return _METHODS[method](member_states(pop, inputs, batch_size), **options)


def states_distance(states: list[Tensor], method: str, **options: Any) -> np.ndarray:
    """:func:`similarity` of precomputed :func:`member_states` (any method but
    ``weights``, which compares parameters)."""
    if method not in _METHODS or method == "weights":
        raise ValueError(f"states_distance takes a trajectory method "
                         f"({', '.join(m for m in METHODS if m != 'weights')}), got {method!r}")
    if method != "dsa" and options:
        raise ValueError(f"method {method!r} takes no options, got {sorted(options)}")
    return _METHODS[method](states, **options)


def cka_distance(states: list[Tensor]) -> np.ndarray:
    """1 − linear CKA between every pair of state sets.

    Args:
        states: one ``[B, T, H_i]`` (or ``[M, H_i]``) per member; widths may differ.

    Returns:
        ``[N, N]`` float64 in [0, 1].
    """
    z, constant = _centred_stack(_per_input(states), unit=False)
    self_norm = torch.linalg.matrix_norm(_self_blocks(z)).cpu().numpy()  # ‖XᵢᵀXᵢ‖_F
    self_norm[constant] = 1.0
    cross = _pairwise_blocks(z, lambda c: c.square().sum((-2, -1)))     # ‖XᵢᵀXⱼ‖²_F
    cka = cross / np.outer(self_norm, self_norm)
    return _finish(1.0 - np.clip(cka, 0.0, 1.0), constant)


def procrustes_distance(states: list[Tensor]) -> np.ndarray:
    """Angular Procrustes shape distance ``arccos ‖XᵢᵀXⱼ‖_*`` between every pair.

    Args:
        states: one ``[B, T, H_i]`` (or ``[M, H_i]``) per member; widths may differ.

    Returns:
        ``[N, N]`` float64 in [0, π/2] (radians).
    """
    z, constant = _centred_stack(_per_input(states), unit=True)
    nuclear = _pairwise_blocks(z, lambda c: torch.linalg.svdvals(c).sum(-1))
    return _finish(np.arccos(np.clip(nuclear, 0.0, 1.0)), constant)


def weight_distance(pop: Population) -> np.ndarray:
    """Euclidean distance between the parameter vectors of members of the same shapes.

    Members are grouped by architecture and parameter names and shapes; distances within a
    group come from one ``torch.cdist``; entries across groups are NaN.

    Returns:
        ``[N, N]`` float64, NaN across groups.
    """
    groups: dict[tuple, list[int]] = {}
    for i, member in enumerate(pop):
        signature = (member.architecture,
                     tuple((k, tuple(v.shape)) for k, v in sorted(member.state.items())))
        groups.setdefault(signature, []).append(i)
    out = np.full((len(pop), len(pop)), np.nan)
    for indices in groups.values():
        vectors = torch.stack([
            torch.cat([v.detach().cpu().double().reshape(-1)
                       for _, v in sorted(pop[i].state.items())]) for i in indices])
        out[np.ix_(indices, indices)] = torch.cdist(vectors, vectors).numpy()
    return _symmetric(out)


def dsa_distance(states: list[Tensor], n_delays: int | None = None,
                 rank: int = DSA_DEFAULTS["rank"],
                 score_method: str = DSA_DEFAULTS["score_method"],
                 iterations: int = DSA_DEFAULTS["iterations"],
                 n_components: int | None = DSA_DEFAULTS["n_components"]) -> np.ndarray:
    """DSA between every pair (options as in :func:`similarity`).

    Args:
        states: one ``[B, T, H_i]`` per member (trials, time, units).

    Returns:
        ``[N, N]`` float64 (``angular``: radians; ``wasserstein``: eigenvalue distance).
    """
    dsa_class = _import_dsa()
    if score_method not in ("angular", "wasserstein"):
        raise ValueError(f"score_method must be 'angular' or 'wasserstein', got {score_method!r}")
    data = [s.detach().to("cpu", torch.float32) for s in states]
    if any(d.dim() != 3 for d in data):
        raise ValueError("dsa needs states [B, T, H] per member (trials, time, units)")
    if optional_positive_int("n_components", n_components) is not None:
        data = [_top_components(d, n_components) for d in data]
    steps = min(d.shape[1] for d in data)
    if n_delays is None:  # the default, shortened for sequences too short for it
        n_delays = max(1, min(DSA_DEFAULTS["n_delays"], steps // 2))
    if not 1 <= n_delays < steps:
        raise ValueError(f"n_delays must be in [1, {steps - 1}] for {steps} time steps, "
                         f"got {n_delays}")
    rank = min(int(rank), n_delays * min(d.shape[2] for d in data))
    if len(data) < 2:
        return np.zeros((len(data), len(data)))
    dsa = dsa_class(data, n_delays=n_delays, rank=rank, score_method=score_method,
                    iters=int(iterations), verbose=False)
    out = np.asarray(dsa.fit_score(), dtype=np.float64).reshape(len(data), len(data))
    return _symmetric(out)


def _top_components(states: Tensor, k: int) -> Tensor:
    """``states [B, T, H]`` centred and projected on their top ``min(k, H)`` PCs."""
    return pca(states.reshape(-1, states.shape[-1]), min(k, states.shape[-1])).transform(
        states).float()


def _import_dsa() -> type:
    try:
        from DSA import DSA
    except ImportError as exc:
        raise ImportError(f"method 'dsa' needs the dsa-metric package ({exc}); install it "
                          f"with: {INSTALL_HINT}") from exc
    return DSA


_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "cka": cka_distance, "procrustes": procrustes_distance, "weights": weight_distance,
    "dsa": dsa_distance}


def _per_input(states: list[Tensor]) -> list[Tensor]:
    """``states`` as they are when every member has as many states per input; else each
    member's stages concatenated per input, ``[B, 1, S_n · H_n]`` (members of other depths)."""
    if len({tuple(s.shape[:-1]) for s in states}) <= 1 or any(s.dim() != 3 for s in states):
        return states
    return [s.reshape(s.shape[0], 1, -1) for s in states]


def _centred_stack(states: list[Tensor], unit: bool) -> tuple[Tensor, np.ndarray]:
    """States ``[N, M, H_max]`` float64, each centred over its ``M = B·T`` rows and
    zero-padded to the largest width (``unit``: scaled to Frobenius norm 1), and which
    members' states never vary ``[N]`` (their rows stay zero)."""
    flat = [torch.as_tensor(s).detach().reshape(-1, s.shape[-1]) for s in states]
    if not flat or any(f.shape[0] != flat[0].shape[0] for f in flat):
        raise ValueError("states need one entry per member, all with the same number of "
                         f"states, got {[tuple(f.shape) for f in flat]}")
    widths = [f.shape[1] for f in flat]
    z = flat[0].new_zeros((len(flat), flat[0].shape[0], max(widths)), dtype=torch.float64)
    for i, f in enumerate(flat):
        z[i, :, : f.shape[1]] = f.double() - f.double().mean(0)
    norms = torch.linalg.vector_norm(z, dim=(1, 2), keepdim=True)
    constant = (norms == 0).reshape(-1).cpu().numpy()
    if unit:
        z = z / norms.clamp_min(torch.finfo(z.dtype).tiny)
    return z, constant


def _self_blocks(z: Tensor) -> Tensor:
    """``XᵢᵀXᵢ`` for every member: ``[N, H, H]``."""
    return torch.einsum("nmh,nmk->nhk", z, z)


def _pairwise_blocks(z: Tensor, reduce: Callable[[Tensor], Tensor]) -> np.ndarray:
    """``reduce(XᵢᵀXⱼ)`` for every pair ``i ≤ j``, mirrored: ``[N, N]`` float64.

    Rows of members are taken a chunk at a time: one matmul ``[M, c·H]ᵀ [M, (N-a)·H]`` gives
    the chunk's cross-covariance blocks with every later member, so memory stays within
    :data:`BLOCK_BYTES` while the arithmetic runs as a few large matmuls.
    """
    n, m, h = z.shape
    out = np.zeros((n, n))
    chunk = max(1, BLOCK_BYTES // (8 * n * h * h))
    flat = z.permute(1, 0, 2).reshape(m, n * h)  # [M, N·H]
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        cross = flat[:, a * h: b * h].T @ flat[:, a * h:]  # [(b-a)·H, (N-a)·H]
        blocks = cross.reshape(b - a, h, n - a, h).permute(0, 2, 1, 3)
        out[a:b, a:] = reduce(blocks).cpu().numpy()
    upper = np.triu(out)
    return upper + np.triu(out, 1).T


def _finish(d: np.ndarray, constant: np.ndarray) -> np.ndarray:
    """NaN in the rows and columns of members without variance, then :func:`_symmetric`."""
    d = d.copy()
    d[constant, :] = np.nan
    d[:, constant] = np.nan
    return _symmetric(d)


def _symmetric(d: np.ndarray) -> np.ndarray:
    """Average with the transpose (NaN-aware) and zero the diagonal."""
    d = np.asarray(d, dtype=np.float64)
    d = np.where(np.isnan(d), d.T, np.where(np.isnan(d.T), d, (d + d.T) / 2))
    np.fill_diagonal(d, 0.0)
    return d
