"""Which meta-model a fit trains: ``MetaRNN`` for recurrent members, ``MetaCNN`` for
feed-forward ones, chosen by ``model.meta.kind`` (``auto`` reads the members' family).

``auto`` asks the architecture registry whether the members' architectures are recurrent
(the same ``recurrent`` ClassVar the population and the data module dispatch on); the
meta-CNN gets as many stages as the deepest member (metadata ``stages``, written by
``TrajectoryDataModule``) unless ``model.meta.stages`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from dynamo_lightning.checks import optional_positive_int
from dynamo_lightning.meta.cnn import MetaCNN
from dynamo_lightning.meta.rnn import MetaRNN
from dynamo_lightning.module.config import MetaModelConfig
from dynamo_lightning.population import architectures
from dynamo_lightning.registry import UnknownNameError

KINDS = ("auto", "rnn", "cnn")
"""Values of ``model.meta.kind``."""


def feed_forward_members(metadata: Sequence[dict[str, Any]]) -> bool:
    """Whether every member is feed-forward: its ``architecture`` is registered with
    ``recurrent = False`` (members of unknown architecture: when they all carry ``stages``)."""
    if not metadata:
        return False
    try:
        return all(not architectures.get(str(m["architecture"])).recurrent for m in metadata)
    except (KeyError, UnknownNameError):
        return all("stages" in m for m in metadata)


def build_meta(meta: MetaModelConfig, input_size: int, output_size: int, embedding_dim: int,
               metadata: Sequence[dict[str, Any]]) -> nn.Module:
    """The meta-model ``meta`` describes for members with ``metadata``.

    Raises:
        ValueError: an unknown ``kind``, or a meta-CNN whose depth is unknown (no ``stages``
            in the members' metadata and no ``meta.stages``).
    """
    if meta.kind not in KINDS:
        raise ValueError(f"DynamoModule: meta.kind must be one of {', '.join(KINDS)}, got "
                         f"{meta.kind!r}")
    kind = meta.kind
    if kind == "auto":
        kind = "cnn" if feed_forward_members(metadata) else "rnn"
    if kind == "rnn":
        return MetaRNN(input_size, output_size, embedding_dim, hidden_size=meta.hidden_size,
                       cell=meta.cell, conditioning=meta.conditioning,
                       **meta.conditioning_options)
    depths = [int(m["stages"]) for m in metadata if "stages" in m]
    stages = optional_positive_int("meta.stages", meta.stages, "DynamoModule")
    stages = stages or (max(depths) if depths else None)
    if stages is None:
        raise ValueError("DynamoModule: the meta-CNN's depth is unknown: the members' metadata "
                         "has no 'stages' (TrajectoryDataModule writes it); set "
                         "model.meta.stages")
    return MetaCNN(input_size, output_size, embedding_dim, hidden_size=meta.hidden_size,
                   stages=stages, conditioning=meta.conditioning,
                   kernel_size=meta.kernel_size, pool_size=meta.pool_size,
                   **meta.conditioning_options)
