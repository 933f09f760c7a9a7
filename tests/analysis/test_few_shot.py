"""Few-shot θ: ``fit_embedding(targets=..., task=...)`` on single-task and mixture modules, and
``few_shot_curve`` / ``few_shot_figure``."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pytest
import torch

import dynamo_lightning as dl
from dynamo_lightning.analysis.few_shot import few_shot_curve, few_shot_figure
from dynamo_lightning.data import build_input_source
from dynamo_lightning.meta.embedding_fit import map_grid
from dynamo_lightning.module import DynamoModule
from dynamo_lightning.population import Population, architectures
from dynamo_lightning.tasks import task_spec_of

SEQ = 12
SPECS = {"flipflop": {"n_bits": 3, "seq_len": SEQ}, "integrator": {"n_channels": 3, "seq_len": SEQ}}


def mixture_population() -> Population:
    """Two untrained GRUs per task: 3-bit flip-flop and 3-channel integrator (3 in / 3 out)."""
    parts = []
    for n, (name, config) in enumerate(SPECS.items()):
        seeds = [2 * n, 2 * n + 1]
        stack = architectures.build("gru", num_members=2, seeds=seeds, input_size=3,
                                    output_size=3, hidden_size=4)
        meta = [{"task": name, "task_config": config, "seed": s, "hidden_size": 4}
                for s in seeds]
        parts.append(Population.from_stack("gru", stack, [f"{name}-s{s}" for s in seeds], meta))
    return Population.concat(parts)


@pytest.fixture(scope="module")
def mixture_module() -> DynamoModule:
    """An untrained DynamoModule whose input task is the mixture population's mixture."""
    population = mixture_population()
    source = build_input_source(population)
    torch.manual_seed(0)
    return DynamoModule(num_members=len(population), input_size=3, output_size=3,
                        num_components=2, embedding_dim=2,
                        meta={"cell": "gru", "hidden_size": 6}, member_ids=population.ids,
                        member_metadata=[m.metadata for m in population],
                        task_spec=task_spec_of(source))


def integrator_loss(module: DynamoModule, theta: torch.Tensor, x: torch.Tensor,
                    y: torch.Tensor) -> float:
    task = dl.tasks.get("integrator", **SPECS["integrator"])
    with torch.no_grad():
        return float(task.loss(module.meta_model_at(theta)(x)[0], y))


def test_mixture_module_without_task_lists_the_sub_tasks(mixture_module: DynamoModule) -> None:
    x, y = dl.tasks.get("integrator", **SPECS["integrator"]).sample(4)
    with pytest.raises(ValueError, match=r"mixture of 'flipflop' .*'integrator'.*pass task="):
        mixture_module.fit_embedding(x, targets=y)


@pytest.mark.parametrize("task", ["integrator", "instance",
                                  {"name": "integrator", "config": SPECS["integrator"]}])
def test_mixture_module_fits_theta_to_the_named_tasks_labels(
        mixture_module: DynamoModule, task: Any) -> None:
    integrator = dl.tasks.get("integrator", **SPECS["integrator"])
    task = integrator if task == "instance" else task
    x, y = integrator.sample(8, generator=torch.Generator().manual_seed(0))
    fit = mixture_module.fit_embedding(x, targets=y, task=task, steps=20, return_details=True)
    assert fit.theta.shape == (2,)
    table = mixture_module.embeddings()  # the candidate starts: members, origin, map grid
    start = torch.cat([table, torch.zeros(1, 2), map_grid(table)])[fit.init_index]
    # θ moved to lower the integrator's own loss (what MixtureTask.loss could not score).
    assert integrator_loss(mixture_module, fit.theta, x, y) < integrator_loss(
        mixture_module, start, x, y)
    assert all(p.requires_grad for p in mixture_module.meta.parameters())


def test_named_sub_tasks_use_their_own_loss(mixture_module: DynamoModule) -> None:
    flipflop = dl.tasks.get("flipflop", **SPECS["flipflop"])
    x, y = flipflop.sample(8, generator=torch.Generator().manual_seed(1))
    by_label = mixture_module.fit_embedding(x, targets=y, task="flipflop", steps=5)
    by_task = mixture_module.fit_embedding(x, targets=y, task=flipflop, steps=5)
    torch.testing.assert_close(by_label, by_task)


