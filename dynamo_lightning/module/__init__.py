"""The Lightning layer of the meta-model: ``DynamoModule`` (loss, θ table, alignment maps),
its read-out API (``embedding_api``), per-member metrics and task scores."""

from dynamo_lightning.module.dynamo_module import (
    DynamoModule,
    LossWeights,
    MetaModelConfig,
    Optimization,
)

__all__ = ["DynamoModule", "LossWeights", "MetaModelConfig", "Optimization"]
