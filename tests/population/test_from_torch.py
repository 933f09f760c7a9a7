"""Populations users bring: torch.nn RNN/GRU/LSTM + Linear readouts, converted and back.

Every check runs the converted member against the user's own torch modules on random inputs:
outputs ``readout(rnn(x)[0])``, the hidden trajectory (an LSTM's ``c`` too, stepped through
torch) and the single-step map, before and after a save/load round trip.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

import dynamo_lightning as dl
from dynamo_lightning.population import Population, architectures, to_torch

IN, H, OUT, B, T = 3, 8, 2, 4, 6
#: kind → (factory of the torch RNN, our architecture, torch class name)
KINDS: dict[str, tuple[Callable[..., nn.RNNBase], str, str]] = {
    "rnn_tanh": (lambda i, **kw: nn.RNN(i, H, nonlinearity="tanh", **kw), "vanilla", "RNN"),
    "rnn_relu": (lambda i, **kw: nn.RNN(i, H, nonlinearity="relu", **kw), "relu", "RNN"),
    "gru": (lambda i, **kw: nn.GRU(i, H, **kw), "gru", "GRU"),
    "lstm": (lambda i, **kw: nn.LSTM(i, H, **kw), "lstm", "LSTM"),
}


def make_pair(kind: str, seed: int = 0, inputs: int = IN,
              **kw: object) -> tuple[nn.Module, nn.Linear]:
    torch.manual_seed(seed)
    return KINDS[kind][0](inputs, batch_first=True, **kw), nn.Linear(H, OUT)


def make_inputs(inputs: int = IN, seed: int = 1) -> Tensor:
    return torch.randn(B, T, inputs, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def reference(rnn: nn.Module, readout: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """The user's computation: outputs ``[B, T, O]`` and the state ``[B, T, state]``.

    For an LSTM the state is ``[h, c]``, stepped through torch one step at a time to see ``c``.
    """
    h_seq = rnn(x)[0]
    if not isinstance(rnn, nn.LSTM):
        return readout(h_seq), h_seq
    state, steps = None, []
    for t in range(x.shape[1]):
        _, state = rnn(x[:, t : t + 1], state)
        steps.append(torch.cat([state[0][0], state[1][0]], dim=-1))
    hidden = torch.stack(steps, dim=1)
    torch.testing.assert_close(hidden[..., :H], h_seq)  # torch agrees with itself
    return readout(h_seq), hidden


def assert_runs_like(member: dl.Member, rnn: nn.Module, readout: nn.Module) -> None:
    x = make_inputs(rnn.input_size)
    ref_out, ref_hidden = reference(rnn, readout, x)
    with torch.no_grad():
        outputs, hidden = member.module(x)
        torch.testing.assert_close(outputs, ref_out, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(hidden, ref_hidden, atol=1e-5, rtol=1e-5)
        h = member.module.initial_state(B)
        for t in range(T):
            h = member.module.step(h, x[:, t])
            torch.testing.assert_close(h, ref_hidden[:, t], atol=1e-5, rtol=1e-5)
    assert ref_hidden.abs().sum() > 0  # a dead network would make the checks above trivial


# --------------------------------------------------------------------- exact conversion
@pytest.mark.parametrize("kind", KINDS)
def test_converted_member_runs_like_the_original(kind: str) -> None:
    rnn, readout = make_pair(kind)
    pop = Population.from_torch({"net": (rnn, readout)})
    member = pop["net"]
    assert member.architecture == KINDS[kind][1]
    assert member.config == {"input_size": IN, "output_size": OUT, "hidden_size": H}
    assert member.metadata == {"architecture": KINDS[kind][1], "hidden_size": H,
                               "source": "torch", "torch_class": KINDS[kind][2]}
    assert_runs_like(member, rnn, readout)


def test_mixed_population_round_trips_through_the_format(tmp_path) -> None:
    pairs = {f"{kind}-s{seed}": make_pair(kind, seed) for kind in KINDS for seed in (0, 1)}
    pairs["gru-wide-input"] = make_pair("gru", 5, inputs=5)  # another input size: own group
    pop = Population.from_torch(pairs)
    assert pop.ids == list(pairs)
    assert len(pop.groups()) == len(KINDS) + 1
    loaded = Population.load(pop.save(tmp_path / "pop"))
    assert loaded.ids == pop.ids and loaded.checksum == pop.checksum
    for member_id, (rnn, readout) in pairs.items():
        assert loaded[member_id].metadata == pop[member_id].metadata
        assert_runs_like(loaded[member_id], rnn, readout)
    same_input = loaded[: 2 * len(KINDS)]  # the stacked path agrees with the originals too
    traj = same_input.trajectories(make_inputs())
    for k, member_id in enumerate(same_input.ids):
        torch.testing.assert_close(traj.outputs[k], reference(*pairs[member_id], make_inputs())[0],
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_missing_biases_become_zeros(kind: str) -> None:
    rnn, _ = make_pair(kind, bias=False)
    readout = nn.Linear(H, OUT, bias=False)
    member = Population.from_torch({"nobias": (rnn, readout)})["nobias"]
    for name in ("bias_ih", "bias_hh", "readout_bias"):
        assert not member.state[name].any(), name
    assert_runs_like(member, rnn, readout)


def test_float64_modules_and_harmless_subclasses_are_accepted() -> None:
    class Named(nn.GRU):  # adds nothing to the computation
        pass

    torch.manual_seed(0)
    rnn, readout = Named(IN, H, batch_first=True).double(), nn.Linear(H, OUT).double()
    member = Population.from_torch({"named": (rnn, readout)})["named"]
    assert member.state["weight_hh"].dtype == torch.float32
    assert member.metadata["torch_class"] == "Named"
    rnn, readout = rnn.float(), readout.float()
    assert_runs_like(member, rnn, readout)


@pytest.mark.parametrize("kind", KINDS)
def test_to_torch_inverts_from_torch(kind: str) -> None:
    rnn, readout = make_pair(kind)
    member = Population.from_torch({"net": (rnn, readout)})["net"]
    rnn2, readout2 = to_torch(member)
    assert type(rnn2) is type(rnn) and rnn2.batch_first
    for (name, p), p2 in zip(rnn.named_parameters(), rnn2.parameters(), strict=True):
        assert torch.equal(p, p2), name
    assert torch.equal(readout.weight, readout2.weight)
    x = make_inputs()
    for ours, theirs in zip(reference(rnn2, readout2, x), reference(rnn, readout, x), strict=True):
        torch.testing.assert_close(ours, theirs, atol=0, rtol=0)
    again = Population.from_torch({"net": (rnn2, readout2)})["net"]
    for name, t in member.state.items():
        assert torch.equal(again.state[name], t), name


def test_to_torch_refuses_architectures_without_a_torch_module() -> None:
    cnn = architectures.build("cnn", num_members=1, seeds=[0], input_size=8, output_size=3,
                              hidden_size=4)
    member = Population.from_stack("cnn", cnn, ["cnn-0"])[0]
    with pytest.raises(ValueError, match=r"'cnn-0'.*'cnn'.*convertible: vanilla, relu, gru"):
        to_torch(member)
    with pytest.raises(TypeError, match="takes a Member"):
        to_torch(make_pair("gru")[0])


# --------------------------------------------------------------------- metadata
def test_metadata_is_merged_over_the_defaults() -> None:
    pairs = {"a": make_pair("gru"), "b": make_pair("lstm")}
    pop = Population.from_torch(pairs, metadata={
        "a": {"task": "flipflop", "seed": 3, "source": "my_lab", "hidden_size": H}})
    assert pop["a"].metadata == {"architecture": "gru", "hidden_size": H, "source": "my_lab",
                                 "torch_class": "GRU", "task": "flipflop", "seed": 3}
    assert pop["b"].metadata["source"] == "torch"


@pytest.mark.parametrize("metadata, match", [
    ({"c": {}}, r"unknown member id\(s\) \['c'\]"),
    ({"a": {"architecture": "lstm"}}, r"'a'.*architecture='lstm'.*GRU module gives 'gru'"),
    ({"a": {"hidden_size": 4}}, r"'a'.*hidden_size=4.*gives 8"),
    ({"a": ["task"]}, r"'a': metadata must be a dict"),
    (["a"], "metadata must be None or a dict"),
])
def test_bad_metadata_is_refused(metadata: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Population.from_torch({"a": make_pair("gru")}, metadata=metadata)  # type: ignore[arg-type]


# --------------------------------------------------------------------- refusals
class ReversedGRU(nn.GRU):
    def forward(self, x: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return super().forward(x.flip(1), hx)  # a user's changed computation


def _transformer() -> nn.Module:
    return nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                          dim_feedforward=16, batch_first=True)


REFUSED = {  # case → (pair builder, message fragment naming the fault)
    "bidirectional": (lambda: make_pair("gru", bidirectional=True), "bidirectional=True"),
    "two_layers": (lambda: make_pair("lstm", num_layers=2, dropout=0.1), "num_layers=2"),
    "lstm_projection": (lambda: make_pair("lstm", proj_size=4), "proj_size=4"),
    "transformer": (lambda: (_transformer(), nn.Linear(H, OUT)),
                    "unsupported module Transformer"),
    "cell": (lambda: (nn.GRUCell(IN, H), nn.Linear(H, OUT)), "unsupported module GRUCell"),
    "changed_forward": (lambda: (ReversedGRU(IN, H, batch_first=True), nn.Linear(H, OUT)),
                        "ReversedGRU overrides GRU.forward"),
    "readout_module": (lambda: (make_pair("gru")[0], nn.Sequential(nn.Linear(H, OUT))),
                       "readout is a Sequential"),
    "readout_size": (lambda: (make_pair("gru")[0], nn.Linear(H - 1, OUT)),
                     "in_features=7 but the RNN's hidden_size is 8"),
    "not_a_pair": (lambda: (make_pair("gru")[0],), "expected a pair"),
}


@pytest.mark.parametrize("kind", ["rnn_tanh", "gru", "lstm"])
def test_a_time_major_module_becomes_a_batch_first_member(kind: str) -> None:
    """neurogym's tutorials build time-major RNNs: the weights are the same, the member takes
    the inputs batch-first, exactly."""
    torch.manual_seed(0)
    rnn, readout = KINDS[kind][0](IN), nn.Linear(H, OUT)
    assert not rnn.batch_first
    member = Population.from_torch({"tm": (rnn, readout)})["tm"]
    x = torch.randn(5, 9, IN)  # [B, T, I]
    with torch.no_grad():
        states = rnn(x.transpose(0, 1))[0].transpose(0, 1)
        outputs, hidden = member.module(x)
    torch.testing.assert_close(outputs, readout(states), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hidden[..., :H], states, atol=1e-5, rtol=1e-5)
    assert member.metadata["time_major"] is True


@pytest.mark.parametrize("case", REFUSED)
def test_unsupported_networks_are_refused_naming_member_and_fault(case: str) -> None:
    build, fault = REFUSED[case]
    with pytest.raises(ValueError) as info:
        Population.from_torch({"good": make_pair("gru"), "bad-net": build()})
    message = str(info.value)
    assert "'bad-net'" in message and fault in message
    if case != "not_a_pair":
        assert "accepted" in message


@pytest.mark.parametrize("members, match", [
    ({"../evil": make_pair("gru")}, r"'\.\./evil' is not a safe file name"),
    ({"a b": make_pair("gru")}, r"'a b' is not a safe file name"),
    ({3: make_pair("gru")}, "member id must be a string"),
    ({}, "non-empty dict"),
    ([make_pair("gru")], r"non-empty dict \{id: \(rnn, readout\)\}, got list"),
])
def test_bad_ids_and_containers_are_refused(members: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Population.from_torch(members)  # type: ignore[arg-type]


def test_networks_with_nan_weights_are_refused_naming_member_and_tensor() -> None:
    rnn = nn.GRU(3, 8, batch_first=True)
    with torch.no_grad():
        rnn.weight_hh_l0[2, 5] = float("nan")
    with pytest.raises(ValueError, match=r"member 'broken' has NaN or infinite weights in .*"
                                         r"weight_hh"):
        Population.from_torch({"fine": (nn.GRU(3, 8, batch_first=True), nn.Linear(8, 2)),
                               "broken": (rnn, nn.Linear(8, 2))})


def test_ids_longer_than_a_file_name_allows_are_refused_before_any_save() -> None:
    from dynamo_lightning.population.member import MAX_ID_LENGTH

    net = (nn.GRU(3, 8, batch_first=True), nn.Linear(8, 2))
    Population.from_torch({"a" * MAX_ID_LENGTH: net})  # the longest id that saves
    with pytest.raises(ValueError, match=rf"is {MAX_ID_LENGTH + 1} characters long"):
        Population.from_torch({"a" * (MAX_ID_LENGTH + 1): net})
