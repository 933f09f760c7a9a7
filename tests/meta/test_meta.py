"""The meta layer: MetaRNN for every cell × conditioning, EmbeddedNetwork, the plugin registry."""

from __future__ import annotations

import itertools
import json
import uuid

import pytest
import torch
from torch import Tensor, nn

from dynamo_lightning.meta import EmbeddedNetwork, LoopConditioning, MetaRNN
from dynamo_lightning.meta import cells as meta_cells
from dynamo_lightning.meta import conditionings as conditioning
from dynamo_lightning.registry import UnknownNameError

CELLS = ["gru", "lstm", "vanilla"]
CONDITIONINGS = ["concat", "film", "lowrank"]
ALL = list(itertools.product(CELLS, CONDITIONINGS))
B, T, IN, OUT, D, H = 4, 6, 3, 2, 2, 8


def _meta(cell: str, cond: str, seed: int = 0, **options: object) -> MetaRNN:
    torch.manual_seed(seed)
    return MetaRNN(IN, OUT, D, hidden_size=H, cell=cell, conditioning=cond, **options)


def _data(seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, IN, generator=g), torch.randn(B, D, generator=g)


def _unroll(step, h: Tensor, x: Tensor) -> Tensor:
    states = []
    for t in range(x.shape[1]):
        h = step(h, x[:, t])
        states.append(h)
    return torch.stack(states, dim=1)


