"""Stacked architecture plugins: stacking, independent references, step/forward, errors.

Every check runs the stacked form against something computed without it: the same members run
one at a time, torch's own RNN/GRU/LSTM modules, a hand-written UGRNN loop of the paper's
equations, and per-member ``conv2d`` layers. Sizes are tiny so the file runs in seconds.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import dynamo_lightning as dl
from dynamo_lightning.population.architectures import (
    REGISTRY,
    Architecture,
    MemberNetwork,
    build,
    recurrent,
)

BUILTINS = ["vanilla", "relu", "gru", "lstm", "ugrnn", "cnn", "ctrnn"]
RECURRENT = ["vanilla", "relu", "gru", "lstm", "ugrnn", "ctrnn"]
G, B, T, H = 3, 4, 6, 5
SEEDS = [11, 12, 13]
# CNN members read [B, T, I] as a one-channel T×I image; I = 8 columns, hidden = channels.
CONFIGS = {
    "vanilla": {"input_size": 3, "output_size": 2, "hidden_size": H},
    "relu": {"input_size": 3, "output_size": 2, "hidden_size": H},
    "gru": {"input_size": 3, "output_size": 2, "hidden_size": H},
    "lstm": {"input_size": 3, "output_size": 2, "hidden_size": H},
    "ugrnn": {"input_size": 3, "output_size": 2, "hidden_size": H},
    "cnn": {"input_size": 8, "output_size": 3, "hidden_size": 4, "n_layers": 2},
    # The least plain ctrnn: the state is the currents v, 3 excitatory units, no autapses.
    "ctrnn": {"input_size": 3, "output_size": 2, "hidden_size": H, "form": "current",
              "activation": "tanh", "alpha": 0.3, "dale_ratio": 0.6, "autapses": False},
}


def make_stack(name: str, seeds: list[int] = SEEDS, dtype: torch.dtype = torch.float32,
               **overrides: object) -> Architecture:
    stack = build(name, num_members=len(seeds), seeds=seeds, **{**CONFIGS[name], **overrides})
    return stack.to(dtype)


def make_inputs(name: str, *leading: int, dtype: torch.dtype = torch.float32) -> Tensor:
    rows = 8 if name == "cnn" else T
    generator = torch.Generator().manual_seed(0)
    return torch.randn(*leading, B, rows, CONFIGS[name]["input_size"], generator=generator,
                       dtype=dtype)


def alone(stack: Architecture, index: int) -> Architecture:
    """Member ``index`` of ``stack`` rebuilt as a stack of one."""
    return type(stack).from_member_states([stack.member_state(index)], **stack.config())


def params(stack: Architecture, index: int) -> dict[str, Tensor]:
    return {k: v.double() for k, v in stack.member_state(index).items()}


# --------------------------------------------------------------------- stacked = members alone
@pytest.mark.parametrize("shared", [True, False], ids=["shared_x", "per_member_x"])
@pytest.mark.parametrize("name", BUILTINS)
def test_stack_matches_members_run_alone(name: str, shared: bool) -> None:
    stack = make_stack(name)
    x = make_inputs(name) if shared else make_inputs(name, G)
    with torch.no_grad():
        outputs, hidden = stack(x)
        assert outputs.shape[:2] == hidden.shape[:2] == (G, B)
        assert hidden.shape[-1] == stack.state_size
        for i in range(G):
            out_i, hid_i = alone(stack, i)(x if shared else x[i : i + 1])
            torch.testing.assert_close(outputs[i], out_i[0], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(hidden[i], hid_i[0], rtol=1e-5, atol=1e-6)
    # Members really differ: a stack of copies would pass the loop above trivially.
    assert not torch.allclose(hidden[0], hidden[1])


# --------------------------------------------------------------------- independent references
def torch_rnn_reference(name: str, p: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """One member through torch.nn.RNN/GRU/LSTM (weights transposed in) + linear readout."""
    size, inputs = H, CONFIGS[name]["input_size"]
    if name in ("vanilla", "relu"):
        nonlinearity = "tanh" if name == "vanilla" else "relu"
        module: torch.nn.RNNBase = torch.nn.RNN(inputs, size, nonlinearity=nonlinearity,
                                                batch_first=True)
    elif name == "gru":
        module = torch.nn.GRU(inputs, size, batch_first=True)
    else:
        module = torch.nn.LSTM(inputs, size, batch_first=True)
    module = module.double()
    with torch.no_grad():
        module.weight_ih_l0.copy_(p["weight_ih"].T)
        module.weight_hh_l0.copy_(p["weight_hh"].T)
        module.bias_ih_l0.copy_(p["bias_ih"])
        module.bias_hh_l0.copy_(p["bias_hh"])
        if name == "lstm":  # step by step, to see the cell state c at every step too
            state, steps = None, []
            for t in range(x.shape[1]):
                _, state = module(x[:, t : t + 1], state)
                steps.append(torch.cat([state[0][0], state[1][0]], dim=-1))
            hidden = torch.stack(steps, dim=1)
        else:
            hidden, _ = module(x)
    outputs = hidden[..., :size] @ p["readout_weight"] + p["readout_bias"]
    return outputs, hidden


def ugrnn_reference(p: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """Collins et al. 2017: c = tanh(W_c[x,h] + b_c), g = σ(W_g[x,h] + b_g), h' = g h + (1-g) c."""
    w_cx, w_gx = p["weight_ih"][:, :H], p["weight_ih"][:, H:]
    w_ch, w_gh = p["weight_hh"][:, :H], p["weight_hh"][:, H:]
    b = p["bias_ih"] + p["bias_hh"]
    b_c, b_g = b[:H], b[H:]
    h = torch.zeros(x.shape[0], H, dtype=x.dtype)
    states = []
    for t in range(x.shape[1]):
        c = torch.tanh(x[:, t] @ w_cx + h @ w_ch + b_c)
        g = torch.sigmoid(x[:, t] @ w_gx + h @ w_gh + b_g)
        h = g * h + (1 - g) * c
        states.append(h)
    hidden = torch.stack(states, dim=1)
    return hidden @ p["readout_weight"] + p["readout_bias"], hidden


