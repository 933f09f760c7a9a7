"""Clustering of points and dissimilarities, scores against metadata, MDS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics

from dynamo_lightning.analysis.clustering import (
    classical_mds,
    cluster,
    cluster_scores,
    mds,
    scorable_keys,
)

TRUTH = np.repeat([0, 1, 2], 5)


@pytest.fixture
def points() -> np.ndarray:
    """Three tight, far-apart clusters of 5 points in 3-d, in shuffled-looking order."""
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0]], dtype=float)
    return centres[TRUTH] + 0.1 * rng.standard_normal((15, 3))


def block_dissimilarity() -> np.ndarray:
    """0.1 within a block, 1 between blocks, zero diagonal."""
    d = np.where(TRUTH[:, None] == TRUTH[None], 0.1, 1.0)
    np.fill_diagonal(d, 0.0)
    return d


@pytest.mark.parametrize("method", ["agglomerative", "kmeans"])
def test_recovers_planted_clusters_on_points(points, method):
    labels = cluster(torch.as_tensor(points), 3, method=method)
    assert labels.dtype.kind == "i" and labels.shape == (15,)
    assert metrics.adjusted_rand_score(TRUTH, labels) == 1.0


def test_recovers_planted_blocks_of_a_dissimilarity():
    labels = cluster(block_dissimilarity(), 3, precomputed=True)
    assert metrics.adjusted_rand_score(TRUTH, labels) == 1.0


def test_nan_entries_read_as_the_largest_dissimilarity():
    d = block_dissimilarity()
    d[np.ix_(TRUTH == 1, TRUTH == 2)] = np.nan  # as "weights" across architectures
    d[np.ix_(TRUTH == 2, TRUTH == 1)] = np.nan
    labels = cluster(d, 3, precomputed=True)
    assert metrics.adjusted_rand_score(TRUTH, labels) == 1.0
    assert np.isfinite(cluster_scores(labels, TRUTH, d)["silhouette"])


def test_rejects_bad_calls(points):
    with pytest.raises(ValueError, match="kmeans needs points"):
        cluster(block_dissimilarity(), 3, method="kmeans", precomputed=True)
    with pytest.raises(ValueError, match="unknown clustering method 'ward'"):
        cluster(points, 3, method="ward")
    with pytest.raises(ValueError, match=r"n_clusters must be an integer in \[1, 15\]"):
        cluster(points, 16)
    with pytest.raises(ValueError, match="symmetric"):
        cluster(np.triu(block_dissimilarity()), 3, precomputed=True)


def test_scores_agree_with_sklearn_on_a_hand_case():
    labels = [0, 0, 1, 1, 1, 2]
    truth = ["a", "a", "a", "b", "b", "b"]
    d = np.abs(np.arange(6.0)[:, None] - np.arange(6.0)[None])
    scores = cluster_scores(labels, truth, dissimilarity=d)
    assert scores["ari"] == pytest.approx(metrics.adjusted_rand_score(truth, labels))
    assert scores["nmi"] == pytest.approx(metrics.normalized_mutual_info_score(truth, labels))
    assert scores["silhouette"] == pytest.approx(
        metrics.silhouette_score(d, labels, metric="precomputed"))
    assert set(cluster_scores(labels, truth)) == {"ari", "nmi"}


def test_scores_every_scalar_metadata_key_with_two_values():
    metadata = [{"task": t, "architecture": a, "seed": s, "n": 3, "config": {"x": 1}}
                for t, a, s in zip("aabb", ["gru", "lstm"] * 2, [0, 1, 2, 3], strict=True)]
    assert scorable_keys(metadata) == ["task", "architecture", "seed"]
    scores = cluster_scores([0, 0, 1, 1], metadata, dissimilarity=np.ones((4, 4)) - np.eye(4))
    assert scores["task"] == {"ari": 1.0, "nmi": 1.0}
    assert scores["architecture"]["ari"] < 0.5
    assert set(scores) == {"task", "architecture", "seed", "silhouette"}


def test_continuous_keys_are_not_scored_as_categories():
    """A task metric is distinct per member: as categories it gave ARI 0 everywhere."""
    metadata = [{"task": t, "task_metric": m, "dale_ratio": d, "lr": 0.5}
                for t, m, d in zip("aabbcc", [0.91, 0.93, 0.72, 0.75, 0.88, 0.87],
                                   [None, 0.8] * 3, strict=True)]
    assert scorable_keys(metadata) == ["task", "dale_ratio"]  # a fraction of two values stays


def test_silhouette_is_nan_for_a_single_cluster():
    assert np.isnan(cluster_scores([0, 0, 0], [1, 2, 3], np.ones((3, 3)) - np.eye(3))
                    ["silhouette"])


def test_mds_preserves_euclidean_distances(points):
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    xy = mds(d[:6, :6], n_components=3)
    assert xy.shape == (6, 3)
    got = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.testing.assert_allclose(got, d[:6, :6], atol=1e-3 * d.max())
    assert mds(np.zeros((4, 4))).shape == (4, 2)


# Members on a line: the double-centred matrix has one positive eigenvalue and the next at
# rounding level, for these two just below zero (on the 2-core CPU), where scikit-learn's
# classical start (MDS(init="classical_mds")) took its square root and `dynamo analyze` died
# on "Input contains NaN".
COLLINEAR = ([115.57473130478832, -18.593529948570872, 417.3953628520221, 392.8675938453268,
              -275.91995374368184, -326.0505592760733],
             [-0.07057771434050622, 0.5310753143650854, -0.948001206246814])


@pytest.mark.parametrize("x", [*COLLINEAR, [0.0, 1.0, 2.0, 3.0, 4.5, 4.5], [3.0, -1.0, 2.0]])
def test_mds_of_collinear_members_is_finite_and_keeps_distances(x):
    x = np.asarray(x)
    d = np.abs(x[:, None] - x[None])
    xy = mds(d)
    assert np.isfinite(xy).all()
    got = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.testing.assert_allclose(got, d, atol=1e-3 * d.max())


def test_classical_mds_reads_negative_eigenvalues_as_flat_axes():
    # A non-Euclidean dissimilarity (the triangle inequality fails): its double-centred
    # matrix has a negative eigenvalue, and asking for more axes than positive ones is fine.
    d = np.array([[0.0, 2.0, 2.0], [2.0, 0.0, 5.0], [2.0, 5.0, 0.0]])
    xy = classical_mds(d, n_components=3)
    assert xy.shape == (3, 3) and np.isfinite(xy).all()
    np.testing.assert_allclose(xy[:, 2], 0.0, atol=1e-12)  # the negative eigenvalue's axis
    assert np.isfinite(mds(d)).all()
