"""Per-member PCA: every member's hidden states mapped into a common, comparable ``R^k``.

DYNAMO compares the meta-model with member n in n's own reduced space: n's states are
centred, projected onto n's top-k principal components (fitted on n's own trajectories) and
scaled so the k-dim vectors have *total* variance 1 (the sum of the k component variances).
A member of any architecture or width then contributes the same loss scale, and predicting
the mean costs exactly 1 per state. Pure torch; no Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from dynamo_lightning.checks import positive_int

Hidden = Tensor | Sequence[Tensor]


@dataclass
class MemberProjections:
    """Fitted projections of N members, zero-padded to the largest state size ``Hmax``.

    Attributes:
        mean: ``[N, Hmax]`` each member's state mean (0 beyond its own state size).
        basis: ``[N, Hmax, k]`` orthonormal top-k principal directions as columns, sign-fixed
            so each column's largest-magnitude entry is positive. Rows beyond a member's state
            size are 0; when ``H_n < k`` (or its states have rank < k) the extra columns are 0,
            so that member's targets are 0 in those components.
        scale: ``[N]`` factor giving the projected k-dim vectors total variance 1 (1 when a
            member's states do not vary at all).
        state_sizes: ``[N]`` int64, each member's own state size ``H_n``.
        explained_variance: ``[N]`` fraction of the member's total variance captured by its
            top-k components (1 for a member with no variance).
    """

    mean: Tensor
    basis: Tensor
    scale: Tensor
    state_sizes: Tensor
    explained_variance: Tensor

    @property
    def num_members(self) -> int:
        return self.mean.shape[0]

    @property
    def num_components(self) -> int:
        return self.basis.shape[-1]

    def to(self, device: torch.device | str) -> MemberProjections:
        """A copy with every tensor on ``device``."""
        return MemberProjections(**{f.name: getattr(self, f.name).to(device)
                                    for f in fields(self)})

    def to_state_dict(self) -> dict[str, Tensor]:
        """Plain CPU tensors by field name (what checkpoints and the cache store)."""
        return {f.name: getattr(self, f.name).detach().cpu() for f in fields(self)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> MemberProjections:
        """Inverse of ``to_state_dict`` (accepts numpy arrays too).

        Raises:
            KeyError: a field is missing from ``state``.
        """
        missing = [f.name for f in fields(cls) if f.name not in state]
        if missing:
            raise KeyError(f"projection state lacks {missing} (has {sorted(state)})")
        return cls(**{f.name: torch.as_tensor(state[f.name]) for f in fields(cls)})


FITTER_BLOCK_BYTES = 256 * 2**20
"""Float64 states one batched moment update holds at once (members are taken in blocks)."""


class ProjectionFitter:
    """Streams member states chunk by chunk and fits the projections at the end.

    Only first and second moments are kept (float64, ``[N, Hmax, Hmax]``), so the training
    trajectories never need to be in memory at once.

    Args:
        state_sizes: each member's state size ``H_n``.
    """

    def __init__(self, state_sizes: Sequence[int]) -> None:
        self.state_sizes = [int(h) for h in state_sizes]
        hmax = max(self.state_sizes)
        n = len(self.state_sizes)
        self._count = torch.zeros(n, dtype=torch.float64)
        self._sum = torch.zeros(n, hmax, dtype=torch.float64)
        self._outer = torch.zeros(n, hmax, hmax, dtype=torch.float64)

    def update(self, hidden: Hidden, mask: Tensor | None = None) -> None:
        """Add states ``[N, B, S, H]`` or a list of N ``[B, S, H_n]`` (any leading dims).

        The moments are summed where the states are (on a GPU: no copy of the trajectories
        to the host), in float64, over blocks of members with one batched matmul each.

        Args:
            hidden: the members' states.
            mask: ``[B, S]`` bool (the leading dims of every member's states), True for the
                states to count: the real steps of padded trials (``Task.step_mask``).
                None: every state counts.
        """
        states = _as_list(hidden, len(self.state_sizes))
        if mask is not None:
            if any(s.shape[:-1] != mask.shape for s in states):
                raise ValueError(f"ProjectionFitter.update: mask {tuple(mask.shape)} must "
                                 "match the states' leading dims "
                                 f"{tuple(states[0].shape[:-1])}")
            states = [s[mask.to(s.device)] for s in states]  # [R, H_n]: the real steps
        device = states[0].device
        if self._sum.device != device:
            self._count, self._sum, self._outer = (
                t.to(device) for t in (self._count, self._sum, self._outer))
        hmax = self._sum.shape[1]
        rows = states[0][..., 0].numel()  # states per member in this update
        block = max(1, FITTER_BLOCK_BYTES // max(1, rows * hmax * 8))
        for start in range(0, len(states), block):
            part = states[start:start + block]
            if any(s[..., 0].numel() != rows for s in part):
                raise ValueError("ProjectionFitter.update: members have different numbers of "
                                 "states in one update")
            x = torch.stack([_pad_last(s.detach().reshape(rows, -1)[:, :h], hmax)
                             for s, h in zip(part, self.state_sizes[start:start + block],
                                             strict=True)]).double()
            end = start + len(part)
            self._count[start:end] += rows
            self._sum[start:end] += x.sum(1)
            self._outer[start:end] += x.transpose(1, 2) @ x

    def fit(self, k: int) -> MemberProjections:
        """The projections from the states seen so far (population covariance, ddof 0)."""
        positive_int("k (num_components)", k)
        self._count, self._sum, self._outer = (
            t.cpu() for t in (self._count, self._sum, self._outer))
        if bool((self._count == 0).any()):
            raise ValueError("ProjectionFitter.fit: some members have no states")
        count = self._count.view(-1, 1)
        mean = self._sum / count
        cov = self._outer / count.unsqueeze(-1) - mean.unsqueeze(-1) * mean.unsqueeze(-2)
        eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending; batched over members
        eigvals, eigvecs = eigvals.flip(-1).clamp(min=0), eigvecs.flip(-1)
        sizes = torch.tensor(self.state_sizes)
        hmax = mean.shape[1]
        kk = min(k, hmax)
        basis = torch.zeros(len(sizes), hmax, k, dtype=torch.float64)
        basis[:, :, :kk] = eigvecs[:, :, :kk]
        top = torch.zeros(len(sizes), k, dtype=torch.float64)
        top[:, :kk] = eigvals[:, :kk]
        # Rows beyond H_n and components beyond H_n or the states' rank carry no variance.
        row_ok = torch.arange(hmax).view(1, -1, 1) < sizes.view(-1, 1, 1)
        rank_ok = top > 1e-12 * top[:, :1].clamp(min=1e-300)
        col_ok = (torch.arange(k).view(1, -1) < sizes.view(-1, 1)) & rank_ok
        basis = basis * row_ok * col_ok.unsqueeze(1)
        top = top * col_ok
        # Deterministic signs (as sklearn's svd_flip): largest-|entry| of each column > 0.
        pivot = basis.abs().argmax(dim=1, keepdim=True)
        sign = torch.sign(basis.gather(1, pivot))
        basis = basis * torch.where(sign == 0, 1.0, sign)
        kept = top.sum(-1)
        total = eigvals.sum(-1)
        scale = torch.where(kept > 0, kept.clamp(min=1e-300).rsqrt(), 1.0)
        explained = torch.where(total > 0, kept / total.clamp(min=1e-300), 1.0)
        return MemberProjections(mean=mean.float(), basis=basis.float(), scale=scale.float(),
                                 state_sizes=sizes.long(), explained_variance=explained.float())


def fit_projections(hidden: Hidden, k: int) -> MemberProjections:
    """Fit each member's top-k PCA on its own states.

    Args:
        hidden: ``[N, B, S, H]`` or a list of N tensors ``[B, S, H_n]``; all ``B × S`` states
            of a member are pooled.
        k: number of components (the common target dimension).

    Returns:
        ``MemberProjections``; ``project_states`` with them gives total variance 1 per member on
        these states.
    """
    states = _as_list(hidden)
    fitter = ProjectionFitter([s.shape[-1] for s in states])
    fitter.update(states)
    return fitter.fit(k)


def project_states(projections: MemberProjections, hidden: Hidden,
            members: Tensor | Sequence[int] | None = None) -> Tensor:
    """Map member states to their k-dim targets in one batched einsum.

    Args:
        projections: fitted projections of the whole population.
        hidden: ``[M, ..., H]`` (``H ≤ Hmax``; zero-padded) or a list of M tensors
            ``[..., H_m]`` with equal leading dims; row m belongs to member ``members[m]``.
        members: ``[M]`` population indices of the rows (default: all N, in order).

    Returns:
        ``[M, ..., k]`` in the dtype and on the device of ``hidden``.
    """
    if not isinstance(hidden, Tensor):
        states = list(hidden)
        width = max(s.shape[-1] for s in states)
        hidden = torch.stack([_pad_last(s, width) for s in states])
    hmax = projections.mean.shape[1]
    if hidden.shape[-1] > hmax:
        raise ValueError(f"states of size {hidden.shape[-1]} exceed the fitted size {hmax}")
    hidden = _pad_last(hidden, hmax)
    if members is None:
        members = torch.arange(projections.num_members)
    index = torch.as_tensor(members, dtype=torch.long, device=projections.mean.device)
    if index.numel() != hidden.shape[0]:
        raise ValueError(f"{index.numel()} member indices for {hidden.shape[0]} rows of states")
    p = projections.to(hidden.device) if projections.mean.device != hidden.device else projections
    index = index.to(hidden.device)
    extra = hidden.dim() - 2
    mean = p.mean[index].to(hidden.dtype).view(-1, *([1] * extra), hmax)
    scale = p.scale[index].to(hidden.dtype).view(-1, *([1] * (extra + 1)))
    out = torch.einsum("m...h,mhk->m...k", hidden - mean, p.basis[index].to(hidden.dtype))
    return out * scale


def _as_list(hidden: Hidden, n: int | None = None) -> list[Tensor]:
    states = list(hidden.unbind(0)) if isinstance(hidden, Tensor) else list(hidden)
    if n is not None and len(states) != n:
        raise ValueError(f"expected states of {n} members, got {len(states)}")
    return states


def _pad_last(x: Tensor, width: int) -> Tensor:
    extra = width - x.shape[-1]
    return x if extra == 0 else torch.nn.functional.pad(x, (0, extra))
