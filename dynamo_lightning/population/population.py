"""``Population``: an ordered, immutable collection of frozen members that runs stacked."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import torch
from torch import Tensor, nn

from dynamo_lightning.checks import optional_positive_int
from dynamo_lightning.population import architectures
from dynamo_lightning.population.architectures import Architecture
from dynamo_lightning.population.array_import import members_from_arrays
from dynamo_lightning.population.format import load_population, save_population
from dynamo_lightning.population.member import Member
from dynamo_lightning.population.torch_import import members_from_torch
from dynamo_lightning.population.trajectories import Trajectories


class Population(Sequence[Member]):
    """Members in a stable order, indexable by position or id.

    Members of one architecture and shape (one ``group_key``) are run as one stacked module
    (see ``groups()``), never one by one.

    Args:
        members: the members, in order; ids must be unique.
        device: where ``groups()`` stacks live and ``trajectories`` runs (default CPU).

    Example::

        pop = Population.load("runs/demo/population")
        traj = pop.trajectories(x)        # x [B, T, I] -> traj.hidden [N, B, T, H]
    """

    def __init__(self, members: Iterable[Member], device: torch.device | str = "cpu") -> None:
        self._members = list(members)
        self._index: dict[str, int] = {}
        for i, m in enumerate(self._members):
            if not isinstance(m, Member):
                raise TypeError(f"Population takes Member objects, got {type(m).__name__} at {i}")
            if m.id in self._index:
                raise ValueError(f"duplicate member id {m.id!r} (positions "
                                 f"{self._index[m.id]} and {i})")
            self._index[m.id] = i
        self.device = torch.device(device)
        self._groups: list[tuple[list[int], Architecture]] | None = None
        self._fused = False  # see use_fused_kernels

    # ------------------------------------------------------------------ construction / IO
    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu", *,
             convert_dtypes: bool = False) -> Population:
        """Read a population directory (JSON + safetensors, never pickle).

        A save to ``path`` that was killed midway is finished or rolled back first.

        Args:
            path: the population directory.
            device: where ``groups()`` stacks live and ``trajectories`` runs.
            convert_dtypes: convert weights stored in another real dtype (float16, float64,
                int32, ...) to their architecture's (float32) instead of refusing them;
                ``Population.load(path, convert_dtypes=True).save(new_path)`` repairs a file.

        Raises:
            PopulationFormatError: one line naming the bad file and the fault (also for a
                population without members, non-finite weights, weights of another dtype,
                two members sharing a weights file, a hard link or a copy of one, a manifest
                nested too deep, or a manifest or weights file that links outside ``path``).
        """
        return cls(load_population(path, convert_dtypes=convert_dtypes), device=device)

    def save(self, path: str | Path, **manifest_extras: str) -> Path:
        """Write atomically to ``path`` (``created_by``/``description`` go to the manifest).

        ``path`` must be absent, empty or a population (which is replaced); a directory
        holding anything else is refused, never overwritten.

        Raises:
            ValueError: no members, or weights that do not fit or are not finite.
            PopulationFormatError: ``path`` is not a place a population may be written.
        """
        return save_population(self._members, path, **manifest_extras)

    @classmethod
    def from_stack(cls, architecture_name: str, stack: Architecture, ids: Sequence[str],
                   metadata_list: Sequence[dict[str, Any]] | None = None) -> Population:
        """Members from a (trained) stack: member i gets ``ids[i]`` and ``metadata_list[i]``.

        ``architecture`` and ``hidden_size`` are added to the metadata when absent; member
        weights are copied to the CPU (``groups()`` puts stacks on ``self.device``).
        """
        if not isinstance(stack, architectures.get(architecture_name)):
            raise ValueError(f"stack is a {type(stack).__name__}, not a {architecture_name!r}")
        metadata_list = metadata_list or [{} for _ in ids]
        if not len(ids) == len(metadata_list) == stack.num_members:
            raise ValueError(f"stack has {stack.num_members} members but got {len(ids)} ids "
                             f"and {len(metadata_list)} metadata dicts")
        config = stack.config()
        members = []
        for i, (member_id, meta) in enumerate(zip(ids, metadata_list, strict=True)):
            meta = {"architecture": architecture_name, "hidden_size": stack.hidden_size, **meta}
            state = {k: v.cpu() for k, v in stack.member_state(i).items()}
            members.append(Member(member_id, architecture_name, dict(config), meta, state))
        return cls(members)

    @classmethod
    def from_torch(cls, members: Mapping[str, tuple[nn.Module, nn.Module] | nn.Module],
                   metadata: Mapping[str, Mapping[str, Any]] | None = None,
                   device: torch.device | str = "cpu", input_size: int | None = None
                   ) -> Population:
        """Members made from users' own torch networks, computing exactly what they compute.

        Args:
            members: ``{id: network}``, each network one of:

                - ``(rnn, readout)``: a single-layer ``batch_first`` ``nn.RNN`` (tanh or
                  relu), ``nn.GRU`` or ``nn.LSTM``, and an ``nn.Linear`` of its hidden
                  state, so that ``outputs = readout(rnn(x)[0])`` for ``x [B, T, I]``;
                - a continuous-time RNN module as neurogym's tutorials write it (attributes
                  ``input2h``, ``h2h`` — an ``nn.Linear`` or a Dale's-law module with
                  ``weight`` and ``mask`` —, ``alpha`` or ``dt``/``tau``, ``hidden_size``;
                  time-major), as ``(ctrnn, readout)`` or as a net with ``.rnn`` and
                  ``.fc``: a ``ctrnn`` member, checked against the module on a probe input
                  (which also settles its form and activation unless it declares them);
                - an ``nn.Sequential`` of ``Conv2d``/``ReLU`` stages, then
                  ``[AdaptiveAvgPool2d(p)], Flatten, Linear``, run on ``x.unsqueeze(1)``
                  (becomes a ``cnn`` member);
                - any other recurrent module with ``input_size``, ``hidden_size``,
                  ``step(h [B, H], x [B, I]) -> [B, H]``, ``readout(h [B, ..., H]) ->
                  [B, ..., O]`` (and optionally ``initial_state(batch_size)``): a
                  ``module`` member running a frozen copy of it, one member at a time.
                  It runs, steps and has fixed points like any member but cannot be saved
                  (a population directory never runs code), so the CLI cannot use it.

            metadata: optional ``{id: dict}`` merged over the defaults (``architecture``,
                ``hidden_size``, ``source="torch"``, ``torch_class``).
            device: as for ``Population``.
            input_size: image width of ``Sequential`` CNNs that pool adaptively.

        Raises:
            ValueError: naming the member, the fault and what is accepted.

        Example::

            pop = Population.from_torch({"net-a": (nn.GRU(3, 16, batch_first=True),
                                                   nn.Linear(16, 2))})
        """
        return cls(members_from_torch(members, metadata, input_size), device=device)

    @classmethod
    def from_arrays(cls, members: Mapping[str, Mapping[str, Any]],
                    metadata: Mapping[str, Mapping[str, Any]] | None = None,
                    device: torch.device | str = "cpu") -> Population:
        """``ctrnn`` members from weight arrays (PsychRNN, numpy, another framework).

        Args:
            members: ``{id: {"W_in" [H, I], "W_rec" [H, H], "b_rec" [H] (optional, zeros),
                "W_out" [O, H], "b_out" [O], "alpha" (or "dt" and "tau"), options...}}``:
                numpy arrays or tensors in the post×pre convention of PsychRNN and
                ``nn.Linear`` (also ``"b_in" [H]``, an input bias, default zeros). Options:
                ``activation``, ``form``, ``dale_ratio``, ``autapses``, ``noise_std``, as
                the ``ctrnn`` architecture takes them; with ``dale_ratio``, ``W_rec`` holds
                the signed effective weights.
            metadata: optional ``{id: dict}`` merged over ``architecture="ctrnn"``,
                ``hidden_size`` and ``source="arrays"``.
            device: as for ``Population``.

        Raises:
            ValueError: naming the member, the array, its shape and the expected shape
                (also for non-finite values, unknown keys, and ``W_rec`` signs that
                contradict ``dale_ratio``).

        Example::

            pop = Population.from_arrays({"net": {"W_in": w_in, "W_rec": w_rec,
                                                  "W_out": w_out, "b_out": b_out,
                                                  "alpha": 0.2}})
        """
        return cls(members_from_arrays(members, metadata), device=device)

    @classmethod
    def concat(cls, populations: Iterable[Population]) -> Population:
        """One population holding all members in order (ids must stay unique)."""
        populations = list(populations)
        device = populations[0].device if populations else "cpu"
        return cls([m for pop in populations for m in pop], device=device)

    def __add__(self, other: Population) -> Population:
        if not isinstance(other, Population):
            return NotImplemented
        return Population.concat([self, other])

    # ------------------------------------------------------------------ sequence protocol
    def __len__(self) -> int:
        return len(self._members)

    @overload
    def __getitem__(self, index: int | str) -> Member: ...
    @overload
    def __getitem__(self, index: slice) -> Population: ...
    def __getitem__(self, index: int | str | slice) -> Member | Population:
        if isinstance(index, str):
            if index not in self._index:
                known = ", ".join(self.ids[:5]) + (", ..." if len(self) > 5 else "")
                raise KeyError(f"no member {index!r} in the population (ids: {known})")
            return self._members[self._index[index]]
        if isinstance(index, slice):
            return Population(self._members[index], device=self.device)
        return self._members[index]

    def __iter__(self) -> Iterator[Member]:
        return iter(self._members)

    def __contains__(self, item: object) -> bool:
        return item in self._index if isinstance(item, str) else item in self._members

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for m in self._members:
            counts[m.architecture] = counts.get(m.architecture, 0) + 1
        return f"Population({len(self)} members: {counts})"

    @property
    def ids(self) -> list[str]:
        """Member ids in population order."""
        return [m.id for m in self._members]

    # ------------------------------------------------------------------ summaries
    @property
    def checksum(self) -> str:
        """SHA-256 over ids, architectures, configs and weights; equal after save/load.

        Recomputed on each access (hashes every weight), so it keys trajectory caches safely.
        """
        digest = hashlib.sha256()
        for m in self._members:
            digest.update(json.dumps([m.id, m.architecture, m.config], sort_keys=True).encode())
            digest.update(_weights_hash(m.state).encode())
        return digest.hexdigest()

    def metadata_table(self) -> list[dict[str, Any]]:
        """One flat dict per member (``id``, ``architecture``, then its metadata)."""
        return [{"id": m.id, "architecture": m.architecture, **m.metadata} for m in self]

    # ------------------------------------------------------------------ running
    def groups(self) -> list[tuple[list[int], Architecture]]:
        """``(indices, stack)`` per architecture and shape, in order of first appearance.

        Each stack is one frozen, eval-mode module holding the members at ``indices`` (built
        once, on ``self.device``).
        """
        if self._groups is None:
            by_key: dict[tuple[str, str], list[int]] = {}
            for i, m in enumerate(self._members):
                by_key.setdefault(m.group_key, []).append(i)
            self._groups = []
            for indices in by_key.values():
                first = self._members[indices[0]]
                stack = architectures.get(first.architecture).from_member_states(
                    [self._members[i].state for i in indices], **first.config)
                stack.requires_grad_(False).eval().to(self.device)
                self._groups.append((indices, stack))
            self._apply_fused()
        return self._groups

    def groups_of(self, positions: Sequence[int]) -> list[tuple[list[int], Architecture]]:
        """The stacks that hold the members at ``positions`` (distinct population indices),
        each cut down to those members (``Architecture.members``: one gather per parameter):
        ``(k's into positions, stack)`` per group, the stack's members in the order of
        those ``k``'s. Running a subset costs that subset, whatever the population's size."""
        wanted = {n: k for k, n in enumerate(positions)}
        found = []
        for indices, stack in self.groups():
            pairs = [(slot, wanted[n]) for slot, n in enumerate(indices) if n in wanted]
            if pairs:
                slots = torch.tensor([slot for slot, _ in pairs], device=self.device)
                found.append(([k for _, k in pairs], stack.members(slots)))
        return found

    def to(self, device: torch.device | str) -> Population:
        """Run (and keep the stacks) on ``device`` from now on; returns ``self``."""
        self.device = torch.device(device)
        for _, stack in self._groups or []:
            stack.to(self.device)
        self._apply_fused()
        return self

    def use_fused_kernels(self, on: bool = True) -> Population:
        """Whether GRU, tanh, ReLU and LSTM stacks run their forward as one Triton kernel while the
        population is on a CUDA device (the kernel of population training's ``fused_cells``,
        at the same widths): the same states up to float summation order, one launch per
        stack instead of a few per time step. Off by default, so that analysis sees the
        plain cell loop; the DYNAMO data module turns it on for its trajectories. Returns
        ``self``."""
        self._fused = bool(on)
        self._apply_fused()
        return self

    def _apply_fused(self) -> None:
        """Set each stack's ``fused`` flag for the current device (CUDA, or Triton's
        interpreter on the CPU) and Triton's presence."""
        fusable = [(stack, stack.fused_kernel()) for _, stack in self._groups or []
                   if hasattr(stack, "fused_kernel")]
        fusable = [(stack, cell) for stack, cell in fusable if cell is not None]
        widths: dict[str, int] = {}
        on_device = self.device.type == "cuda" or "TRITON_INTERPRET" in os.environ
        if self._fused and fusable and on_device:  # else Triton is not even imported
            from dynamo_lightning.population.architectures import fused_recurrence

            if fused_recurrence.available() and (self.device.type == "cuda"
                                                 or fused_recurrence.interpreting()):
                widths = fused_recurrence.FASTER_UP_TO
        for stack, cell in fusable:
            stack.fused = stack.hidden_size <= widths.get(cell, 0)

    @torch.no_grad()
    def trajectories(self, inputs: Tensor, batch_size: int | None = None) -> Trajectories:
        """Run every member on the same inputs, one stacked call per group (and batch chunk).

        Args:
            inputs: ``[B, T, I]``, shared by all members.
            batch_size: evaluate at most this many trials per call (None: all at once).

        Returns:
            ``Trajectories`` on ``self.device``, in population order.

        Raises:
            ValueError: ``inputs`` is not ``[B, T, I]`` with B, T >= 1, its size ``I`` does
                not fit some members, or ``batch_size`` is not a positive integer or None.
        """
        batch_size = optional_positive_int("batch_size", batch_size, "Population.trajectories")
        _check_inputs(inputs)
        self._check_input_size(inputs.shape[-1])
        inputs = inputs.to(self.device)
        chunks = inputs.split(batch_size) if batch_size else (inputs,)
        hidden: list[Tensor | None] = [None] * len(self)
        outputs: list[Tensor | None] = [None] * len(self)
        for indices, stack in self.groups():
            runs = [stack(chunk) for chunk in chunks]
            out = torch.cat([o for o, _ in runs], dim=1)
            hid = torch.cat([h for _, h in runs], dim=1)
            for j, i in enumerate(indices):
                outputs[i], hidden[i] = out[j], hid[j]
        return Trajectories(hidden=_stack_if_uniform(hidden), outputs=_stack_if_uniform(outputs),
                            ids=self.ids)

    def _check_input_size(self, size: int) -> None:
        bad = [f"{m.id!r} expects {m.config.get('input_size')}" for m in self
               if m.config.get("input_size") != size]
        if bad:
            shown = "; ".join(bad[:5]) + ("; ..." if len(bad) > 5 else "")
            raise ValueError(f"inputs have input size {size}, which does not fit {len(bad)} "
                             f"member(s): {shown}")


def _check_inputs(inputs: object) -> None:
    """Raise unless ``inputs`` is a ``[B, T, I]`` tensor with at least one trial and step."""
    if not isinstance(inputs, Tensor) or inputs.dim() != 3:
        shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"Population.trajectories: inputs must be [B, T, I], got {shape}")
    if inputs.shape[0] == 0 or inputs.shape[1] == 0:
        raise ValueError(f"Population.trajectories: inputs {tuple(inputs.shape)} hold no "
                         f"{'trials (B = 0)' if inputs.shape[0] == 0 else 'time steps (T = 0)'}"
                         "; pass at least one trial of at least one step")


def _stack_if_uniform(tensors: list[Any]) -> Tensor | list[Tensor]:
    """One ``[N, ...]`` tensor when all shapes agree (and N > 0), else the list."""
    if tensors and all(t.shape == tensors[0].shape for t in tensors):
        return torch.stack(tensors)
    return list(tensors)


def _weights_hash(state: dict[str, Tensor]) -> str:
    """SHA-256 of a member's tensors: names, dtypes, shapes and raw bytes, by name."""
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
