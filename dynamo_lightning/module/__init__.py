"""The Lightning layer of the meta-model: ``DynamoModule`` (loss, θ table, alignment maps),
its read-out API (``embedding_api``), per-member metrics and task scores."""

from dynamo_lightning.module.checkpoints import CheckpointError, read_checkpoint
from dynamo_lightning.module.config import LossWeights, MetaModelConfig, Optimization
from dynamo_lightning.module.dynamo_module import DynamoModule
from dynamo_lightning.module.loading import load_module

__all__ = ["CheckpointError", "DynamoModule", "LossWeights", "MetaModelConfig", "Optimization",
           "load_module", "read_checkpoint"]
