"""The ``ctrnn`` architecture: both forms against a hand-written loop, its options and their
errors, Dale's law under training, training-only noise, and a population round trip."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import dynamo_lightning as dl
from dynamo_lightning.population.architectures import build

G, B, T, H = 3, 4, 7, 10
N_IN, N_OUT = 3, 2
SIZES = {"input_size": N_IN, "output_size": N_OUT, "hidden_size": H}
ACT = {"relu": torch.relu, "tanh": torch.tanh, "softplus": F.softplus}


def make(seeds: tuple[int, ...] = (1, 2, 3), **options: object) -> dl.architectures.Architecture:
    return build("ctrnn", num_members=len(seeds), seeds=list(seeds), **SIZES, **options)


def inputs(*leading: int, seed: int = 0) -> Tensor:
    return torch.randn(*leading, B, T, N_IN, generator=torch.Generator().manual_seed(seed))


def reference(p: dict[str, Tensor], x: Tensor, alpha: float, activation: str, form: str,
              dale_ratio: float | None, autapses: bool) -> tuple[Tensor, Tensor]:
    """One member, step by step, straight from the equations (neurogym / PsychRNN)."""
    f = ACT[activation]
    w = p["weight_hh"]
    if dale_ratio is not None:
        sign = torch.where(torch.arange(H) < int(dale_ratio * H), 1.0, -1.0).to(w.dtype)
        w = w.abs() * sign[:, None]  # row j: presynaptic unit j
    if not autapses:
        w = w - torch.diag(torch.diagonal(w))
    state = torch.zeros(x.shape[0], H, dtype=x.dtype)
    states, outputs = [], []
    for t in range(x.shape[1]):
        drive = x[:, t] @ p["weight_ih"] + p["bias_ih"]
        if form == "rate":
            state = (1 - alpha) * state + alpha * f(drive + state @ w + p["bias_hh"])
            rates = state
        else:
            state = (1 - alpha) * state + alpha * (drive + f(state) @ w + p["bias_hh"])
            rates = f(state)
        states.append(state)
        outputs.append(rates @ p["readout_weight"] + p["readout_bias"])
    return torch.stack(outputs, 1), torch.stack(states, 1)


# --------------------------------------------------------------------- equations
@pytest.mark.parametrize("activation", ["relu", "tanh", "softplus"])
@pytest.mark.parametrize("form", ["rate", "current"])
@pytest.mark.parametrize(("dale_ratio", "autapses"), [(None, True), (0.75, True), (0.5, False)])
def test_both_forms_match_a_hand_written_loop(form: str, activation: str,
                                              dale_ratio: float | None, autapses: bool) -> None:
    stack = make(alpha=0.3, activation=activation, form=form, dale_ratio=dale_ratio,
                 autapses=autapses)
    with torch.no_grad():  # trained-looking weights: biases large enough to switch units on
        stack.bias_hh.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(5))
    x = inputs(G)
    with torch.no_grad():
        outputs, hidden = stack(x)
    for i in range(G):
        p = stack.member_state(i)
        ref_out, ref_hid = reference(p, x[i], 0.3, activation, form, dale_ratio, autapses)
        torch.testing.assert_close(hidden[i], ref_hid, rtol=0, atol=1e-6)
        torch.testing.assert_close(outputs[i], ref_out, rtol=0, atol=1e-6)
    if form == "current" and activation == "relu":
        assert (hidden < 0).any()  # the state is v, not the rates relu(v)


@pytest.mark.parametrize("form", ["rate", "current"])
def test_step_agrees_with_forward(form: str) -> None:
    stack = make(form=form, activation="tanh", dale_ratio=0.8, autapses=False).eval()
    x = inputs()
    with torch.no_grad():
        outputs, hidden = stack(x)
        h = stack.initial_state(B)
        for t in range(T):
            h = stack.step(h, x[:, t])
            torch.testing.assert_close(h, hidden[:, :, t], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stack.readout(hidden), outputs, rtol=1e-5, atol=1e-6)


def test_effective_weight_is_weight_hh_without_constraints() -> None:
    stack = make()
    assert stack.effective_weight_hh() is stack.weight_hh
    assert make(dale_ratio=0.5).effective_weight_hh().shape == (G, H, H)


# --------------------------------------------------------------------- options
def test_alpha_from_dt_and_tau_is_stored_and_reloads() -> None:
    stack = make(dt=20, tau=100)
    assert stack.config() == {**SIZES, "alpha": 0.2, "dt": 20.0, "tau": 100.0,
                              "activation": "relu", "form": "rate", "noise_std": 0.0,
                              "dale_ratio": None, "autapses": True}
    assert make().config()["alpha"] == 0.2 and "dt" not in make().config()
    again = type(stack).from_member_states([stack.member_state(0)], **stack.config())
    same_alpha = type(stack).from_member_states([stack.member_state(0)], alpha=0.2, **SIZES)
    x = inputs()
    with torch.no_grad():
        torch.testing.assert_close(again(x)[1][0], stack(x)[1][0])
        torch.testing.assert_close(same_alpha(x)[1][0], stack(x)[1][0])
    assert make(dt=10, tau=100, alpha=0.1).config()["alpha"] == 0.1  # agreeing: accepted


@pytest.mark.parametrize(("options", "message"), [
    ({"alpha": 0.3, "dt": 20, "tau": 100}, r"alpha=0.3 disagrees with dt/tau"),
    ({"dt": 20}, "dt and tau must be given together"),
    ({"dt": 200, "tau": 100}, r"alpha = dt/tau .* in \(0, 1\]"),
    ({"dt": -1, "tau": 100}, "dt must be"),
    ({"alpha": 0.0}, r"alpha must be .* in \(0, 1\], got 0.0"),
    ({"alpha": 1.5}, "alpha must be"),
    ({"activation": "sigmoid"},
     "activation must be one of 'relu', 'tanh', 'softplus', got 'sigmoid'"),
    ({"form": "voltage"}, "form must be one of 'rate', 'current', got 'voltage'"),
    ({"dale_ratio": 1.0}, r"dale_ratio must be a number in \(0, 1\), got 1.0"),
    ({"dale_ratio": 0}, "dale_ratio must be"),
    ({"dale_ratio": True}, "dale_ratio must be"),
    ({"noise_std": -0.1}, "noise_std must be a finite number >= 0, got -0.1"),
    ({"noise_std": math.nan}, "noise_std must be"),
    ({"autapses": 0}, "autapses must be a bool"),
])
def test_bad_options_are_refused_by_name(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(**options)


def test_unknown_option_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'alpah'.*takes: .*alpha, dt, tau"):
        make(alpah=0.1)


# --------------------------------------------------------------------- Dale's law, autapses
def test_dale_signs_survive_training_and_autapses_stay_off() -> None:
    ratio = 0.75  # int(7.5) = 7 excitatory units: the floor, as PsychRNN and neurogym do
    stack = make(dale_ratio=ratio, autapses=False)
    before = stack.weight_hh.detach().clone()
    optimizer = torch.optim.Adam(stack.parameters(), lr=0.2)
    x, target = inputs(), torch.randn(B, T, N_OUT, generator=torch.Generator().manual_seed(1))
    for _ in range(8):
        optimizer.zero_grad()
        outputs, _ = stack(x)
        (outputs - target).square().mean().backward()
        optimizer.step()
    raw = stack.weight_hh.detach()
    assert ((raw > 0) != (before > 0)).any()  # the raw weights did cross zero ...
    w = stack.effective_weight_hh().detach()
    n_exc = int(ratio * H)
    assert n_exc == 7
    off_diagonal = ~torch.eye(H, dtype=torch.bool)
    assert bool((w[:, :n_exc] >= 0).all()) and bool((w[:, n_exc:] <= 0).all())  # ... not W_eff
    assert bool((w[:, :n_exc][:, off_diagonal[:n_exc]] > 0).any())
    assert bool((w[:, n_exc:][:, off_diagonal[n_exc:]] < 0).any())
    assert not torch.diagonal(w, dim1=1, dim2=2).any()


def test_dale_init_balances_excitation_and_inhibition() -> None:
    stack = make(seeds=tuple(range(20)), dale_ratio=0.8)
    w = stack.effective_weight_hh().detach()
    n_exc = int(0.8 * H)
    excitatory, inhibitory = w[:, :n_exc].sum(1), w[:, n_exc:].sum(1)  # per postsynaptic unit
    # Balanced in expectation: E and I totals agree to a few per cent over 20 members.
    assert excitatory.mean().item() == pytest.approx(-inhibitory.mean().item(), rel=0.15)


# --------------------------------------------------------------------- noise
def test_noise_only_in_training_mode() -> None:
    stack = make(noise_std=0.1)
    x = inputs()
    with torch.no_grad():
        assert not torch.equal(stack(x)[1], stack(x)[1])
        h = stack.initial_state(B)
        assert not torch.equal(stack.step(h, x[:, 0]), stack.step(h, x[:, 0]))
        stack.eval()
        torch.testing.assert_close(stack(x)[1], stack(x)[1], rtol=0, atol=0)
        quiet = make().train()
        torch.testing.assert_close(quiet(x)[1], quiet(x)[1], rtol=0, atol=0)


@pytest.mark.parametrize("form", ["rate", "current"])
def test_noise_std_follows_the_formula(form: str) -> None:
    """With zero weights the first step is noise alone: ``v_1 = sqrt(2α) σ ξ`` (current
    form), ``h_1 = α relu(sqrt(2/α) σ ξ)`` (rate form; E[relu(s ξ)²] = s²/2)."""
    alpha, sigma = 0.25, 0.3
    stack = make(seeds=(0,), alpha=alpha, noise_std=sigma, form=form)
    with torch.no_grad():
        for p in stack.parameters():
            p.zero_()
        x = torch.zeros(4000, 1, N_IN)
        first = stack(x)[1][0, :, 0]  # [4000, H]
    if form == "current":
        measured, expected = first.std().item(), math.sqrt(2 * alpha) * sigma
    else:
        measured = (first / alpha).square().mean().sqrt().item()
        expected = math.sqrt(2 / alpha) * sigma / math.sqrt(2)
    assert measured == pytest.approx(expected, rel=0.05)


# --------------------------------------------------------------------- compiled and saved
def test_cell_compiles_in_one_graph() -> None:
    """Population training ``torch.compile``s ``cell`` with ``fullgraph=True`` on a GPU: the
    cell (and W_eff, computed once per forward) must hold no graph break or host sync."""
    stack = make(form="current", dale_ratio=0.5, autapses=False).eval()
    x = inputs()
    with torch.no_grad():
        plain = stack(x)
        stack.cell = torch.compile(stack.cell, fullgraph=True, dynamic=False,
                                   backend="aot_eager")
        compiled = stack(x)
    torch.testing.assert_close(compiled, plain)


def test_population_round_trip_keeps_config_and_outputs(tmp_path: Path) -> None:
    stacks = {"rate": make(seeds=(4, 5), dt=10, tau=50, activation="softplus", noise_std=0.05),
              "current": make(seeds=(6,), form="current", dale_ratio=0.8, autapses=False)}
    population = dl.Population.concat([
        dl.Population.from_stack("ctrnn", stack, [f"{name}-{i}" for i in range(stack.num_members)])
        for name, stack in stacks.items()])
    loaded = dl.Population.load(population.save(tmp_path / "pop"))
    assert [m.config for m in loaded] == [m.config for m in population]
    assert loaded["current-0"].config["dale_ratio"] == 0.8
    x = inputs()
    trajectories = loaded.trajectories(x)  # eval mode: the noise is off
    expected = torch.cat([stack.eval()(x)[0].detach() for stack in stacks.values()])
    torch.testing.assert_close(trajectories.outputs, expected)
    h = loaded["current-0"].step(torch.zeros(B, H), x[:, 0])
    torch.testing.assert_close(h, trajectories.hidden[2][:, 0])
