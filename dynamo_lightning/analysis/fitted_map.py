"""What the analysis layer reads of a fitted DYNAMO model: the :class:`FittedMap` protocol.

The analysis functions take the fitted model as an argument instead of importing the
Lightning module: ``DynamoModule`` satisfies this protocol, and so does any object with
these members (a wrapper that swaps the task, a model fitted elsewhere).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from torch import Tensor, nn

from dynamo_lightning.tasks import Task

__all__ = ["FittedMap"]


class FittedMap(Protocol):
    """A fitted map of models: the members' embeddings θ_n and the meta-model they index.

    Attributes:
        meta: the meta-model (a ``MetaRNN``): ``meta(x [B, T, I], θ [B, d])`` gives
            ``(outputs, states)``.
        member_ids: ``N`` member ids, in the order of ``embeddings()``.
        member_metadata: each member's metadata (architecture, task, seed, ...).
        task: the task whose inputs the members were compared on (None if unknown).
        member_scores: per-member emulation scores of the last test pass (may be empty).
        hparams: the fit's settings (``input_size``, ``output_size``, ``num_components``…).
    """

    meta: nn.Module
    member_scores: dict[str, list[float]]
    hparams: Mapping[str, Any]

    @property
    def member_ids(self) -> Sequence[str]: ...

    @property
    def member_metadata(self) -> Sequence[dict[str, Any]]: ...

    @property
    def task(self) -> Task | None: ...

    def embeddings(self) -> Tensor:
        """``[N, d]`` member embeddings."""
        ...

    def meta_model_at(self, theta: Tensor) -> nn.Module:
        """The meta-model at one θ, as a network with the members' calling convention."""
        ...

    def fit_embedding(self, inputs: Tensor, outputs: Tensor | None = None, **options: Any
                      ) -> Any:
        """θ for a new network from its inputs and outputs (or labels, or hidden states)."""
        ...
