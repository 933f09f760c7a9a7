"""The analysis layer's one PCA: scikit-learn's answer, deterministic signs, padded axes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA as SklearnPCA

from dynamo_lightning.analysis.pca import pca
from dynamo_lightning.analysis.projection import project


def _points(n: int = 40, h: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    scale = torch.linspace(3.0, 0.2, h)
    return torch.randn(n, h, generator=g, dtype=torch.float64) * scale + 1.5


def test_pca_matches_scikit_learn_including_signs() -> None:
    x = _points()
    fit = pca(x, 3)
    reference = SklearnPCA(n_components=3).fit(x.numpy())
    np.testing.assert_allclose(fit.transform(x).numpy(), reference.transform(x.numpy()),
                               atol=1e-9)
    np.testing.assert_allclose(fit.explained, reference.explained_variance_ratio_, atol=1e-12)
    assert (fit.axes.abs().argmax(0) == fit.axes.argmax(0)).all()  # largest loading > 0


def test_more_axes_than_dimensions_are_zero_columns() -> None:
    x = _points(h=2)
    fit = pca(x, 4)
    assert fit.axes.shape == (2, 4) and fit.axes[:, 2:].abs().max() == 0
    assert fit.explained[2:] == [0.0, 0.0] and sum(fit.explained) == pytest.approx(1.0)
    assert project(np.zeros((1, 5)), "pca").tolist() == [[0.0, 0.0]]  # one point: origin


@pytest.mark.parametrize(("points", "k", "match"), [
    (torch.zeros(0, 3), 2, r"pca needs points \[M, H\]"),
    (torch.zeros(3), 2, r"pca needs points \[M, H\]"),
    (torch.zeros(4, 3), 0, "k must be a positive integer"),
])
def test_bad_input_is_named(points: torch.Tensor, k: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pca(points, k)