@pytest.mark.parametrize(("task", "match"), [
    ("sine", r"no task is called that; this module's tasks are 'flipflop'.*'integrator'"),
    ({"name": "integrator", "config": {"n_channels": 2}}, r"input/output sizes \(2, 2\)"),
    ({"name": "mixture", "config": {"tasks": [{"name": "flipflop", "config": SPECS["flipflop"]},
                                              {"name": "integrator",
                                               "config": SPECS["integrator"]}]}},
     "not a mixture"),
    (3, "task must be a Task"),
])
def test_bad_task_is_named(mixture_module: DynamoModule, task: Any, match: str) -> None:
    x, y = dl.tasks.get("integrator", **SPECS["integrator"]).sample(2)
    with pytest.raises(ValueError, match=match):
        mixture_module.fit_embedding(x, targets=y, task=task, steps=1)


def test_task_without_targets_is_refused(mixture_module: DynamoModule) -> None:
    x, y = dl.tasks.get("integrator", **SPECS["integrator"]).sample(2)
    with pytest.raises(ValueError, match="pass targets too"):
        mixture_module.fit_embedding(x, outputs=y, task="integrator", steps=1)


def test_single_task_module_defaults_to_its_task(tiny_fit: dict) -> None:
    module = tiny_fit["module"]
    flipflop = dl.tasks.get("flipflop", n_bits=3, seq_len=SEQ)
    x, y = flipflop.sample(4, generator=torch.Generator().manual_seed(2))
    default = module.fit_embedding(x, targets=y, steps=5)
    named = module.fit_embedding(x, targets=y, task="flipflop", steps=5)
    torch.testing.assert_close(default, named)
    with pytest.raises(ValueError, match="module's task is 'flipflop'"):
        module.fit_embedding(x, targets=y, task="integrator", steps=1)


def test_few_shot_curve_structure_and_figure(tiny_fit: dict) -> None:
    task = dl.tasks.get("flipflop", n_bits=3, seq_len=SEQ)
    kwargs = {"ns": (2, 4), "test_trials": 16, "seeds": (0, 1), "theta_steps": 3,
              "scratch_steps": 3}
    curve = few_shot_curve(tiny_fit["module"], task, "gru", 4, **kwargs)
    assert curve["metric_name"] == task.metric_name and curve["higher_is_better"] is True
    assert curve["task"] == {"name": "flipflop", "config": task.config()}
    assert curve["ns"] == [2, 4] and curve["seeds"] == [0, 1]
    for key in ("theta", "scratch"):
        values = curve[key]["values"]
        assert len(values) == 2 and all(len(row) == 2 for row in values)
        assert all(0.0 <= v <= 1.0 for row in values for v in row)
        assert curve[key]["mean"] == pytest.approx([sum(r) / 2 for r in values])
        assert len(curve[key]["std"]) == 2
    again = few_shot_curve(tiny_fit["module"], task, "gru", 4, **kwargs)
    assert again["theta"]["values"] == curve["theta"]["values"]  # seeded: reproducible
    fig = few_shot_figure(curve)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "4"]
    assert len(ax.get_legend().get_texts()) == 2
    plt.close(fig)


def test_few_shot_curve_refuses_a_mixture(mixture_module: DynamoModule) -> None:
    with pytest.raises(ValueError, match="not a mixture"):
        few_shot_curve(mixture_module, mixture_module.task, "gru", 4, ns=(2,))


def test_map_grid_spans_the_map_with_a_margin() -> None:
    thetas = torch.tensor([[0.0, 0.0], [1.0, 2.0], [0.5, -1.0]])
    grid = map_grid(thetas, points=25)
    assert grid.shape == (25, 2)
    assert torch.allclose(grid.min(0).values, torch.tensor([-0.1, -1.3]))
    assert torch.allclose(grid.max(0).values, torch.tensor([1.1, 2.3]))
    assert map_grid(torch.zeros(4, 5)).shape == (0, 5)  # no grid in 5 dimensions


def test_theta_fit_starts_between_members_when_that_fits_best(tiny_fit: dict) -> None:
    # Labels made by the meta-model at a θ between members: the grid start near it must win
    # over every member's θ and the origin (init_index past the N + 1 member/origin rows).
    m = tiny_fit["module"]
    table = m.embeddings()
    target = table.max(0).values + 0.05 * (table.max(0).values - table.min(0).values)
    task = dl.tasks.get("flipflop", n_bits=3)
    x, _ = task.sample(8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = m.meta_model_at(target)(x)[0]
    fit = m.fit_embedding(x, outputs=y, steps=5, return_details=True)
    assert fit.init_index > table.shape[0]
