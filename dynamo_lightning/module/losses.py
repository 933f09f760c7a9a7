"""The DYNAMO loss terms (docs/method.md), with padded steps and missing stages left out.

``DynamoModule.losses`` sums them. Without a mask each is the plain mean it always was; with
the ``mask [M, S, T]`` a batch of padded trials carries (``Task.step_mask``), the hidden and
output terms average over real steps only, and a member's states or outputs on padded steps
reach neither the loss nor its gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["masked_squared_error", "output_loss", "squared_error", "step_mean"]


def step_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over the True entries of ``mask`` (same shape); 0 when none is.

    ``torch.where``, not a product, so what a padded entry holds never reaches the mean;
    callers zero the targets there first, so no NaN sits in the unused branch's gradient."""
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp(min=1)


def squared_error(aligned: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean over states of ``‖aligned − target‖²`` (``[M, S, T, k]`` each), over the real
    steps of ``mask [M, S, T]`` when given."""
    if mask is None:
        return (aligned - target).pow(2).sum(-1).mean()
    target = target.masked_fill(~mask.unsqueeze(-1), 0.0)
    return step_mean((aligned - target).pow(2).sum(-1), mask)


def output_loss(outputs: Tensor, member_outputs: Tensor, kind: str,
                mask: Tensor | None = None) -> Tensor:
    """MSE for ``kind="regression"``; KL(member ‖ meta) of the output distributions for
    classifiers (``outputs`` are logits), both meta ``outputs`` and ``member_outputs``
    ``[M, S, T, O]``; averaged over the real steps of ``mask [M, S, T]`` when given."""
    if mask is not None:
        member_outputs = member_outputs.masked_fill(~mask.unsqueeze(-1), 0.0)
    if kind == "regression":
        if mask is None:
            return F.mse_loss(outputs, member_outputs)
        return step_mean((outputs - member_outputs.to(outputs.dtype)).pow(2).mean(-1), mask)
    classes = outputs.shape[-1]
    log_meta = F.log_softmax(outputs.reshape(-1, classes), -1)
    log_member = F.log_softmax(member_outputs.reshape(-1, classes).to(outputs.dtype), -1)
    if mask is None:
        return F.kl_div(log_meta, log_member, log_target=True, reduction="batchmean")
    kl = F.kl_div(log_meta, log_member, log_target=True, reduction="none").sum(-1)
    return step_mean(kl.reshape(mask.shape), mask)


def masked_squared_error(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over target vectors of ``‖pred − target‖²``, leaving out all-NaN target vectors
    (stages a shallower feed-forward member lacks); any other NaN still propagates."""
    missing = target.isnan().all(-1, keepdim=True)
    error = (pred - target.masked_fill(missing, 0.0)).pow(2).sum(-1)
    valid = ~missing.squeeze(-1)
    return (error * valid).sum() / valid.sum().clamp(min=1)
