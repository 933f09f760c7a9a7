"""Interpolation in θ-space: segments, paths, grids, bifurcations, JSON and the figures."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from dynamo_lightning.analysis import SearchOptions
from dynamo_lightning.analysis import fixed_points as fp
from dynamo_lightning.analysis.interpolation import (
    GridResult,
    bifurcation_alphas,
    fixed_points_at,
    interpolate,
    interpolate_grid,
    interpolate_pairs,
    interpolate_path,
)
from dynamo_lightning.analysis.plots import fixed_point_figure, grid_figure, interpolation_figure
from dynamo_lightning.module import DynamoModule

FLIPFLOP = {"name": "flipflop", "config": {"n_bits": 3, "seq_len": 16}}
IDS = ["gru-a", "gru-b", "lstm-c"]
THETAS = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
FAST = {"search": SearchOptions(trials=32, inits=16, max_iters=300)}
H_STAR = 0.9575040240  # the positive root of tanh(2h) = h


def tiny_module(task_spec: dict | None = FLIPFLOP, embedding_dim: int = 2,
                **meta: Any) -> DynamoModule:
    """An untrained 3-member module (meta hidden size 8) with θ set by hand."""
    torch.manual_seed(0)
    module = DynamoModule(num_members=3, input_size=3, output_size=3, num_components=4,
                          embedding_dim=embedding_dim, member_ids=IDS,
                          member_metadata=[{"architecture": a} for a in ("gru", "gru", "lstm")],
                          meta={"hidden_size": 8, **meta}, task_spec=task_spec)
    if embedding_dim == 2:
        with torch.no_grad():
            module.theta.weight.copy_(THETAS)
    return module


@pytest.fixture(scope="module")
def module() -> DynamoModule:
    return tiny_module()


@pytest.fixture(scope="module")
def segment(module: DynamoModule):
    return interpolate(module, 0, "lstm-c", steps=5, **FAST)


def test_segment_has_steps_points_from_theta_i_to_theta_j(segment) -> None:
    assert segment.alphas.shape == (5,) and segment.thetas.shape == (5, 2)
    assert segment.task_metric.shape == (5,) and segment.metric_name == "bit_accuracy"
    assert segment.endpoints == ("gru-a", "lstm-c")
    torch.testing.assert_close(segment.alphas, torch.linspace(0, 1, 5, dtype=torch.float64))
    assert torch.equal(segment.thetas[0], THETAS[0]) and torch.equal(segment.thetas[-1], THETAS[2])
    torch.testing.assert_close(segment.thetas[2], (THETAS[0] + THETAS[2]) / 2)
    assert set(segment.counts) == set(fp.KINDS)
    assert all(c.shape == (5,) for c in segment.counts.values())
    assert len(segment.fixed_points) == 5
    assert torch.isfinite(segment.task_metric).all()


def test_task_metric_at_the_ends_is_the_meta_model_at_theta_on_the_same_trials(
        module: DynamoModule) -> None:
    result = interpolate(module, "gru-a", "gru-b", steps=3,
                         search=SearchOptions(trials=32, seed=7), fixed_points=False)
    x, y = module.task.sample(32, generator=torch.Generator().manual_seed(7), split="test")
    with torch.no_grad():
        for alpha, theta in ((0, THETAS[0]), (-1, THETAS[1])):
            want = module.task.metric(module.meta_model_at(theta)(x)[0], y)
            assert float(result.task_metric[alpha]) == pytest.approx(want, abs=1e-6)
    assert result.counts == {} and result.fixed_points is None and result.bifurcations == []


def test_counts_agree_with_the_per_alpha_points_which_are_fixed(module: DynamoModule,
                                                                 segment) -> None:
    for s, points in enumerate(segment.fixed_points):
        for kind in fp.KINDS:
            assert int(segment.counts[kind][s]) == points.count(kind)
        assert len(points) >= 1 and (points.group == s).all()
        net = module.meta_model_at(segment.thetas[s])
        with torch.no_grad():
            moved = net.step(points.points, torch.zeros(len(points), 3)) - points.points
        assert float(moved.abs().max()) < 1e-3
        assert torch.isfinite(points.distance_to_data).all()


def test_bifurcation_alphas_are_the_midpoints_where_a_count_changes() -> None:
    alphas = torch.linspace(0, 1, 5)
    counts = {"stable": torch.tensor([1, 1, 2, 2, 2]), "saddle": torch.tensor([0, 0, 1, 1, 0])}
    assert bifurcation_alphas(alphas, counts) == [0.375]  # stable points only, by default
    # the saddle's drop at the last α cannot be confirmed by a second α
    assert bifurcation_alphas(alphas, counts, kinds=None) == [0.375]
    assert bifurcation_alphas(alphas, counts, kinds=("saddle",), persist=1) == [0.375, 0.875]
    assert bifurcation_alphas(alphas, {"stable": torch.ones(5, dtype=torch.long)}) == []
    assert bifurcation_alphas(alphas, {}) == []
    # A swap of kinds at a constant total is still a change of topology.
    swap = {"stable": torch.tensor([2, 2, 1, 1, 1]), "saddle": torch.tensor([0, 0, 1, 1, 1])}
    assert bifurcation_alphas([0.0, 0.1, 0.2, 0.6, 1.0], swap, kinds=None) == [
        pytest.approx(0.15)]
    with pytest.raises(ValueError, match=r"counts must be \[5\]"):
        bifurcation_alphas(alphas, {"stable": torch.ones(4)})


def test_saddle_node_bifurcations_of_a_one_unit_meta_model_are_found() -> None:
    """h' = tanh(2h + θ₁ + 2.5 Σx): three fixed points for |θ₁| < 0.533, one beyond."""
    module = DynamoModule(num_members=2, input_size=3, output_size=3, num_components=1,
                          member_ids=["lo", "hi"], task_spec=FLIPFLOP,
                          meta={"hidden_size": 1, "cell": "vanilla"})
    rnn = module.meta.conditioning.rnn
    with torch.no_grad():
        module.theta.weight.copy_(torch.tensor([[-1.2, 0.0], [1.2, 0.0]]))
        rnn.weight_ih_l0.copy_(torch.tensor([[2.5, 2.5, 2.5, 1.0, 0.0]]))
        rnn.weight_hh_l0.fill_(2.0)
        for p in (rnn.bias_ih_l0, rnn.bias_hh_l0, module.meta.initial.weight,
                  module.meta.initial.bias):
            p.zero_()
    result = interpolate(module, "lo", "hi", steps=7,  # θ₁ = -1.2, -0.8, ..., 1.2
                         search=SearchOptions(trials=32, inits=32, max_iters=500))
    assert result.counts["stable"].tolist() == [1, 1, 2, 2, 2, 1, 1]
    assert result.counts["unstable"].tolist() == [0, 0, 1, 1, 1, 0, 0]
    assert result.bifurcations == [pytest.approx(0.25), pytest.approx(0.75)]
    middle = sorted(result.fixed_points[3].points.flatten().tolist())
    assert middle == [pytest.approx(-H_STAR, abs=1e-4), pytest.approx(0, abs=1e-4),
                      pytest.approx(H_STAR, abs=1e-4)]


