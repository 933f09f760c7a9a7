"""The map's uses on a CNN population (a tiny fit of the meta-CNN): model averaging beside
the naive weight average, few-shot θ, placing a network, clustering against the baselines
(members of different depths included) and the report, which says fixed points do not
apply and shows the emulation per stage and the accuracy along interpolations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dynamo_lightning import analysis as da
from dynamo_lightning.population import Population


def test_averaging_centroid_beside_members_and_weight_average(tiny_cnn_fit: dict) -> None:
    m, pop = tiny_cnn_fit["module"], Population.load(tiny_cnn_fit["population"])
    rows = da.averaging_table(m, pop, key="task_label", trials=16)
    assert [r["group"] for r in rows] == ["standard", "permuted"]
    for row in rows:
        assert row["task"]["name"] == "digits" and row["metric_name"] == "accuracy"
        assert 0.0 <= row["centroid"] <= 1.0 and len(row["member_metrics"]) == 2
    same_shape = da.weight_average(pop, pop.ids[:2])  # h4-d2, both variants
    outputs, hidden = same_shape.module(torch.rand(3, 8, 8))
    assert outputs.shape == (3, 1, 10) and hidden.shape == (3, 2, 16)
    theta_bar, net = da.average(m, pop.ids[:2])
    assert torch.allclose(theta_bar, m.embeddings()[:2].mean(0))
    assert net(torch.rand(3, 8, 8))[0].shape == (3, 1, 10)


def test_few_shot_theta_and_placing_a_cnn(tiny_cnn_fit: dict) -> None:
    m, pop = tiny_cnn_fit["module"], Population.load(tiny_cnn_fit["population"])
    curve = da.few_shot_curve(m, {"name": "digits", "config": {}}, "cnn", 4, ns=(4,),
                              seeds=(0,), test_trials=16, theta_steps=3, scratch_steps=3)
    assert curve["metric_name"] == "accuracy" and len(curve["theta"]["values"][0]) == 1
    placed = da.place(m, pop[2:3], trials=8, steps=3, key="task_label")
    assert placed.thetas.shape == (1, 2) and placed.groups == ["permuted", "standard"]
    assert placed.correct[0] in (True, False)


def test_clustering_against_baselines_across_depths(tiny_cnn_fit: dict) -> None:
    m, pop = tiny_cnn_fit["module"], Population.load(tiny_cnn_fit["population"])
    x = torch.rand(16, 8, 8)
    result = da.compare_methods(m.embeddings(), pop, x, m.member_metadata,
                                methods=("cka", "procrustes", "weights"), key="task_label")
    assert result["n_clusters"] == 2
    for name in ("dynamo", "cka", "procrustes", "weights"):
        entry = result["methods"][name]
        assert entry["error"] is None and {"task_label", "hidden_size", "n_layers"} <= set(
            entry["scores"]), name
    # depths 2 and 3: whole per-input representations are compared (stages concatenated)
    d = da.similarity(pop, x, method="cka")
    assert d.shape == (4, 4) and bool((d[~torch.eye(4, dtype=torch.bool).numpy()] > 0).all())


def test_report_of_a_cnn_fit(tiny_cnn_fit: dict, tmp_path: Path) -> None:
    m, pop = tiny_cnn_fit["module"], Population.load(tiny_cnn_fit["population"])
    nan = math.nan
    scores = {"stage_hidden_r2": [[nan, 0.5, 0.7], [nan, 0.6, 0.8], [0.1, 0.2, 0.3],
                                  [0.4, 0.5, 0.6]]}
    out = da.write_report(m, pop, tmp_path / "report", scores=scores, trials=8, steps=3,
                          similarity_trials=8, progress=False)
    report = json.loads((out / "report.json").read_text())
    section = report["fixed_points"]
    assert section["applies"] is False and "do not apply" in section["note"]
    assert all(r["meta"] is None for r in section["members"])
    stages = report["emulation"]["stages"]
    assert stages["median_per_stage"] == pytest.approx([0.25, 0.5, 0.65])
    assert stages["median"] == 0.5
    pair = report["interpolation"]["pairs"][0]["result"]
    assert len(pair["task_metric"]) == 3 and pair["counts"] == {}
    assert report["grid"] is None and report["averaging"]["key"] == "task_label"
    html = (out / "report.html").read_text()
    assert "fixed points do not apply" in html and "Hidden R² per stage" in html
