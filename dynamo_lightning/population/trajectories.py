"""What a population does on shared inputs: every member's outputs and hidden states."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Trajectories:
    """Outputs and hidden trajectories of N members on the same inputs ``[B, T, I]``.

    Attributes:
        hidden: ``[N, B, S, H]`` when every member has the same number of stages ``S`` and
            state size ``H`` (recurrent: ``S = T``; LSTM ``H`` counts ``h`` and ``c``); else a
            list of N tensors ``[B, S_n, H_n]``.
        outputs: ``[N, B, S_out, O]`` when all members agree on ``S_out`` and ``O``; else a
            list of N tensors ``[B, S_out_n, O_n]``.
        ids: member ids in the same order (may be empty when not known).
    """

    hidden: Tensor | list[Tensor]
    outputs: Tensor | list[Tensor]
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.hidden)

    @property
    def stacked(self) -> bool:
        """Whether both ``hidden`` and ``outputs`` are single stacked tensors."""
        return isinstance(self.hidden, Tensor) and isinstance(self.outputs, Tensor)

    def member(self, index: int | str) -> tuple[Tensor, Tensor]:
        """``(outputs [B, S_out, O], hidden [B, S, H])`` of one member, by position or id."""
        if isinstance(index, str):
            if index not in self.ids:
                raise KeyError(f"no member {index!r} in these trajectories")
            index = self.ids.index(index)
        return self.outputs[index], self.hidden[index]

    def to(self, device: torch.device | str) -> Trajectories:
        """A copy with every tensor on ``device``."""

        def move(value: Tensor | list[Tensor]) -> Tensor | list[Tensor]:
            if isinstance(value, Tensor):
                return value.to(device)
            return [t.to(device) for t in value]

        return Trajectories(hidden=move(self.hidden), outputs=move(self.outputs),
                            ids=list(self.ids))