def test_interpolate_path_through_three_points_uses_arc_length(module: DynamoModule,
                                                                segment) -> None:
    path = interpolate_path(module, THETAS, **FAST)
    torch.testing.assert_close(path.alphas, torch.tensor([0, 2 / 3, 1], dtype=torch.float64))
    assert torch.equal(path.thetas, THETAS) and path.endpoints is None
    assert len(path.fixed_points) == 3 and all(c.shape == (3,) for c in path.counts.values())
    # Same seed, same trials: θ_0's metric is the segment's at α = 0.
    assert float(path.task_metric[0]) == pytest.approx(float(segment.task_metric[0]), abs=1e-6)
    given = interpolate_path(module, THETAS[:2], alphas=torch.tensor([0.0, 1.0]),
                             fixed_points=False, search=SearchOptions(trials=4))
    assert given.alphas.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match=r"alphas must be \[2\]"):
        interpolate_path(module, THETAS[:2], alphas=torch.zeros(3), fixed_points=False)
    with pytest.raises(ValueError, match=r"thetas must be \[S>=1, 2\]"):
        interpolate_path(module, torch.zeros(3, 5))


def test_pairs_share_one_evaluation_and_match_single_segments(module: DynamoModule) -> None:
    search = SearchOptions(trials=16)
    both = interpolate_pairs(module, [(0, 1), ("gru-b", "lstm-c")], steps=3, search=search,
                             fixed_points=False)
    single = interpolate(module, 1, 2, steps=3, search=search, fixed_points=False)
    assert [r.endpoints for r in both] == [("gru-a", "gru-b"), ("gru-b", "lstm-c")]
    torch.testing.assert_close(both[1].task_metric, single.task_metric)
    torch.testing.assert_close(both[1].thetas, single.thetas)


