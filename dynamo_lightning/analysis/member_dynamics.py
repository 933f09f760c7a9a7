"""Every member's states and fixed points, members of one architecture and shape at once.

``Population.groups()`` holds the members as stacks (parameters on a leading member axis);
:class:`StackStep` turns a stack into one step function over rows of all its members, so
each stack is one batched :func:`find_fixed_points` call (groups = members) instead of a
Python loop over members.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dynamo_lightning.analysis.fixed_points import FixedPointSet, find_fixed_points, sample_inits
from dynamo_lightning.analysis.search_options import SearchOptions
from dynamo_lightning.population import Population


class StackStep:
    """Step function over a stack of G members: row r runs member ``member_of_row[r]``.

    Rows are scattered into a zero-padded ``[G, n_max, H]`` batch, stepped in one stacked
    call and gathered back; ``subset(rows)`` (which :func:`find_fixed_points` uses once
    rows converge) keeps each row with its member.
    """

    def __init__(self, stack: torch.nn.Module, member_of_row: Tensor) -> None:
        self.stack, self.groups = stack, member_of_row
        onehot = torch.nn.functional.one_hot(member_of_row, stack.num_members)
        self._rank = (onehot.cumsum(0) - 1).gather(1, member_of_row[:, None]).squeeze(1)
        self._width = int(onehot.sum(0).max()) if member_of_row.numel() else 0
        # Member-major with equal counts (every search starts so): a reshape is enough.
        self._dense = bool(torch.equal(member_of_row, torch.arange(
            stack.num_members, device=member_of_row.device).repeat_interleave(self._width)))

    def subset(self, rows: Tensor) -> StackStep:
        return StackStep(self.stack, self.groups[rows.to(self.groups.device)])

    def __call__(self, h: Tensor, x: Tensor) -> Tensor:
        g = self.stack.num_members
        if self._dense:
            nxt = self.stack.step(h.reshape(g, self._width, -1), x.reshape(g, self._width, -1))
            return nxt.reshape(h.shape)
        index = (self.groups.to(h.device), self._rank.to(h.device))
        padded_h = h.new_zeros(g, self._width, h.shape[-1]).index_put(index, h)
        padded_x = x.new_zeros(g, self._width, x.shape[-1]).index_put(index, x)
        return self.stack.step(padded_h, padded_x)[index]


@torch.no_grad()
def member_states(population: Population, inputs: Tensor, batch_size: int | None = None
                  ) -> list[Tensor]:
    """Every member's hidden trajectory on ``inputs [B, T, I]``, one ``[B, T, H_i]`` each on
    the CPU: what the trajectory baselines compare and what seeds each member's search."""
    hidden = population.trajectories(inputs, batch_size=batch_size).hidden
    return [h.cpu() for h in hidden]


def member_fixed_points(population: Population, x: Tensor, x_const: Tensor,
                        search: SearchOptions | None = None,
                        ) -> tuple[list[FixedPointSet | None], dict[int, Tensor]]:
    """Each recurrent member's fixed points under ``x_const``: one batched search per stack.

    Args:
        population: the members.
        x: trials ``[B, T, I]`` whose states seed (``sample_inits``) and anchor
            (``reference``) each member's search.
        x_const: the constant input ``[I]``.
        search: the search's settings per member (``trials`` is unused: ``x`` gives them).

    Returns:
        one :class:`FixedPointSet` per member (None for feed-forward members) and the states
        ``[B, T, H]`` of each member that has points.
    """
    states = member_states(population, x)
    search = search or SearchOptions()
    generator = torch.Generator().manual_seed(search.seed + 1)
    found: list[FixedPointSet | None] = [None] * len(population)
    for indices, stack in population.groups():
        if not getattr(stack, "recurrent", False):
            continue  # feed-forward members have no step map
        mine = [states[i] for i in indices]
        inits = torch.cat([sample_inits(s, search.inits, search.init_noise, generator)
                           for s in mine]).to(population.device)
        rows = torch.arange(len(indices)).repeat_interleave(search.inits)
        step = StackStep(stack, rows.to(population.device))
        points = find_fixed_points(step, x_const.to(inits), inits, search.tol,
                                   groups=step.groups, max_iters=search.max_iters,
                                   reference=mine, slow_tol=search.slow_tol)
        for i, part in zip(indices, points.cpu().split(), strict=True):  # one copy, then views
            found[i] = part
    return found, {i: s for i, s in enumerate(states) if found[i] is not None}
