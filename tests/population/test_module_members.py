"""Any recurrent module through the protocol (``step``, ``readout``, sizes): ``module`` members.

Such a member runs a frozen copy of the user's module with the population's calling
convention; it must agree with the module's own step loop, stay unchanged when the original
is trained on, give fixed points through ``member.module.step``, and refuse to be saved.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import dynamo_lightning as dl
from dynamo_lightning.analysis import find_fixed_points
from dynamo_lightning.population import Population, architectures

IN, H, OUT, B, T = 3, 8, 2, 4, 7


class GainRNN(nn.Module):
    """A user's recurrent cell no architecture has: per-unit gains, a learned initial state
    and dropout on the input drive (training-only)."""

    def __init__(self) -> None:
        super().__init__()
        self.input_size, self.hidden_size = IN, H
        self.inp = nn.Linear(IN, H)
        self.rec = nn.Linear(H, H, bias=False)
        self.gain = nn.Parameter(torch.rand(H) + 0.5)
        self.h0 = nn.Parameter(torch.randn(H) * 0.3)
        self.out = nn.Linear(H, OUT)
        self.drop = nn.Dropout(0.5)

    def initial_state(self, batch_size: int) -> Tensor:
        return self.h0.expand(batch_size, -1)

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        return 0.5 * h + 0.5 * self.gain * torch.tanh(self.drop(self.inp(x)) + self.rec(h))

    def readout(self, h: Tensor) -> Tensor:
        return self.out(h)


@torch.no_grad()
def own_loop(module: GainRNN, x: Tensor) -> tuple[Tensor, Tensor]:
    """The module's computation in eval mode: ``(outputs [B, T, O], states [B, T, H])``."""
    training = module.training
    module.eval()
    h, states = module.initial_state(x.shape[0]), []
    for t in range(x.shape[1]):
        h = module.step(h, x[:, t])
        states.append(h)
    module.train(training)
    hidden = torch.stack(states, dim=1)
    return module.readout(hidden), hidden


def make(seed: int = 0) -> GainRNN:
    torch.manual_seed(seed)
    return GainRNN()


def trials(seed: int = 1) -> Tensor:
    return torch.randn(B, T, IN, generator=torch.Generator().manual_seed(seed))


def test_protocol_module_runs_like_its_own_loop_beside_stacked_members() -> None:
    mine = make()
    pop = Population.from_torch({"mine": mine,
                                 "gru": (nn.GRU(IN, H, batch_first=True), nn.Linear(H, OUT))})
    member = pop["mine"]
    assert member.architecture == "module" and len(pop.groups()) == 2
    assert member.metadata == {"architecture": "module", "hidden_size": H, "source": "torch",
                               "torch_class": "GainRNN"}
    x = trials()
    want_out, want_hidden = own_loop(mine, x)
    traj = pop.trajectories(x)
    assert traj.stacked and traj.outputs.shape == (2, B, T, OUT)
    torch.testing.assert_close(traj.outputs[0], want_out)
    torch.testing.assert_close(traj.hidden[0], want_hidden)
    torch.testing.assert_close(pop.trajectories(x, batch_size=3).hidden, traj.hidden)
    outputs, hidden = member.module(x)
    torch.testing.assert_close(outputs, want_out)
    torch.testing.assert_close(hidden, want_hidden)
    h = member.module.initial_state(B)
    torch.testing.assert_close(h, mine.h0.detach().expand(B, -1))
    for t in range(T):
        h = member.step(h, x[:, t])
        torch.testing.assert_close(h, want_hidden[:, t])
    torch.testing.assert_close(member.module.readout(hidden), want_out)


