"""Users' own ``torch.nn.Sequential`` CNNs as population members (the ``cnn`` architecture).

A ``Sequential`` of ``Conv2d → ReLU`` stages, then ``AdaptiveAvgPool2d(p) → Flatten →
Linear`` (or ``Flatten → Linear`` on the whole map), is exactly one of our ``cnn`` members:
a stage is a same-size convolution with ReLU, its state the pooled activation map, the
readout linear in the last stage's state. Converting is a relabelling of tensors, so the
member computes what the original computes on ``x.unsqueeze(1)`` (``x [B, T, I]`` read as a
one-channel image), to float rounding. Anything else (strides, other activations, batch
norm, channel counts that change between stages) is refused with one ``ValueError`` naming
the member and the fault.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from dynamo_lightning.population.member import Member

ACCEPTED_SEQUENTIAL = ("nn.Sequential(Conv2d(1, C, k, padding=k // 2), ReLU(), [Conv2d(C, C, "
                       "k, padding=k // 2), ReLU(), ...] [AdaptiveAvgPool2d(p)], Flatten(), "
                       "Linear(C·p², O)): stride 1, odd k, the same C and k in every stage")


def member_from_sequential(member_id: str, net: nn.Sequential, input_size: int | None,
                           metadata: Mapping[str, Any] | None = None) -> Member:
    """One ``cnn`` member computing what ``net`` computes (see the module docstring).

    Args:
        member_id: the member's id.
        net: the network, as :data:`ACCEPTED_SEQUENTIAL` says.
        input_size: the image width ``I``; needed when ``net`` pools adaptively (then any
            size fits it), read from the ``Linear`` otherwise (square images).
        metadata: merged over ``architecture``, ``hidden_size``, ``n_layers``,
            ``source="torch"`` and ``torch_class="Sequential"``.

    Raises:
        ValueError: naming ``member_id``, the fault and what is accepted.
    """
    layers = list(net)
    where = f"member {member_id!r}"

    def fail(fault: str) -> ValueError:
        return ValueError(f"{where}: {fault} (accepted: {ACCEPTED_SEQUENTIAL})")

    convs = []
    while len(layers) >= 2 and isinstance(layers[0], nn.Conv2d):
        if type(layers[1]) is not nn.ReLU:
            raise fail(f"stage {len(convs)} has {type(layers[1]).__name__} after its Conv2d, "
                       "not ReLU")
        convs.append(layers[0])
        layers = layers[2:]
    if not convs:
        raise fail("it does not start with a Conv2d followed by ReLU")
    pool = layers.pop(0) if layers and isinstance(layers[0], nn.AdaptiveAvgPool2d) else None
    if len(layers) != 2 or type(layers[0]) is not nn.Flatten or type(layers[1]) is not nn.Linear:
        raise fail(f"after the conv stages it has {[type(m).__name__ for m in layers]}, not "
                   "[Flatten, Linear]")
    channels, kernel = _check_convs(convs, fail)
    linear = layers[1]
    side = _pool_side(pool, linear, channels, fail)
    if pool is None:
        input_size = side if input_size in (None, side) else _bad_size(fail, input_size, side)
    elif input_size is None:
        raise fail("it pools adaptively, so the image width is unknown; pass input_size=")
    config = {"input_size": int(input_size), "output_size": linear.out_features,
              "hidden_size": channels, "n_layers": len(convs), "kernel_size": kernel,
              "pool_size": side}
    state: dict[str, torch.Tensor] = {}
    for i, conv in enumerate(convs):
        state[f"conv{i}_weight"] = conv.weight
        state[f"conv{i}_bias"] = torch.zeros(channels) if conv.bias is None else conv.bias
    state["readout_weight"] = linear.weight.T
    state["readout_bias"] = (torch.zeros(linear.out_features) if linear.bias is None
                             else linear.bias)
    state = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in state.items()}
    meta = {"architecture": "cnn", "hidden_size": channels, "n_layers": len(convs),
            "source": "torch", "torch_class": "Sequential", **dict(metadata or {})}
    if meta["architecture"] != "cnn" or meta["hidden_size"] != channels:
        raise fail(f"its metadata says architecture={meta['architecture']!r}, hidden_size="
                   f"{meta['hidden_size']!r}, but the network is a cnn of {channels} channels")
    return Member(member_id, "cnn", config, meta, state)


def _check_convs(convs: list[nn.Conv2d], fail: Any) -> tuple[int, int]:
    """``(channels, kernel_size)`` shared by every stage, else ``fail(...)``."""
    channels, kernel = convs[0].out_channels, convs[0].kernel_size[0]
    for i, conv in enumerate(convs):
        expected_in = 1 if i == 0 else channels
        faults = []
        if conv.in_channels != expected_in or conv.out_channels != channels:
            faults.append(f"channels {conv.in_channels}→{conv.out_channels}, expected "
                          f"{expected_in}→{channels}")
        if conv.kernel_size != (kernel, kernel) or kernel % 2 == 0:
            faults.append(f"kernel {conv.kernel_size}, expected an odd square {kernel}")
        if conv.padding != (kernel // 2,) * 2 or conv.padding_mode != "zeros":
            faults.append(f"padding {conv.padding} ({conv.padding_mode}), expected "
                          f"{kernel // 2} (zeros)")
        if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
            faults.append("stride, dilation and groups must be 1")
        if faults:
            raise fail(f"Conv2d of stage {i}: {'; '.join(faults)}")
    return channels, kernel


def _pool_side(pool: nn.AdaptiveAvgPool2d | None, linear: nn.Linear, channels: int,
               fail: Any) -> int:
    """The side of the pooled map the readout reads (the whole map without a pool)."""
    if pool is not None:
        size = pool.output_size
        sizes = (size, size) if isinstance(size, int) else tuple(size)
        if len(set(sizes)) != 1 or sizes[0] is None:
            raise fail(f"AdaptiveAvgPool2d({size}) is not square")
        side = int(sizes[0])
    else:
        side = math.isqrt(max(linear.in_features // channels, 0))
    if linear.in_features != channels * side * side or side < 1:
        raise fail(f"the Linear reads {linear.in_features} features, not C·p² = "
                   f"{channels}·{side}² of a square map")
    return side


def _bad_size(fail: Any, given: int, side: int) -> int:
    raise fail(f"input_size={given}, but its readout reads {side}×{side} maps of the image")
