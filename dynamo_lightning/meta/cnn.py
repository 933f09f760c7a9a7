"""``MetaCNN``: one feed-forward network that emulates every member of a CNN population.

Depth plays the role of time: stage ``s`` of the meta-CNN is aligned with stage ``s`` of the
members (``data.stages`` maps members of other depths), as step ``t`` of the meta-RNN is
with step ``t``. Each stage is a convolution with ReLU; its activation map average-pooled to
``pool_size × pool_size`` is that stage's state, as for the population's ``cnn`` members.
θ enters every stage (``stage_conditioning``) and the linear readout of the last stage.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynamo_lightning.checks import positive_int
from dynamo_lightning.meta.stage_conditioning import StageConvs


class MetaCNN(nn.Module):
    """A convolutional meta-model conditioned on a model embedding θ.

    Calling convention as a feed-forward member's: ``meta(x [B, T, I], θ [B, d])`` reads
    ``x`` as a one-channel ``T × I`` image and returns ``(outputs [B, 1, O],
    hidden [B, S̃, C·p²])``. It has no ``step``: fixed points do not apply.

    Args:
        input_size: I, image width (columns of ``x``).
        output_size: O, classes.
        embedding_dim: d, size of θ.
        hidden_size: C, channels of every stage (default 64).
        stages: S̃, number of stages (default 3; ``DynamoModule`` sets the members' depth).
        conditioning: ``"concat"`` (θ as constant input channels, default) or ``"film"``.
        kernel_size: odd convolution size (default 3).
        pool_size: p, side of the pooled map that forms a stage's state (default 2).
        **conditioning_options: ``init_scale`` for ``film``.

    Raises:
        ValueError: a non-positive size, an even kernel or an unknown conditioning (named).

    Example::

        meta = MetaCNN(8, 10, embedding_dim=2, hidden_size=32, stages=3)
        outputs, hidden = meta(x, theta)          # [B, 1, 10], [B, 3, 32·4]
    """

    recurrent: ClassVar[bool] = False

    def __init__(self, input_size: int, output_size: int, embedding_dim: int,
                 hidden_size: int = 64, stages: int = 3, conditioning: str = "concat",
                 kernel_size: int = 3, pool_size: int = 2, **conditioning_options: Any) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("output_size", output_size),
                            ("embedding_dim", embedding_dim), ("hidden_size", hidden_size),
                            ("stages", stages), ("kernel_size", kernel_size),
                            ("pool_size", pool_size)):
            positive_int(name, value, "MetaCNN")
        if kernel_size % 2 == 0:
            raise ValueError(f"MetaCNN: kernel_size must be odd, got {kernel_size}")
        self.input_size, self.output_size = input_size, output_size
        self.embedding_dim, self.hidden_size = embedding_dim, hidden_size
        self.stages, self.kernel_size, self.pool_size = stages, kernel_size, pool_size
        self.conditioning_name = conditioning
        try:
            self.convs = StageConvs(conditioning, stages, hidden_size, embedding_dim,
                                    kernel_size, **conditioning_options)
        except TypeError as err:
            raise ValueError(f"bad options for the meta-CNN's {conditioning!r}: {err}") from None
        self.conditioning_options = dict(conditioning_options)
        self.head = nn.Linear(self.state_size + embedding_dim, output_size)

    @property
    def state_size(self) -> int:
        """Size of one stage's state, ``C · p²``."""
        return self.hidden_size * self.pool_size**2

    def config(self) -> dict[str, Any]:
        """Constructor keywords (JSON-serialisable): ``MetaCNN(**meta.config())`` rebuilds it."""
        return {"input_size": self.input_size, "output_size": self.output_size,
                "embedding_dim": self.embedding_dim, "hidden_size": self.hidden_size,
                "stages": self.stages, "conditioning": self.conditioning_name,
                "kernel_size": self.kernel_size, "pool_size": self.pool_size,
                **({"init_scale": self.convs.init_scale}
                   if self.conditioning_name == "film" else {})}

    def forward(self, x: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
        """Classify every image of the batch at its own θ.

        Args:
            x: images ``[B, T, I]``.
            theta: embeddings ``[B, d]``.

        Returns:
            ``(outputs [B, 1, O], hidden [B, S̃, C·p²])``.

        Raises:
            ValueError: wrong input width or rank, or θ not ``[B, d]`` (shapes named).
        """
        if x.dim() != 3 or x.shape[-1] != self.input_size or x.shape[1] < 1:
            raise ValueError(f"x must be [B, T>=1, {self.input_size}], got {tuple(x.shape)}")
        if theta.dim() != 2 or theta.shape != (x.shape[0], self.embedding_dim):
            raise ValueError(f"theta must be [B, {self.embedding_dim}] with B = x batch "
                             f"{x.shape[0]}, got {tuple(theta.shape)}")
        maps = self.convs(x.unsqueeze(1), theta)
        hidden = torch.stack([F.adaptive_avg_pool2d(a, self.pool_size).flatten(1)
                              for a in maps], dim=1)
        return self.readout(hidden[:, -1:], theta[:, None, :]), hidden

    def readout(self, h: Tensor, theta: Tensor) -> Tensor:
        """Logits ``G̃(h; θ)`` of last-stage states ``h [..., C·p²]`` and ``theta [..., d]``
        (broadcast against ``h``'s leading dimensions)."""
        theta = theta.to(h.dtype).expand(*h.shape[:-1], -1)
        return self.head(torch.cat([h, theta], dim=-1))
