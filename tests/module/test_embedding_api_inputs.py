"""The read-out API's boundary: ``fit_embedding``'s evidence and ``meta_model_at``'s θ are
checked (shape, finiteness) and named before anything runs, never broadcast or failed
inside torch."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from dynamo_lightning.meta import EmbeddedNetwork
from dynamo_lightning.module import DynamoModule

B, T, IN, OUT = 4, 5, 3, 3  # batch, time, input and output sizes
FLIPFLOP = {"name": "flipflop", "config": {"n_bits": 3, "seq_len": T}}
NAN, INF = math.nan, math.inf


def small_module(output_kind: str = "regression", **kwargs: Any) -> DynamoModule:
    torch.manual_seed(0)
    return DynamoModule(num_members=3, input_size=IN, output_size=OUT, num_components=2,
                        output_kind=output_kind, embedding_dim=2, meta={"hidden_size": 6},
                        **kwargs)


def inputs() -> torch.Tensor:
    return torch.randn(B, T, IN, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------- outputs
@pytest.mark.parametrize("shape", [(1, 1, OUT), (B, 1, OUT), (1, T, OUT), (B, T, OUT + 1),
                                   (B, T), (B, T, OUT, 1), (B, OUT)])
@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_outputs_of_the_wrong_shape_name_the_expected_and_given_shapes(
        shape: tuple[int, ...], kind: str) -> None:
    module = small_module(kind)
    given = ", ".join(map(str, shape))
    expected = rf"outputs must be \[B, T, O\] = \[{B}, {T}, {OUT}\].*got \({given},?\)"
    with pytest.raises(ValueError, match=expected):
        module.fit_embedding(inputs(), outputs=torch.zeros(shape), steps=1)


@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_outputs_of_the_right_shape_fit(kind: str) -> None:
    module = small_module(kind)
    theta = module.fit_embedding(inputs(), outputs=torch.randn(B, T, OUT), steps=2)
    assert theta.shape == (2,) and bool(torch.isfinite(theta).all())


def test_double_outputs_are_taken_as_the_modules_dtype() -> None:
    theta = small_module().fit_embedding(inputs(), outputs=torch.randn(B, T, OUT).double(),
                                         steps=2)
    assert theta.dtype == torch.float32


@pytest.mark.parametrize(("name", "evidence"), [
    ("outputs", {"outputs": torch.zeros(B, T, OUT).index_fill_(1, torch.tensor([2]), NAN)}),
    ("outputs", {"outputs": torch.full((B, T, OUT), INF)}),
    ("hidden", {"hidden": torch.randn(B, T, 7).index_fill_(0, torch.tensor([0]), NAN)}),
])
def test_non_finite_evidence_is_named(name: str, evidence: dict) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be finite, got \d+ NaN/Inf"):
        small_module().fit_embedding(inputs(), steps=1, **evidence)


def test_non_finite_inputs_are_named() -> None:
    x = inputs()
    x[1, 2, 0] = NAN
    with pytest.raises(ValueError, match=r"inputs must be finite, got 1 NaN/Inf"):
        small_module().fit_embedding(x, outputs=torch.zeros(B, T, OUT), steps=1)


# ------------------------------------------------------------------- targets and hidden
def test_targets_with_another_batch_size_name_both() -> None:
    module = small_module(task_spec=FLIPFLOP)
    with pytest.raises(ValueError, match=rf"targets must have one row per trial .*\[{B}, \.\.\.\]"
                                         rf".*got \(1, {T}, {OUT}\)"):
        module.fit_embedding(inputs(), targets=torch.zeros(1, T, OUT), steps=1)
    with pytest.raises(ValueError, match=r"targets must have one row per trial.*got \(\)"):
        module.fit_embedding(inputs(), targets=torch.tensor(1.0), steps=1)


def test_non_finite_targets_are_named() -> None:
    targets = torch.zeros(B, T, OUT)
    targets[0, 0, 0] = NAN
    with pytest.raises(ValueError, match="targets must be finite"):
        small_module(task_spec=FLIPFLOP).fit_embedding(inputs(), targets=targets, steps=1)


def test_targets_of_the_right_batch_fit() -> None:
    theta = small_module(task_spec=FLIPFLOP).fit_embedding(
        inputs(), targets=torch.sign(torch.randn(B, T, OUT)), steps=2)
    assert theta.shape == (2,)


@pytest.mark.parametrize("shape", [(B, T), (B, T + 1, 7), (B, T, 0)])
def test_hidden_of_the_wrong_shape_is_named(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"hidden must be \[B, T, H\] matching inputs"):
        small_module().fit_embedding(inputs(), hidden=torch.zeros(shape), steps=1)


@pytest.mark.parametrize(("options", "match"), [
    ({"steps": 0}, "fit_embedding: steps must be a positive integer, got 0"),
    ({"steps": True}, "fit_embedding: steps must be a positive integer, got True"),
    ({"lr": NAN}, "fit_embedding: lr must be a finite number > 0, got nan"),
    ({"lr": 0.0}, "fit_embedding: lr must be a finite number > 0, got 0.0"),
])
def test_bad_steps_and_lr_are_named(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        small_module().fit_embedding(inputs(), outputs=torch.zeros(B, T, OUT), **options)


# ------------------------------------------------------------------- meta_model_at
@pytest.mark.parametrize(("theta", "match"), [
    (torch.tensor([NAN, 0.0]), r"theta must be finite"),
    (torch.tensor([0.0, INF]), r"theta must be finite"),
    (torch.zeros(3), r"theta must be \[2\].*\(3,\)"),
    (torch.zeros(1, 2), r"theta must be \[2\].*\(1, 2\)"),
])
def test_meta_model_at_names_a_bad_theta(theta: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        small_module().meta_model_at(theta)


def test_meta_model_at_takes_a_finite_theta_of_size_d() -> None:
    net = small_module().meta_model_at([0.5, -0.25])
    assert isinstance(net, EmbeddedNetwork) and net.theta.tolist() == [0.5, -0.25]
