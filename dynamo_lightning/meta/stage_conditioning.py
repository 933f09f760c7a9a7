"""How θ enters each stage of the meta-CNN: ``concat`` (default) or ``film``.

The feed-forward twin of the meta-RNN's conditionings (``meta.conditionings``): the meta-CNN
owns the convolutions, a stage conditioning only decides how θ reaches them.

- ``concat``: θ as ``d`` constant input channels of every stage (each convolution sees
  ``[a; θ]``), the convolutional form of appending θ to an RNN's input at every step;
- ``film``: per-stage, per-channel gain and bias ``γ_s(θ) ⊙ conv_s(a) + β_s(θ)`` before the
  ReLU (Perez et al. 2018); starts at ``γ = 1, β = 0``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynamo_lightning.checks import positive_real

STAGE_CONDITIONINGS = ("concat", "film")
"""Conditionings the meta-CNN knows; ``concat`` is the default."""


def check_stage_conditioning(name: str) -> str:
    """``name`` if the meta-CNN knows it, else a ValueError listing the known ones."""
    if name not in STAGE_CONDITIONINGS:
        raise ValueError(f"unknown conditioning {name!r} for the meta-CNN (known: "
                         f"{', '.join(STAGE_CONDITIONINGS)}; lowrank is recurrent-only)")
    return name


class StageConvs(nn.Module):
    """The meta-CNN's convolutions with θ entering as its conditioning says.

    Args:
        conditioning: ``"concat"`` or ``"film"``.
        stages: S̃, number of convolutional stages.
        channels: C, channels of every stage.
        embedding_dim: d.
        kernel_size: odd convolution size (padding keeps the image size).
        init_scale: FiLM only: std of ``W_film θ`` at init for ``‖θ‖ ≈ √d``.
    """

    def __init__(self, conditioning: str, stages: int, channels: int, embedding_dim: int,
                 kernel_size: int, init_scale: float = 0.1) -> None:
        super().__init__()
        self.conditioning = check_stage_conditioning(conditioning)
        self.init_scale = positive_real("init_scale", init_scale, "meta-CNN film")
        extra = embedding_dim if conditioning == "concat" else 0
        self.convs = nn.ModuleList(
            nn.Conv2d((1 if s == 0 else channels) + extra, channels, kernel_size,
                      padding=kernel_size // 2) for s in range(stages))
        if conditioning == "film":
            self.film = nn.Linear(embedding_dim, 2 * stages * channels)
            with torch.no_grad():
                self.film.weight.normal_(0.0, self.init_scale / math.sqrt(embedding_dim))
                self.film.bias.zero_()

    def forward(self, image: Tensor, theta: Tensor) -> list[Tensor]:
        """Every stage's activation map ``[B, C, H, W]`` for ``image [B, 1, H, W]``,
        ``theta [B, d]``."""
        theta = theta.to(image.dtype)
        stages, channels = len(self.convs), self.convs[0].out_channels
        if self.conditioning == "film":
            gain, bias = self.film(theta).view(-1, 2, stages, channels, 1, 1).unbind(1)
        maps, a = [], image
        for s, conv in enumerate(self.convs):
            if self.conditioning == "concat":
                planes = theta[:, :, None, None].expand(-1, -1, *a.shape[-2:])
                a = conv(torch.cat([a, planes], dim=1))
            else:
                a = torch.addcmul(bias[:, s], gain[:, s] + 1.0, conv(a))
            a = F.relu(a)
            maps.append(a)
        return maps
