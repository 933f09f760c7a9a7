"""The DYNAMO fit's grouped settings: the meta-model, the loss weights and the optimiser,
each a dataclass that a YAML mapping (``model.meta: {cell: gru}``) fills in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["LossWeights", "MetaModelConfig", "Optimization", "as_config"]


@dataclass
class MetaModelConfig:
    """The meta-model: ``kind`` rnn | cnn | auto (auto: ``cnn`` for feed-forward members).

    For ``rnn``: a recurrent ``cell`` (gru | lstm | vanilla) of ``hidden_size`` units and how θ
    enters it (``conditioning``: concat | film | lowrank, with its options). For ``cnn``:
    ``hidden_size`` channels per stage, ``stages`` (default: the deepest member's),
    ``kernel_size``, ``pool_size`` and ``conditioning`` concat | film; ``cell`` is unused.
    """

    kind: str = "auto"
    cell: str = "gru"
    hidden_size: int = 64
    conditioning: str = "concat"
    conditioning_options: dict[str, Any] = field(default_factory=dict)
    stages: int | None = None
    kernel_size: int = 3
    pool_size: int = 2


@dataclass
class LossWeights:
    """λ_out weighs the output term, λ_θ the squared norm of the embeddings."""

    output: float = 1.0
    theta: float = 1e-3


@dataclass
class Optimization:
    """Adam learning rates: ``lr`` for the meta-model and alignment maps, ``theta_lr`` for the
    embeddings (they see one member's gradient each, so they need a larger step).
    ``schedule="cosine"`` decays both to ``final_lr_fraction`` of their value by the end of
    training: with a constant rate the θ's keep jittering by a few percent of the map's
    diameter, which blurs exactly the distances the map is read for."""

    lr: float = 3e-3
    theta_lr: float = 3e-2
    weight_decay: float = 0.0
    schedule: str = "cosine"
    final_lr_fraction: float = 0.02


def as_config(cls: type, value: Any) -> Any:
    if value is None:
        return cls()
    if isinstance(value, dict):
        try:
            return cls(**value)
        except TypeError as err:
            raise ValueError(f"bad {cls.__name__} entry: {err}") from None
    return value
