"""Users' CTRNN modules, written exactly as neurogym's tutorials write them, as ctrnn members.

The modules below are the tutorials' own (time-major, ``[T, B, I]``), trained a few Adam steps
on random data first. Each imported member must reproduce the module's outputs, rates and
final state to 1e-5 on inputs it was not probed on, run batch-first; Dale members must carry
the module's sign mask, and recurrent noise is recorded but off in the frozen members.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynamo_lightning.population import Population, architectures

IN, H, OUT, B, T = 3, 8, 2, 4, 9


# ----------------------------------------------------------------- neurogym's CTRNN tutorial
class CTRNN(nn.Module):
    def __init__(self, input_size, hidden_size, dt=None, **kwargs):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.tau = 100
        self.alpha = 1 if dt is None else dt / self.tau
        self.input2h = nn.Linear(input_size, hidden_size)
        self.h2h = nn.Linear(hidden_size, hidden_size)

    def init_hidden(self, input_shape):
        return torch.zeros(input_shape[1], self.hidden_size)

    def recurrence(self, input, hidden):
        h_new = torch.relu(self.input2h(input) + self.h2h(hidden))
        return hidden * (1 - self.alpha) + h_new * self.alpha

    def forward(self, input, hidden=None):
        if hidden is None:
            hidden = self.init_hidden(input.shape).to(input.device)
        output = []
        for i in range(input.size(0)):
            hidden = self.recurrence(input[i], hidden)
            output.append(hidden)
        return torch.stack(output, dim=0), hidden


class RNNNet(nn.Module):
    def __init__(self, input_size, hidden_size, output_size, **kwargs):
        super().__init__()
        self.rnn = CTRNN(input_size, hidden_size, **kwargs)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        rnn_output, _ = self.rnn(x)
        return self.fc(rnn_output), rnn_output


# ----------------------------------------------------------------- neurogym's EIRNN tutorial
class EIRecLinear(nn.Module):
    def __init__(self, hidden_size, e_prop, bias=True):
        super().__init__()
        self.hidden_size = hidden_size
        self.e_prop = e_prop
        self.e_size = int(e_prop * hidden_size)
        self.i_size = hidden_size - self.e_size
        self.weight = nn.Parameter(torch.Tensor(hidden_size, hidden_size))
        mask = np.tile([1] * self.e_size + [-1] * self.i_size, (hidden_size, 1))
        np.fill_diagonal(mask, 0)
        self.mask = torch.tensor(mask, dtype=torch.float32)
        if bias:
            self.bias = nn.Parameter(torch.Tensor(hidden_size))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.weight.data[:, : self.e_size] /= self.e_size / self.i_size
        if self.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def effective_weight(self):
        return torch.abs(self.weight) * self.mask

    def forward(self, input):
        return F.linear(input, self.effective_weight(), self.bias)


class EIRNN(nn.Module):
    def __init__(self, input_size, hidden_size, dt=None, e_prop=0.8, sigma_rec=0, **kwargs):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.e_size = int(hidden_size * e_prop)
        self.i_size = hidden_size - self.e_size
        self.num_layers = 1
        self.tau = 100
        alpha = 1 if dt is None else dt / self.tau
        self.alpha = alpha
        self.oneminusalpha = 1 - alpha
        self._sigma_rec = np.sqrt(2 * alpha) * sigma_rec
        self.input2h = nn.Linear(input_size, hidden_size)
        self.h2h = EIRecLinear(hidden_size, e_prop=0.8)

    def init_hidden(self, input):
        batch_size = input.shape[1]
        return (torch.zeros(batch_size, self.hidden_size).to(input.device),
                torch.zeros(batch_size, self.hidden_size).to(input.device))

    def recurrence(self, input, hidden):
        state, output = hidden
        total_input = self.input2h(input) + self.h2h(output)
        state = state * self.oneminusalpha + total_input * self.alpha
        state += self._sigma_rec * torch.randn_like(state)
        output = torch.relu(state)
        return state, output

    def forward(self, input, hidden=None):
        if hidden is None:
            hidden = self.init_hidden(input)
        output = []
        for i in range(input.size(0)):
            hidden = self.recurrence(input[i], hidden)
            output.append(hidden[1])
        output = torch.stack(output, dim=0)
        return output, hidden


class EINet(nn.Module):
    def __init__(self, input_size, hidden_size, output_size, **kwargs):
        super().__init__()
        self.rnn = EIRNN(input_size, hidden_size, **kwargs)
        self.fc = nn.Linear(self.rnn.e_size, output_size)

    def forward(self, x):
        rnn_activity, _ = self.rnn(x)
        rnn_e = rnn_activity[:, :, : self.rnn.e_size]
        out = self.fc(rnn_e)
        return out, rnn_activity


# ----------------------------------------------------------------- helpers
def trained(net: nn.Module, steps: int = 5, seed: int = 0) -> nn.Module:
    """``net`` after a few Adam steps on random time-major data (weights move off init)."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(T, 16, IN, generator=g), torch.randn(T, 16, OUT, generator=g)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(steps):
        optimiser.zero_grad()
        F.mse_loss(net(x)[0], y).backward()
        optimiser.step()
    return net


