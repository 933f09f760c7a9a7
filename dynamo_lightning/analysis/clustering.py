"""Clusters of members, from map points or from a dissimilarity, and how well they match metadata.

Pure numpy/scikit-learn; no Lightning. Every method of the comparison (DYNAMO's map and the
similarity baselines) is clustered the same way, agglomerative with average linkage on its
dissimilarity, so differences in the scores come from the dissimilarities, not the clusterer.

A dissimilarity may hold NaN where a method is undefined (``weights`` across architectures):
such entries are read as the largest finite dissimilarity, i.e. "as far apart as anything".
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from numbers import Number
from typing import Any

import numpy as np
from sklearn import metrics
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.manifold import smacof

from dynamo_lightning.checks import is_int

METHODS = ("agglomerative", "kmeans")
"""Clustering methods :func:`cluster` knows (``kmeans`` only on points)."""


def cluster(x: Any, n_clusters: int, method: str = "agglomerative", precomputed: bool = False,
            random_state: int | None = 0) -> np.ndarray:
    """Cluster members from their map points or from a dissimilarity between them.

    Args:
        x: points ``[N, d]`` (e.g. embeddings θ) or, with ``precomputed``, a symmetric
            dissimilarity ``[N, N]`` (NaN read as the largest finite entry). Arrays or tensors.
        n_clusters: number of clusters, in ``[1, N]``.
        method: ``"agglomerative"`` (average linkage; on points, of their Euclidean distances,
            so points and their distance matrix give the same labels) or ``"kmeans"``
            (points only; ``n_init=10``).
        precomputed: ``x`` is a dissimilarity matrix.
        random_state: seed for k-means.

    Returns:
        ``int`` labels ``[N]`` in ``[0, n_clusters)``.

    Raises:
        ValueError: unknown method, k-means on a dissimilarity, a bad shape or ``n_clusters``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown clustering method {method!r} (known: {', '.join(METHODS)})")
    data = dissimilarity_matrix(x) if precomputed else _points(x)
    n = data.shape[0]
    if not is_int(n_clusters) or not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must be an integer in [1, {n}] for {n} members, "
                         f"got {n_clusters!r}")
    if n_clusters == 1 or n == 1:
        return np.zeros(n, dtype=int)
    if method == "kmeans":
        if precomputed:
            raise ValueError("kmeans needs points, not a dissimilarity; use "
                             "method='agglomerative' with precomputed=True")
        model = KMeans(n_clusters=int(n_clusters), n_init=10, random_state=random_state)
        return model.fit_predict(data).astype(int)
    model = AgglomerativeClustering(n_clusters=int(n_clusters), linkage="average",
                                    metric="precomputed" if precomputed else "euclidean")
    return model.fit_predict(data).astype(int)


def cluster_scores(labels: Sequence[Any], truth: Sequence[Any],
                   dissimilarity: Any = None) -> dict[str, Any]:
    """How well clusters match known labels (ARI, NMI), and how compact they are (silhouette).

    Args:
        labels: cluster labels ``[N]``.
        truth: either labels ``[N]``, or one metadata dict per member: then every key whose
            values are hashable scalars (str, numbers, bool, None) with at least two distinct
            values is scored (a missing key counts as the value None).
        dissimilarity: optional ``[N, N]`` the clusters came from; adds the silhouette
            (NaN unless there are 2 to N-1 clusters).

    Returns:
        ``{"ari", "nmi"}`` for labels, ``{key: {"ari", "nmi"}}`` for metadata; plus
        ``"silhouette"`` at the top level when ``dissimilarity`` is given.

    Raises:
        ValueError: ``labels`` and ``truth`` differ in length.
    """
    labels = list(np.asarray(labels).tolist())
    truth = list(truth)
    if len(labels) != len(truth):
        raise ValueError(f"labels ({len(labels)}) and truth ({len(truth)}) differ in length")
    if truth and all(isinstance(t, Mapping) for t in truth):
        out: dict[str, Any] = {key: _agreement(labels, [m.get(key) for m in truth])
                               for key in scorable_keys(truth)}
    else:
        out = _agreement(labels, truth)
    if dissimilarity is not None:
        out["silhouette"] = silhouette(labels, dissimilarity)
    return out


def scorable_keys(metadata: Sequence[Mapping[str, Any]]) -> list[str]:
    """Metadata keys (first-seen order) with hashable scalar values and ≥ 2 distinct values,
    leaving out continuous ones (fractional numbers, distinct for more than half of the
    members, such as a task metric): as categories, every member would be its own."""
    keys = list(dict.fromkeys(k for m in metadata for k in m))
    out = []
    for key in keys:
        values = [m.get(key) for m in metadata]
        if all(v is None or isinstance(v, str | Number) for v in values) \
                and len({_category(v) for v in values}) >= 2 and not _continuous(values):
            out.append(key)
    return out


