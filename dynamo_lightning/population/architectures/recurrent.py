"""Shared machinery of the stacked recurrent architectures.

The recurrence is one batched matmul per step (``baddbmm`` over the member axis); the input
projections are one batched matmul per chunk of time steps. On CPU a chunk's projections stay
within ``PROJECTION_CHUNK_BYTES``: a small stack projects its whole sequence at once (few ops),
a large one a step at a time, so that no ``[T, G, B, gH]`` temporary leaves the cache. At
G=64, B=128, H=64, T=100 that temporary is 630 MB, and making it (an einsum, a bias add, and
stacking the states afterwards) cost as much as the recurrence: the stacked GRU forward ran no
faster than a loop over its members. See benchmarks/population_forward.py.

``step`` and ``forward`` both go through ``cell``, so the single-step map agrees with the
sequence forward by construction. The one exception is opt-in: with ``fused`` set (on a
GPU, by the population trainer and by ``Population.use_fused_kernels``), ``forward`` of a
class that names a ``fused_cell`` runs the whole time loop as one Triton kernel
(:mod:`.fused_recurrence`), which computes the same states; ``step``, and ``forward`` under
``torch.func`` transforms, stay plain.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from dynamo_lightning.population.architectures.base import Architecture, fan_in_bound, uniform
from dynamo_lightning.population.step_shapes import check_step_shapes

#: Upper bound on the input projections computed ahead of the recurrence (one chunk of steps).
PROJECTION_CHUNK_BYTES = 8 * 2**20
#: From this size of one step's states (all members), ``forward`` without autograd writes the
#: states into its output as they come instead of stacking them at the end.
DIRECT_OUTPUT_BYTES = 2**20


class RecurrentArchitecture(Architecture):
    """Stacked single-layer RNN with a linear readout of the hidden units.

    Per-member parameters: ``weight_ih [I, gH]``, ``weight_hh [H, gH]``, ``bias_ih [gH]``,
    ``bias_hh [gH]``, ``readout_weight [H, O]``, ``readout_bias [O]``, where ``g`` is the
    number of gate blocks (``gates``). Weights are stored input-major (``x @ W``), i.e. the
    transpose of ``torch.nn.RNN``'s layout; gate blocks follow torch's order.
    """

    recurrent: ClassVar[bool] = True
    gates: ClassVar[int] = 1
    fused_cell: ClassVar[str | None] = None
    """The fused kernel's cell (``fused_recurrence.CELLS``) that computes this class's
    ``cell``, or None: the plain path only."""
    fused: bool = False
    """Run ``forward`` through the fused kernel where it applies (set per stack by the
    trainer or ``Population.use_fused_kernels``; off by default, so analysis code always sees
    the plain path)."""

    @classmethod
    def fused_kernel(cls) -> str | None:
        """``fused_cell``, unless a subclass changed the recurrence it stands for (its
        ``cell``, ``recurrent_input`` or zero ``initial_state``): such a class runs plain."""
        owner = next(k for k in cls.__mro__ if "fused_cell" in vars(k))
        if cls.fused_cell is None or any(getattr(cls, name) is not getattr(owner, name)
                                         for name in ("cell", "recurrent_input",
                                                      "initial_state")):
            return None
        return cls.fused_cell

    @property
    def state_size(self) -> int:
        return self.hidden_size

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        i, h, o = self.input_size, self.hidden_size, self.output_size
        gh = self.gates * h
        return {"weight_ih": (i, gh), "weight_hh": (h, gh), "bias_ih": (gh,), "bias_hh": (gh,),
                "readout_weight": (h, o), "readout_bias": (o,)}

    def init_member(self, generator: torch.Generator) -> dict[str, Tensor]:
        bound = fan_in_bound(self.hidden_size)
        return {name: uniform(shape, bound, generator)
                for name, shape in self.parameter_shapes().items()}

    @abstractmethod
    def cell(self, h: Tensor, u: Tensor) -> Tensor:
        """Next state from ``h [G, B, state]`` and projected input ``u [G, B, gH]``."""

    def project_inputs(self, x: Tensor) -> Tensor:
        """``x [B,T,I]`` or ``[G,B,T,I]`` → ``W_ih x + b_ih`` as ``[T, G, B, gH]``."""
        x, shared = self._input_batch(x)
        return self._project(x.to(self.weight_ih.dtype), shared).transpose(0, 1)

    def _project(self, x: Tensor, shared: bool) -> Tensor:
        """Projections of a validated chunk ``x`` as ``[G, T, B, gH]``, one per-step block:
        :meth:`_project_rows` of ``x`` with its batch and time swapped (the reshape then
        copies ``x``, not the larger projections)."""
        return self._project_rows(x.transpose(-3, -2), shared)

    def recurrent_input(self, h: Tensor) -> Tensor:
        """``W_hh h + b_hh`` for ``h [G, B, H]``, one batched matmul."""
        return torch.baddbmm(self.bias_hh.unsqueeze(1), h, self.weight_hh)

    def initial_state(self, batch_size: int) -> Tensor:
        """Zero state ``[G, B, state]``."""
        return self.weight_hh.new_zeros(self.num_members, batch_size, self.state_size)

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        """One step for all members: ``h [G,B,state]``, ``x [B,I]`` (shared) or ``[G,B,I]``.

        Raises:
            ValueError: shapes that are not one step's (named, with the expected ones).
        """
        check_step_shapes(type(self).__name__, h, x, self.state_size, self.input_size,
                          members=self.num_members)
        u = self.project_inputs(x.unsqueeze(-2))[0]
        return self.cell(h, u)

    def readout(self, h: Tensor) -> Tensor:
        """Outputs ``[G, ..., O]`` from states ``h [G, ..., state]`` (hidden units only)."""
        units = h[..., : self.hidden_size]
        flat = units.reshape(self.num_members, -1, self.hidden_size)
        out = torch.baddbmm(self.readout_bias.unsqueeze(1), flat, self.readout_weight)
        return out.reshape(*units.shape[:-1], self.output_size)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x, shared = self._input_batch(x)
        x = x.to(self.weight_ih.dtype)
        if self.fused:
            hidden = self._fused_hidden(x, shared)
            if hidden is not None:
                return self.readout(hidden), hidden
        batch, steps = x.shape[-3], x.shape[-2]
        # The byte budgets are for CPU caches. On an accelerator memory is fast and every extra
        # op is a kernel launch: project the whole sequence at once and stack at the end.
        cpu = x.device.type == "cpu"
        row_bytes = self.num_members * batch * x.element_size()
        chunk = steps
        if cpu:
            per_step = row_bytes * self.weight_ih.shape[-1]
            chunk = max(1, min(steps, PROJECTION_CHUNK_BYTES // per_step))
        # Large stacks run without autograd write each state straight into the output (one
        # pass over [G, B, T, state] instead of two); small ones stack at the end (fewer ops).
        direct = cpu and row_bytes * self.state_size >= DIRECT_OUTPUT_BYTES and not self._records(x)
        h = self.initial_state(batch)
        states: list[Tensor] = []
        hidden: Tensor | None = None
        for start in range(0, steps, chunk):
            # unbind, not u[:, t]: its backward is one stack, not a zero-filled chunk per step.
            for t, u_t in enumerate(self._project(x[..., start : start + chunk, :], shared)
                                    .unbind(1), start):
                h = self.cell(h, u_t)
                if not direct:
                    states.append(h)
                    continue
                if hidden is None:  # allocated from h, so it is batched under torch.func.vmap
                    hidden = h.new_empty(*h.shape[:2], steps, h.shape[-1])
                hidden[:, :, t] = h
        if hidden is None:
            hidden = torch.stack(states, dim=2)
        return self.readout(hidden), hidden

    def _fused_hidden(self, x: Tensor, shared: bool) -> Tensor | None:
        """States from the fused kernel, or None where it does not apply (then the plain
        loop runs): no fused cell, no Triton, not float32 on CUDA, or a transform active."""
        cell = self.fused_kernel()
        if cell is None:
            return None
        # Imported here: Triton loads only when a stack is fused.
        from dynamo_lightning.population.architectures import fused_recurrence

        if not fused_recurrence.applies(x, self.weight_ih, self.weight_hh, self.bias_hh,
                                        hidden_size=self.hidden_size):
            return None
        return fused_recurrence.fused_recurrence(self._project_rows(x, shared), self.weight_hh,
                                                 self.bias_hh, cell)

    def _project_rows(self, x: Tensor, shared: bool) -> Tensor:
        """Projections ``x W_ih + b_ih`` of a validated ``x`` (``[B, T, I]`` shared by the
        members, or ``[G, B, T, I]``) as ``[G, B, T, gH]``, rows in ``x``'s own order: the
        fused kernels' layout (batch-major, ``hidden``'s row order), from a view of ``x``
        where it is contiguous (a shared one expanded over the members).

        One batched matmul with the bias fused; on CPU the equivalent einsum of a shared ``x``
        plus the bias took ten times as long (a K=I matmul and a transposing copy).
        """
        flat = x.reshape(1 if shared else self.num_members, -1, x.shape[-1])
        u = torch.baddbmm(self.bias_ih.unsqueeze(1), flat.expand(self.num_members, -1, -1),
                          self.weight_ih)
        return u.view(self.num_members, x.shape[-3], x.shape[-2], u.shape[-1])

    def _records(self, x: Tensor) -> bool:
        """Whether autograd records this forward."""
        return torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in self.parameters()))