def test_member_is_a_frozen_copy_in_eval_mode() -> None:
    mine = make()
    pop = Population.from_torch({"mine": mine})
    x = trials()
    before, _ = own_loop(mine, x)
    with torch.no_grad():
        mine.rec.weight.add_(1.0)  # the user trains on
    assert mine.training  # the original's mode is left alone
    first = pop.trajectories(x).outputs[0]
    torch.testing.assert_close(first, before)  # unchanged, and dropout is off
    torch.testing.assert_close(pop.trajectories(x).outputs[0], first)
    assert not any(p.requires_grad for p in pop["mine"].module.parameters())


def test_fixed_points_through_the_members_step() -> None:
    pop = Population.from_torch({"mine": make(2)})
    step = pop["mine"].module.step
    hidden = pop.trajectories(trials() * 0).hidden[0]  # settles towards the zero-input point
    inits = hidden.reshape(-1, H)[::3] + 0.1 * torch.randn(10, H)
    found = find_fixed_points(step, torch.zeros(IN), inits, tol=1e-10, max_iters=2000,
                              reference=hidden.reshape(-1, H))
    assert len(found) >= 1 and "stable" in found.kind
    with torch.no_grad():
        residual = step(found.points, torch.zeros(len(found), IN)) - found.points
    assert float(residual.abs().max()) < 1e-4


def test_saving_a_module_member_is_refused_naming_it_and_the_way_out(tmp_path) -> None:
    pop = Population.from_torch({"gru": (nn.GRU(IN, H, batch_first=True), nn.Linear(H, OUT)),
                                 "mine": make()})
    with pytest.raises(ValueError) as info:
        pop.save(tmp_path / "pop")
    message = str(info.value)
    assert "member 'mine'" in message and "GainRNN" in message
    assert "never runs code" in message and "dl.register_architecture" in message
    assert not (tmp_path / "pop").exists()
    pop[:1].save(tmp_path / "pop")  # the rest saves


def test_a_module_config_builds_nothing_outside_its_process() -> None:
    assert "module" not in dl.architectures.names()
    with pytest.raises(ValueError, match="no user module 'mine-123' in this process"):
        architectures.get("module")(input_size=IN, output_size=OUT, hidden_size=H,
                                    network="mine-123")


class NoReadout(nn.Module):
    input_size, hidden_size = IN, H

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        return h


class Net(nn.Module):  # neurogym's LSTM net: time-major nn.LSTM, no protocol
    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.fc = nn.LSTM(IN, H), nn.Linear(H, OUT)


@pytest.mark.parametrize("module, fragments", [
    (NoReadout(), ["NoReadout lacks readout of the recurrent-module protocol",
                   "step(h [B, H], x [B, I])"]),
    (nn.Linear(IN, H), ["Linear lacks input_size, hidden_size, step, readout"]),
    (Net(), ["Net lacks", "its .rnn is a LSTM, not a CTRNN module",
             "pass (net.rnn, net.fc)"]),
])
def test_a_module_lacking_the_protocol_is_refused_naming_what_lacks(
        module: nn.Module, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        Population.from_torch({"bad": module})
    message = str(info.value)
    assert message.startswith("member 'bad': ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message


class WideStep(GainRNN):
    def step(self, h: Tensor, x: Tensor) -> Tensor:
        return torch.cat([h, h[:, :1]], dim=-1)


class FlatReadout(GainRNN):
    def readout(self, h: Tensor) -> Tensor:
        return self.out(h.reshape(-1, H))


class BadStart(GainRNN):
    def initial_state(self, batch_size: int) -> Tensor:
        return torch.zeros(batch_size, 1, H)


@pytest.mark.parametrize("module, fragment", [
    (WideStep(), "step(h [2, 8], x [2, 3]) gave [2, 9], expected [2, 8]"),
    (FlatReadout(), "readout(h [2, 3, 8]) gave [6, 2], expected [2, 3, 2]"),
    (BadStart(), "initial_state(2) gave [2, 1, 8], expected [2, 8]"),
])
def test_protocol_calls_of_the_wrong_shape_are_refused(module: nn.Module, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        Population.from_torch({"bad": module})
    assert str(info.value).startswith("member 'bad': ") and fragment in str(info.value)
