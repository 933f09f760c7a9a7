"""``modes.frozen``: eval mode and no gradients for a block, everything restored exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dynamo_lightning.modes import frozen


def model() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))
    net[0].bias.requires_grad_(False)  # frozen by the user before
    net[1].eval()  # a submodule kept in eval mode by the user
    return net


def test_frozen_restores_each_parameter_and_submodule_as_it_was() -> None:
    net = model()
    before_modes = [m.training for m in net.modules()]
    before_grads = [p.requires_grad for p in net.parameters()]
    with frozen(net) as inside:
        assert inside is net and not any(m.training for m in net.modules())
        assert not any(p.requires_grad for p in net.parameters())
    assert [m.training for m in net.modules()] == before_modes == [True, True, False, True]
    assert [p.requires_grad for p in net.parameters()] == before_grads
    assert not net[0].bias.requires_grad  # still frozen, as the user left it


def test_frozen_restores_after_an_error_and_can_leave_one_side_alone() -> None:
    net = model()
    with pytest.raises(RuntimeError), frozen(net, eval_mode=False):
        assert net.training and not net[2].weight.requires_grad
        raise RuntimeError("boom")
    assert net[2].weight.requires_grad and net.training
    with frozen(net, no_grad=False):
        assert not net.training and net[2].weight.requires_grad


def test_fit_embedding_leaves_a_frozen_meta_parameter_frozen(tiny_fit: dict) -> None:
    from dynamo_lightning.module import DynamoModule

    m = DynamoModule.load_from_checkpoint(tiny_fit["ckpt"], map_location="cpu")
    first = next(m.meta.parameters())
    first.requires_grad_(False)
    x = torch.randn(4, 6, m.hparams.input_size)
    with torch.no_grad():
        y = m.meta_model_at(m.embeddings()[0])(x)[0]
    m.fit_embedding(x, outputs=y, steps=2)
    assert not first.requires_grad
    assert all(p.requires_grad for p in list(m.meta.parameters())[1:])
