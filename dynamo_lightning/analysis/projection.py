"""2-D maps of model embeddings: project θ ∈ R^d onto the plane for plotting.

Pure numpy/torch; no Lightning. The DYNAMO map is usually already 2-D (d = 2), in which case
the embeddings are the map and are returned unchanged; larger d are projected by PCA (linear,
deterministic, distances along the top axes are preserved) or UMAP (non-linear, keeps local
neighbourhoods; slower and stochastic, seeded by ``random_state``).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from dynamo_lightning.analysis.pca import pca
from dynamo_lightning.checks import positive_int

METHODS = ("pca", "umap")
"""Projection methods :func:`project` knows."""

UMAP_MIN_POINTS = 4
"""UMAP needs a few neighbours per point; below this many members use ``method="pca"``."""


def project(
    emb: torch.Tensor | np.ndarray,
    method: str = "pca",
    n_components: int = 2,
    random_state: int | None = 0,
) -> np.ndarray:
    """Project model embeddings onto ``n_components`` axes for a map of the population.

    When ``d <= n_components`` nothing is projected: the embeddings are returned as they are,
    with zero columns appended when ``d < n_components`` (a 1-D map is drawn on a line).
    PCA gives (near-)zero columns beyond the embeddings' rank (fewer members than axes).

    Args:
        emb: Embeddings ``[N, d]`` (a torch Tensor on any device, or an array-like).
        method: ``"pca"`` (:func:`~.pca.pca`, deterministic) or ``"umap"`` (umap-learn,
            imported lazily because its import is slow; ``n_neighbors = min(15, N - 1)``).
        n_components: Number of output axes (2 for a map).
        random_state: Seed for UMAP; ``None`` lets UMAP run in parallel but not
            reproducibly. (PCA needs none.)

    Returns:
        ``float64`` array ``[N, n_components]``.

    Raises:
        ValueError: If ``method`` is unknown, ``emb`` is not 2-D, empty or not finite,
            ``n_components < 1``, or UMAP is asked for fewer than 4 points.

    Example::

        from dynamo_lightning import analysis as da

        xy = da.project(module.embeddings(), method="pca")   # [N, 2]
    """
    if method not in METHODS:
        raise ValueError(f"unknown projection method {method!r} (known: {', '.join(METHODS)})")
    n_components = positive_int("n_components", n_components)
    x = _as_array(emb)
    n, d = x.shape
    if d <= n_components:
        if method == "umap":  # asked for a non-linear map of a map that is already flat
            warnings.warn(f"project(method='umap'): the embeddings are {d}-D, no more than "
                          f"the {n_components} axes asked for; returning them unchanged",
                          UserWarning, stacklevel=2)
        return _pad(x, n_components)
    if method == "pca":
        return _pca(x, n_components)
    if n < UMAP_MIN_POINTS:
        raise ValueError(
            f"UMAP needs at least {UMAP_MIN_POINTS} points, got {n}; use method='pca' for "
            "populations this small"
        )
    return _umap(x, n_components, random_state)


def _as_array(emb: torch.Tensor | np.ndarray) -> np.ndarray:
    """``emb`` as a finite float64 numpy array ``[N, d]`` (detached, on the CPU)."""
    if hasattr(emb, "detach"):  # torch.Tensor, without importing torch here
        emb = emb.detach().cpu().double().numpy()
    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array [N, d], got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"embeddings must be non-empty, got shape {tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or inf values")
    return x


def _pad(x: np.ndarray, n_components: int) -> np.ndarray:
    """Append zero columns up to ``n_components`` (a copy; never aliases the input)."""
    out = np.zeros((x.shape[0], n_components), dtype=np.float64)
    out[:, : x.shape[1]] = x
    return out


def _pca(x: np.ndarray, n_components: int) -> np.ndarray:
    """The points on their top axes; axes beyond the data's rank carry (almost) nothing, and
    a single point is the origin."""
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], n_components))
    return pca(torch.from_numpy(x), n_components).transform(torch.from_numpy(x)).numpy()


def _umap(x: np.ndarray, n_components: int, random_state: int | None) -> np.ndarray:
    with warnings.catch_warnings():
        # umap warns that a fixed seed disables parallelism, and numba/sklearn emit
        # deprecation chatter on import; none of it is actionable for the caller.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        import umap

        reducer = umap.UMAP(
            n_components=n_components,
            n_neighbors=min(15, x.shape[0] - 1),
            random_state=random_state,
        )
        threads = torch.get_num_threads()
        try:
            return np.asarray(reducer.fit_transform(x), dtype=np.float64)
        finally:  # numba's OpenMP layer resets the process's count (torch's too): give it back
            torch.set_num_threads(threads)
