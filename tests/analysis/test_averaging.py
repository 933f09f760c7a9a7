"""Model averaging: the centroid network, the naive weight average, the averaging table, and
the README example."""

from __future__ import annotations

import json

import pytest
import torch

from dynamo_lightning.analysis.averaging import (
    average,
    averaging_table,
    stacked_member_metrics,
    weight_average,
)
from dynamo_lightning.analysis.theta_evaluation import draw_trials, network_metric
from dynamo_lightning.data import build_input_source
from dynamo_lightning.module import DynamoModule
from dynamo_lightning.population import Population, architectures
from dynamo_lightning.tasks import task_spec_of


def test_average_is_the_centroid_and_the_network_there(tiny_fit: dict) -> None:
    m = tiny_fit["module"]
    ids = ["gru-s0", "vanilla-s2", "lstm-s3"]
    theta_bar, net = average(m, ids)
    rows = [m.member_ids.index(i) for i in ids]
    torch.testing.assert_close(theta_bar, m.embeddings()[rows].mean(0))
    x = torch.randn(3, 5, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, expected = net(x), m.meta_model_at(theta_bar)(x)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize(("ids", "match"), [
    ([], "empty"), ("gru-s0", "list of ids"),
    (["gru-s0", "nope"], r"unknown member ids \['nope'\]"),
    (["gru-s0", "gru-s0"], "repeats"),
])
def test_average_errors(tiny_fit: dict, ids: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        average(tiny_fit["module"], ids)  # type: ignore[arg-type]


def test_weight_average_of_identical_members_is_that_member() -> None:
    stack = architectures.build("gru", num_members=2, seeds=[7, 7], input_size=3, output_size=3,
                                hidden_size=8)
    pop = Population.from_stack("gru", stack, ["a", "b"], [{"task": "flipflop", "seed": 7}] * 2)
    merged = weight_average(pop, ["a", "b"])
    assert merged.architecture == "gru" and merged.config == pop["a"].config
    assert merged.metadata["averaged_members"] == ["a", "b"]
    assert merged.metadata["task"] == "flipflop" and "seed" not in merged.metadata
    for name, tensor in pop["a"].state.items():
        torch.testing.assert_close(merged.state[name], tensor)


def test_weight_average_is_the_mean_and_refuses_mixed_architectures(
        tiny_population: Population) -> None:
    merged = weight_average(tiny_population, ["gru-s0", "gru-s1"])
    for name, tensor in merged.state.items():
        expected = (tiny_population["gru-s0"].state[name]
                    + tiny_population["gru-s1"].state[name]) / 2
        torch.testing.assert_close(tensor, expected)
    with pytest.raises(ValueError, match=r"gru .*gru-s0.*vanilla .*vanilla-s2"):
        weight_average(tiny_population, ["gru-s0", "vanilla-s2"])


ROW_KEYS = {"key", "group", "members", "task", "metric_name", "higher_is_better",
            "member_metrics", "members_mean", "centroid", "theta_bar", "ratio",
            "weight_average", "weight_average_members"}


def test_averaging_table_by_architecture(tiny_fit: dict, tiny_population: Population) -> None:
    m = tiny_fit["module"]
    rows = averaging_table(m, tiny_population, key="architecture", trials=8)
    assert [r["group"] for r in rows] == ["gru"]  # the only architecture with 2 members
    row = rows[0]
    assert set(row) == ROW_KEYS
    assert row["members"] == ["gru-s0", "gru-s1"] and row["metric_name"] == "bit_accuracy"
    assert row["task"]["name"] == "flipflop"
    assert row["members_mean"] == pytest.approx(sum(row["member_metrics"]) / 2)
    assert row["ratio"] == pytest.approx(row["centroid"] / row["members_mean"])
    assert row["theta_bar"] == pytest.approx(average(m, row["members"])[0].tolist())
    assert set(row["weight_average"]) == {"gru"}
    assert row["weight_average_members"] == {"gru": ["gru-s0", "gru-s1"]}
    json.dumps(rows, allow_nan=False)  # plain JSON


def test_averaging_table_by_task_keeps_only_repeated_architectures(
        tiny_fit: dict, tiny_population: Population) -> None:
    rows = averaging_table(tiny_fit["module"], tiny_population, key="task", trials=8)
    assert len(rows) == 1 and rows[0]["members"] == tiny_population.ids
    assert list(rows[0]["weight_average"]) == ["gru"]


def test_averaging_table_scores_each_group_of_a_mixture_on_its_own_task() -> None:
    parts = []
    specs = {"flipflop": {"n_bits": 3, "seq_len": 8}, "integrator": {"n_channels": 3,
                                                                     "seq_len": 8}}
    for n, (name, config) in enumerate(specs.items()):
        stack = architectures.build("gru", num_members=2, seeds=[n, n + 2], input_size=3,
                                    output_size=3, hidden_size=4)
        meta = [{"task": name, "task_config": config}] * 2
        parts.append(Population.from_stack("gru", stack, [f"{name}-{k}" for k in "ab"], meta))
    pop = Population.concat(parts)
    m = DynamoModule(num_members=4, input_size=3, output_size=3, num_components=2,
                     meta={"cell": "gru", "hidden_size": 6}, member_ids=pop.ids,
                     member_metadata=[x.metadata for x in pop],
                     task_spec=task_spec_of(build_input_source(pop)))
    rows = averaging_table(m, pop, key="task", trials=8)
    assert [(r["group"], r["task"]["name"], r["metric_name"]) for r in rows] == [
        ("flipflop", "flipflop", "bit_accuracy"), ("integrator", "integrator", "r2")]
    assert rows[1]["task"]["config"]["seq_len"] == 8
    for row in rows:  # an untrained integrator's R² can be <= 0: then no ratio
        mean = row["members_mean"]
        assert (row["ratio"] is None) == (mean is None or mean <= 0)


def test_averaging_table_needs_the_modules_members(tiny_fit: dict,
                                                   tiny_population: Population) -> None:
    with pytest.raises(ValueError, match="not in the population"):
        averaging_table(tiny_fit["module"], tiny_population[:2])


def test_stacked_member_metrics_equal_member_by_member(tiny_population: Population) -> None:
    task = build_input_source(tiny_population, None)
    x, y, ids = draw_trials(task, 16, torch.Generator().manual_seed(0))
    order = list(reversed(tiny_population.ids))  # any order, across the stacked groups
    want = [network_metric(task, tiny_population[i].module, x, y, ids) for i in order]
    assert stacked_member_metrics(task, tiny_population, order, x, y, ids) == pytest.approx(
        want, rel=1e-5, abs=1e-6)