def _continuous(values: Sequence[Any]) -> bool:
    """Fractional numbers with more distinct values than half the members (and than 2)."""
    numbers = [v for v in values if isinstance(v, Number) and not isinstance(v, bool)]
    fractional = any(isinstance(v, float) and not float(v).is_integer() for v in numbers)
    return fractional and len(set(numbers)) > max(2, len(values) / 2)


def silhouette(labels: Sequence[Any], dissimilarity: Any) -> float:
    """Silhouette of ``labels`` on a precomputed dissimilarity (NaN for < 2 or N clusters)."""
    d = dissimilarity_matrix(dissimilarity)
    n_labels = len(set(np.asarray(labels).tolist()))
    if not 2 <= n_labels <= d.shape[0] - 1:
        return math.nan
    return float(metrics.silhouette_score(d, labels, metric="precomputed"))


def mds(dissimilarity: Any, n_components: int = 2, random_state: int | None = 0) -> np.ndarray:
    """Points whose distances approximate a dissimilarity (metric MDS, classical-MDS start).

    The classical start is computed here rather than by scikit-learn's ``init="classical_mds"``,
    which takes the square root of every leading eigenvalue: a dissimilarity of lower rank than
    ``n_components`` (members on a line) or a non-Euclidean one has a leading eigenvalue at or
    just below zero, and that start was NaN ("Input contains NaN" from inside ``dynamo
    analyze``). Eigenvalues below zero are read as zero, the axis they would span stays flat.

    Args:
        dissimilarity: ``[N, N]`` (NaN read as the largest finite entry).
        n_components: output axes.
        random_state: seed of the SMACOF iterations.

    Returns:
        ``float64`` ``[N, n_components]``, finite.
    """
    d = dissimilarity_matrix(dissimilarity)
    if d.shape[0] <= n_components or not d.any():
        out = np.zeros((d.shape[0], n_components))  # too few points (or all equal) to place
        if d.shape[0] == 2:
            out[1, 0] = d[0, 1]
        return out
    start = classical_mds(d, n_components)
    points, _ = smacof(d, metric=True, n_components=n_components, init=start, n_init=1,
                       max_iter=300, eps=1e-6, random_state=random_state,
                       normalized_stress=False)
    points = np.asarray(points, dtype=np.float64)
    return points if np.isfinite(points).all() else start


def classical_mds(dissimilarity: np.ndarray, n_components: int = 2) -> np.ndarray:
    """Torgerson's classical scaling of a valid ``[N, N]`` dissimilarity: the double-centred
    squared distances' top eigenvectors scaled by the square roots of their eigenvalues,
    negative eigenvalues (non-Euclidean or lower-rank input) clipped to zero.

    Returns:
        ``float64`` ``[N, n_components]`` (axes beyond the positive eigenvalues are zero).
    """
    b = dissimilarity.astype(np.float64) ** 2
    b -= b.mean(axis=0)
    b -= b.mean(axis=1, keepdims=True)
    b *= -0.5
    w, u = np.linalg.eigh((b + b.T) / 2)
    w, u = w[::-1][:n_components], u[:, ::-1][:, :n_components]
    u = u * np.where(u[np.abs(u).argmax(axis=0), range(u.shape[1])] < 0, -1.0, 1.0)  # sign
    return u * np.sqrt(np.clip(w, 0.0, None))


def dissimilarity_matrix(x: Any) -> np.ndarray:
    """``x`` as a symmetric, non-negative float64 ``[N, N]`` with zero diagonal; NaN entries
    become the largest finite entry (0 when none is finite).

    Raises:
        ValueError: not square, not symmetric, negative or infinite entries.
    """
    d = _array(x)
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] == 0:
        raise ValueError(f"a dissimilarity must be a non-empty square [N, N] matrix, got shape "
                         f"{tuple(d.shape)}")
    finite = d[np.isfinite(d)]
    if np.isinf(d).any() or (finite < 0).any():
        raise ValueError("a dissimilarity must be finite (NaN allowed) and non-negative")
    d = np.where(np.isnan(d), finite.max() if finite.size else 0.0, d)
    if not np.allclose(d, d.T, rtol=1e-6, atol=1e-9):
        raise ValueError("a dissimilarity must be symmetric")
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0.0)
    return d


def _agreement(labels: list[Any], truth: list[Any]) -> dict[str, float]:
    codes = _encode(truth)
    return {"ari": float(metrics.adjusted_rand_score(codes, labels)),
            "nmi": float(metrics.normalized_mutual_info_score(codes, labels))}


def _encode(values: list[Any]) -> list[int]:
    """Integer codes per distinct value (mixed types and None allowed; all NaNs are one)."""
    codes: dict[Hashable, int] = {}
    return [codes.setdefault(_category(v), len(codes)) for v in values]


def _category(value: Any) -> Hashable:
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    return value if isinstance(value, Hashable) else repr(value)


def _points(x: Any) -> np.ndarray:
    points = _array(x)
    if points.ndim != 2 or points.shape[0] == 0 or not np.isfinite(points).all():
        raise ValueError(f"points must be a finite, non-empty [N, d] array, got shape "
                         f"{tuple(points.shape)}")
    return points


def _array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)
