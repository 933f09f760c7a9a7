"""``Population``, ``Member`` and ``Trajectories``: indexing, stacking, running, checksums."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import dynamo_lightning as dl
from dynamo_lightning.population.architectures import MemberNetwork, build

B, T, IN = 5, 7, 3


def _meta(arch: str, seed: int, hidden: int) -> dict:
    return {"architecture": arch, "task": "flipflop", "task_config": {"n_bits": 3},
            "seed": seed, "hidden_size": hidden, "task_metric": 0.5 + seed}


def _gru_pop(ids: list[str], seeds: list[int]) -> dl.Population:
    stack = build("gru", num_members=len(ids), seeds=seeds, input_size=IN, output_size=2,
                  hidden_size=8)
    return dl.Population.from_stack("gru", stack, ids, [_meta("gru", s, 8) for s in seeds])


@pytest.fixture(scope="module")
def mixed() -> dl.Population:
    """GRU, LSTM, GRU, CNN: the two GRUs come from different stacks but share a shape."""
    lstm = build("lstm", num_members=1, seeds=[2], input_size=IN, output_size=2, hidden_size=8)
    cnn = build("cnn", num_members=1, seeds=[3], input_size=IN, output_size=2, hidden_size=4,
                n_layers=2)
    return (_gru_pop(["g0"], [0])
            + dl.Population.from_stack("lstm", lstm, ["l2"], [_meta("lstm", 2, 8)])
            + _gru_pop(["g1"], [1])
            + dl.Population.from_stack("cnn", cnn, ["c3"], [_meta("cnn", 3, 4)]))


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return torch.randn(B, T, IN, generator=torch.Generator().manual_seed(0))


def test_indexing_and_order(mixed: dl.Population) -> None:
    assert len(mixed) == 4 and mixed.ids == ["g0", "l2", "g1", "c3"]
    assert mixed[1] is mixed["l2"] and mixed[-1].id == "c3"
    assert [m.id for m in mixed] == mixed.ids and "g1" in mixed
    assert mixed[1:3].ids == ["l2", "g1"]
    with pytest.raises(KeyError, match="no member 'zz'"):
        mixed["zz"]


def test_from_stack_members(mixed: dl.Population) -> None:
    g0 = mixed["g0"]
    assert g0.architecture == "gru" and g0.config == {"input_size": IN, "output_size": 2,
                                                      "hidden_size": 8}
    assert g0.metadata["seed"] == 0 and g0.metadata["hidden_size"] == 8
    assert g0.state["weight_hh"].shape == (8, 24)
    stack = build("gru", num_members=2, input_size=IN, output_size=2, hidden_size=8)
    with pytest.raises(ValueError, match="2 members"):
        dl.Population.from_stack("gru", stack, ["a"], [{}])
    with pytest.raises(ValueError, match="not a 'lstm'"):
        dl.Population.from_stack("lstm", stack, ["a", "b"])
    assert dl.Population.from_stack("gru", stack, ["a", "b"])[1].metadata["architecture"] == "gru"


def test_member_module_is_frozen(mixed: dl.Population, inputs: torch.Tensor) -> None:
    net = mixed["g0"].module
    assert isinstance(net, MemberNetwork) and net is mixed["g0"].module
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    outputs, hidden = net(inputs)
    assert outputs.shape == (B, T, 2) and hidden.shape == (B, T, 8)
    assert mixed["g0"].group_key == mixed["g1"].group_key != mixed["l2"].group_key


def test_concat_keeps_ids_unique(mixed: dl.Population) -> None:
    assert (mixed[:1] + mixed[2:]).ids == ["g0", "g1", "c3"]
    assert dl.Population.concat([mixed[:2], mixed[2:]]).ids == mixed.ids
    with pytest.raises(ValueError, match="duplicate member id 'g0'"):
        mixed + mixed[:1]


def test_groups_stack_same_shape_members(mixed: dl.Population) -> None:
    groups = mixed.groups()
    assert [indices for indices, _ in groups] == [[0, 2], [1], [3]]
    gru_stack = groups[0][1]
    assert gru_stack.num_members == 2 and not gru_stack.training
    assert not any(p.requires_grad for p in gru_stack.parameters())
    assert torch.equal(gru_stack.weight_hh[1], mixed["g1"].state["weight_hh"])
    assert mixed.groups() is groups


def test_trajectories_match_members_alone(mixed: dl.Population, inputs: torch.Tensor) -> None:
    calls = []
    handles = [stack.register_forward_hook(lambda *a: calls.append(1)) for _, stack in
               mixed.groups()]
    try:
        traj = mixed.trajectories(inputs)
    finally:
        for h in handles:
            h.remove()
    assert len(calls) == 3  # one call per group, not per member
    assert isinstance(traj.hidden, list) and isinstance(traj.outputs, list) and not traj.stacked
    assert len(traj) == 4 and traj.ids == mixed.ids
    assert [tuple(h.shape) for h in traj.hidden] == [(B, T, 8), (B, T, 16), (B, T, 8), (B, 2, 16)]
    for i, member in enumerate(mixed):
        outputs, hidden = member.module(inputs)
        got_outputs, got_hidden = traj.member(i)
        torch.testing.assert_close(got_hidden, hidden)
        torch.testing.assert_close(got_outputs, outputs)
        assert not got_hidden.requires_grad
    assert traj.member("c3")[1] is traj.hidden[3]


def test_uniform_population_gives_one_tensor(inputs: torch.Tensor) -> None:
    pop = _gru_pop(["a", "b"], [0, 1]) + _gru_pop(["c"], [2])
    traj = pop.trajectories(inputs)
    assert traj.stacked and traj.hidden.shape == (3, B, T, 8) and traj.outputs.shape == (3, B, T, 2)
    for i, member in enumerate(pop):
        torch.testing.assert_close(traj.hidden[i], member.module(inputs)[1])
    chunked = pop.trajectories(inputs, batch_size=2)
    torch.testing.assert_close(chunked.hidden, traj.hidden)
    torch.testing.assert_close(chunked.outputs, traj.outputs)
    assert pop.to("cpu") is pop and pop.trajectories(inputs).hidden.device.type == "cpu"


def test_trajectories_input_errors(mixed: dl.Population) -> None:
    with pytest.raises(ValueError, match=r"input size 4.*'g0' expects 3"):
        mixed.trajectories(torch.zeros(2, T, 4))
    with pytest.raises(ValueError, match=r"\[B, T, I\]"):
        mixed.trajectories(torch.zeros(T, IN))
    wide = build("vanilla", num_members=1, input_size=5, output_size=2, hidden_size=8)
    pop = mixed + dl.Population.from_stack("vanilla", wide, ["v5"])
    with pytest.raises(ValueError, match=r"'v5' expects 5"):
        pop.trajectories(torch.zeros(2, T, IN))


def test_checksum(mixed: dl.Population, tmp_path: Path) -> None:
    before = mixed.checksum
    assert len(before) == 64 and mixed.checksum == before
    assert dl.Population.load(mixed.save(tmp_path / "p")).checksum == before
    g0 = mixed["g0"]
    state = {k: v.clone() for k, v in g0.state.items()}
    state["weight_hh"][0, 0] += 1e-6
    changed = dl.Population([dl.Member("g0", "gru", g0.config, g0.metadata, state), *mixed[1:]])
    assert changed.checksum != before
    relabelled = dl.Population([dl.Member("g0", "gru", g0.config, {"note": 1}, g0.state),
                                *mixed[1:]])
    assert relabelled.checksum == before  # metadata does not change what the members compute
    assert mixed[::-1].checksum != before


def test_metadata_table(mixed: dl.Population) -> None:
    table = mixed.metadata_table()
    assert [row["id"] for row in table] == mixed.ids
    assert table[1]["architecture"] == "lstm" and table[3]["task_metric"] == 3.5


def test_member_validation() -> None:
    with pytest.raises(ValueError, match="safe file name"):
        dl.Member("a b", "gru", {}, {}, {})
    with pytest.raises(ValueError, match="JSON"):
        dl.Member("a", "gru", {"input_size": object()}, {}, {})
    member = dl.Member("a", "gru", {"sizes": (1, 2)}, {"metric": torch.tensor(0.5)}, {})
    assert member.config == {"sizes": [1, 2]} and member.metadata == {"metric": 0.5}
