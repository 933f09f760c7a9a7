"""``TrajectoryDataModule``: member trajectories on shared task inputs, in member-major batches.

Trials are drawn once per split (``derive_seed(seed, split)``). ``setup`` runs the frozen
population on them (stacked, in chunks of ``TRAJECTORY_CHUNK`` trials), fits each member's
PCA on the *train* trials only, and then either

- ``mode="cached"``: stores inputs, projected hidden states ``[N, n, S, k]`` and member outputs
  ``[N, n, S_out, O]`` per split, plus the projections, in an atomic on-disk cache keyed by
  the population checksum, task spec, seed, trial counts and k; later runs memory-map it.
  Disk: ``4 · N · n · (S·k + S_out·O)`` bytes per split.
- ``mode="online"``: keeps only inputs; ``on_after_batch_transfer`` runs the batch's own
  members on the batch's device (``batches.run_members``: their parameters gathered from the
  stacks, so a batch's time and memory do not grow with N). Setup still runs the population
  once over the train trials, in chunks sized to ``TRAJECTORY_CHUNK_BYTES``.

Either way, on a GPU the population's GRU, tanh, ReLU and LSTM stacks run their time loop as one
Triton kernel each (``Population.use_fused_kernels``), not a few launches per time step.

Feed-forward (CNN) populations go through the same code: depth is time, and the targets are
stage-wise (``stages.StageLayout``): one PCA per member and stage, ``hidden [M, S, S̃, k]``
with NaN at meta stages a shallower member has no stage for. Each feed-forward member's
metadata gains ``stages`` (its depth), which is how ``DynamoModule`` sizes the meta-CNN.
A population mixing recurrent and feed-forward members is refused, naming both groups.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dynamo_lightning.checks import boolean, non_negative_int, positive_int
from dynamo_lightning.data.batches import (
    ArrayStore,
    Batch,
    EpochSampler,
    PassBatches,
    TrainBatches,
    run_members,
)
from dynamo_lightning.data.cache import cache_key, read_cache, write_cache
from dynamo_lightning.data.input_source import build_input_source
from dynamo_lightning.data.memory_check import check_population_dir, check_trajectory_data
from dynamo_lightning.data.projection import MemberProjections, ProjectionFitter, project_states
from dynamo_lightning.data.stages import StageLayout, probe_layout
from dynamo_lightning.population import Population
from dynamo_lightning.seeding import derive_seed
from dynamo_lightning.tasks.mixture import task_spec_of

SPLITS = ("train", "val", "test")
#: Trials per stacked population call while building (bounds peak memory).
TRAJECTORY_CHUNK = 256
TRAJECTORY_CHUNK_BYTES = 2**30
"""At most this many bytes of states (all members) per chunk of trials: with thousands of
members a chunk holds fewer trials, so memory does not grow with the population."""


class TrajectoryDataModule(pl.LightningDataModule):
    """Serves member-major batches of the population's trajectories.

    Batches are dicts: ``member [M]`` (population indices), ``trial [M, S]`` (trial indices in
    the split), ``inputs [M, S, T, I]``, ``targets [M, S, ...]`` (task targets),
    ``task_id [M, S]`` (``Task.sample_with_ids``: the sub-task of a mixture, else 0),
    ``hidden [M, S, T_h, k]`` (projected member states), ``outputs [M, S, T_o, O]``
    (member outputs) and, for a task of padded trials (``Task.step_mask``), ``mask [M, S, T]``
    (bool, True on real steps; each member's PCA is fitted on those only). Training batch d
    draws M distinct members and S distinct trials per member from
    ``derive_seed(seed, "train", d)``; val/test batches cover every (member, trial) once
    (under DDP, Lightning's ``DistributedSampler`` pads the pass, repeating a few batches).

    Args:
        population: directory of the population (``manifest.json`` + weights).
        task: explicit input task ``{name, config}``; None: the members' own task(s).
        num_components: k, principal components kept per member.
        members_per_batch: M (capped at N with a warning).
        samples_per_member: S (≤ ``train_trials``).
        train_trials, val_trials, test_trials: fixed trials drawn per split.
        batches_per_epoch: training batches per epoch; None: ``ceil(N·train_trials/(M·S))``,
            so each member sees each train trial about once per epoch.
        mode: ``"cached"`` or ``"online"`` (see the module docstring).
        cache_dir: where cached entries go; None: ``<population>/../.dynamo_cache``.
        seed: seed of the trial draws and the training batch stream.
        num_workers: DataLoader worker processes (0: batches are gathered in the training
            process). Batches and their order do not depend on it: batch d is a function of
            ``(seed, d)`` and the sampler runs in the training process. With workers, they
            are kept alive across epochs (``persistent_workers``), so each maps the cache
            once rather than once per epoch. 0 is no slower: on an H200 at N = 4,096, four
            workers hid the fetching (5 s of a 64 s epoch) but the epoch stayed at 64 s,
            bound by the training steps.
        pin_memory: copy batches into page-locked memory so the host-to-device copy runs
            asynchronously. None: on when the Trainer's root device is CUDA *and*
            ``num_workers > 0`` (read from ``self.trainer`` when a loader is built; off
            without a Trainer). With no workers the pinning would run inline in the training
            loop, and there it cost more than the faster copy saved (an H200 at N = 4,096:
            an epoch's training batches took 89 s pinned, 64 s not; ``benchmarks/data_path.py``).
        prefetch_factor: batches each worker loads ahead (used only with ``num_workers > 0``).

    Raises:
        ValueError: a bad argument (named); members whose tasks cannot share inputs.
        PopulationFormatError: ``population`` is missing or malformed.
    """

    def __init__(self, population: str, task: dict[str, Any] | None = None,
                 num_components: int = 8, members_per_batch: int = 8,
                 samples_per_member: int = 32, train_trials: int = 1024, val_trials: int = 256,
                 test_trials: int = 256, batches_per_epoch: int | None = None,
                 mode: Literal["cached", "online"] = "cached", cache_dir: str | None = None,
                 seed: int = 0, num_workers: int = 0, pin_memory: bool | None = None,
                 prefetch_factor: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters()
        counts = {"num_components": num_components, "members_per_batch": members_per_batch,
                  "samples_per_member": samples_per_member, "train_trials": train_trials,
                  "val_trials": val_trials, "test_trials": test_trials}
        if batches_per_epoch is not None:
            counts["batches_per_epoch"] = batches_per_epoch
        counts["prefetch_factor"] = prefetch_factor
        for name, value in counts.items():
            positive_int(name, value, "TrajectoryDataModule")
        for name, value in (("seed", seed), ("num_workers", num_workers)):
            non_negative_int(name, value, "TrajectoryDataModule")
        if pin_memory is not None:
            boolean("pin_memory", pin_memory, "TrajectoryDataModule")
        if mode not in ("cached", "online"):
            raise ValueError(f"TrajectoryDataModule: mode must be 'cached' or 'online', "
                             f"got {mode!r}")
        if samples_per_member > train_trials:
            raise ValueError(f"TrajectoryDataModule: samples_per_member ({samples_per_member}) "
                             f"must not exceed train_trials ({train_trials})")
        self.population_path = str(Path(population).expanduser().resolve())
        check_population_dir(self.population_path)  # pre-flight memory checks
        # Trajectories (the cache, online batches) of GRU, tanh, ReLU and LSTM stacks run as one
        # Triton kernel each on a GPU instead of a few launches per time step.
        self._population = Population.load(self.population_path).use_fused_kernels()
        self.task = build_input_source(self._population, task)
        self.task_spec = task_spec_of(self.task)
        check_trajectory_data(self._population, self.task, {  # before any trial is drawn
            "train": train_trials, "val": val_trials, "test": test_trials}, num_components,
            trajectory_chunk(self._population, self.task.seq_len))
        self.num_members = len(self._population)
        self.member_ids = self._population.ids
        probe, probe_targets, probe_ids = self.task.sample_with_ids(
            1, generator=torch.Generator().manual_seed(seed))
        self.layout: StageLayout | None = probe_layout(self._population, probe.float())
        # Padded trials (Task.step_mask): batches carry ``mask`` and the PCA fits real steps.
        self.has_mask = self.task.step_mask(probe_targets, probe_ids) is not None
        self.member_metadata = [dict(m.metadata) for m in self._population]
        if self.layout is not None:  # depth is what sizes the meta-CNN
            for meta, stages in zip(self.member_metadata, self.layout.stages, strict=True):
                meta["stages"] = stages
        self.input_size, self.output_size = self.task.input_size, self.task.output_size
        self.output_kind, self.seq_len = self.task.output_kind, self.task.seq_len
        self.population_checksum = self._population.checksum
        self.num_components = num_components
        if members_per_batch > self.num_members:
            rank_zero_warn(f"members_per_batch={members_per_batch} exceeds the population's "
                           f"{self.num_members} members; using {self.num_members}")
            members_per_batch = self.num_members
        self.members_per_batch, self.samples_per_member = members_per_batch, samples_per_member
        self.trials = {"train": train_trials, "val": val_trials, "test": test_trials}
        self.batches_per_epoch = batches_per_epoch or math.ceil(
            self.num_members * train_trials / (members_per_batch * samples_per_member))
        self.mode, self.seed, self.num_workers = mode, seed, num_workers
        self.pin_memory, self.prefetch_factor = pin_memory, prefetch_factor
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else (
            Path(self.population_path).parent / ".dynamo_cache")
        self.cache_key = cache_key(population=self.population_checksum, task=self.task_spec,
                                   seed=seed, trials=self.trials, num_components=num_components,
                                   dtype="float32",
                                   **({} if self.layout is None else
                                      {"stages": list(self.layout.stages)}),
                                   **({"step_mask": True} if self.has_mask else {}))
        if mode == "cached":  # and the cache's arrays, unless the entry is there to reuse
            check_trajectory_data(self._population, self.task, self.trials, num_components,
                                  trajectory_chunk(self._population, self.seq_len),
                                  self.cache_dir / self.cache_key)
        self.cache_path: Path | None = None
        self.reused_cache = False
        self._written_here = False  # this process wrote the cache entry (prepare_data)
        self.projections: MemberProjections | None = None
        self._stores: dict[str, ArrayStore] = {}
        self._entry: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None  # prepare_data's
        self._sampler = EpochSampler(self.batches_per_epoch)

    # ------------------------------------------------------------------ building
    def prepare_data(self) -> None:
        """Cached mode: build the cache entry once per node (before ``setup`` on each rank).

        The population runs on the Trainer's root device (the CPU without a Trainer): at
        thousands of members the CPU takes minutes where a GPU takes seconds. An entry found
        here is kept for this process's ``setup``, so its files are checked (read and hashed
        whole) once per process rather than twice; after ``setup`` this does nothing."""
        if self.mode != "cached" or self._stores:
            return
        self._entry = read_cache(self.cache_dir, self.cache_key)
        if self._entry is None:
            self._write_entry(self._device())

    def setup(self, stage: str | None = None) -> None:
        """Open the cache (building it when absent) or, online, fit the projections."""
        if self._stores:
            return
        if self.mode == "online":
            draws = {split: self._draw(split) for split in SPLITS}
            self.projections = self._fit(draws["train"], self._device())
            self._stores = {s: ArrayStore({f"{s}_{k}": v for k, v in draws[s].items()})
                            for s in SPLITS}
            return
        entry, self._entry = self._entry, None
        if entry is None and not self._written_here:
            entry = read_cache(self.cache_dir, self.cache_key)
        self.reused_cache = entry is not None
        if entry is None:
            if not self._written_here:
                self._write_entry(self._device())
            # Hashed as it was written, by this process: no second pass over the files.
            entry = read_cache(self.cache_dir, self.cache_key, verify=False)
            if entry is None:
                raise RuntimeError(f"trajectory cache {self.cache_dir / self.cache_key} "
                                   "is unreadable right after writing it")
        elif self.reused_cache:
            rank_zero_info(f"reusing trajectory cache {self.cache_dir / self.cache_key}")
        arrays, _ = entry
        self.cache_path = self.cache_dir / self.cache_key
        self.projections = MemberProjections.from_state_dict(
            {k.removeprefix("projection_"): torch.from_numpy(np.array(v))
             for k, v in arrays.items() if k.startswith("projection_")})
        self._stores = {s: ArrayStore({k: v for k, v in arrays.items()
                                       if k.startswith(f"{s}_")}, entry=self.cache_path)
                        for s in SPLITS}

    def _draw(self, split: str) -> dict[str, np.ndarray]:
        """The split's fixed trials: ``inputs [n, T, I]``, ``targets [n, ...]``, ``task_id [n]``
        and, for a task of padded trials, ``mask [n, T]`` (bool, True on real steps)."""
        g = torch.Generator().manual_seed(derive_seed(self.seed, split))
        n = self.trials[split]
        x, y, ids = self.task.sample_with_ids(n, generator=g, split=split)
        drawn = {"inputs": x.float().numpy(), "targets": y.numpy(), "task_id": ids.long().numpy()}
        mask = self.task.step_mask(y, ids) if self.has_mask else None
        if mask is not None:
            drawn["mask"] = mask.bool().numpy()
        return drawn

    def _chunks(self, array: np.ndarray) -> tuple[Tensor, ...]:
        """``array`` ``[n, T, ...]`` cut into the trial chunks the population runs on."""
        return torch.from_numpy(array).split(trajectory_chunk(self._population, array.shape[1]))

    def _run(self, inputs: np.ndarray, device: torch.device, desc: str | None = None
             ) -> Iterator[tuple[Tensor | list[Tensor], Tensor]]:
        """Trajectories of every member, chunk by chunk: yields ``(hidden, outputs)``; with
        ``desc``, a progress bar over the chunks (on a terminal)."""
        population = self._population.to(device)
        for chunk in tqdm(self._chunks(inputs), desc=desc, unit="chunk", leave=False,
                          disable=True if desc is None else None):  # None: on a terminal
            traj = population.trajectories(chunk.to(device))
            steps = {h.shape[1] for h in traj.hidden}
            if (len(steps) > 1 and self.layout is None) or not isinstance(traj.outputs, Tensor):
                raise ValueError("members' trajectories differ in length or output shape "
                                 f"(stages {sorted(steps)}); one meta-model cannot emulate "
                                 "them all — split the population")
            yield traj.hidden, traj.outputs

    def _fit(self, train: dict[str, np.ndarray], device: torch.device) -> MemberProjections:
        """Each member's PCA on the train trials' states (real steps only, when padded)."""
        fitter: ProjectionFitter | None = None
        runs = self._run(train["inputs"], device, "trajectories: fitting projections")
        masks = (self._chunks(train["mask"]) if "mask" in train
                 else (None,) * len(self._chunks(train["inputs"])))
        for (hidden, _), mask in zip(runs, masks, strict=True):
            sizes = [h.shape[-1] for h in hidden]
            if self.layout is None:
                fitter = fitter or ProjectionFitter(sizes)
                fitter.update(hidden, None if mask is None else mask.to(device))
            else:
                fitter = fitter or self.layout.fitter(sizes)
                self.layout.update(fitter, list(hidden))
        assert fitter is not None
        return fitter.fit(self.num_components)

    def _write_entry(self, device: torch.device) -> None:
        draws = {split: self._draw(split) for split in SPLITS}
        projections = self._fit(draws["train"], device).to(device)
        arrays = {f"projection_{k}": v.numpy() for k, v in projections.to_state_dict().items()}
        for split, drawn in draws.items():
            arrays.update({f"{split}_{k}": v for k, v in drawn.items()})
            runs = [(self._targets(projections, h).float().cpu(), o.float().cpu())
                    for h, o in self._run(drawn["inputs"], device, f"trajectories: {split}")]
            arrays[f"{split}_hidden"] = torch.cat([h for h, _ in runs], dim=1).numpy()
            arrays[f"{split}_outputs"] = torch.cat([o for _, o in runs], dim=1).numpy()
        write_cache(self.cache_dir, self.cache_key, arrays,
                    {"population_path": self.population_path, "member_ids": self.member_ids,
                     "task": self.task_spec, "seed": self.seed, "trials": self.trials})
        self._population.to("cpu")
        self._written_here = True
        rank_zero_info(f"trajectory cache written to {self.cache_dir / self.cache_key} "
                       f"({self.num_members} members; {self.trials} trials)")

    def _targets(self, projections: MemberProjections, hidden: Tensor | list[Tensor],
                 members: Tensor | None = None) -> Tensor:
        """Projected states: per member, or per member and stage for feed-forward members."""
        if self.layout is None:
            return project_states(projections, hidden, members)
        return self.layout.project(projections, hidden, members)

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    # ------------------------------------------------------------------ serving
    def train_dataloader(self) -> DataLoader:
        dataset = TrainBatches(self._store("train"), self.num_members, self.trials["train"],
                               self.members_per_batch, self.samples_per_member, self.seed)
        return DataLoader(dataset, batch_size=None, sampler=self._sampler,
                          **self.loader_options())

    def val_dataloader(self) -> DataLoader:
        return self._pass_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._pass_loader("test")

    def _pass_loader(self, split: str) -> DataLoader:
        dataset = PassBatches(self._store(split), split, self.num_members, self.trials[split],
                              self.members_per_batch, self.samples_per_member)
        return DataLoader(dataset, batch_size=None, **self.loader_options())

    def loader_options(self) -> dict[str, Any]:
        """The DataLoader's worker and memory settings (see ``num_workers``, ``pin_memory``,
        ``prefetch_factor``); ``pin_memory`` None is resolved against the Trainer here."""
        options: dict[str, Any] = {"num_workers": self.num_workers,
                                   "pin_memory": self.resolved_pin_memory()}
        if self.num_workers > 0:  # torch refuses both without workers
            options.update(persistent_workers=True, prefetch_factor=self.prefetch_factor)
        return options

    def resolved_pin_memory(self) -> bool:
        """``pin_memory`` as given, or (None) whether batches go to a CUDA device from
        worker processes: only there does pinning overlap the step instead of adding to it."""
        if self.pin_memory is not None:
            return self.pin_memory
        return self.num_workers > 0 and self._device().type == "cuda"

    def _store(self, split: str) -> ArrayStore:
        if not self._stores:
            raise RuntimeError("TrajectoryDataModule: call setup() before asking for data")
        return self._stores[split]

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        """Online mode: add ``hidden`` and ``outputs`` computed on the batch's device."""
        if self.mode == "online" and "hidden" not in batch:
            assert self.projections is not None
            if self.projections.mean.device != batch["inputs"].device:
                self.projections = self.projections.to(batch["inputs"].device)
            batch["hidden"], batch["outputs"] = run_members(
                self._population, self.projections, batch["member"], batch["inputs"],
                self._targets)
        return batch

    # ------------------------------------------------------------------ state
    def projection_state(self) -> dict[str, Tensor]:
        """The fitted PCA tensors (``MemberProjections.to_state_dict``) for checkpoints."""
        if self.projections is None:
            raise RuntimeError("TrajectoryDataModule: projections exist only after setup()")
        return self.projections.to_state_dict()

    def state_dict(self) -> dict[str, Any]:
        return {"train_epoch": self._sampler.epoch, "cache_key": self.cache_key}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._sampler.set_epoch(int(state_dict.get("train_epoch", 0)))

    def teardown(self, stage: str | None = None) -> None:
        """Release memory maps (they reopen lazily if the module is used again)."""
        for store in self._stores.values():
            store.close()


def trajectory_chunk(population: Population, steps: int) -> int:
    """Trials per chunk: ``TRAJECTORY_CHUNK``, or fewer when all members' states for that
    many trials (``N · trials · steps · state size``, float32) would exceed
    ``TRAJECTORY_CHUNK_BYTES``."""
    width = max(stack.state_size for _, stack in population.groups())
    per_trial = len(population) * steps * width * 4
    return max(1, min(TRAJECTORY_CHUNK, TRAJECTORY_CHUNK_BYTES // max(1, per_trial)))
