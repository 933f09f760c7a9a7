"""CNN populations: crossed architecture options in the grid (depths), options in member
metadata, the digits task's training variants, and torch.nn.Sequential CNNs imported
exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import dynamo_lightning as dl
from dynamo_lightning.population.grid import expand_grid, parse_task_specs
from dynamo_lightning.population.writer import architecture_options


def test_list_options_are_crossed_like_widths_and_named_in_ids() -> None:
    specs = parse_task_specs([{"name": "digits"}])
    groups = expand_grid(specs, ["cnn"], [4, 8], [0], {"cnn": {"n_layers": [2, 3],
                                                               "pool_size": 2}})
    ids = [g.ids[0] for g in groups]
    assert ids == ["digits-cnn-h4-n_layers2-s0", "digits-cnn-h4-n_layers3-s0",
                   "digits-cnn-h8-n_layers2-s0", "digits-cnn-h8-n_layers3-s0"]
    assert [g.config["n_layers"] for g in groups] == [2, 3, 2, 3]
    assert architecture_options(groups[1].config) == {"n_layers": 3, "pool_size": 2}
    with pytest.raises(ValueError, match=r"architecture_options.cnn.n_layers must be"):
        expand_grid(specs, ["cnn"], [4], [0], {"cnn": {"n_layers": [2, 2]}})


def test_digits_training_variants_change_the_labels_only_where_asked() -> None:
    plain = dl.tasks.get("digits")
    assert plain.config() == {"val_fraction": 0.15, "test_fraction": 0.15, "split_seed": 0}
    permutation = [3, 8, 0, 6, 9, 1, 4, 2, 7, 5]
    permuted = dl.tasks.get("digits", label_permutation=permutation)
    x0, y0 = plain.sample(64, generator=torch.Generator().manual_seed(0), split="test")
    x1, y1 = permuted.sample(64, generator=torch.Generator().manual_seed(0), split="test")
    assert torch.equal(x0, x1) and torch.equal(y1, torch.tensor(permutation)[y0])
    subset = dl.tasks.get("digits", classes=[4, 0, 2])
    _, y = subset.sample(256, generator=torch.Generator().manual_seed(0))
    assert set(y.tolist()) == {0, 2, 4} and subset.config()["classes"] == [0, 2, 4]
    noisy = dl.tasks.get("digits", label_noise=0.5)
    _, clean = plain.sample(512, generator=torch.Generator().manual_seed(1), split="train")
    _, labels = noisy.sample(512, generator=torch.Generator().manual_seed(1), split="train")
    assert 0.3 < float((labels != clean).float().mean()) < 0.6
    _, test = noisy.sample(64, generator=torch.Generator().manual_seed(0), split="test")
    assert torch.equal(test, y0)  # evaluation labels stay clean
    for bad, match in (({"label_permutation": [0] * 10}, "label_permutation must be"),
                       ({"classes": [3, 3]}, "classes must be distinct"),
                       ({"label_noise": 1.0}, "label_noise must be")):
        with pytest.raises(ValueError, match=match):
            dl.tasks.get("digits", **bad)


def _sequential(pool: bool) -> nn.Sequential:
    torch.manual_seed(0)
    head = ([nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 10)] if pool
            else [nn.Flatten(), nn.Linear(6 * 64, 10)])
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), *head)


@pytest.mark.parametrize("pool", [True, False])
def test_sequential_cnn_is_imported_exactly(pool: bool) -> None:
    net = _sequential(pool)
    pop = dl.Population.from_torch({"mine": net}, metadata={"mine": {"task": "digits"}},
                                   input_size=8)
    member = pop["mine"]
    assert member.architecture == "cnn" and member.metadata["n_layers"] == 2
    assert member.config["pool_size"] == (2 if pool else 8)
    x = torch.rand(7, 8, 8)
    outputs, hidden = member.module(x)
    torch.testing.assert_close(outputs[:, 0], net(x.unsqueeze(1)), atol=1e-6, rtol=1e-5)
    assert hidden.shape == (7, 2, 24 if pool else 384)
    last = net[:4](x.unsqueeze(1))
    torch.testing.assert_close(hidden[:, -1], nn.functional.adaptive_avg_pool2d(
        last, 2 if pool else 8).flatten(1))


@pytest.mark.parametrize(("net", "kwargs", "match"), [
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(256, 10)),
     {}, "stage 0 has Tanh after its Conv2d"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, stride=2), nn.ReLU(), nn.Flatten(),
                   nn.Linear(64, 10)), {}, "stride, dilation and groups must be 1"),
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                   nn.Flatten(), nn.Linear(16, 10)), {}, "pass input_size="),
    (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1),
                   nn.ReLU(), nn.Flatten(), nn.Linear(320, 10)), {}, "channels 4→5"),
])
def test_sequential_cnns_we_cannot_reproduce_are_refused(net: nn.Sequential, kwargs: dict,
                                                         match: str) -> None:
    with pytest.raises(ValueError, match=rf"member 'bad': .*{match}"):
        dl.Population.from_torch({"bad": net}, **kwargs)
