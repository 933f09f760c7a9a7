"""Member-major batches for ``TrajectoryDataModule``: array stores, datasets and samplers.

A batch is a dict of ``M`` members × ``S`` trials (see ``gather``). Training batch ``d`` is a
pure function of ``(seed, d)``, so it is reproducible from any worker and on resume;
validation/test batches tile the (member, trial) grid exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from dynamo_lightning.data.projection import MemberProjections, project_states
from dynamo_lightning.population import Population
from dynamo_lightning.seeding import derive_seed

Batch = dict[str, Tensor]


class ArrayStore:
    """Named arrays of one split: in memory, or memory-mapped from a cache entry.

    Memory maps are (re)opened lazily in each process and never pickled, so DataLoader
    workers map the files themselves instead of receiving copies.

    Args:
        arrays: name → array (``np.memmap`` for a cache entry).
        entry: the cache entry directory the arrays were mapped from (None: in memory).
    """

    def __init__(self, arrays: dict[str, np.ndarray], entry: Path | None = None) -> None:
        self._arrays: dict[str, np.ndarray] | None = dict(arrays)
        self.names = frozenset(arrays)  # known without touching the disk on every batch
        self.entry = entry

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise KeyError(name)
        if self._arrays is None:
            self._arrays = {}
        if name not in self._arrays:
            assert self.entry is not None  # in-memory arrays are never dropped
            self._arrays[name] = np.load(self.entry / f"{name}.npy", mmap_mode="r",
                                         allow_pickle=False)
        return self._arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def close(self) -> None:
        """Drop memory maps (reopened on next access); in-memory arrays are kept."""
        if self.entry is not None:
            self._arrays = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(vars(self))
        if self.entry is not None:
            state["_arrays"] = None
        return state


def gather(store: ArrayStore, split: str, members: Tensor, trials: Tensor) -> Batch:
    """The batch of ``members [M]`` × ``trials [M, S]`` (row m: trials of member m).

    Returns:
        ``member [M]``, ``trial [M, S]``, ``inputs [M, S, T, I]``, ``targets [M, S, ...]``
        (the task's targets), ``task_id [M, S]``, ``mask [M, S, T]`` (bool, real steps) when
        the store holds one (a task of padded trials), and when the store holds trajectories
        ``hidden [M, S, T_h, k]`` and ``outputs [M, S, T_o, O]`` (float32).
    """
    m, t = members.numpy(), trials.numpy()
    batch = {"member": members, "trial": trials}
    for name in ("inputs", "targets", "task_id", "mask"):
        if name != "mask" or f"{split}_mask" in store:
            batch[name] = torch.from_numpy(np.ascontiguousarray(store[f"{split}_{name}"][t]))
    for name in ("hidden", "outputs"):
        if f"{split}_{name}" in store:
            rows = store[f"{split}_{name}"][m[:, None], t]
            batch[name] = torch.from_numpy(np.ascontiguousarray(rows))
    return batch


class TrainBatches(Dataset):
    """Training batch ``d``: M distinct random members, S distinct random trials each.

    Args:
        store: arrays of the ``train`` split.
        num_members: N; num_trials: train trials; members_per_batch: M;
        samples_per_member: S (≤ num_trials); seed: base seed of the draws.
    """

    def __init__(self, store: ArrayStore, num_members: int, num_trials: int,
                 members_per_batch: int, samples_per_member: int, seed: int) -> None:
        self.store, self.num_members, self.num_trials = store, num_members, num_trials
        self.m, self.s, self.seed = members_per_batch, samples_per_member, seed

    def __getitem__(self, draw: int) -> Batch:
        g = torch.Generator().manual_seed(derive_seed(self.seed, "train", int(draw)))
        members = torch.randperm(self.num_members, generator=g)[: self.m].sort().values
        scores = torch.rand(self.m, self.num_trials, generator=g)
        trials = scores.topk(self.s, dim=1).indices
        return gather(self.store, "train", members, trials)


class PassBatches(Dataset):
    """Every (member, trial) pair of a split once: member chunks outer, trial chunks inner.

    Batch ``b`` holds members ``[i·M, (i+1)·M)`` × trials ``[j·S, (j+1)·S)`` (shared by its
    members), with ``i, j = divmod(b, ceil(n_trials / S))``; edge batches are smaller.
    """

    def __init__(self, store: ArrayStore, split: str, num_members: int, num_trials: int,
                 members_per_batch: int, samples_per_member: int) -> None:
        self.store, self.split = store, split
        self.num_members, self.num_trials = num_members, num_trials
        self.m, self.s = members_per_batch, samples_per_member
        self.trial_chunks = math.ceil(num_trials / samples_per_member)

    def __len__(self) -> int:
        return math.ceil(self.num_members / self.m) * self.trial_chunks

    def __getitem__(self, index: int) -> Batch:
        if not 0 <= index < len(self):
            raise IndexError(index)
        i, j = divmod(int(index), self.trial_chunks)
        members = torch.arange(i * self.m, min((i + 1) * self.m, self.num_members))
        trials = torch.arange(j * self.s, min((j + 1) * self.s, self.num_trials))
        return gather(self.store, self.split, members,
                      trials.expand(len(members), -1).contiguous())


class EpochSampler(Sampler[int]):
    """Yields draw indices ``epoch·n … epoch·n + n − 1``, then moves to the next epoch.

    Lightning calls ``set_epoch`` at every epoch start, which keeps resumed runs on the same
    stream; without a Trainer each full pass advances the epoch by itself.
    """

    def __init__(self, batches_per_epoch: int) -> None:
        self.batches_per_epoch = batches_per_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[int]:
        start = self.epoch * self.batches_per_epoch
        yield from range(start, start + self.batches_per_epoch)
        self.epoch += 1


@torch.no_grad()
def run_members(population: Population, projections: MemberProjections, members: Tensor,
                inputs: Tensor, project: Callable[..., Tensor] = project_states
                ) -> tuple[Tensor, Tensor]:
    """Projected hidden states and outputs of ``members [M]`` on their own ``inputs [M,S,T,I]``.

    Each stacked group that holds batch members runs only those (``Architecture.members``
    gathers their parameters): a batch costs its own ``M · S`` trial evaluations, and its
    time and memory do not grow with the population's size N.

    ``project(projections, hidden, members)`` maps the states to targets (default
    ``project_states``; stage-wise for feed-forward members).

    Returns:
        ``hidden [M, S, T_h, k]`` and ``outputs [M, S, T_o, O]`` on ``inputs.device``.
    """
    if population.device != inputs.device:
        population.to(inputs.device)
    runs: list[tuple[Tensor, Tensor, Tensor]] = []  # (batch rows, outputs, states) per group
    for rows, stack in population.groups_of(members.tolist()):
        index = torch.tensor(rows, device=inputs.device)
        out, hid = stack(inputs[index])
        runs.append((index, out, hid))
    if len({tuple(hid.shape[1:-1]) for _, _, hid in runs}) == 1:
        # One layout (recurrent members): each group's states go into one zero-padded
        # tensor in a single write, not one pad per member (a kernel launch each on a GPU).
        hid0, out0 = runs[0][2], runs[0][1]
        width = max(hid.shape[-1] for _, _, hid in runs)
        hidden = hid0.new_zeros(len(members), *hid0.shape[1:-1], width)
        outputs = out0.new_empty(len(members), *out0.shape[1:])
        for rows, out, hid in runs:
            hidden[rows, ..., : hid.shape[-1]] = hid
            outputs[rows] = out
        return project(projections, hidden, members).float(), outputs.float()
    states: list[Tensor | None] = [None] * len(members)  # stages differ: one tensor per row
    rows_out: list[Tensor | None] = [None] * len(members)
    for rows, out, hid in runs:
        for k, r in enumerate(rows.tolist()):
            states[r], rows_out[r] = hid[k], out[k]
    return project(projections, states, members).float(), torch.stack(rows_out).float()
