"""DynamoModule on feed-forward members: the meta-CNN chosen from the members, one alignment
map per member and stage, NaN stages left out, a tiny fit through the CLI, the meta-CNN at θ
and fit_embedding with stage-wise hidden states."""

from __future__ import annotations

import pytest
import torch

from dynamo_lightning.meta import MetaCNN, MetaRNN
from dynamo_lightning.module import DynamoModule
from dynamo_lightning.module.dynamo_module import masked_squared_error

K = 3


def cnn_module(**meta: object) -> DynamoModule:
    torch.manual_seed(0)
    metadata = [{"architecture": "cnn", "stages": s} for s in (2, 3, 3)]
    return DynamoModule(num_members=3, input_size=8, output_size=10, num_components=K,
                        output_kind="classification", member_metadata=metadata,
                        meta={"hidden_size": 4, **meta})


def test_meta_model_follows_the_members_family() -> None:
    module = cnn_module()
    assert isinstance(module.meta, MetaCNN) and module.meta.stages == 3
    assert module.align_weight.shape == (3, 3, K, 16)
    assert module.align_bias.shape == (3, 3, K)
    assert isinstance(cnn_module(kind="rnn").meta, MetaRNN)
    assert cnn_module(stages=5).meta.stages == 5
    film = cnn_module(conditioning="film")
    assert film.meta.conditioning_name == "film"
    with pytest.raises(ValueError, match=r"meta\.kind must be one of auto, rnn, cnn"):
        cnn_module(kind="mlp")
    with pytest.raises(ValueError, match=r"set model\.meta\.stages"):
        DynamoModule(num_members=1, input_size=8, output_size=10, num_components=K,
                     member_metadata=[{"architecture": "cnn"}])


def test_batched_stage_alignment_equals_member_by_member() -> None:
    module = cnn_module()
    inputs = torch.rand(2, 4, 8, 8)
    member = torch.tensor([2, 0])
    with torch.no_grad():
        module.align_bias.normal_()
        outputs, aligned = module(member, inputs)
    assert outputs.shape == (2, 4, 1, 10) and aligned.shape == (2, 4, 3, K)
    for row, n in enumerate(member.tolist()):
        theta = module.theta.weight[n].expand(4, -1)
        out, hidden = module.meta(inputs[row], theta)
        torch.testing.assert_close(outputs[row], out)
        for s in range(3):
            want = hidden[:, s] @ module.align_weight[n, s].T + module.align_bias[n, s]
            torch.testing.assert_close(aligned[row, :, s], want, atol=1e-5, rtol=1e-5)


def test_nan_targets_are_left_out_of_loss_and_r2() -> None:
    pred, target = torch.randn(2, 4, 3, K), torch.randn(2, 4, 3, K)
    holed = target.clone()
    holed[0, :, 0] = float("nan")
    keep = torch.ones(2, 4, 3, dtype=torch.bool)
    keep[0, :, 0] = False
    want = (pred - target).pow(2).sum(-1)[keep].mean()
    torch.testing.assert_close(masked_squared_error(pred, holed), want)
    torch.testing.assert_close(masked_squared_error(pred, target),
                               (pred - target).pow(2).sum(-1).mean())
    module = cnn_module()
    metric = module.metrics["val"]["stage_hidden_r2"]
    metric.update(pred, holed, torch.tensor([0, 1]))
    r2 = metric.compute()
    assert r2.shape == (3, 3) and bool(r2[0, 0].isnan()) and bool(r2[2].isnan().all())
    assert bool(torch.isfinite(r2[0, 1:]).all() and torch.isfinite(r2[1]).all())


def test_tiny_cnn_fit_round_trips_and_emulates_like_a_member(tiny_cnn_fit: dict) -> None:
    module = tiny_cnn_fit["module"]
    assert isinstance(module.meta, MetaCNN) and module.meta.stages == 3
    assert [m["stages"] for m in module.member_metadata] == [2, 2, 3, 3]
    net = module.meta_model_at(module.embeddings()[1])
    x = torch.rand(6, 8, 8)
    outputs, hidden = net(x)
    assert outputs.shape == (6, 1, 10) and hidden.shape == (6, 3, 32)
    assert torch.isfinite(outputs).all()


def test_fit_embedding_takes_stage_wise_hidden_states(tiny_cnn_fit: dict) -> None:
    from dynamo_lightning.population import Population

    module = DynamoModule.load_from_checkpoint(tiny_cnn_fit["ckpt"], map_location="cpu")
    member = Population.load(tiny_cnn_fit["population"])[0]
    x = torch.rand(16, 8, 8)
    with torch.no_grad():
        outputs, hidden = member.module(x)
    assert hidden.shape[1] == 2  # shallower than the meta-CNN: mapped by depth
    fit = module.fit_embedding(x, outputs=outputs, hidden=hidden, steps=5, return_details=True)
    assert fit.theta.shape == (2,) and fit.extra["align_weight"].shape == (3, K, 32)
    assert all(torch.isfinite(torch.tensor(fit.losses)))
    with pytest.raises(ValueError, match=r"outputs must be \[B, T, O\] = \[16, 1, 10\]"):
        module.fit_embedding(x, outputs=torch.zeros(16, 8, 10))
