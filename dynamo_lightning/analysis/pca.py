"""The one PCA of the analysis layer: maps of θ, fixed-point figures, the DSA baseline.

(The data layer's per-member streaming PCA, ``data.fit_projections``, is another thing: it
fits one projection per member from batches, for the training targets.)

Deterministic: the covariance's eigenvectors in float64, ordered by variance, each signed so
that its largest loading is positive (scikit-learn's convention), so a figure does not flip
between runs. Asking for more axes than the data have (``k > H``, or more than its rank) gives
axes that carry no variance: zero columns for ``k > H``, projections ≈ 0 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dynamo_lightning.checks import positive_int

__all__ = ["PCA", "pca"]


@dataclass(frozen=True)
class PCA:
    """A fitted PCA: ``transform(x) = (x − mean) @ axes``.

    Attributes:
        mean: ``[H]`` (float64).
        axes: ``[H, k]`` orthonormal columns, by decreasing variance (float64).
        explained: each axis's fraction of the points' total variance ``[k]`` (0 for padded
            axes).
    """

    mean: Tensor
    axes: Tensor
    explained: list[float]

    def transform(self, points: Tensor) -> Tensor:
        """``points [..., H]`` on the axes, ``[..., k]`` (float64)."""
        return (torch.as_tensor(points).double() - self.mean) @ self.axes


def pca(points: Tensor, k: int) -> PCA:
    """The top-``k`` principal axes of ``points [M, H]`` (M ≥ 1).

    Raises:
        ValueError: ``points`` is not a non-empty 2-D array, or ``k`` is not a positive int.
    """
    k = positive_int("k", k)
    x = torch.as_tensor(points).detach().cpu().double()
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"pca needs points [M, H] (non-empty), got {tuple(x.shape)}")
    mean = x.mean(0)
    centred = x - mean
    values, vectors = torch.linalg.eigh(centred.T @ centred / max(1, x.shape[0] - 1))
    total = float(values.clamp_min(0).sum())
    order = values.argsort(descending=True)[:k]
    values, vectors = values[order].clamp_min(0), vectors[:, order]
    signs = torch.sign(vectors.gather(0, vectors.abs().argmax(0, keepdim=True)))
    vectors = vectors * torch.where(signs == 0, 1.0, signs)
    explained = [float(v) / total if total > 0 else 0.0 for v in values]
    axes = torch.zeros(x.shape[1], k, dtype=torch.float64)
    axes[:, : vectors.shape[1]] = vectors
    return PCA(mean=mean, axes=axes, explained=explained + [0.0] * (k - len(explained)))