def test_grid_covers_the_map_with_a_margin(module: DynamoModule) -> None:
    grid = interpolate_grid(module, resolution=3, margin=0.1,
                            search=SearchOptions(trials=8, inits=4, max_iters=100))
    assert grid.theta_grid.shape == (3, 3, 2) and grid.task_metric.shape == (3, 3)
    assert {k: tuple(v.shape) for k, v in grid.counts.items()} == {k: (3, 3) for k in fp.KINDS}
    torch.testing.assert_close(grid.theta_grid[0, 0], torch.tensor([-1.2, -0.1]))
    torch.testing.assert_close(grid.theta_grid[2, 2], torch.tensor([1.2, 1.1]))
    torch.testing.assert_close(grid.theta_grid[0, 2], torch.tensor([1.2, -0.1]))  # row = θ₂
    assert int(sum(v.sum() for v in grid.counts.values())) >= 9  # a point at every θ
    json.dumps(grid.to_dict(), allow_nan=False)
    assert grid.task_metrics == {}
    fig = grid_figure(grid, THETAS)
    metric_ax, count_ax = fig.axes[0], fig.axes[1]  # then their two colorbars
    assert len(fig.axes) == 4 and count_ax.get_title() == "stable fixed points"
    shown = count_ax.images[0].get_array()
    assert np.array_equal(np.asarray(shown), grid.counts["stable"].numpy())
    assert [t.get_text() for t in count_ax.texts] == [str(int(n)) for n in
                                                      grid.counts["stable"].flatten()]
    assert len(metric_ax.collections) == 1  # the members, on every panel
    plt.close(fig)
    with pytest.raises(ValueError, match="unknown kind"):
        grid_figure(grid, kind="stabel")


def test_grid_figure_draws_each_sub_task_and_clips_very_negative_r2() -> None:
    grid = GridResult(theta_grid=torch.stack(torch.meshgrid(
        torch.linspace(0, 1, 3), torch.linspace(0, 1, 3), indexing="xy"), dim=-1),
        task_metric=torch.zeros(3, 3), counts={"stable": torch.ones(3, 3, dtype=torch.long)},
        task_metrics={"flipflop:bit_accuracy": torch.full((3, 3), 0.9),
                      "integrator:r2": torch.linspace(-9, 0.9, 9).reshape(3, 3)})
    fig = grid_figure(grid)
    titles = [ax.get_title() for ax in fig.axes[:3]]  # the colorbars come after
    assert titles == ["flipflop:bit_accuracy", "integrator:r2", "stable fixed points"]
    r2 = next(ax for ax in fig.axes if ax.get_title() == "integrator:r2")
    assert r2.images[0].get_clim() == (-1.0, pytest.approx(0.9))
    flat = next(ax for ax in fig.axes if ax.get_title() == "flipflop:bit_accuracy")
    assert flat.images[0].get_clim() == pytest.approx((0.85, 0.9))  # a 5-point range at least
    plt.close(fig)