def inputs(seed: int = 7) -> Tensor:
    """Batch-first ``[B, T, I]`` test inputs, unlike the import's probe."""
    return torch.randn(B, T, IN, generator=torch.Generator().manual_seed(seed)) * 2


@torch.no_grad()
def reference(net: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The tutorial net's ``(outputs, rates, final state)``, batch-first, noise off."""
    net = copy.deepcopy(net)
    net.rnn._sigma_rec = 0.0  # the EIRNN draws noise even in eval mode
    out, rates = net(x.transpose(0, 1))
    final = net.rnn(x.transpose(0, 1))[1]  # EIRNN: (state, rates); CTRNN: the state
    final = final[0] if isinstance(final, tuple) else final
    return out.transpose(0, 1), rates.transpose(0, 1), final


def close(a: Tensor, b: Tensor) -> None:
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------- the CTRNN tutorial
@pytest.mark.parametrize("as_pair", [False, True])
def test_trained_ctrnn_net_becomes_a_member_that_runs_like_it(as_pair: bool) -> None:
    torch.manual_seed(0)
    net = trained(RNNNet(IN, H, OUT, dt=20))
    pop = Population.from_torch({"ct": (net.rnn, net.fc) if as_pair else net})
    member = pop["ct"]
    assert member.architecture == "ctrnn"
    assert member.config == {"input_size": IN, "output_size": OUT, "hidden_size": H,
                             "alpha": 0.2, "activation": "relu", "form": "rate",
                             "noise_std": 0.0, "dale_ratio": None, "autapses": True}
    assert member.metadata == {"architecture": "ctrnn", "hidden_size": H, "source": "torch",
                               "torch_class": "CTRNN"}
    x = inputs()
    out, rates, final = reference(net, x)
    traj = pop.trajectories(x)
    close(traj.outputs[0], out)
    close(traj.hidden[0], rates)
    close(traj.hidden[0, :, -1], final)
    h = member.module.initial_state(B)
    for t in range(T):
        h = member.module.step(h, x[:, t])
        close(h, rates[:, t])
    assert rates.abs().sum() > 0 and rates.lt(1e-6).any()  # alive, and relu's floor is used


def test_ctrnn_member_saves_and_loads_like_any_other(tmp_path) -> None:
    torch.manual_seed(1)
    pop = Population.from_torch({"ct": trained(RNNNet(IN, H, OUT, dt=50))})
    loaded = Population.load(pop.save(tmp_path / "pop"))
    assert loaded.checksum == pop.checksum and loaded["ct"].config["alpha"] == 0.5
    close(loaded.trajectories(inputs()).outputs, pop.trajectories(inputs()).outputs)


def test_activation_is_found_by_probing_or_read_where_declared() -> None:
    class TanhCTRNN(CTRNN):
        def recurrence(self, input, hidden):
            h_new = torch.tanh(self.input2h(input) + self.h2h(hidden))
            return hidden * (1 - self.alpha) + h_new * self.alpha

    torch.manual_seed(2)
    probed = TanhCTRNN(IN, H, dt=20)
    declared = copy.deepcopy(probed)
    declared.activation = torch.tanh
    readout = nn.Linear(H, OUT)
    pop = Population.from_torch({"probed": (probed, readout), "declared": (declared, readout)})
    assert [m.config["activation"] for m in pop] == ["tanh", "tanh"]
    close(pop.trajectories(inputs()).hidden[0], probed(inputs().transpose(0, 1))[0]
          .transpose(0, 1).detach())
    declared.activation = "relu"  # a declaration is believed: only relu is tried, and fails
    with pytest.raises(ValueError, match=r"member 'wrong'.*rate/relu: outputs differ"):
        Population.from_torch({"wrong": (declared, readout)})


def test_a_module_that_says_batch_first_is_probed_batch_first() -> None:
    class BatchFirstCTRNN(CTRNN):
        batch_first = True

        def forward(self, input, hidden=None):
            rates, hidden = super().forward(input.transpose(0, 1), hidden)
            return rates.transpose(0, 1), hidden

    torch.manual_seed(5)
    rnn, readout = BatchFirstCTRNN(IN, H, dt=20), nn.Linear(H, OUT)
    traj = Population.from_torch({"bf": (rnn, readout)}).trajectories(inputs())
    with torch.no_grad():
        rates = rnn(inputs())[0]
        close(traj.hidden[0], rates)
        close(traj.outputs[0], readout(rates))


def test_a_recurrence_no_ctrnn_form_matches_is_refused_naming_what_differed() -> None:
    class SigmoidCTRNN(CTRNN):
        def recurrence(self, input, hidden):
            h_new = torch.sigmoid(self.input2h(input) + self.h2h(hidden))
            return hidden * (1 - self.alpha) + h_new * self.alpha

    with pytest.raises(ValueError) as info:
        Population.from_torch({"sig": (SigmoidCTRNN(IN, H, dt=20), nn.Linear(H, OUT))})
    message = str(info.value)
    assert "member 'sig'" in message and "no ctrnn member reproduces" in message
    for candidate in ("rate/relu", "current/relu", "rate/tanh", "current/softplus"):
        assert f"{candidate}: outputs differ" in message


# ----------------------------------------------------------------- the EIRNN tutorial
@pytest.mark.parametrize("as_pair", [False, True])
def test_trained_eirnn_becomes_a_dale_member_with_its_signs_and_noise(as_pair: bool) -> None:
    torch.manual_seed(3)
    net = trained(EINet(IN, H, OUT, dt=20, sigma_rec=0.05))  # trained with noise on
    pop = Population.from_torch({"ei": (net.rnn, net.fc) if as_pair else net})
    member = pop["ei"]
    config = member.config
    assert (config["form"], config["activation"], config["autapses"]) == ("current", "relu",
                                                                           False)
    assert config["noise_std"] == pytest.approx(0.05)  # _sigma_rec = sqrt(2α)·0.05
    stack = architectures.get("ctrnn").from_member_states([member.state], **config)
    assert stack.excitatory_size == net.rnn.h2h.e_size == 6
    torch.testing.assert_close(stack.hh_mask, net.rnn.h2h.mask.T)  # [pre, post] vs [post, pre]
    torch.testing.assert_close(stack.effective_weight_hh()[0],
                               net.rnn.h2h.effective_weight().detach().T)
    x = inputs()
    out, rates, final = reference(net, x)
    traj = pop.trajectories(x)
    close(traj.outputs[0], out)  # the net reads out the excitatory rates only
    close(torch.relu(traj.hidden[0]), rates)  # the state is the currents v, rates relu(v)
    close(traj.hidden[0, :, -1], final)
    close(pop.trajectories(x).hidden, traj.hidden)  # the frozen member draws no noise
    assert rates[..., 6:].abs().sum() > 0  # inhibitory units take part


def test_a_mask_that_is_not_excitatory_then_inhibitory_is_refused() -> None:
    torch.manual_seed(4)
    flipped = EIRNN(IN, H, dt=20)
    flipped.h2h.mask = torch.tensor([-1.0] * 2 + [1.0] * 6).repeat(H, 1).fill_diagonal_(0)
    mixed = EIRNN(IN, H, dt=20)
    mixed.h2h.mask[0, 3] = -1.0  # unit 3 excitatory onto all but unit 0
    readout = nn.Linear(H, OUT)
    with pytest.raises(ValueError, match=r"'flipped'.*not excitatory-then-inhibitory"
                                         r".*unit signs --\+\+\+\+\+\+;"):
        Population.from_torch({"flipped": (flipped, readout)})
    with pytest.raises(ValueError, match=r"'mixed'.*not one sign .* column\(s\) 3 differ"):
        Population.from_torch({"mixed": (mixed, readout)})


@pytest.mark.parametrize("fault, match", [
    ("no_alpha", r"'bad'.*has no alpha \(nor dt and tau\)"),
    ("alpha", r"'bad'.*alpha must be a finite number in \(0, 1\], got 2\.0"),
    ("input2h", r"'bad': input2h is a Conv1d, expected nn\.Linear\(I, 8\)"),
    ("readout", r"'bad': the readout has in_features=5 for hidden_size=8"),
    ("form", r"'bad': the module declares form='leaky'"),
])
def test_ctrnn_modules_missing_what_a_ctrnn_needs_are_refused(fault: str, match: str) -> None:
    rnn, readout = CTRNN(IN, H, dt=20), nn.Linear(H, OUT)
    if fault == "no_alpha":
        del rnn.alpha
    elif fault == "alpha":
        rnn.alpha = 2.0
    elif fault == "input2h":
        rnn.input2h = nn.Conv1d(IN, H, 1)
    elif fault == "readout":
        readout = nn.Linear(5, OUT)
    else:
        rnn.form = "leaky"
    with pytest.raises(ValueError, match=match):
        Population.from_torch({"good": RNNNet(IN, H, OUT), "bad": (rnn, readout)})


def test_a_ctrnn_module_without_its_readout_is_refused_with_the_remedy() -> None:
    with pytest.raises(ValueError, match=r"'alone'.*pass \(ctrnn, readout\)"):
        Population.from_torch({"alone": CTRNN(IN, H)})
