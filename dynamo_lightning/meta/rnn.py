"""``MetaRNN``: one recurrent network that emulates every member, chosen by θ.

``h̃_t = F̃(h̃_{t−1}, x_t; θ)``, ``ỹ_t = G̃(h̃_t; θ)``, ``h̃_0 = H̃₀(θ)``. The cell type is the
meta-model's; how θ enters ``F̃`` is a conditioning plugin (``meta.conditionings``); θ always
enters the initial state and the readout, whatever the conditioning.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dynamo_lightning.checks import positive_int
from dynamo_lightning.meta import cells
from dynamo_lightning.meta import conditionings as plugins


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


class MetaRNN(nn.Module):
    """A recurrent meta-model conditioned on a model embedding θ.

    Args:
        input_size: I, size of one input step (shared by all members).
        output_size: O, size of the readout.
        embedding_dim: d, size of θ.
        hidden_size: H, hidden units (default 64).
        cell: ``"gru"`` (default), ``"lstm"`` (state ``[h, c]``, size 2H) or ``"vanilla"``
            (tanh).
        conditioning: registered conditioning name (default ``"concat"``, fused cuDNN RNN).
        **conditioning_options: passed to the conditioning (e.g. ``rank=2`` for lowrank).

    Raises:
        ValueError: a non-positive size (named), an unknown cell (known ones listed) or a
            bad conditioning option.
        UnknownNameError: unknown conditioning; the message lists the known ones.

    Example::

        meta = MetaRNN(3, 3, embedding_dim=2, hidden_size=32, cell="gru")
        outputs, hidden = meta(x, theta)            # [B,T,3], [B,T,32]
        h = meta.step(meta.initial_state(theta), x[:, 0], theta)
    """

    recurrent: ClassVar[bool] = True

    def __init__(self, input_size: int, output_size: int, embedding_dim: int,
                 hidden_size: int = 64, cell: str = "gru",
                 conditioning: str = plugins.DEFAULT, **conditioning_options: Any) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("output_size", output_size),
                            ("embedding_dim", embedding_dim), ("hidden_size", hidden_size)):
            positive_int(name, value, "MetaRNN")
        self.input_size = input_size
        self.output_size = output_size
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden_size
        self.cell = cells.check_cell(cell)
        self.conditioning_name = conditioning
        cls = plugins.get(conditioning)
        try:
            self.conditioning = cls(cell=cell, input_size=input_size, hidden_size=hidden_size,
                                    embedding_dim=embedding_dim, **conditioning_options)
        except TypeError as err:
            raise ValueError(f"bad options for conditioning {conditioning!r}: {err}") from None
        # H̃₀(θ) = tanh(W θ + b): for LSTM both h_0 and c_0.
        self.initial = nn.Linear(embedding_dim, self.state_size)
        # G̃(h, θ) = W_h h + W_θ θ + b, one Linear on [h, θ].
        self.head = nn.Linear(hidden_size + embedding_dim, output_size)

    @property
    def state_size(self) -> int:
        """H̃, size of the full state (``2·hidden_size`` for LSTM: ``[h, c]``)."""
        return cells.state_size(self.cell, self.hidden_size)

    def config(self) -> dict[str, Any]:
        """Constructor keywords (JSON-serialisable): ``MetaRNN(**meta.config())`` rebuilds it."""
        return {"input_size": self.input_size, "output_size": self.output_size,
                "embedding_dim": self.embedding_dim, "hidden_size": self.hidden_size,
                "cell": self.cell, "conditioning": self.conditioning_name,
                **self.conditioning.options()}

    # ---------------------------------------------------------------- the dynamical system
    def initial_state(self, theta: Tensor) -> Tensor:
        """Learned ``H̃₀(θ) = tanh(W θ + b)``: ``theta [B, d]`` → ``[B, state]``."""
        self._check_theta(theta, "theta")
        return torch.tanh(self.initial(theta))

    def forward(self, x: Tensor, theta: Tensor, h0: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        """Run every sequence of the batch at its own θ.

        Args:
            x: inputs ``[B, T, I]``.
            theta: embeddings ``[B, d]`` (row b drives sequence b).
            h0: optional initial state ``[B, state]``; default ``initial_state(theta)``.

        Returns:
            ``(outputs [B, T, O], hidden [B, T, state])``, the full state after every step.

        Raises:
            ValueError: wrong input size or rank, or θ / h0 batch ≠ x batch (shapes named).
        """
        if x.dim() != 3 or x.shape[-1] != self.input_size or x.shape[1] < 1:
            raise ValueError(f"x must be [B, T>=1, {self.input_size}], got {_shape(x)}")
        self._check_theta(theta, "theta", x)
        state = self.initial_state(theta) if h0 is None else self._check_state(h0, "h0", x)
        hidden = self.conditioning(x, theta, state)
        return self.readout(hidden, theta[:, None, :]), hidden

    def step(self, h: Tensor, x: Tensor, theta: Tensor) -> Tensor:
        """One step ``F̃``: ``h [B, state]``, ``x [B, I]``, ``theta [B, d]`` → ``[B, state]``.

        Iterated from ``initial_state(theta)`` it reproduces ``forward``'s hidden states to
        float tolerance (``concat`` on GPU: TF32 tolerance unless
        ``torch.backends.cudnn.allow_tf32`` is off); fixed points and Jacobians use it.
        """
        if x.dim() != 2 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must be [B, {self.input_size}], got {_shape(x)}")
        self._check_state(h, "h", x)
        self._check_theta(theta, "theta", x)
        return self.conditioning.step(h, x, theta)

    def readout(self, h: Tensor, theta: Tensor) -> Tensor:
        """Outputs ``G̃(h; θ)`` from states ``h [..., state]`` (hidden units only) and θ.

        ``theta [..., d]`` must broadcast against ``h``'s leading dimensions (e.g.
        ``h [B, T, state]`` with ``theta [B, 1, d]``); θ is never expanded over time.
        """
        if h.shape[-1] != self.state_size:
            raise ValueError(f"h must be [..., {self.state_size}], got {_shape(h)}")
        if theta.shape[-1] != self.embedding_dim:
            raise ValueError(f"theta must be [..., {self.embedding_dim}], got {_shape(theta)}")
        try:
            torch.broadcast_shapes(h.shape[:-1], theta.shape[:-1])
        except RuntimeError:
            raise ValueError(f"theta {_shape(theta)} does not broadcast against h "
                             f"{_shape(h)}") from None
        weight_h = self.head.weight[:, : self.hidden_size]
        weight_theta = self.head.weight[:, self.hidden_size :]
        return (nn.functional.linear(h[..., : self.hidden_size], weight_h)
                + nn.functional.linear(theta.to(h.dtype), weight_theta, self.head.bias))

    # ------------------------------------------------------------------------ validation
    def _check_theta(self, theta: Tensor, name: str, x: Tensor | None = None) -> Tensor:
        if theta.dim() != 2 or theta.shape[1] != self.embedding_dim:
            raise ValueError(f"{name} must be [B, {self.embedding_dim}], got {_shape(theta)}")
        if x is not None and theta.shape[0] != x.shape[0]:
            raise ValueError(f"{name} batch {_shape(theta)} does not match x batch "
                             f"{_shape(x)}")
        return theta

    def _check_state(self, h: Tensor, name: str, x: Tensor) -> Tensor:
        if h.dim() != 2 or h.shape[1] != self.state_size or h.shape[0] != x.shape[0]:
            raise ValueError(f"{name} must be [B, {self.state_size}] with B = x batch; got "
                             f"{name} {_shape(h)}, x {_shape(x)}")
        return h

