"""Similarity baselines: known structure (permuted copies, identical members, architectures)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from dynamo_lightning.analysis.member_dynamics import member_states
from dynamo_lightning.analysis.reparameterize import permuted_copy
from dynamo_lightning.analysis.similarity import (
    METHODS,
    similarity,
    states_distance,
)
from dynamo_lightning.population import Population

TRAJECTORY_METHODS = ("cka", "procrustes")


@pytest.fixture(scope="module")
def population(tiny_population: Population) -> Population:
    """The tiny population (gru, gru, vanilla, lstm) plus a permuted copy of each GRU."""
    g = torch.Generator().manual_seed(0)
    copies = [permuted_copy(tiny_population[i], torch.randperm(8, generator=g), f"perm-{i}")
              for i in (0, 1)]
    return Population([*tiny_population, *copies])


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return torch.randn(6, 20, 3, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("method", [*TRAJECTORY_METHODS, "weights"])
def test_symmetric_zero_diagonal_float64(population, inputs, method):
    d = similarity(population, inputs, method)
    assert d.shape == (6, 6) and d.dtype == np.float64
    np.testing.assert_array_equal(np.diag(d), 0.0)
    np.testing.assert_allclose(d, d.T, equal_nan=True)


@pytest.mark.parametrize("method", TRAJECTORY_METHODS)
def test_permuted_copy_is_at_zero_distance_and_others_are_not(population, inputs, method):
    d = similarity(population, inputs, method)
    assert d[0, 4] == pytest.approx(0.0, abs=1e-5)
    assert d[1, 5] == pytest.approx(0.0, abs=1e-5)
    off = d[~np.eye(6, dtype=bool)]
    assert np.isfinite(off).all()
    assert d[0, 1] > 0.01 and d[2, 3] > 0.01  # different members, across widths (LSTM: 2H)
    assert d[4, 1] == pytest.approx(d[0, 1], abs=1e-5)


def test_cka_is_bounded_and_matches_a_direct_formula(population, inputs):
    d = similarity(population, inputs, "cka")
    assert (d >= 0).all() and (d <= 1).all()
    hidden = population.trajectories(inputs).hidden
    x, y = (h.reshape(-1, h.shape[-1]).double() for h in (hidden[0], hidden[3]))
    x, y = x - x.mean(0), y - y.mean(0)
    cka = (y.T @ x).norm() ** 2 / ((x.T @ x).norm() * (y.T @ y).norm())
    assert d[0, 3] == pytest.approx(1 - float(cka), abs=1e-10)


def test_procrustes_is_an_angle(population, inputs):
    d = similarity(population, inputs, "procrustes")
    assert (d >= 0).all() and (d <= np.pi / 2 + 1e-12).all()


def test_weights_far_for_permuted_copy_and_nan_across_architectures(population, inputs):
    d = similarity(population, inputs, "weights")
    assert d[0, 4] > 1.0  # same function, different coordinates: weight space cannot tell
    assert np.isnan(d[0, 2]) and np.isnan(d[2, 3]) and np.isnan(d[3, 0])
    assert np.isfinite(d[0, 1]) and d[0, 1] > 0


@pytest.mark.parametrize("method", [*TRAJECTORY_METHODS, "weights"])
def test_identical_members_are_at_zero(tiny_population, inputs, method):
    twin = permuted_copy(tiny_population[0], list(range(8)), "twin")
    d = similarity(Population([tiny_population[0], twin]), inputs, method)
    np.testing.assert_allclose(d, 0.0, atol=1e-6)


def test_rejects_unknown_method_and_stray_options(population, inputs):
    with pytest.raises(ValueError, match=r"unknown similarity method 'ckaa'.*known: cka"):
        similarity(population, inputs, "ckaa")
    with pytest.raises(ValueError, match="takes no options"):
        similarity(population, inputs, "cka", rank=3)
    assert set(METHODS) == {"cka", "procrustes", "weights", "dsa"}


def test_dsa_without_package_says_how_to_install(population, inputs, monkeypatch):
    monkeypatch.setitem(sys.modules, "DSA", None)  # import DSA now raises ImportError
    with pytest.raises(ImportError, match=r"dynamo-lightning\[baselines\]"):
        similarity(population, inputs, "dsa")


def test_dsa_wasserstein_permuted_copy_and_shape(population, inputs):
    pytest.importorskip("DSA")
    d = similarity(population, inputs, "dsa", n_delays=3, rank=6)
    assert d.shape == (6, 6)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    np.testing.assert_allclose(d, d.T)
    assert d[0, 4] == pytest.approx(0.0, abs=1e-3)  # DMD eigenvalues survive a permutation
    assert d[0, 1] > 10 * max(d[0, 4], 1e-4)


def test_dsa_angular_runs_and_checks_options(population, inputs):
    pytest.importorskip("DSA")
    pair = population[:2]
    d = similarity(pair, inputs, "dsa", n_delays=2, rank=4, score_method="angular",
                   iterations=5)
    assert d.shape == (2, 2) and d[0, 1] > 0 and d[0, 1] == d[1, 0]
    with pytest.raises(ValueError, match="n_delays must be in"):
        similarity(pair, inputs, "dsa", n_delays=20)
    with pytest.raises(ValueError, match="score_method"):
        similarity(pair, inputs, "dsa", score_method="euclid")


def test_precomputed_states_give_the_same_distances(population, inputs):
    states = member_states(population, inputs)  # what compare_methods computes once
    assert len(states) == len(population) and states[0].shape[:2] == inputs.shape[:2]
    for method in ("cka", "procrustes"):
        np.testing.assert_allclose(states_distance(states, method),
                                   similarity(population, inputs, method))
    with pytest.raises(ValueError, match="trajectory method"):
        states_distance(states, "weights")
