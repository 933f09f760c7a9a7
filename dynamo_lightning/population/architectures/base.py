"""The architecture plugin interface, built around the *stacked form*.

An ``Architecture`` holds G members of one architecture and shape: every parameter has a
leading member axis ``[G, ...]`` and one call runs all G members (batched matmuls or grouped
convolutions, never a Python loop over members). A single network is simply a stack of one,
wrapped by ``MemberNetwork`` to drop the member axis. Per-member parameters are saved under
the same names without the leading axis, so members can be regrouped freely.

Calling convention (stacked): ``forward(x)`` with ``x [B, T, I]`` shared by all members or
``x [G, B, T, I]`` one batch per member returns ``(outputs [G, B, S_out, O],
hidden [G, B, S, state_size])``. Recurrent architectures have ``S = S_out = T`` and a
single-step map ``step(h [G, B, state], x [G or none, B, I])``; feed-forward ones have
``S`` = number of stages and ``S_out = 1``.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dynamo_lightning.checks import positive_int
from dynamo_lightning.memory import check_construction


class Architecture(nn.Module, ABC):
    """G networks of one architecture and shape, with parameters stacked on axis 0.

    Args:
        input_size: size of one input step (I).
        output_size: size of the readout (O).
        hidden_size: units per layer (RNN units or CNN channels).
        num_members: G, the number of stacked members.
        seeds: one initialisation seed per member; member i is initialised from
            ``torch.Generator().manual_seed(seeds[i])`` whatever stack it is in.
        **options: architecture-specific JSON-serialisable options, declared by the
            subclass's own ``__init__``; a class without one takes none.
    """

    registered_name: ClassVar[str] = ""
    recurrent: ClassVar[bool] = True
    parameter_dtype: ClassVar[torch.dtype] = torch.float32
    """The dtype a population stores this architecture's parameters in (saves cast floating
    weights to it; loading refuses other dtypes unless asked to convert)."""

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hidden_size: int,
        num_members: int = 1,
        seeds: Sequence[int] | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        for key, value in (("input_size", input_size), ("output_size", output_size),
                           ("hidden_size", hidden_size), ("num_members", num_members)):
            positive_int(key, value, type(self).__name__)
        if options and type(self).__init__ is Architecture.__init__:
            # Options are declared by a class's own __init__ (see CNN); a typo must not be
            # stored silently in the config and the manifest.
            raise TypeError(f"{type(self).__name__} takes no options, got {sorted(options)}")
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size = hidden_size
        self.num_members = num_members
        self.options = dict(options)
        seeds = list(range(num_members)) if seeds is None else list(seeds)
        if len(seeds) != num_members:
            raise ValueError(f"got {len(seeds)} seeds for {num_members} members")
        shapes = self.parameter_shapes()
        check_construction(type(self).__name__, shapes, num_members, hidden_size)  # pre-flight
        inits = [self.init_member(torch.Generator().manual_seed(int(s))) for s in seeds]
        for name, shape in shapes.items():
            stacked = torch.stack([m[name] for m in inits]) if inits else torch.empty(0, *shape)
            if tuple(stacked.shape[1:]) != tuple(shape):
                raise RuntimeError(f"{type(self).__name__}.init_member gave {name} of shape "
                                   f"{tuple(stacked.shape[1:])}, expected {tuple(shape)}")
            self.register_parameter(name, nn.Parameter(stacked))

    # ----------------------------------------------------------------- plugin interface
    @property
    @abstractmethod
    def state_size(self) -> int:
        """Size of one hidden-trajectory vector (LSTM: 2H, for h and c)."""

    @abstractmethod
    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-member parameter shapes (without the member axis), in a fixed order."""

    @abstractmethod
    def init_member(self, generator: torch.Generator) -> dict[str, Tensor]:
        """Initial parameters of one member, drawn only from ``generator``."""

    @abstractmethod
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Run all members: ``x [B,T,I]`` or ``[G,B,T,I]`` → outputs, hidden (see module doc)."""

    # ----------------------------------------------------------------- generic machinery
    def config(self) -> dict[str, Any]:
        """Constructor keywords (minus members and seeds) that rebuild this shape."""
        return {"input_size": self.input_size, "output_size": self.output_size,
                "hidden_size": self.hidden_size, **self.options}

    def members(self, indices: Tensor) -> Architecture:
        """A stack of only the members at ``indices`` (a view for running them, not a copy
        to train): each parameter gathered along the member axis, nothing re-initialised,
        so it costs one indexing per parameter. Online trajectories run a batch's members
        this way, whatever the stack's size.

        Raises:
            ValueError: ``indices`` is empty or not a 1-D index tensor into the stack.
        """
        if indices.dim() != 1 or indices.numel() == 0:
            raise ValueError(f"{type(self).__name__}.members: indices must be a non-empty 1-D "
                             f"tensor, got shape {tuple(indices.shape)}")
        subset = copy.copy(self)  # shares buffers and options; parameters replaced below
        gathered = {name: p.index_select(0, indices.to(p.device))
                    for name, p in self._parameters.items() if p is not None}
        object.__setattr__(subset, "_parameters", gathered)
        object.__setattr__(subset, "num_members", int(indices.numel()))
        return subset

    def member_state(self, index: int) -> dict[str, Tensor]:
        """Parameters of member ``index`` without the member axis (detached copies)."""
        return {name: p[index].detach().clone() for name, p in self.named_parameters()}

    @classmethod
    def from_member_states(cls, states: Sequence[dict[str, Tensor]], **config: Any) -> Architecture:
        """Stack saved members of one shape into one module.

        Raises:
            ValueError: a member lacks a parameter, has an extra one, or a shape differs.
        """
        stack = cls(num_members=len(states), seeds=[0] * len(states), **config)
        expected = stack.parameter_shapes()
        for i, state in enumerate(states):
            check_member_state(state, expected, where=f"member {i}")
        with torch.no_grad():
            for name, p in stack.named_parameters():
                p.copy_(torch.stack([s[name] for s in states]).to(p.dtype))
        return stack

    def _input_batch(self, x: Tensor) -> tuple[Tensor, bool]:
        """Validate ``x`` and say whether it is shared by all members."""
        if x.dim() == 3:
            shared = True
        elif x.dim() == 4 and x.shape[0] == self.num_members:
            shared = False
        else:
            raise ValueError(f"{type(self).__name__}: expected inputs [B,T,{self.input_size}] or "
                             f"[{self.num_members},B,T,{self.input_size}], got {tuple(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input size {x.shape[-1]} does not match "
                             f"the network's input_size {self.input_size}")
        return x, shared


def check_member_state(state: dict[str, Tensor], expected: dict[str, tuple[int, ...]],
                       where: str) -> None:
    """Raise a ValueError naming the first missing, extra or mis-shaped parameter."""
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ValueError(f"{where}: parameters do not match the architecture "
                         f"(missing: {missing or 'none'}; unexpected: {extra or 'none'})")
    for name, shape in expected.items():
        if tuple(state[name].shape) != tuple(shape):
            raise ValueError(f"{where}: tensor {name!r} has shape {tuple(state[name].shape)}, "
                             f"expected {tuple(shape)} from its config")


def uniform(shape: Sequence[int], bound: float, generator: torch.Generator) -> Tensor:
    """U(-bound, bound) drawn from ``generator`` (PyTorch's default RNN/Linear init)."""
    return (torch.rand(*shape, generator=generator) * 2 - 1) * bound


def fan_in_bound(fan_in: int) -> float:
    return 1.0 / math.sqrt(fan_in)


class MemberNetwork(nn.Module):
    """One member, frozen and in eval mode, with the member calling convention.

    ``net(x [B,T,I]) -> (outputs [B,S_out,O], hidden [B,S,H])``; recurrent members also have
    ``net.step(h [B,H], x [B,I]) -> h_next`` and ``net.readout(h) -> y``.
    """

    def __init__(self, stack: Architecture) -> None:
        super().__init__()
        if stack.num_members != 1:
            raise ValueError(f"MemberNetwork wraps a stack of one member, got {stack.num_members}")
        self.stack = stack
        self.requires_grad_(False)
        self.eval()

    @property
    def recurrent(self) -> bool:
        return self.stack.recurrent

    @property
    def state_size(self) -> int:
        return self.stack.state_size

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        outputs, hidden = self.stack(x)
        return outputs[0], hidden[0]

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        """One time step: ``h [B, state]``, ``x [B, I]`` → ``h_next [B, state]``."""
        self._require_recurrent("step")
        return self.stack.step(h.unsqueeze(0), x)[0]

    def readout(self, h: Tensor) -> Tensor:
        """Outputs ``[..., O]`` of hidden states ``h [..., state]``."""
        self._require_recurrent("readout")
        return self.stack.readout(h.unsqueeze(0))[0]

    def initial_state(self, batch_size: int) -> Tensor:
        self._require_recurrent("initial_state")
        return self.stack.initial_state(batch_size)[0]

    def _require_recurrent(self, what: str) -> None:
        if not self.stack.recurrent:
            raise TypeError(f"{type(self.stack).__name__} is feed-forward: it has no {what}()")
