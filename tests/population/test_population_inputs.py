"""Bad arguments to the population's running API get a clear ValueError, not a torch crash."""

from __future__ import annotations

import pytest
import torch

import dynamo_lightning as dl
from dynamo_lightning.population.architectures import build
from dynamo_lightning.population.step_shapes import check_step_shapes


@pytest.fixture(scope="module")
def population() -> dl.Population:
    """A GRU (state 4) and an LSTM (state 2·4 = 8), input size 3."""
    parts = [dl.Population.from_stack(name, build(name, num_members=1, seeds=[0], input_size=3,
                                                  output_size=2, hidden_size=4), [name])
             for name in ("gru", "lstm")]
    return dl.Population.concat(parts)


@pytest.mark.parametrize(("shape", "words"), [
    ((0, 5, 3), ["(0, 5, 3)", "no trials (B = 0)"]),
    ((2, 0, 3), ["(2, 0, 3)", "no time steps (T = 0)"]),
    ((5, 3), ["[B, T, I]", "(5, 3)"]),
])
def test_trajectories_refuse_empty_or_flat_inputs(population: dl.Population, shape: tuple,
                                                  words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        population.trajectories(torch.zeros(shape))
    assert all(word in str(info.value) for word in words)


@pytest.mark.parametrize("batch_size", [-1, 0, True, 1.5])
def test_trajectories_refuse_a_bad_batch_size(population: dl.Population,
                                              batch_size: object) -> None:
    with pytest.raises(ValueError, match=rf"batch_size must be a positive integer or None, "
                                         rf"got {batch_size!r}"):
        population.trajectories(torch.zeros(4, 5, 3), batch_size=batch_size)


def test_trajectories_still_chunk_with_a_good_batch_size(population: dl.Population) -> None:
    x = torch.randn(5, 6, 3, generator=torch.Generator().manual_seed(0))
    whole, chunked = population.trajectories(x), population.trajectories(x, batch_size=2)
    for a, b in zip(whole.hidden, chunked.hidden, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("member", "h_shape", "x_shape", "expected"), [
    ("gru", (2, 5), (2, 3), "h [B, 4] and x [B, 3]"),
    ("lstm", (2, 4), (2, 3), "h [B, 8] and x [B, 3]"),  # LSTM state holds h and c
    ("gru", (2, 4), (2, 2), "h [B, 4] and x [B, 3]"),
    ("gru", (2, 4), (3, 3), "h [B, 4] and x [B, 3]"),  # batch sizes disagree
    ("gru", (4,), (3,), "h [B, 4] and x [B, 3]"),
])
def test_member_step_names_expected_and_given_shapes(population: dl.Population, member: str,
                                                     h_shape: tuple, x_shape: tuple,
                                                     expected: str) -> None:
    with pytest.raises(ValueError) as info:
        population[member].step(torch.zeros(h_shape), torch.zeros(x_shape))
    message = str(info.value)
    assert f"member {member!r}" in message and expected in message
    assert f"got h {h_shape} and x {x_shape}" in message


def test_member_step_agrees_with_the_member_network(population: dl.Population) -> None:
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))
    for member in population:
        h = torch.randn(2, member.module.state_size, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(member.step(h, x), member.module.step(h, x))


def test_feed_forward_member_has_no_step() -> None:
    cnn = dl.Population.from_stack("cnn", build("cnn", num_members=1, seeds=[0], input_size=3,
                                                output_size=2, hidden_size=2, n_layers=1),
                                   ["cnn"])
    with pytest.raises(TypeError, match="'cnn' is a feed-forward"):
        cnn[0].step(torch.zeros(1, 2), torch.zeros(1, 3))


def test_stacked_step_shapes() -> None:
    """The check a stack of G members uses: h [G, B, state], x [B, I] or [G, B, I]."""
    check_step_shapes("GRU", torch.zeros(2, 5, 4), torch.zeros(5, 3), 4, 3, members=2)
    check_step_shapes("GRU", torch.zeros(2, 5, 4), torch.zeros(2, 5, 3), 4, 3, members=2)
    with pytest.raises(ValueError, match=r"GRU: step expects h \[2, B, 4\] and x \[B, 3\] or "
                                         r"\[2, B, 3\], got h \(5, 4\) and x \(5, 3\)"):
        check_step_shapes("GRU", torch.zeros(5, 4), torch.zeros(5, 3), 4, 3, members=2)
    with pytest.raises(ValueError, match="takes tensors"):
        check_step_shapes("GRU", [0.0], torch.zeros(5, 3), 4, 3)