def test_grid_needs_a_two_dimensional_map() -> None:
    with pytest.raises(ValueError, match=r"2-D map .*d = 3"):
        interpolate_grid(tiny_module(embedding_dim=3), resolution=3)
    with pytest.raises(ValueError, match="resolution"):
        interpolate_grid(tiny_module(), resolution=1)


def test_to_dict_is_json_and_nan_free_without_a_task(segment) -> None:
    data = json.loads(json.dumps(segment.to_dict(), allow_nan=False))
    assert data["endpoints"] == ["gru-a", "lstm-c"] and len(data["alphas"]) == 5
    assert data["counts"]["stable"] == segment.counts["stable"].tolist()
    assert len(data["fixed_points"]) == 5
    free = interpolate(tiny_module(task_spec=None), 0, 1, steps=3,  # free run on x = 0
                       search=SearchOptions(inits=8, max_iters=200))
    assert free.metric_name == "" and torch.isnan(free.task_metric).all()
    text = json.dumps(free.to_dict(), allow_nan=False)
    assert json.loads(text)["task_metric"] == [None, None, None]


def test_a_mixture_task_is_scored_with_its_task_ids() -> None:
    spec = {"name": "mixture", "config": {"tasks": [
        FLIPFLOP, {"name": "flipflop", "config": {"n_bits": 3, "seq_len": 16,
                                                  "pulse_prob": 0.2}}]}}
    module = tiny_module(task_spec=spec)
    result = interpolate(module, 0, 1, steps=2, search=SearchOptions(trials=24),
                         fixed_points=False)
    task = module.task
    x, y, ids = task.sample_with_ids(24, generator=torch.Generator().manual_seed(0),
                                     split="test")
    with torch.no_grad():
        want = task.metric(module.meta_model_at(THETAS[0])(x)[0], y, task_ids=ids)
    assert not math.isnan(want)
    assert float(result.task_metric[0]) == pytest.approx(want, abs=1e-6)
    # each sub-task on its own trials, keyed by its (indexed, since both are flipflop) label
    assert list(result.task_metrics) == ["flipflop0:bit_accuracy", "flipflop1:bit_accuracy"]
    with torch.no_grad():
        outputs = module.meta_model_at(THETAS[1])(x)[0]
    for j, key in enumerate(result.task_metrics):
        own = task.tasks[j].metric(outputs[ids == j], y[ids == j])
        assert float(result.task_metrics[key][1]) == pytest.approx(own, abs=1e-6)
    mean = (result.task_metrics["flipflop0:bit_accuracy"]
            + result.task_metrics["flipflop1:bit_accuracy"]) / 2
    torch.testing.assert_close(result.task_metric, mean)
    assert json.loads(json.dumps(result.to_dict()))["task_metrics"].keys() == {
        "flipflop0:bit_accuracy", "flipflop1:bit_accuracy"}
    fig = interpolation_figure(result)
    top = fig.axes[0]
    assert [line.get_label() for line in top.get_lines()] == list(result.task_metrics)
    plt.close(fig)


def test_a_single_task_has_no_per_task_metrics(segment) -> None:
    assert segment.task_metrics == {} and segment.to_dict()["task_metrics"] == {}


