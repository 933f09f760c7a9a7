"""De-duplication of found points: the leader-by-leader greedy keeps what visiting the rows
in q order keeps."""

from __future__ import annotations

import torch
from torch import Tensor

from dynamo_lightning.analysis.fixed_point_filters import unique


def _visit_in_q_order(h: Tensor, q: Tensor, groups: Tensor, keep: Tensor, radius: Tensor,
                      slack: Tensor) -> Tensor:
    """The rule, written out: a kept row survives unless a lower-q survivor of its group
    lies within radius + both slacks."""
    chosen: list[int] = []
    for i in sorted(keep.nonzero().flatten().tolist(), key=lambda r: (q[r].item(), r)):
        reach = radius[groups[i]] + slack[i] + slack
        if not any(groups[j] == groups[i] and (h[i] - h[j]).norm() <= reach[j] for j in chosen):
            chosen.append(i)
    out = torch.zeros_like(keep)
    out[chosen] = True
    return out


def test_unique_keeps_what_visiting_rows_in_q_order_keeps() -> None:
    g = torch.Generator().manual_seed(0)
    for trial in range(40):
        rows, num_groups = 60 + trial, 1 + trial % 4
        centres = torch.randn(5, 3, generator=g)
        h = centres[torch.randint(5, (rows,), generator=g)] + 0.02 * torch.randn(rows, 3,
                                                                                  generator=g)
        q = torch.randint(0, 4, (rows,), generator=g).float()  # ties, broken by row
        groups = torch.randint(num_groups, (rows,), generator=g)
        keep = torch.rand(rows, generator=g) > 0.2
        radius = 0.05 * torch.rand(num_groups, generator=g)
        slack = 0.02 * torch.rand(rows, generator=g) * (torch.rand(rows, generator=g) > 0.5)
        expected = _visit_in_q_order(h, q, groups, keep, radius, slack)
        assert torch.equal(unique(h, q, groups, keep, radius, slack, num_groups), expected)


def test_unique_of_nothing_kept_is_empty() -> None:
    h = torch.zeros(3, 2)
    none = torch.zeros(3, dtype=torch.bool)
    assert not unique(h, torch.zeros(3), torch.zeros(3, dtype=torch.long), none,
                      torch.ones(1), torch.zeros(3), 1).any()
