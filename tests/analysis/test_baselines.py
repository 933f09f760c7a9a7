"""DYNAMO beside the similarity baselines: every method, DYNAMO first, errors recorded."""

from __future__ import annotations

import json
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from dynamo_lightning.analysis.baselines import compare_methods, comparison_figure

ENTRY_KEYS = {"labels", "scores", "silhouette", "mds", "dissimilarity", "seconds", "error"}


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return torch.randn(4, 12, 3, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def setup(tiny_population):
    """θ's planted by architecture (the two GRUs together), and the members' metadata."""
    theta = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [0.0, 5.0]])
    return theta, tiny_population.metadata_table()


def test_compare_methods_returns_every_method_dynamo_first(tiny_population, inputs, setup):
    theta, metadata = setup
    result = compare_methods(theta, tiny_population, inputs, metadata,
                             methods=("cka", "procrustes", "weights"))
    json.dumps(result, allow_nan=False)  # plain JSON, NaN written as None
    assert list(result["methods"]) == ["dynamo", "cka", "procrustes", "weights"]
    # every member has task "flipflop": the clusters are counted from "architecture"
    assert result["key"] == "architecture" and result["n_clusters"] == 3
    for entry in result["methods"].values():
        assert set(entry) == ENTRY_KEYS and entry["error"] is None
        assert len(entry["labels"]) == 4 and np.asarray(entry["mds"]).shape == (4, 2)
        assert np.asarray(entry["dissimilarity"], dtype=float).shape == (4, 4)
        assert set(entry["scores"]) >= {"architecture", "seed"} and entry["seconds"] >= 0
    dynamo = result["methods"]["dynamo"]
    assert dynamo["scores"]["architecture"] == {"ari": 1.0, "nmi": 1.0}
    assert dynamo["mds"] == theta.tolist()  # a 2-D map is drawn as it is
    assert result["methods"]["weights"]["dissimilarity"][0][2] is None  # NaN across shapes


def test_missing_package_is_recorded_not_raised(tiny_population, inputs, setup, monkeypatch):
    theta, metadata = setup
    monkeypatch.setitem(sys.modules, "DSA", None)  # import DSA now raises ImportError
    result = compare_methods(theta, tiny_population, inputs, metadata, methods=("cka", "dsa"),
                             key="architecture", n_clusters=2)
    dsa = result["methods"]["dsa"]
    assert "dynamo-lightning[baselines]" in dsa["error"] and dsa["labels"] is None
    assert result["methods"]["cka"]["error"] is None and result["n_clusters"] == 2
    fig = comparison_figure(result, metadata, "architecture")
    try:
        assert len([ax for ax in fig.axes if ax.get_visible()]) == 3
        ari = result["methods"]["dynamo"]["scores"]["architecture"]["ari"]
        assert fig.axes[0].get_title() == f"DYNAMO map: ARI vs architecture = {ari:.2f}"
        assert fig.axes[2].get_title() == "dsa (MDS)"  # the panel says why it is empty
        assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("map axis 1",
                                                                         "map axis 2")
        assert fig.axes[1].get_xlabel() == "MDS 1"
    finally:
        plt.close(fig)


def test_dsa_options_reach_the_method(tiny_population, inputs, setup):
    pytest.importorskip("DSA")
    theta, metadata = setup
    result = compare_methods(theta, tiny_population, inputs, metadata, methods=("dsa",),
                             dsa={"n_delays": 2, "rank": 4})
    assert result["methods"]["dsa"]["error"] is None
    with pytest.raises(ValueError, match="n_delays must be in"):
        compare_methods(theta, tiny_population, inputs, metadata, methods=("dsa",),
                        dsa={"n_delays": 50})


def test_rejects_unknown_methods_and_mismatched_sizes(tiny_population, inputs, setup):
    theta, metadata = setup
    with pytest.raises(ValueError, match="unknown methods \\['cca'\\]"):
        compare_methods(theta, tiny_population, inputs, metadata, methods=("cca",))
    with pytest.raises(ValueError, match="options for methods not run \\['dsa'\\]"):
        compare_methods(theta, tiny_population, inputs, metadata, methods=("cka",), dsa={})
    with pytest.raises(ValueError, match="one row per member"):
        compare_methods(theta[:3], tiny_population, inputs, metadata, methods=())