def test_slow_points_are_reported_with_slow_tol() -> None:
    """h' = tanh(h): a marginal point at 0 with a slow neighbourhood (q ≈ h⁶/18)."""
    module = DynamoModule(num_members=2, input_size=3, output_size=3, num_components=1,
                          member_ids=["a", "b"], task_spec=FLIPFLOP,
                          meta={"hidden_size": 1, "cell": "vanilla"})
    rnn = module.meta.conditioning.rnn
    with torch.no_grad():
        module.theta.weight.zero_()
        rnn.weight_ih_l0.copy_(torch.tensor([[2.5, 2.5, 2.5, 1.0, 0.0]]))
        rnn.weight_hh_l0.fill_(1.0)
        for p in (rnn.bias_ih_l0, rnn.bias_hh_l0, module.meta.initial.weight,
                  module.meta.initial.bias):
            p.zero_()
    search = SearchOptions(trials=16, inits=32, max_iters=50)
    plain = interpolate(module, "a", "b", steps=2, search=search)
    slow = interpolate(module, "a", "b", steps=2, search=search.replace(slow_tol=1e-2))
    assert plain.counts["slow"].sum() == 0
    assert (slow.counts["slow"] >= 1).all()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"i": "nope"}, r"unknown member 'nope' \(known ids: gru-a, gru-b, lstm-c"),
    ({"i": 3}, "member index 3 out of range for 3 members"),
    ({"steps": 1}, "steps must be an integer >= 2, got 1"),
    ({"x_const": torch.zeros(2)}, r"x_const must be \[3\]"),
    ({"x_const": torch.tensor([0.0, float("nan"), 0.0])}, "x_const must be finite"),
    ({"x_const": torch.tensor([0.0, float("nan"), 0.0]), "fixed_points": False},
     "x_const must be finite"),
])
def test_bad_arguments_are_named(module: DynamoModule, kwargs: dict, match: str) -> None:
    args = {"i": 0, "j": 1, "steps": 2, "fixed_points": True,
            "search": SearchOptions(trials=4), **kwargs}
    with pytest.raises(ValueError, match=match):
        interpolate(module, args.pop("i"), args.pop("j"), **args)


def test_figures_draw_kinds_panels_and_bifurcations(module: DynamoModule, segment) -> None:
    plt.close("all")
    points, states = fixed_points_at(module, THETAS,
                                     search=SearchOptions(trials=8, inits=8, max_iters=200))
    assert states.shape == (3, 8, 16, 8) and points.num_groups == 3
    fig = fixed_point_figure(list(states), points, titles=IDS)
    assert len(fig.axes) == 3 and fig.axes[0].get_title().startswith("gru-a")
    assert len(fig.axes[0].lines) == 8  # the trajectories, thin and grey
    plt.close(fig)
    fig3d = fixed_point_figure(list(states), points, titles=IDS, dims=3)
    assert fig3d.axes[0].name == "3d"
    plt.close(fig3d)
    with pytest.raises(ValueError, match="3 groups of fps"):
        fixed_point_figure(states[0], points)
    marked = replace(segment, bifurcations=[0.375])  # a vertical line on both panels
    fig = interpolation_figure(marked)
    top, bottom = fig.axes
    assert "gru-a" in fig._suptitle.get_text() and "lstm-c" in fig._suptitle.get_text()
    assert len(top.lines) == 2 and top.lines[1].get_xdata()[0] == 0.375
    assert {t.get_text() for t in bottom.get_legend().get_texts()} >= {"stable"}
    plt.close(fig)
    metric = torch.full_like(segment.alphas, 0.998, dtype=torch.float64)
    metric[0], metric[1] = 0.9978, 0.9981
    flat = replace(segment, task_metric=metric)
    fig = interpolation_figure(flat)  # 3e-4 apart: drawn on at least a 5-point range
    low, high = fig.axes[0].get_ylim()
    assert high - low >= 0.05 - 1e-9 and low < 0.9978 and high > 0.9981
    plt.close(fig)
    assert plt.get_fignums() == []


def test_a_flickering_count_is_no_bifurcation() -> None:
    alphas = torch.linspace(0, 1, 7, dtype=torch.float64)
    flicker = {"stable": torch.tensor([8, 7, 8, 8, 8, 8, 8])}
    assert bifurcation_alphas(alphas, flicker) == []
    assert bifurcation_alphas(alphas, flicker, persist=1) == [0.0833, 0.25]
    settled = {"stable": torch.tensor([8, 8, 7, 7, 7, 1, 1])}
    assert bifurcation_alphas(alphas, settled) == [0.25, 0.75]
    assert bifurcation_alphas(alphas, {"stable": torch.tensor([8, 8, 8, 8, 8, 8, 7])}) == []