def ctrnn_reference(p: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """PsychRNN's BasicRNN with Dale's law: v' = (1-α) v + α (x W_in + W_eff^T tanh(v) + b),
    y = tanh(v) W_o + b_o; W_eff = |W| with inhibitory presynaptic rows negated, no diagonal."""
    sign = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0], dtype=x.dtype)  # int(0.6 * 5) = 3 E
    w = (p["weight_hh"].abs() * sign[:, None]) * (1 - torch.eye(H, dtype=x.dtype))
    v = torch.zeros(x.shape[0], H, dtype=x.dtype)
    states = []
    for t in range(x.shape[1]):
        v = 0.7 * v + 0.3 * (x[:, t] @ p["weight_ih"] + p["bias_ih"] + torch.tanh(v) @ w
                             + p["bias_hh"])
        states.append(v)
    hidden = torch.stack(states, dim=1)
    return torch.tanh(hidden) @ p["readout_weight"] + p["readout_bias"], hidden


def cnn_reference(p: dict[str, Tensor], x: Tensor, n_layers: int, pool: int = 2,
                  kernel: int = 3) -> tuple[Tensor, Tensor]:
    """Plain per-member conv2d layers (no groups) + ReLU + adaptive average pooling."""
    a, stages = x.unsqueeze(1), []
    for layer in range(n_layers):
        a = F.relu(F.conv2d(a, p[f"conv{layer}_weight"], p[f"conv{layer}_bias"],
                            padding=kernel // 2))
        stages.append(F.adaptive_avg_pool2d(a, pool).flatten(1))
    hidden = torch.stack(stages, dim=1)
    outputs = hidden[:, -1] @ p["readout_weight"] + p["readout_bias"]
    return outputs.unsqueeze(1), hidden


@pytest.mark.parametrize("name", BUILTINS)
def test_matches_independent_reference(name: str) -> None:
    stack = make_stack(name, dtype=torch.float64)
    x = make_inputs(name, G, dtype=torch.float64)
    with torch.no_grad():
        outputs, hidden = stack(x)
    for i in range(G):
        p = params(stack, i)
        if name == "ugrnn":
            ref_out, ref_hid = ugrnn_reference(p, x[i])
        elif name == "cnn":
            ref_out, ref_hid = cnn_reference(p, x[i], CONFIGS["cnn"]["n_layers"])
        elif name == "ctrnn":
            ref_out, ref_hid = ctrnn_reference(p, x[i])
        else:
            ref_out, ref_hid = torch_rnn_reference(name, p, x[i])
        torch.testing.assert_close(hidden[i], ref_hid, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(outputs[i], ref_out, rtol=1e-9, atol=1e-9)


def test_cnn_options_change_shapes() -> None:
    stack = make_stack("cnn", n_layers=3, kernel_size=5, pool_size=1)
    outputs, hidden = stack(make_inputs("cnn"))
    assert outputs.shape == (G, B, 1, 3)
    assert hidden.shape == (G, B, 3, 4)  # 3 stages of 4 channels × 1 × 1
    p = params(stack, 1)
    ref_out, ref_hid = cnn_reference(p, make_inputs("cnn").double(), 3, pool=1, kernel=5)
    torch.testing.assert_close(hidden[1].double(), ref_hid, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outputs[1].double(), ref_out, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------- step / member view
@pytest.mark.parametrize("shared", [True, False], ids=["shared_x", "per_member_x"])
@pytest.mark.parametrize("name", RECURRENT)
def test_step_reproduces_forward(name: str, shared: bool) -> None:
    stack = make_stack(name)
    x = make_inputs(name) if shared else make_inputs(name, G)
    with torch.no_grad():
        outputs, hidden = stack(x)
        h = stack.initial_state(B)
        assert h.shape == (G, B, stack.state_size)
        assert not h.any()
        for t in range(T):
            h = stack.step(h, x[:, t] if shared else x[:, :, t])
            torch.testing.assert_close(h, hidden[:, :, t], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stack.readout(hidden), outputs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("name", RECURRENT)
def test_forward_paths_agree(name: str, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunked projections, states written straight into the output, autograd, and vmap."""
    stack = make_stack(name)
    x = make_inputs(name, G)
    with torch.no_grad():  # tiny stack: one projection chunk, states stacked at the end
        ref_out, ref_hid = stack(x)
    gate_units = stack.weight_ih.shape[-1]
    monkeypatch.setattr(recurrent, "PROJECTION_CHUNK_BYTES", chunk * G * B * gate_units * 4)
    monkeypatch.setattr(recurrent, "DIRECT_OUTPUT_BYTES", 0)
    with torch.no_grad():
        out, hid = stack(x)
        torch.testing.assert_close(hid, ref_hid, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
        both = torch.func.vmap(stack)(torch.stack([x, 2 * x]))
        torch.testing.assert_close(both[1][0], ref_hid, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(both[1][1], stack(2 * x)[1], rtol=1e-5, atol=1e-6)
    out, hid = stack(x)  # autograd records: the differentiable path
    assert hid.requires_grad and out.requires_grad
    torch.testing.assert_close(hid.detach(), ref_hid, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", BUILTINS)
def test_member_network_calling_convention(name: str) -> None:
    stack = make_stack(name)
    net = MemberNetwork(alone(stack, 1))
    x = make_inputs(name)
    assert not net.training
    assert all(not p.requires_grad for p in net.parameters())
    outputs, hidden = net(x)
    assert not outputs.requires_grad
    with torch.no_grad():
        stack_out, stack_hid = stack(x)
    torch.testing.assert_close(outputs, stack_out[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(hidden, stack_hid[1], rtol=1e-5, atol=1e-6)
    stages = 1 if name != "cnn" else CONFIGS["cnn"]["n_layers"]
    if name == "cnn":
        assert outputs.shape == (B, 1, 3) and hidden.shape == (B, stages, 16)
        with pytest.raises(TypeError, match="step"):
            net.step(torch.zeros(B, 16), x[:, 0])
        return
    assert outputs.shape == (B, T, 2) and hidden.shape == (B, T, net.state_size)
    h = net.initial_state(B)
    for t in range(T):
        h = net.step(h, x[:, t])
    assert h.shape == (B, net.state_size)
    torch.testing.assert_close(h, hidden[:, -1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(net.readout(hidden), outputs, rtol=1e-5, atol=1e-6)


def test_member_network_needs_a_stack_of_one() -> None:
    with pytest.raises(ValueError, match="one member"):
        MemberNetwork(make_stack("gru"))


# --------------------------------------------------------------------- initialisation
@pytest.mark.parametrize("name", BUILTINS)
def test_init_is_per_member_deterministic(name: str) -> None:
    single = make_stack(name, seeds=[7]).member_state(0)
    stacked = make_stack(name, seeds=[3, 5, 7]).member_state(2)
    assert single.keys() == stacked.keys()
    for key in single:
        assert torch.equal(single[key], stacked[key]), key
    other = make_stack(name, seeds=[8]).member_state(0)
    assert not torch.equal(single["readout_weight"], other["readout_weight"])


@pytest.mark.parametrize(("name", "block", "expected"), [
    ("lstm", slice(H, 2 * H), "forget"), ("ugrnn", slice(H, 2 * H), "gate")])
def test_gate_bias_starts_at_one(name: str, block: slice, expected: str) -> None:
    bias = make_stack(name, seeds=[7]).member_state(0)["bias_ih"]
    bound = 1 / H**0.5
    assert bool(((bias[block] - 1).abs() <= bound).all()), expected
    assert bool((bias[:H].abs() <= bound).all())


# --------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", BUILTINS)
def test_gradients_stay_within_a_member(name: str) -> None:
    stack = make_stack(name)
    x = make_inputs(name, G).requires_grad_(True)
    outputs, hidden = stack(x)
    (outputs[0].square().sum() + hidden[0].square().sum()).backward()
    for key, p in stack.named_parameters():
        assert p.grad is not None, key
        assert p.grad[0].abs().sum() > 0, key
        assert not p.grad[1:].any(), key
    assert x.grad[0].abs().sum() > 0
    assert not x.grad[1:].any()


# --------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", BUILTINS)
def test_bad_inputs_raise_value_error(name: str) -> None:
    stack = make_stack(name)
    x = make_inputs(name)
    with pytest.raises(ValueError, match="input size"):
        stack(torch.cat([x, x[..., :1]], dim=-1))
    with pytest.raises(ValueError, match=rf"\[{G},B,T,"):
        stack(x.unsqueeze(0).expand(G + 1, -1, -1, -1))
    with pytest.raises(ValueError, match="expected inputs"):
        stack(x[0])
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="hidden_size"):
            make_stack(name, hidden_size=bad)
    with pytest.raises(ValueError, match="seeds"):
        build(name, num_members=2, seeds=[1], **CONFIGS[name])
    with pytest.raises(ValueError, match=rf"bad config for architecture '{name}'.*not_an_option"):
        build(name, **CONFIGS[name], not_an_option=1)


@pytest.mark.parametrize("kernel_size", [2, 4, 0])
def test_cnn_rejects_even_kernel(kernel_size: int) -> None:
    with pytest.raises(ValueError, match="kernel_size"):
        make_stack("cnn", kernel_size=kernel_size)


@pytest.mark.parametrize("name", BUILTINS)
def test_from_member_states_names_the_bad_tensor(name: str) -> None:
    stack = make_stack(name)
    cls, config = type(stack), stack.config()
    missing = stack.member_state(0)
    del missing["readout_bias"]
    with pytest.raises(ValueError, match="readout_bias"):
        cls.from_member_states([stack.member_state(1), missing], **config)
    wrong = stack.member_state(0)
    wrong["readout_weight"] = torch.zeros(9, 9)
    with pytest.raises(ValueError, match=r"readout_weight.*\(9, 9\)"):
        cls.from_member_states([wrong], **config)
    extra = {**stack.member_state(0), "stray": torch.zeros(1)}
    with pytest.raises(ValueError, match="stray"):
        cls.from_member_states([extra], **config)
    # A state saved with another hidden size does not fit this config.
    small = make_stack(name, seeds=[0], hidden_size=2).member_state(0)
    with pytest.raises(ValueError, match="shape"):
        cls.from_member_states([small], **config)


# --------------------------------------------------------------------- registry
def test_registry_lists_builtins() -> None:
    names = dl.architectures.names()
    assert names[: len(BUILTINS)] == BUILTINS  # built-ins first, in registration order
    for name in BUILTINS:
        assert dl.architectures.get(name).registered_name == name


def test_registering_a_duplicate_name_raises() -> None:
    class Impostor(dl.architectures.get("gru")):  # type: ignore[misc]
        pass

    with pytest.raises(ValueError, match="'gru' is already registered"):
        dl.register_architecture("gru")(Impostor)
    assert dl.architectures.get("gru") is not Impostor


def test_registering_a_new_architecture(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(REGISTRY, "_entries", dict(REGISTRY._entries))

    @dl.register_architecture("test_scaled_vanilla")
    class Scaled(dl.architectures.get("vanilla")):  # type: ignore[misc]
        def cell(self, h: Tensor, u: Tensor) -> Tensor:
            return 0.5 * super().cell(h, u)

    assert "test_scaled_vanilla" in dl.architectures.names()
    stack = build("test_scaled_vanilla", num_members=2, seeds=[1, 2], **CONFIGS["vanilla"])
    _, hidden = stack(make_inputs("vanilla"))
    assert hidden.abs().max() <= 0.5


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(KeyError) as info:
        build("gruu", num_members=1, **CONFIGS["gru"])
    message = str(info.value)
    assert "gruu" in message
    for name in BUILTINS:
        assert name in message


@pytest.mark.parametrize("name", ["vanilla", "gru", "lstm", "cnn"])
def test_a_subset_of_members_runs_like_the_whole_stack(name: str) -> None:
    """``members(indices)`` gathers parameters only: the chosen members compute what they do
    in the whole stack, on inputs of their own, and the stack is left as it was."""
    size = 8 if name == "cnn" else 3
    stack = dl.architectures.build(name, num_members=5, seeds=[3, 1, 4, 1, 5], input_size=size,
                                   output_size=2, hidden_size=4)
    x = torch.randn(5, 6, 8, size)  # one batch per member
    full_outputs, full_hidden = stack(x)
    chosen = torch.tensor([4, 0, 2])
    subset = stack.members(chosen)
    outputs, hidden = subset(x[chosen])
    assert subset.num_members == 3 and stack.num_members == 5
    torch.testing.assert_close(outputs, full_outputs[chosen])
    torch.testing.assert_close(hidden, full_hidden[chosen])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        stack.members(torch.tensor([], dtype=torch.long))
