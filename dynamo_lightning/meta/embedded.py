"""``EmbeddedNetwork``: the meta-model frozen at one θ, callable like a population member.

This is what model averaging, interpolation and fixed-point analysis consume: the network
"at" a point of the map, with the member calling convention
``net(x [B,T,I]) -> (outputs [B,T,O], hidden [B,T,state])`` and ``net.step(h, x)``; at a θ of
a feed-forward meta-model (``MetaCNN``) it classifies like a CNN member
(``outputs [B,1,O]``, ``hidden [B,S,state]``) and has no ``step``.

It wraps a *reference* to the meta-model and never copies its weights: building one per
point of a 100-point interpolation costs nothing, and it always reflects the meta-model's
current weights. The meta-model is deliberately not registered as a submodule, so the
wrapper owns no parameters (``parameters()`` is empty and nothing in it is trainable),
``net.eval()``/``net.train()`` and ``net.to()`` never touch the shared meta-model, and its
``state_dict`` holds only θ. Every call runs the meta-model with *detached* views of its
parameters (:class:`~dynamo_lightning.detached.DetachedCall`), so gradients still flow to
``h`` and ``x`` (Jacobians, fixed-point searches) but never into the meta-model's ``.grad``
— an analysis run mid-training cannot disturb it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dynamo_lightning.detached import DetachedCall
from dynamo_lightning.meta.cnn import MetaCNN
from dynamo_lightning.meta.rnn import MetaRNN


class EmbeddedNetwork(nn.Module):
    """The meta-model at a fixed embedding θ, with a population member's calling convention.

    Args:
        meta: the meta-model, a ``MetaRNN`` or ``MetaCNN`` (referenced, not copied; move it,
            not the wrapper, to a device).
        theta: the embedding ``[d]`` (stored as a buffer, detached).

    Raises:
        ValueError: ``theta`` is not ``[meta.embedding_dim]``.

    Example::

        net = EmbeddedNetwork(meta, theta)          # theta [d]
        outputs, hidden = net(x)                    # == meta(x, theta.expand(B, d))
        h1 = net.step(net.initial_state(B), x[:, 0])
    """

    theta: Tensor

    def __init__(self, meta: MetaRNN | MetaCNN, theta: Tensor) -> None:
        super().__init__()
        if not isinstance(meta, MetaRNN | MetaCNN):
            raise TypeError(f"meta must be a MetaRNN or MetaCNN, got {type(meta).__name__}")
        theta = torch.as_tensor(theta)
        if tuple(theta.shape) != (meta.embedding_dim,):
            raise ValueError(f"theta must be [{meta.embedding_dim}] (the meta-model's "
                             f"embedding_dim), got {tuple(theta.shape)}")
        self._call = DetachedCall(meta)  # a plain object: meta is not a submodule
        self.register_buffer("theta", theta.detach().clone().to(_dtype(meta)))
        self.eval()

    @property
    def recurrent(self) -> bool:
        """Whether the meta-model has a step map (``MetaRNN``) or is feed-forward."""
        return bool(self.meta_model.recurrent)

    @property
    def meta_model(self) -> MetaRNN | MetaCNN:
        """The wrapped (shared, not copied) meta-model."""
        return self._call.module

    @property
    def state_size(self) -> int:
        return self.meta_model.state_size

    @property
    def input_size(self) -> int:
        return self.meta_model.input_size

    @property
    def output_size(self) -> int:
        return self.meta_model.output_size

    @property
    def hidden_size(self) -> int:
        return self.meta_model.hidden_size

    def _theta(self, batch_size: int | None = None) -> Tensor:
        """θ on the meta-model's device (it may have moved since), ``[batch_size, d]``."""
        theta = self.theta.to(next(self.meta_model.parameters()).device)
        return theta if batch_size is None else theta.expand(batch_size, -1)

    def initial_state(self, batch_size: int) -> Tensor:
        """``H̃₀(θ)`` repeated: ``[batch_size, state]``."""
        self._require_recurrent("initial_state")
        return self._call("initial_state", self._theta(batch_size))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x [B, T, I]`` → ``(outputs [B, T, O], hidden [B, T, state])``."""
        return self._call("forward", x, self._theta(x.shape[0]))

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        """``h [B, state]``, ``x [B, I]`` → ``h_next [B, state]``."""
        self._require_recurrent("step")
        return self._call("step", h, x, self._theta(h.shape[0]))

    def readout(self, h: Tensor) -> Tensor:
        """Outputs ``[..., O]`` from states ``h [..., state]``."""
        return self._call("readout", h, self._theta())

    def _require_recurrent(self, what: str) -> None:
        if not self.recurrent:
            raise TypeError(f"the meta-model is feed-forward ({type(self.meta_model).__name__}):"
                            f" it has no {what}(); run it on whole inputs instead")

    def extra_repr(self) -> str:
        return f"theta={self.theta.tolist()}, meta={self.meta_model.config()}"


def _dtype(meta: nn.Module) -> torch.dtype:
    return next(meta.parameters()).dtype
