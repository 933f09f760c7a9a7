"""The DYNAMO fit's pre-flight memory checks (:mod:`dynamo_lightning.memory`): the meta-model
before it is built, a training step's activations before the first batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from dynamo_lightning.memory import Estimate, dynamo_fit, skipped
from dynamo_lightning.memory.estimates import FEED_FORWARD_SAVED, META_SAVED
from dynamo_lightning.module.config import MetaModelConfig
from dynamo_lightning.module.meta_choice import build_meta

__all__ = ["check_fit_batches", "check_meta_model", "fit_estimate"]


def check_meta_model(meta: MetaModelConfig, input_size: int, output_size: int,
                     embedding_dim: int, metadata: Sequence[dict[str, Any]], num_members: int,
                     num_components: int) -> None:
    """Refuse a meta-model (with θ, the alignment maps and Adam's states) that does not fit
    in memory, before ``build_meta`` allocates it: it is built on the meta device first."""
    if skipped():
        return
    try:
        with torch.device("meta"):
            probe = build_meta(meta, input_size, output_size, embedding_dim, metadata)
    except Exception:  # a probe only: the real build reports any fault itself
        return
    fit_estimate(probe, meta, num_members, num_components).check("cpu")


def check_fit_batches(module: Any, datamodule: Any, device: torch.device) -> None:
    """Refuse a fit whose training step (the data module's ``members_per_batch ×
    samples_per_member`` trials of ``seq_len`` steps) does not fit on ``device``."""
    sizes = [getattr(datamodule, name, None) for name in (
        "members_per_batch", "samples_per_member", "seq_len", "input_size", "output_size")]
    if skipped() or any(not isinstance(v, int) for v in sizes):
        return
    meta = MetaModelConfig(**module.hparams.meta)
    estimate = fit_estimate(module.meta, meta, module.hparams.num_members,
                            module.hparams.num_components, tuple(sizes))
    estimate.check(device)


def fit_estimate(net: nn.Module, meta: MetaModelConfig, num_members: int, num_components: int,
                 batch: tuple[int, int, int, int, int] | None = None) -> Estimate:
    """:func:`~dynamo_lightning.memory.dynamo_fit` of the meta-model ``net`` (built from
    ``meta``, on any device)."""
    recurrent = bool(getattr(net, "recurrent", True))
    if recurrent:
        saved = META_SAVED.get((meta.cell, meta.conditioning), META_SAVED.get(meta.cell, 12.0))
    else:  # a stage keeps maps of every input pixel: seq_len × input_size is the image
        saved = FEED_FORWARD_SAVED * (batch[3] if batch else 1)
    parameters = sum(p.numel() for p in net.parameters())
    return dynamo_fit(num_members, num_components, parameters, meta.hidden_size,
                      int(net.state_size), saved,
                      stages=1 if recurrent else int(getattr(net, "stages", 1)), batch=batch)
