"""The DYNAMO fit's grouped settings: the meta-model, the loss weights and the optimiser,
each a dataclass that a YAML mapping (``model.meta: {cell: gru}``) fills in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dynamo_lightning.checks import (
    finite_real,
    non_negative_real,
    optional_positive_int,
    positive_int,
    positive_real,
)

OWNER = "DynamoModule"
"""Who the settings' errors name: they are read as ``model.loss.*`` and ``model.optim.*``."""

__all__ = ["LossWeights", "MetaModelConfig", "Optimization", "as_config",
           "check_schedule_length"]


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

    def __post_init__(self) -> None:
        for name in ("hidden_size", "kernel_size", "pool_size"):
            setattr(self, name, positive_int(f"meta.{name}", getattr(self, name), OWNER))
        self.stages = optional_positive_int("meta.stages", self.stages, OWNER)


@dataclass
class LossWeights:
    """λ_out weighs the output term, λ_θ the squared norm of the embeddings (each a finite
    number >= 0; a bad one raises ``ValueError`` naming ``loss.<field>``)."""

    output: float = 1.0
    theta: float = 1e-3

    def __post_init__(self) -> None:
        self.output = non_negative_real("loss.output", self.output, OWNER)
        self.theta = non_negative_real("loss.theta", self.theta, OWNER)


@dataclass
class Optimization:
    """Adam learning rates: ``lr`` for the meta-model and alignment maps, ``theta_lr`` for the
    embeddings (they see one member's gradient each, so they need a larger step).
    ``schedule="cosine"`` decays both to ``final_lr_fraction`` of their value by the end of
    training: with a constant rate the θ's keep jittering by a few percent of the map's
    diameter, which blurs exactly the distances the map is read for. Rates are finite and
    > 0, ``weight_decay`` >= 0, ``final_lr_fraction`` in [0, 1]; a bad one raises
    ``ValueError`` naming ``optim.<field>``."""

    lr: float = 3e-3
    theta_lr: float = 3e-2
    weight_decay: float = 0.0
    schedule: str = "cosine"
    final_lr_fraction: float = 0.02

    def __post_init__(self) -> None:
        self.lr = positive_real("optim.lr", self.lr, OWNER)
        self.theta_lr = positive_real("optim.theta_lr", self.theta_lr, OWNER)
        self.weight_decay = non_negative_real("optim.weight_decay", self.weight_decay, OWNER)
        self.final_lr_fraction = finite_real("optim.final_lr_fraction", self.final_lr_fraction,
                                             lambda v: 0 <= v <= 1, "in [0, 1]", OWNER)
        if self.schedule not in ("cosine", "none"):
            raise ValueError(f"{OWNER}: optim.schedule must be 'cosine' or 'none', "
                             f"got {self.schedule!r}")


def check_schedule_length(schedule: str, max_epochs: int | None, max_steps: int | None) -> None:
    """Refuse a decaying ``schedule`` for a run of no set length (the Trainer's
    ``max_epochs`` and ``max_steps`` both -1): the cosine decays over the whole run.

    Raises:
        ValueError: naming ``optim.schedule`` and the two Trainer flags.
    """
    if schedule != "none" and max_epochs == -1 and max_steps in (-1, None):
        raise ValueError(f"{OWNER}: optim.schedule {schedule!r} decays the rates over the "
                         "whole run, but this run has no set length (trainer.max_epochs and "
                         "trainer.max_steps are -1): set one of them, or "
                         "model.optim.schedule none")


def as_config(cls: type, value: Any) -> Any:
    """``value`` as a ``cls``: None gives the defaults, a dict its fields (each checked as
    the dataclass is built).

    Raises:
        ValueError: an unknown field, a bad value, or a value that is neither.
    """
    if value is None:
        return cls()
    if isinstance(value, dict):
        try:
            return cls(**value)
        except TypeError as err:
            raise ValueError(f"bad {cls.__name__} entry: {err}") from None
    if not isinstance(value, cls):
        raise ValueError(f"{OWNER}: expected a {cls.__name__} or a mapping of its fields, "
                         f"got {value!r}")
    return value
