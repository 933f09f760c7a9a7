"""Stage-wise targets for feed-forward populations: one PCA per member *and stage*.

For a CNN member, "time" is depth: stage ``s`` (layer ``s``) has its own activations, of its
own size and meaning, so each (member, stage) pair — a *unit* here — gets its own top-k PCA
and unit-variance scaling, and the meta-model gets one affine map per member and stage.

Members may differ in width (each unit's PCA reduces it to k) and in depth. The meta-model
has as many stages as the deepest member, ``S̃``; a member with ``S_n`` stages is aligned by
proportional depth: its stage ``s`` (0-based) with meta stage ``σ_n(s) = ⌈(s + 1) S̃ / S_n⌉ − 1``,
so first and last stages meet their counterparts' depth share and the last stages always
match. Meta stages no stage of the member maps to carry NaN targets, which the loss and the
metrics leave out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

import torch
from torch import Tensor

from dynamo_lightning.data.projection import MemberProjections, ProjectionFitter, project_states
from dynamo_lightning.population import Population


@dataclass(frozen=True)
class StageLayout:
    """Stages per member and their places among the meta-model's ``depth`` stages.

    Attributes:
        stages: ``S_n`` per member (N).
        meta_depth: S̃ when it is not the deepest member's (a new member placed on a fitted
            map: the meta-model's depth); 0 means ``max(stages)``.
    """

    stages: tuple[int, ...]
    meta_depth: int = 0

    @property
    def depth(self) -> int:
        """S̃, the meta-model's number of stages (by default the deepest member's)."""
        return self.meta_depth or max(self.stages)

    @property
    def offsets(self) -> list[int]:
        """Index of each member's first unit among all ``sum(S_n)`` units."""
        return [0, *accumulate(self.stages)][:-1]

    def meta_stages(self, member: int) -> list[int]:
        """``σ_n(s)`` for ``s < S_n``: the meta stage each of the member's stages aligns with."""
        n, depth = self.stages[member], self.depth
        return [math.ceil((s + 1) * depth / n) - 1 for s in range(n)]

    def mask(self) -> Tensor:
        """``[N, S̃]`` bool: which meta stages have a target for each member."""
        out = torch.zeros(len(self.stages), self.depth, dtype=torch.bool)
        for n in range(len(self.stages)):
            out[n, self.meta_stages(n)] = True
        return out

    def units(self, hidden: Sequence[Tensor], members: Sequence[int]) -> tuple[list[Tensor],
                                                                           list[int]]:
        """Per-unit states ``[..., H_n]`` of ``hidden`` (row m: member ``members[m]``,
        ``[..., S_n, H_n]``) and their unit indices."""
        offsets = self.offsets
        states, index = [], []
        for h, n in zip(hidden, members, strict=True):
            if h.shape[-2] != self.stages[n]:
                raise ValueError(f"member {n} has {h.shape[-2]} stages, its layout says "
                                 f"{self.stages[n]}")
            states += list(h.unbind(-2))
            index += range(offsets[n], offsets[n] + self.stages[n])
        return states, index

    def fitter(self, state_sizes: Sequence[int]) -> ProjectionFitter:
        """A projection fitter with one unit per member and stage."""
        return ProjectionFitter([h for h, s in zip(state_sizes, self.stages, strict=True)
                                 for _ in range(s)])

    def update(self, fitter: ProjectionFitter, hidden: Sequence[Tensor]) -> None:
        """Add every member's states (``[B, S_n, H_n]`` each, all N in order) to ``fitter``."""
        fitter.update(self.units(hidden, range(len(self.stages)))[0])

    def project(self, projections: MemberProjections, hidden: Sequence[Tensor] | Tensor,
                members: Sequence[int] | Tensor | None = None) -> Tensor:
        """Stage-wise targets ``[M, ..., S̃, k]`` of states ``[..., S_n, H_n]`` per row,
        NaN where a meta stage has no counterpart in the row's member."""
        rows = list(hidden.unbind(0)) if isinstance(hidden, Tensor) else list(hidden)
        members = (list(range(len(rows))) if members is None else
                   [int(m) for m in torch.as_tensor(members).tolist()])
        states, index = self.units(rows, members)
        width = max(s.shape[-1] for s in states)
        padded = torch.stack([torch.nn.functional.pad(s, (0, width - s.shape[-1]))
                              for s in states])
        projected = project_states(projections, padded, index)  # [U, ..., k]
        lead = rows[0].shape[:-2]
        out = projected.new_full((len(rows), *lead, self.depth, projected.shape[-1]), math.nan)
        start = 0
        for m, n in enumerate(members):
            for s, place in enumerate(self.meta_stages(n)):
                out[m, ..., place, :] = projected[start + s]
            start += self.stages[n]
        return out


@torch.no_grad()
def probe_layout(population: Population, inputs: Tensor) -> StageLayout | None:
    """The population's stage layout (None for a recurrent one), from one stacked call per
    group on ``inputs [B, T, I]``.

    Raises:
        ValueError: recurrent and feed-forward members mixed, naming the members of each.
    """
    kinds: dict[bool, list[str]] = {}
    stages = [0] * len(population)
    for indices, stack in population.groups():
        recurrent = bool(getattr(stack, "recurrent", True))
        kinds.setdefault(recurrent, []).extend(population[i].id for i in indices)
        if not recurrent:
            _, hidden = stack(inputs.to(population.device))
            for i in indices:
                stages[i] = int(hidden.shape[2])
    if len(kinds) > 1:
        raise ValueError("one meta-model emulates either recurrent or feed-forward members, "
                         f"not both: recurrent {_short(kinds[True])}; feed-forward "
                         f"{_short(kinds[False])}; split the population")
    return None if True in kinds else StageLayout(tuple(stages))


def _short(ids: Sequence[str], limit: int = 5) -> str:
    return ", ".join(ids[:limit]) + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")
