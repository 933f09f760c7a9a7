"""Conditioning plugins: how the embedding θ enters the meta-RNN.

``names()`` lists them, ``get(name)`` returns the class, ``register(name)`` is the
decorator. Third-party conditionings register with the decorator or through the entry-point
group ``dynamo_lightning.conditionings``. Subclass ``LoopConditioning`` to change only how θ
enters the gates (see ``base.py`` beside this file for the interface)::

    from dynamo_lightning.meta import conditionings

    @conditionings.register("additive")
    class Additive(conditionings.LoopConditioning):
        def __init__(self, cell, input_size, hidden_size, embedding_dim):
            super().__init__(cell, input_size, hidden_size, embedding_dim)
            self.shift = torch.nn.Linear(embedding_dim, self.gate_size, bias=False)

        def input_gates(self, x, theta):
            return super().input_gates(x, theta) + self.shift(theta)[:, None]

    MetaRNN(3, 3, 2, conditioning="additive")
"""

from __future__ import annotations

# Built-in conditionings register themselves on import.
from dynamo_lightning.meta.conditionings import concat, film, lowrank
from dynamo_lightning.meta.conditionings.base import Conditioning, LoopConditioning
from dynamo_lightning.meta.conditionings.registry import DEFAULT, REGISTRY, get, names, register

__all__ = [
    "DEFAULT",
    "REGISTRY",
    "Conditioning",
    "LoopConditioning",
    "concat",
    "film",
    "get",
    "lowrank",
    "names",
    "register",
]
