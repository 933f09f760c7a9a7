"""The grid's architecture axis: mapping entries whose option lists are crossed like widths,
their ids and metadata, and the errors raised before any training."""

from __future__ import annotations

from pathlib import Path

import pytest
from paths import CONF

import dynamo_lightning as dl
from dynamo_lightning.cli import main
from dynamo_lightning.population.grid import expand_grid, parse_task_specs
from dynamo_lightning.population.training import PopulationModule

FLIPFLOP = [{"name": "flipflop", "config": {"n_bits": 2, "seq_len": 16}}]
CTRNN = {"name": "ctrnn", "config": {"alpha": [0.1, 0.2], "dale_ratio": [None, 0.8],
                                     "activation": "relu"}}


def test_mapping_entries_cross_their_list_options() -> None:
    groups = expand_grid(parse_task_specs(FLIPFLOP), ["gru", CTRNN], [8], [0, 1])
    assert [g.architecture for g in groups] == ["gru"] + ["ctrnn"] * 4
    assert [(g.config["alpha"], g.config["dale_ratio"]) for g in groups[1:]] == [
        (0.1, None), (0.1, 0.8), (0.2, None), (0.2, 0.8)]
    assert all(g.config["activation"] == "relu" for g in groups[1:])  # a scalar: not crossed
    ids = [i for g in groups for i in g.ids]
    assert len(set(ids)) == len(ids) == 10
    assert ids[:2] == ["flipflop-gru-h8-s0", "flipflop-gru-h8-s1"]  # plain names unchanged
    assert "flipflop-ctrnn-h8-alpha0.2-dale_ratio0.8-s1" in ids
    assert "flipflop-ctrnn-h8-alpha0.1-dale_ratioNone-s0" in ids


def test_labels_let_one_architecture_appear_twice() -> None:
    entries = [{"name": "ctrnn", "label": "rate"},
               {"name": "ctrnn", "label": "current", "config": {"form": "current"}}]
    groups = expand_grid(parse_task_specs(FLIPFLOP), entries, [8], [0])
    assert [g.ids[0] for g in groups] == ["flipflop-rate-h8-s0", "flipflop-current-h8-s0"]
    assert [g.config.get("form") for g in groups] == [None, "current"]
    with pytest.raises(ValueError, match="distinct 'label'"):
        expand_grid(parse_task_specs(FLIPFLOP), [{"name": "ctrnn"}, "ctrnn"], [8], [0])


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "ctrnn", "config": {"alpah": 0.1}},
     r"architectures\[0\]: unknown option\(s\) 'alpah' for architecture 'ctrnn' \(it takes: "),
    ({"name": "ctrnn", "cfg": {}}, "unknown keys"),
    ({"config": {}}, "'name' key"),
    ({"name": "ctrnn", "config": [0.1]}, "config must be a mapping"),
    ({"name": "ctrnn", "config": {"hidden_size": 4}}, "hidden_size come from the grid"),
    ({"name": "ctrnn", "label": "a b"}, "label must be"),
    ({"name": "ctrnn", "config": {"alpha": []}}, "non-empty list"),
    ({"name": "ctrnn", "config": {"activation": ["relu", "a b"]}}, "not a safe file name"),
])
def test_bad_entries_are_refused_before_training(entry: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expand_grid(parse_task_specs(FLIPFLOP), [entry], [8], [0])


def test_ids_that_would_collide_are_refused() -> None:
    """Labels are free text: task "a" × architecture "b-c" and task "a-b" × "c" would both
    name their member a-b-c-h8-s0."""
    specs = parse_task_specs([{"name": "flipflop", "label": "a"},
                              {"name": "flipflop", "label": "a-b"}])
    entries = [{"name": "ctrnn", "label": "b-c"}, {"name": "ctrnn", "label": "c"}]
    with pytest.raises(ValueError, match=r"repeated member ids \['a-b-c-h8-s0'\]"):
        expand_grid(specs, entries, [8], [0])


def test_options_in_both_places_and_unknown_names_are_refused() -> None:
    specs = parse_task_specs(FLIPFLOP)
    with pytest.raises(ValueError, match="in one place"):
        expand_grid(specs, [{"name": "ctrnn", "config": {"alpha": 0.1}}], [8], [0],
                    {"ctrnn": {"alpha": 0.2}})
    with pytest.raises(KeyError, match="known: "):
        expand_grid(specs, [{"name": "ctrnnn"}], [8], [0])
    # A plain name's options (architecture_options) are checked as early.
    with pytest.raises(ValueError, match=r"unknown option.*'alpah'"):
        expand_grid(specs, ["ctrnn"], [8], [0], {"ctrnn": {"alpah": [0.1, 0.2]}})


def test_a_bad_option_value_is_refused_naming_the_members() -> None:
    entry = {"name": "ctrnn", "config": {"dale_ratio": [0.5, 1.5]}}
    with pytest.raises(ValueError, match=r"ctrnn-h8-dale_ratio1.5-s0.*dale_ratio must be"):
        PopulationModule(tasks=FLIPFLOP, architectures=[entry], hidden_sizes=[8], seeds=[0])


def test_population_fit_cli_crosses_ctrnn_options(tmp_path: Path) -> None:
    out = tmp_path / "pop"
    entry = "{name: ctrnn, config: {alpha: [0.1, 0.2], dale_ratio: [null, 0.8]}}"
    assert main(["population", "fit", "--config", str(CONF / "population_tiny.yaml"),
                 f"--trainer.default_root_dir={tmp_path}", f"--population.path={out}",
                 "--population.snapshot_steps=[]", f"--model.architectures=[gru, {entry}]",
                 "--model.seeds=[0]"]) == 0
    pop = dl.Population.load(out)
    ctrnn = [m for m in pop if m.architecture == "ctrnn"]
    assert len(pop) == 5 and len(ctrnn) == 4
    seen = {(m.metadata["alpha"], m.metadata["dale_ratio"]) for m in ctrnn}
    assert seen == {(0.1, None), (0.1, 0.8), (0.2, None), (0.2, 0.8)}
    for m in ctrnn:  # metadata and config record every option, defaults included
        assert m.metadata["form"] == m.config["form"] == "rate"
        assert m.config["dale_ratio"] == m.metadata["dale_ratio"]