# ------------------------------------------------------------------- MetaRNN, all combos
@pytest.mark.parametrize(("cell", "cond"), ALL)
def test_step_iterated_from_initial_state_matches_forward(cell: str, cond: str) -> None:
    meta = _meta(cell, cond)
    x, theta = _data()
    outputs, hidden = meta(x, theta)
    state = meta.state_size
    assert state == (2 * H if cell == "lstm" else H)
    assert outputs.shape == (B, T, OUT) and hidden.shape == (B, T, state)
    assert meta.initial_state(theta).shape == (B, state)
    stepped = _unroll(lambda h, xt: meta.step(h, xt, theta), meta.initial_state(theta), x)
    torch.testing.assert_close(stepped, hidden, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(meta.readout(stepped, theta[:, None]), outputs, atol=1e-5,
                               rtol=1e-5)
    h0 = torch.randn(B, state)  # an explicit initial state is honoured too
    stepped = _unroll(lambda h, xt: meta.step(h, xt, theta), h0, x)
    torch.testing.assert_close(stepped, meta(x, theta, h0)[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("cell", "cond"), ALL)
def test_gradients_reach_theta_and_every_weight(cell: str, cond: str) -> None:
    meta = _meta(cell, cond)
    x, theta = _data()
    theta.requires_grad_(True)
    outputs, hidden = meta(x, theta)
    (outputs.square().sum() + hidden.square().sum()).backward()
    assert theta.grad is not None and theta.grad.abs().min() > 0
    for name, p in meta.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name


@pytest.mark.parametrize(("cell", "cond"), ALL)
def test_theta_matters_everywhere(cell: str, cond: str) -> None:
    meta = _meta(cell, cond)
    x, theta = _data()
    other = theta + 1.0
    assert not torch.allclose(meta(x, theta)[1], meta(x, other)[1])
    assert not torch.allclose(meta.initial_state(theta), meta.initial_state(other))
    h = torch.randn(B, meta.state_size)
    assert not torch.allclose(meta.readout(h, theta), meta.readout(h, other))
    # The recurrence itself, from the same state and input (not only through h0/readout).
    assert not torch.allclose(meta.step(h, x[:, 0], theta), meta.step(h, x[:, 0], other))


@pytest.mark.parametrize(("cell", "cond"), ALL)
def test_config_is_json_and_rebuilds_the_same_model(cell: str, cond: str) -> None:
    meta = _meta(cell, cond)
    config = json.loads(json.dumps(meta.config()))
    assert config["cell"] == cell and config["conditioning"] == cond
    clone = MetaRNN(**config)
    clone.load_state_dict(meta.state_dict())
    x, theta = _data()
    torch.testing.assert_close(clone(x, theta), meta(x, theta))


@pytest.mark.parametrize("cell", CELLS)
def test_concat_runs_the_torch_module_with_theta_appended(cell: str) -> None:
    meta = _meta(cell, "concat")
    x, theta = _data()
    rnn = meta.conditioning.rnn
    assert isinstance(rnn, {"gru": nn.GRU, "lstm": nn.LSTM, "vanilla": nn.RNN}[cell])
    h0 = meta.initial_state(theta)
    xt = torch.cat([x, theta[:, None].expand(-1, T, -1)], dim=-1)
    hidden = meta(x, theta)[1]
    if cell == "lstm":  # [h, c]: c at every step is recovered from the fused output
        ref, (_, c_last) = rnn(xt, (h0[None, :, :H], h0[None, :, H:]))
        torch.testing.assert_close(hidden[:, -1, H:], c_last[0])
    else:
        ref = rnn(xt, h0[None])[0]
    torch.testing.assert_close(hidden[..., :H], ref)


def test_lstm_memory_scan_matches_sequential_recurrence() -> None:
    gates, c0 = torch.randn(3, 37, 4 * 5), torch.randn(3, 5)
    i, f, g, _ = gates.chunk(4, dim=-1)
    c, expected = c0, []
    for t in range(37):
        c = torch.sigmoid(f[:, t]) * c + torch.sigmoid(i[:, t]) * torch.tanh(g[:, t])
        expected.append(c)
    torch.testing.assert_close(meta_cells.lstm_memory(gates, c0), torch.stack(expected, 1))


# ---------------------------------------------------------------------- lowrank and film
@pytest.mark.parametrize("cell", CELLS)
def test_lowrank_efficient_form_equals_explicit_per_sample_weights(cell: str) -> None:
    meta = _meta(cell, "lowrank", rank=2)
    cond = meta.conditioning
    assert cond.U.shape == (D, H, 2) and cond.V.shape == (D, cond.gate_size, 2)
    h, theta = torch.randn(B, H), torch.randn(B, D)
    weights = cond.weight_hh.detach().expand(B, -1, -1).clone()  # [B, gH, H]
    for b, i in itertools.product(range(B), range(D)):
        weights[b] += theta[b, i] * cond.V[i] @ cond.U[i].T
    explicit = torch.einsum("bgh,bh->bg", weights, h) + cond.bias_hh
    torch.testing.assert_close(cond.recurrent_gates(h, theta), explicit)
    torch.testing.assert_close(cond.weight_hh_at(theta), weights)
    # At θ = 0 the recurrent weights are exactly W₀.
    torch.testing.assert_close(cond.recurrent_gates(h, torch.zeros(B, D)),
                               nn.functional.linear(h, cond.weight_hh, cond.bias_hh))


@pytest.mark.parametrize("cell", CELLS)
def test_film_starts_near_identity_and_follows_the_documented_formula(cell: str) -> None:
    meta = _meta(cell, "film")
    cond = meta.conditioning
    gamma, beta = cond.modulation(torch.zeros(B, D))
    assert torch.equal(gamma, torch.ones_like(gamma)) and torch.equal(beta, torch.zeros_like(beta))
    theta = torch.randn(B, D)
    gamma, beta = cond.modulation(theta)
    assert gamma.shape == beta.shape == (B, cond.gate_size)
    assert (gamma - 1).abs().max() < 0.5 and beta.abs().max() < 0.5
    assert not torch.allclose(gamma, torch.ones_like(gamma))
    h, x = torch.randn(B, meta.state_size), torch.randn(B, IN)
    gx = nn.functional.linear(x, cond.weight_ih, cond.bias_ih)
    gh = nn.functional.linear(h[:, :H], cond.weight_hh, cond.bias_hh)
    a = gx + gh
    if cell == "vanilla":
        expected = torch.tanh(gamma * a + beta)
    elif cell == "gru":
        r = torch.sigmoid(gamma[:, :H] * a[:, :H] + beta[:, :H])
        z = torch.sigmoid(gamma[:, H : 2 * H] * a[:, H : 2 * H] + beta[:, H : 2 * H])
        n = torch.tanh(gamma[:, 2 * H :] * (gx[:, 2 * H :] + r * gh[:, 2 * H :])
                       + beta[:, 2 * H :])
        expected = (1 - z) * n + z * h
    else:
        i, f, g, o = (gamma * a + beta).split(H, dim=1)
        c = torch.sigmoid(f) * h[:, H:] + torch.sigmoid(i) * torch.tanh(g)
        expected = torch.cat([torch.sigmoid(o) * torch.tanh(c), c], dim=1)
    torch.testing.assert_close(meta.step(h, x, theta), expected)


# ----------------------------------------------------------------------- EmbeddedNetwork
@pytest.mark.parametrize(("cell", "cond"), [("gru", "concat"), ("lstm", "lowrank"),
                                            ("vanilla", "film")])
def test_embedded_network_is_the_meta_model_at_theta(cell: str, cond: str) -> None:
    meta = _meta(cell, cond)
    x, _ = _data()
    theta = torch.tensor([0.3, -0.7])
    net = EmbeddedNetwork(meta, theta)
    expected = meta(x, theta.expand(B, D))
    outputs, hidden = net(x)
    torch.testing.assert_close((outputs, hidden), expected)
    assert net.recurrent and net.state_size == meta.state_size and not net.training
    torch.testing.assert_close(_unroll(net.step, net.initial_state(B), x), hidden, atol=1e-5,
                               rtol=1e-5)
    torch.testing.assert_close(net.readout(hidden), outputs)
    # Frozen: nothing trainable, no graph into the meta-model's weights.
    assert all(not p.requires_grad for p in net.parameters())
    assert not outputs.requires_grad and meta.training  # the shared model was not touched
    assert torch.equal(net.theta, theta) and "theta" in dict(net.named_buffers())


def test_embedded_network_wraps_a_reference_not_a_copy() -> None:
    meta = _meta("gru", "concat")
    x, _ = _data()
    net = EmbeddedNetwork(meta, torch.zeros(D))
    assert net.meta_model is meta and set(net.state_dict()) == {"theta"}
    before = net(x)[0]
    with torch.no_grad():
        meta.head.bias.add_(1.0)  # an optimiser step on the meta-model shows up at once
    torch.testing.assert_close(net(x)[0], before + 1.0)


def test_embedded_network_supports_jacobians_without_touching_meta_grads() -> None:
    meta = _meta("lstm", "concat")
    net = EmbeddedNetwork(meta, torch.ones(D))
    h, x = torch.randn(5, meta.state_size), torch.randn(5, IN)

    def one(hi: Tensor, xi: Tensor) -> Tensor:
        return net.step(hi[None], xi[None])[0]

    jac = torch.func.vmap(torch.func.jacrev(one))(h, x)
    assert jac.shape == (5, meta.state_size, meta.state_size)
    h.requires_grad_(True)
    net.step(h, x).sum().backward()
    assert h.grad is not None and all(p.grad is None for p in meta.parameters())


def test_embedded_network_of_a_frozen_meta_model_gives_the_same_results() -> None:
    meta = _meta("gru", "film")
    x, _ = _data()
    net = EmbeddedNetwork(meta, torch.ones(D))
    expected = net(x)
    meta.requires_grad_(False)  # e.g. a checkpoint loaded for analysis: the direct path
    torch.testing.assert_close(net(x), expected)
    with torch.no_grad():
        meta.requires_grad_(True)
        torch.testing.assert_close(net(x), expected)


def test_embedded_network_rejects_a_wrong_theta() -> None:
    with pytest.raises(ValueError, match=r"theta must be \[2\].*got \(3,\)"):
        EmbeddedNetwork(_meta("gru", "concat"), torch.zeros(3))


# --------------------------------------------------------------------------- bad calls
@pytest.mark.parametrize("key", ["input_size", "output_size", "embedding_dim", "hidden_size"])
@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_non_positive_sizes_name_the_argument(key: str, value: object) -> None:
    kwargs = {"input_size": IN, "output_size": OUT, "embedding_dim": D, "hidden_size": H}
    kwargs[key] = value
    with pytest.raises(ValueError, match=key):
        MetaRNN(**kwargs)


def test_unknown_cell_and_conditioning_list_the_known_names() -> None:
    with pytest.raises(ValueError, match=r"unknown cell 'gruu' \(known: gru, lstm, vanilla\)"):
        MetaRNN(IN, OUT, D, cell="gruu")
    with pytest.raises(UnknownNameError, match=r"'filmm' \(known: concat, film, lowrank"):
        MetaRNN(IN, OUT, D, conditioning="filmm")


def test_bad_conditioning_options_raise_value_error() -> None:
    with pytest.raises(ValueError, match=r"bad options for conditioning 'concat'.*rank"):
        MetaRNN(IN, OUT, D, conditioning="concat", rank=2)
    with pytest.raises(ValueError, match="rank must be a positive integer, got 0"):
        MetaRNN(IN, OUT, D, conditioning="lowrank", rank=0)
    with pytest.raises(ValueError, match="init_scale"):
        MetaRNN(IN, OUT, D, conditioning="film", init_scale=-1.0)


def test_call_time_shape_errors_name_both_shapes() -> None:
    meta = _meta("gru", "concat")
    x, theta = _data()
    with pytest.raises(ValueError, match=r"theta batch \(3, 2\).*x batch \(4, 6, 3\)"):
        meta(x, theta[:3])
    with pytest.raises(ValueError, match=r"x must be \[B, T>=1, 3\], got \(4, 6, 5\)"):
        meta(torch.randn(B, T, 5), theta)
    with pytest.raises(ValueError, match=r"theta must be \[B, 2\], got \(4, 3\)"):
        meta(x, torch.randn(B, 3))
    with pytest.raises(ValueError, match=r"h must be \[B, 8\].*h \(4, 7\), x \(4, 3\)"):
        meta.step(torch.randn(B, 7), x[:, 0], theta)
    with pytest.raises(ValueError, match=r"x must be \[B, 3\], got \(4, 6, 3\)"):
        meta.step(torch.randn(B, H), x, theta)
    with pytest.raises(ValueError, match=r"h0 must be"):
        meta(x, theta, torch.randn(2, H))
    with pytest.raises(ValueError, match="does not broadcast"):
        meta.readout(torch.randn(B, T, H), torch.randn(3, D))


# ----------------------------------------------------------------------------- registry
def test_registry_lists_the_builtins_and_default() -> None:
    assert conditioning.names()[:3] == CONDITIONINGS
    assert conditioning.DEFAULT == "concat"
    assert MetaRNN(IN, OUT, D).config()["conditioning"] == "concat"
    assert conditioning.get("film").registered_name == "film"


def test_a_custom_conditioning_can_be_registered_and_used() -> None:
    name = f"test-additive-{uuid.uuid4().hex[:8]}"

    class Additive(LoopConditioning):
        """θ shifts the input gates: ``gx = W_ih x + b_ih + S θ``."""

        def __init__(self, cell: str, input_size: int, hidden_size: int,
                     embedding_dim: int) -> None:
            super().__init__(cell, input_size, hidden_size, embedding_dim)
            self.shift = nn.Linear(embedding_dim, self.gate_size, bias=False)

        def input_gates(self, x: Tensor, theta: Tensor) -> Tensor:
            return super().input_gates(x, theta) + self.shift(theta)[:, None]

    try:
        assert conditioning.register(name)(Additive) is Additive
        assert name in conditioning.names() and conditioning.get(name) is Additive
        with pytest.raises(ValueError, match="already registered"):
            conditioning.register(name)(type("Other", (LoopConditioning,), {}))
        meta = MetaRNN(IN, OUT, D, hidden_size=H, cell="lstm", conditioning=name)
        x, theta = _data()
        hidden = meta(x, theta)[1]
        stepped = _unroll(lambda h, xt: meta.step(h, xt, theta), meta.initial_state(theta), x)
        torch.testing.assert_close(stepped, hidden)
        assert meta.config()["conditioning"] == name
    finally:
        conditioning.REGISTRY._entries.pop(name, None)
    assert name not in conditioning.names()
