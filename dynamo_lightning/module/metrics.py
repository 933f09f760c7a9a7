"""Per-member emulation metrics as torchmetrics (exact under DDP: states are sums).

Each metric keeps per-member sufficient statistics (``[N, ...]`` sums reduced with
``dist_reduce_fx="sum"``) so that a full validation pass gives each member's exact score,
whatever the batching and the number of processes.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class PerMemberR2(Metric):
    """Coefficient of determination per member, pooled over samples, steps and components.

    ``R²_n = 1 − Σ (pred − target)² / Σ (target − mean_n)²`` where the mean is taken per
    member and component over everything seen. ``compute()`` returns ``[N]`` (NaN for members
    never seen). All-NaN target vectors (stages a shallower feed-forward member lacks) are
    left out, and so are the padded steps of a ``mask`` passed to ``update``.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_members: int, num_features: int) -> None:
        super().__init__()
        self.add_state("sse", torch.zeros(num_members, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(num_members, num_features, dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("total_sq", torch.zeros(num_members, num_features, dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(num_members, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, member: Tensor,
               mask: Tensor | None = None) -> None:
        """``pred``/``target`` ``[M, ..., F]`` for members ``member [M]``; ``mask [M, ...]``
        (bool, the leading dims) True on the steps to count (None: all)."""
        pred = pred.detach().double().flatten(1, -2)
        target = target.detach().double().flatten(1, -2)
        missing = target.isnan().all(-1, keepdim=True)  # a stage the member lacks
        if mask is not None:  # padded steps count as missing
            missing = missing | ~mask.reshape(*missing.shape[:2], 1).to(missing.device)
        valid = (~missing).double()  # [M, P, 1]
        target = target.masked_fill(missing, 0.0)
        # Out of place: after a reset under inference mode (trainer.validate) the states are
        # inference tensors, which may not be updated in place during fit's validation.
        error = (pred - target).pow(2) * valid
        self.sse = self.sse.index_add(0, member, error.sum((1, 2)))
        self.total = self.total.index_add(0, member, target.sum(1))
        self.total_sq = self.total_sq.index_add(0, member, target.pow(2).sum(1))
        self.count = self.count.index_add(0, member, valid.sum((1, 2)))

    def compute(self) -> Tensor:
        count = self.count.unsqueeze(1)
        sst = (self.total_sq - self.total.pow(2) / count.clamp(min=1)).sum(1)
        r2 = 1 - self.sse / sst.clamp(min=1e-12)
        return torch.where(self.count > 0, r2, torch.full_like(r2, float("nan"))).float()


class PerMemberStageR2(PerMemberR2):
    """:class:`PerMemberR2` per member *and stage* of a feed-forward population.

    ``update`` takes aligned states and targets ``[M, S, S̃, k]``; ``compute()`` returns
    ``[N, S̃]`` (NaN for a stage the member lacks, or a member never seen).
    """

    def __init__(self, num_members: int, stages: int, num_features: int) -> None:
        super().__init__(num_members * stages, num_features)
        self.stages = stages

    def update(self, pred: Tensor, target: Tensor, member: Tensor) -> None:
        """``pred``/``target`` ``[M, S, S̃, k]`` for members ``member [M]``."""
        units = (member[:, None] * self.stages
                 + torch.arange(self.stages, device=member.device)).flatten()
        super().update(pred.transpose(1, 2).flatten(0, 1), target.transpose(1, 2).flatten(0, 1),
                       units)

    def compute(self) -> Tensor:
        return super().compute().view(-1, self.stages)


class PerMemberAgreement(Metric):
    """How often the meta-model makes the member's decision, per member.

    Classification (``kind="classification"``): the argmax of the last output step agrees.
    Regression: the sign agrees, counted on entries where the member is committed
    (``|y| ≥ commit · RMS(y)`` of the member's outputs in the batch) — near-zero outputs
    carry no decision (e.g. a flip-flop bit before its first pulse). With a ``mask`` of
    padded trials, the last *real* step of each trial, and real entries only.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_members: int, kind: str = "regression", commit: float = 0.5) -> None:
        super().__init__()
        if kind not in ("regression", "classification"):
            raise ValueError(f"kind must be 'regression' or 'classification', got {kind!r}")
        self.kind, self.commit = kind, commit
        self.add_state("agree", torch.zeros(num_members, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(num_members, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, member: Tensor,
               mask: Tensor | None = None) -> None:
        """``pred``/``target`` member outputs ``[M, S, T, O]``; ``member [M]``; ``mask
        [M, S, T]`` (bool) True on real steps (None: all)."""
        pred, target = pred.detach(), target.detach()
        if mask is not None:
            same, counted = _masked_agreement(pred, target, mask.bool(), self.kind, self.commit)
        elif self.kind == "classification":
            same = pred[:, :, -1].argmax(-1) == target[:, :, -1].argmax(-1)
            counted = torch.ones_like(same)
        else:
            rms = target.flatten(1).pow(2).mean(1).sqrt().view(-1, *([1] * (target.dim() - 1)))
            counted = target.abs() >= self.commit * rms
            same = (torch.sign(pred) == torch.sign(target)) & counted
        # Out of place, as in PerMemberR2.update.
        self.agree = self.agree.index_add(0, member, same.flatten(1).double().sum(1))
        self.count = self.count.index_add(0, member, counted.flatten(1).double().sum(1))

    def compute(self) -> Tensor:
        return (self.agree / self.count.clamp(min=1)).where(
            self.count > 0, torch.full_like(self.agree, float("nan"))).float()


def _masked_agreement(pred: Tensor, target: Tensor, mask: Tensor, kind: str, commit: float
                      ) -> tuple[Tensor, Tensor]:
    """``(same, counted)`` of :class:`PerMemberAgreement` on real steps only: for a
    classifier, each trial's last real step (``[M, S]``); for regression, the committed real
    entries (``[M, S, T, O]``, the RMS taken over real entries)."""
    if kind == "classification":
        steps = torch.arange(mask.shape[-1], device=mask.device)
        last = torch.where(mask, steps, -1).amax(-1)  # [M, S]; -1: no real step
        index = last.clamp(min=0)[..., None, None].expand(-1, -1, 1, pred.shape[-1])
        same = (pred.gather(2, index).argmax(-1) == target.gather(2, index).argmax(-1))
        return same.squeeze(-1) & (last >= 0), last >= 0
    real = mask.unsqueeze(-1).expand_as(target)
    target = target.masked_fill(~real, 0.0)
    count = real.flatten(1).sum(1).clamp(min=1)
    rms = (target.flatten(1).pow(2).sum(1) / count).sqrt().view(-1, *([1] * (target.dim() - 1)))
    counted = (target.abs() >= commit * rms) & real
    return (torch.sign(pred) == torch.sign(target)) & counted, counted
