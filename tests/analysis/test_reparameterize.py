"""Reparameterised copies and the ``vanilla_rotated`` architecture.

A copy must compute what its original computes (same outputs on random inputs) with its
hidden trajectory in the new coordinates; ``vanilla_rotated`` must obey the stacked-form
contract (stacked == one by one, step == forward) like every other architecture.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from dynamo_lightning import analysis as da
from dynamo_lightning.analysis.reparameterize import rescaled_copy
from dynamo_lightning.population import Member, Population, architectures

H, B, T, IN, OUT = 6, 5, 7, 3, 2
PERMUTABLE = ["vanilla", "relu", "gru", "lstm", "ugrnn", "vanilla_rotated"]
CONFIG = {"input_size": IN, "output_size": OUT, "hidden_size": H}


def make_member(name: str, seed: int = 3) -> Member:
    stack = architectures.build(name, num_members=1, seeds=[seed], **CONFIG)
    if name == "vanilla_rotated":  # a non-trivial basis, so the rotation is exercised
        with torch.no_grad():
            stack.basis[0] = da.random_orthogonal(H, torch.Generator().manual_seed(seed))
    meta = [{"task": "flipflop", "seed": seed, "task_metric": 0.9}]
    return Population.from_stack(name, stack, [f"{name}-s{seed}"], meta)[0]


def inputs(seed: int = 0) -> Tensor:
    return torch.randn(B, T, IN, generator=torch.Generator().manual_seed(seed))


def run(member: Member) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        return member.module(inputs())


def expand_for_state(member: Member, perm: Tensor) -> Tensor:
    """Index of the permuted state vector (LSTM: the same permutation on h and on c)."""
    return torch.cat([perm, perm + H]) if member.architecture == "lstm" else perm


# --------------------------------------------------------------------- copies
@pytest.mark.parametrize("name", PERMUTABLE)
def test_permuted_copy_keeps_outputs_and_permutes_hidden(name: str) -> None:
    member = make_member(name)
    perm = torch.randperm(H, generator=torch.Generator().manual_seed(1))
    copy = da.permuted_copy(member, perm, "copy")
    out, hidden = run(member)
    out_c, hidden_c = run(copy)
    torch.testing.assert_close(out_c, out, atol=1e-5, rtol=0)
    torch.testing.assert_close(hidden_c, hidden[..., expand_for_state(member, perm)],
                               atol=1e-5, rtol=0)
    assert not torch.allclose(hidden_c, hidden, atol=1e-3)  # the copy really moved
    assert copy.architecture == name and copy.id == "copy"
    assert copy.metadata["copy_of"] == member.id
    assert copy.metadata["transform"] == "permutation"
    assert copy.metadata["seed"] == member.metadata["seed"]
    assert "copy_of" not in member.metadata  # the original is untouched


@pytest.mark.parametrize("name", ["vanilla", "vanilla_rotated"])
def test_rotated_copy_keeps_outputs_and_rotates_hidden(name: str) -> None:
    member = make_member(name)
    q = da.random_orthogonal(H, torch.Generator().manual_seed(2))
    copy = da.rotated_copy(member, q, "rot")
    out, hidden = run(member)
    out_c, hidden_c = run(copy)
    torch.testing.assert_close(out_c, out, atol=1e-5, rtol=0)
    torch.testing.assert_close(hidden_c, hidden @ q, atol=1e-5, rtol=0)
    assert copy.architecture == "vanilla_rotated"
    assert copy.metadata["architecture"] == "vanilla_rotated"
    assert copy.metadata["transform"] == "rotation"
    assert copy.metadata["copy_of"] == member.id


def test_rescaled_copy_keeps_outputs_and_scales_hidden() -> None:
    member = make_member("relu")
    scales = torch.logspace(-1, 1, H)[torch.randperm(H, generator=torch.Generator().manual_seed(5))]
    copy = rescaled_copy(member, scales, "scaled")
    out, hidden = run(member)
    out_c, hidden_c = run(copy)
    torch.testing.assert_close(out_c, out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hidden_c, hidden * scales, atol=1e-5, rtol=1e-5)
    assert hidden.abs().sum() > 0  # some units are active, so the check above has teeth
    for name in ("weight_ih", "weight_hh", "bias_ih", "readout_weight"):
        assert not torch.allclose(copy.state[name], member.state[name]), name
    x, h = inputs()[:, 0], hidden[:, 2]
    with torch.no_grad():  # the single-step map is conjugated too
        torch.testing.assert_close(copy.module.step(h * scales, x),
                                   member.module.step(h, x) * scales, atol=1e-5, rtol=1e-5)
    assert copy.architecture == "relu" and copy.metadata["transform"] == "rescaling"
    assert copy.metadata["copy_of"] == member.id
    assert copy.state["weight_hh"].dtype == member.state["weight_hh"].dtype


def test_copies_round_trip_through_the_population_format(tmp_path) -> None:
    member = make_member("vanilla")
    q = da.random_orthogonal(H, torch.Generator().manual_seed(4))
    pop = Population([member, da.rotated_copy(member, q, "rot"),
                      da.permuted_copy(member, list(reversed(range(H))), "perm")])
    loaded = Population.load(pop.save(tmp_path / "pop"))
    assert loaded.ids == pop.ids and loaded.checksum == pop.checksum
    outputs = loaded.trajectories(inputs()).outputs
    for k in (1, 2):
        torch.testing.assert_close(outputs[k], outputs[0], atol=1e-5, rtol=0)


def test_random_orthogonal_is_orthogonal_and_seeded() -> None:
    q = da.random_orthogonal(16, torch.Generator().manual_seed(0))
    torch.testing.assert_close(q.T @ q, torch.eye(16), atol=1e-5, rtol=0)
    again = da.random_orthogonal(16, torch.Generator().manual_seed(0))
    assert torch.equal(q, again)
    assert not torch.equal(q, da.random_orthogonal(16, torch.Generator().manual_seed(1)))


# --------------------------------------------------------------------- errors
@pytest.mark.parametrize("perm, match", [
    ([0, 1, 2], "1-d sequence of 6"),
    ([0, 0, 1, 2, 3, 4], r"not a permutation of range\(6\).*missing \[5\]"),
    ([0, 1, 2, 3, 4, 6], r"not a permutation of range\(6\)"),
    ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "integers"),
    ([[0, 1, 2, 3, 4, 5]], "1-d"),
])
def test_bad_permutation_is_refused(perm: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        da.permuted_copy(make_member("gru"), perm, "copy")


def test_unsupported_architectures_are_refused() -> None:
    cnn = architectures.build("cnn", num_members=1, seeds=[0], input_size=8, output_size=3,
                              hidden_size=4)
    member = Population.from_stack("cnn", cnn, ["cnn-0"])[0]
    with pytest.raises(ValueError, match=r"permuted_copy does not support .*'cnn'.*gru"):
        da.permuted_copy(member, list(range(4)), "copy")
    q = da.random_orthogonal(H)
    with pytest.raises(ValueError, match=r"rotated_copy does not support .*'gru'.*vanilla"):
        da.rotated_copy(make_member("gru"), q, "copy")


def test_non_orthogonal_matrices_are_refused() -> None:
    member = make_member("vanilla")
    with pytest.raises(ValueError, match="not orthogonal"):
        da.rotated_copy(member, 2 * torch.eye(H), "copy")
    with pytest.raises(ValueError, match=r"\[6, 6\]"):
        da.rotated_copy(member, torch.eye(H + 1), "copy")
    with pytest.raises(ValueError, match="positive int"):
        da.random_orthogonal(0)


@pytest.mark.parametrize("name", ["vanilla", "gru", "lstm", "ugrnn"])
def test_rescaled_copy_refuses_cells_that_are_not_positively_homogeneous(name: str) -> None:
    with pytest.raises(ValueError, match=rf"needs a 'relu' member.*'{name}'.*positively homog"):
        rescaled_copy(make_member(name), torch.ones(H), "copy")


@pytest.mark.parametrize("scales, match", [
    (torch.ones(H + 1), "1-d sequence of 6"),
    (torch.ones(1, H), "1-d sequence of 6"),
    (torch.tensor([1.0, 2.0, 0.0, 1.0, 1.0, 1.0]), r"positive.*0\.0 at unit 2"),
    (torch.tensor([1.0, -2.0, 1.0, -1.0, 1.0, 1.0]), r"-2\.0 at unit 1 and 1 more"),
    (torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, float("inf")]), "finite"),
    (torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, float("nan")]), "finite"),
])
def test_bad_scales_are_refused(scales: Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        rescaled_copy(make_member("relu"), scales, "copy")


# --------------------------------------------------------------------- vanilla_rotated
def test_fresh_rotated_member_equals_vanilla_of_the_same_seed() -> None:
    rotated = architectures.build("vanilla_rotated", num_members=2, seeds=[5, 6], **CONFIG)
    vanilla = architectures.build("vanilla", num_members=2, seeds=[5, 6], **CONFIG)
    assert torch.equal(rotated.basis, torch.eye(H).expand(2, H, H))
    for name, p in vanilla.named_parameters():
        assert torch.equal(getattr(rotated, name), p)


def test_rotated_stack_equals_members_one_by_one_and_step_equals_forward() -> None:
    members = [make_member("vanilla_rotated", seed) for seed in (1, 2, 3)]
    cls = architectures.get("vanilla_rotated")
    stack = cls.from_member_states([m.state for m in members], **CONFIG).requires_grad_(False)
    x = torch.randn(3, B, T, IN, generator=torch.Generator().manual_seed(7))  # one per member
    out, hidden = stack(x)
    for g, member in enumerate(members):
        out_g, hidden_g = member.module(x[g])
        torch.testing.assert_close(out[g], out_g, atol=1e-6, rtol=0)
        torch.testing.assert_close(hidden[g], hidden_g, atol=1e-6, rtol=0)
    h = stack.initial_state(B)
    for t in range(T):
        h = stack.step(h, x[:, :, t])
        torch.testing.assert_close(h, hidden[:, :, t], atol=1e-6, rtol=0)
    torch.testing.assert_close(stack.readout(hidden), out, atol=1e-6, rtol=0)
