"""Population training: grid expansion, per-member independence, and the CLI end to end."""

from __future__ import annotations

import json
import os

import pytest
import torch
from paths import CONF as TEST_CONF

import dynamo_lightning as dl
from dynamo_lightning.cli import main
from dynamo_lightning.population.evaluation import summed_member_loss
from dynamo_lightning.population.grid import expand_grid, parse_task_specs
from dynamo_lightning.population.training import PopulationModule, clip_per_member

CONF = str(TEST_CONF)
FLIPFLOP = [{"name": "flipflop", "config": {"n_bits": 2, "seq_len": 16}}]


def test_grid_expands_every_combination_into_stackable_groups() -> None:
    specs = parse_task_specs([*FLIPFLOP, {"name": "integrator"}])
    groups = expand_grid(specs, ["gru", "lstm"], [8, 16], [0, 1, 2])
    assert len(groups) == 2 * 2 * 2
    ids = [i for g in groups for i in g.ids]
    assert len(ids) == len(set(ids)) == 24
    assert "flipflop-gru-h8-s0" in ids and "integrator-lstm-h16-s2" in ids


def test_each_group_logs_its_validation_metric_under_its_own_name(monkeypatch) -> None:
    """Two configs of one architecture (with and without Dale's law) and two widths are four
    groups of one task; their metrics were logged under one key (val/<task>/<arch>/...)."""
    module = PopulationModule(
        [{"name": "flipflop", "config": {"n_bits": 2, "seq_len": 8}}],
        architectures=["gru", {"name": "ctrnn", "label": "ctrnn_dale",
                               "config": {"dale_ratio": 0.8}}, "ctrnn"],
        hidden_sizes=[4, 6], seeds=[0, 1])
    assert len({g.name for g in module.groups}) == len(module.groups) == 6
    assert "flipflop-ctrnn_dale-h4" in {g.name for g in module.groups}
    logged: dict[str, float] = {}
    monkeypatch.setattr(module, "log", lambda key, value, **_: logged.__setitem__(key, value))
    task = module.tasks["flipflop"]
    batch = {"flipflop": task.sample(3, torch.Generator().manual_seed(0))}
    module.validation_step(batch, 0)
    groups = {key for key in logged if key.startswith("val/") and key.count("/") == 2}
    assert groups == {f"val/{g.name}/{task.metric_name}" for g in module.groups}


@pytest.mark.parametrize(("entry", "message"), [
    ({"config": {}}, "'name'"),
    ({"name": "flipflop", "cfg": {}}, "unknown keys"),
    ({"name": "flipflopp"}, "unknown task 'flipflopp'"),
    ({"name": "flipflop", "config": {"n_bits": 0}}, "n_bits"),
])
def test_bad_task_entries_are_named(entry: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_task_specs([entry])


def test_bad_grids_are_rejected() -> None:
    specs = parse_task_specs(FLIPFLOP)
    with pytest.raises(ValueError, match="feed-forward"):
        expand_grid(specs, ["cnn"], [8], [0])
    with pytest.raises(ValueError, match="duplicates"):
        expand_grid(specs, ["gru"], [8], [0, 0])
    with pytest.raises(KeyError, match="known: "):
        expand_grid(specs, ["gruu"], [8], [0])


def test_stacked_loss_is_the_sum_of_member_losses() -> None:
    task = dl.tasks.get("flipflop", n_bits=2, seq_len=16)
    x, y = task.sample(8, torch.Generator().manual_seed(0))
    stack = dl.architectures.build("gru", num_members=3, input_size=2, output_size=2,
                                   hidden_size=8)
    outputs, _ = stack(x)
    expected = sum(task.loss(outputs[i], y) for i in range(3))
    torch.testing.assert_close(summed_member_loss(task, outputs, y), expected)


def test_per_member_clipping_leaves_other_members_alone() -> None:
    stack = dl.architectures.build("vanilla", num_members=2, input_size=2, output_size=2,
                                   hidden_size=4)
    for p in stack.parameters():
        p.grad = torch.zeros_like(p)
        p.grad[0] = 10.0  # member 0: huge gradient
        p.grad[1] = 1e-3  # member 1: tiny gradient
    before = [p.grad[1].clone() for p in stack.parameters()]
    norms = clip_per_member(stack, 1.0)
    assert norms[0] > 1.0
    total = sum(p.grad[0].pow(2).sum() for p in stack.parameters()).sqrt()
    assert total == pytest.approx(1.0, rel=1e-4)
    for p, b in zip(stack.parameters(), before, strict=True):
        torch.testing.assert_close(p.grad[1], b)


def test_stacked_training_equals_training_members_alone() -> None:
    """One Adam step on the stack == one Adam step on each member by itself."""
    task = dl.tasks.get("flipflop", n_bits=2, seq_len=16)
    x, y = task.sample(8, torch.Generator().manual_seed(0))
    stack = dl.architectures.build("gru", num_members=2, seeds=[3, 4], input_size=2,
                                   output_size=2, hidden_size=8)
    alone = [dl.architectures.build("gru", num_members=1, seeds=[s], input_size=2,
                                    output_size=2, hidden_size=8) for s in (3, 4)]
    for module in [stack, *alone]:
        opt = torch.optim.Adam(module.parameters(), lr=1e-2)
        for _ in range(3):
            opt.zero_grad()
            summed_member_loss(task, module(x)[0], y).backward()
            clip_per_member(module, 0.5)
            opt.step()
    for i, member in enumerate(alone):
        for name, p in member.named_parameters():
            torch.testing.assert_close(getattr(stack, name)[i], p[0], atol=1e-5, rtol=1e-5)


def test_module_rejects_bad_hyperparameters() -> None:
    with pytest.raises(ValueError, match="lr"):
        PopulationModule(tasks=FLIPFLOP, lr=0.0)


def test_population_fit_cli_writes_a_loadable_population(tmp_path) -> None:
    out = tmp_path / "pop"
    main(["population", "fit", "--config", os.path.join(CONF, "population_tiny.yaml"),
          f"--trainer.default_root_dir={tmp_path}", f"--population.path={out}"])
    pop = dl.Population.load(out)
    finals = [m for m in pop if "-step" not in m.id]
    snapshots = [m for m in pop if "-step" in m.id]
    assert len(finals) == 4 and len(snapshots) == 8  # snapshots at steps 0 and 3
    for member in pop:
        meta = member.metadata
        assert meta["task"] == "flipflop" and meta["metric_name"] == "bit_accuracy"
        assert 0.0 <= meta["task_metric"] <= 1.0
        assert {"architecture", "task_config", "seed", "hidden_size", "step"} <= set(meta)
    assert {m.metadata["step"] for m in snapshots} == {0, 3}
    assert {m.metadata["step"] for m in finals} == {6}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema_version"] == 1
    # The step-0 snapshot is the untrained network; the final one has moved.
    w0 = pop["flipflop-gru-h8-s0-step0"].state["weight_hh"]
    w6 = pop["flipflop-gru-h8-s0"].state["weight_hh"]
    assert not torch.equal(w0, w6)
