"""MetaCNN: shapes, both stage conditionings, θ everywhere, config round trip, bad arguments,
and EmbeddedNetwork at a θ of a feed-forward meta-model."""

from __future__ import annotations

import pytest
import torch

from dynamo_lightning.meta import EmbeddedNetwork, MetaCNN

B, T, IN, OUT, D = 5, 8, 8, 10, 2


def _meta(conditioning: str, seed: int = 0, **options: object) -> MetaCNN:
    torch.manual_seed(seed)
    return MetaCNN(IN, OUT, D, hidden_size=6, stages=3, conditioning=conditioning, **options)


def _data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, T, IN, generator=g), torch.randn(B, D, generator=g)


@pytest.mark.parametrize("conditioning", ["concat", "film"])
def test_shapes_gradients_and_theta_matter(conditioning: str) -> None:
    meta = _meta(conditioning)
    x, theta = _data()
    theta.requires_grad_(True)
    outputs, hidden = meta(x, theta)
    assert outputs.shape == (B, 1, OUT) and hidden.shape == (B, 3, 6 * 4)
    assert meta.state_size == 24 and not meta.recurrent
    (outputs.square().sum() + hidden.square().sum()).backward()
    assert theta.grad is not None and theta.grad.abs().min() > 0
    for name, p in meta.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name
    with torch.no_grad():  # θ changes every stage, not only the readout
        other = meta(x, theta + 1.0)[1]
        assert all(not torch.allclose(hidden[:, s], other[:, s]) for s in range(3))


def test_readout_is_linear_in_the_last_stage_and_theta() -> None:
    meta = _meta("concat")
    x, theta = _data()
    outputs, hidden = meta(x, theta)
    weight, bias = meta.head.weight, meta.head.bias
    want = hidden[:, -1] @ weight[:, :24].T + theta @ weight[:, 24:].T + bias
    torch.testing.assert_close(outputs[:, 0], want)


def test_film_starts_as_the_unmodulated_network_at_theta_zero() -> None:
    meta = _meta("film")
    x, _ = _data()
    zero = torch.zeros(B, D)
    maps = meta.convs(x.unsqueeze(1), zero)
    a = x.unsqueeze(1)
    for conv, got in zip(meta.convs.convs, maps, strict=True):
        a = torch.relu(conv(a))
        torch.testing.assert_close(got, a)


@pytest.mark.parametrize("conditioning", ["concat", "film"])
def test_config_rebuilds_the_same_network(conditioning: str) -> None:
    meta = _meta(conditioning)
    twin = MetaCNN(**meta.config())
    twin.load_state_dict(meta.state_dict())
    x, theta = _data()
    torch.testing.assert_close(twin(x, theta), meta(x, theta))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"conditioning": "lowrank"}, "unknown conditioning 'lowrank' for the meta-CNN"),
    ({"kernel_size": 2}, "kernel_size must be odd"),
    ({"stages": 0}, "stages must be a positive integer"),
    ({"conditioning": "concat", "rank": 2}, "bad options for the meta-CNN"),
])
def test_bad_arguments_name_the_argument(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MetaCNN(IN, OUT, D, **kwargs)


def test_bad_inputs_name_the_shapes() -> None:
    meta = _meta("concat")
    x, theta = _data()
    with pytest.raises(ValueError, match=r"x must be \[B, T>=1, 8\]"):
        meta(x[..., :4], theta)
    with pytest.raises(ValueError, match=r"theta must be \[B, 2\]"):
        meta(x, theta[:2])


def test_embedded_network_classifies_like_a_member_and_has_no_step() -> None:
    meta = _meta("film")
    x, theta = _data()
    net = EmbeddedNetwork(meta, theta[0])
    outputs, hidden = net(x)
    want = meta(x, theta[0].expand(B, -1))
    torch.testing.assert_close((outputs, hidden), want)
    assert not net.recurrent and list(net.parameters()) == []
    with pytest.raises(TypeError, match="feed-forward"):
        net.step(torch.zeros(B, 24), x[:, 0])
