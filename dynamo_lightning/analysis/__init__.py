"""Analysis of a fitted DYNAMO map: pure functions over tensors and arrays, no Lightning."""

from dynamo_lightning.analysis.projection import project

__all__ = [
    "project",
]
