"""Cached mode's data path against a full training epoch: what bounds a DYNAMO epoch?

An epoch is ``batches_per_epoch = ceil(N · train_trials / (M · S))`` member-major batches
(8,192 at N = 4,096 with the CLI's defaults M = 8, S = 32 and 512 train trials), each
gathered from the cache's memory-mapped ``hidden [N, n, T, k]`` and ``outputs [N, n, T, O]``.
On a saved population of N untrained members (half GRU, half vanilla tanh RNN, hidden 32,
3-bit flip-flop inputs, T = 64; the weights do not change the cost), this measures:

- ``setup``: building the cache (running the population, writing and hashing the files) and
  opening it again in a new data module (one read-and-hash pass over the files);
- ``gather``: one batch from the memory maps, per batch, over ``--gather_batches`` distinct
  draws: the data module's fancy index against reading each member's trials as sorted runs,
  from a warm page cache and right after the cache's files were dropped from it
  (``posix_fadvise(DONTNEED)``, Linux);
- ``loader``: one training epoch of the data module's DataLoader alone, every batch copied to
  the device (``non_blocking``), for num_workers in ``--workers`` and, on CUDA, pin_memory
  off and on (on the CPU pinning does not apply and is not run); the first epoch (workers
  starting, memory maps opening) and the second (persistent workers);
- ``meta step``: DynamoModule's forward, backward and Adam on one batch already on the device,
  without Lightning: the compute floor of a training step; and with the training step's
  finite-loss test (a host-device sync in the middle of the step);
- ``fit``: one ``Trainer.fit`` epoch of DynamoModule (default meta-GRU of 64; the CLI's
  gradient clipping at 1.0 and logging every 10 steps) on the data module, per ``--fits``
  case ``num_workers:pin_memory`` (default ``0:auto``: the data module's defaults): the
  training batches and the validation pass timed apart, and from Lightning's
  ``SimpleProfiler`` the time spent fetching batches and copying them.

Ratios: the fit's training epoch over the loader's epoch, and the data path's share of it.
On CUDA the device is synchronised before every timer is read.

Usage::

    python benchmarks/data_path.py                        # CPU, N = 1,024: data_path.json
    python benchmarks/data_path.py --device cuda --members 4096 --train_trials 512 \\
        --val_trials 128 --test_trials 128 --workers 0 4 --fits 0:auto 0:off 4:auto
                                                          # writes data_path_cuda.json
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from common import finish, row, time_call
from lightning.pytorch.profilers import SimpleProfiler
from online_memory import LINKED, make_population
from torch.utils.data import DataLoader

from dynamo_lightning.data import TrajectoryDataModule
from dynamo_lightning.data.batches import ArrayStore, Batch, gather
from dynamo_lightning.module import DynamoModule

FETCH = "[_TrainingEpochLoop].train_dataloader_next"
TRANSFER = "batch_to_device"  # "[Strategy]<name>.batch_to_device"


def accelerator(device: torch.device) -> str:
    return "gpu" if device.type == "cuda" else "cpu"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so a timer read after it covers that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``fn()``'s result and its wall time, the device synchronised at both ends."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - start


def data_module(population: Path, cache: Path, args: argparse.Namespace,
                **options: Any) -> TrajectoryDataModule:
    return TrajectoryDataModule(
        str(population), cache_dir=str(cache), num_components=args.components,
        members_per_batch=args.members_per_batch, samples_per_member=args.samples_per_member,
        train_trials=args.train_trials, val_trials=args.val_trials,
        test_trials=args.test_trials, batches_per_epoch=args.batches_per_epoch, **options)


# ---------------------------------------------------------------------- gather
def draws(data: TrajectoryDataModule, count: int, first: int) -> list[tuple[torch.Tensor, ...]]:
    """``count`` training draws ``(members [M], trials [M, S])``, the data module's own."""
    dataset = data.train_dataloader().dataset
    return [(b["member"], b["trial"]) for b in (dataset[d] for d in range(first, first + count))]


def gather_sorted_runs(store: ArrayStore, split: str, members: torch.Tensor,
                       trials: torch.Tensor) -> Batch:
    """``gather``'s batch, reading the trajectories in file order (rows sorted by offset),
    then putting them back in the draw's order: the alternative to one fancy index."""
    batch = {"member": members, "trial": trials}
    t = trials.numpy()
    for name in ("inputs", "targets", "task_id"):
        batch[name] = torch.from_numpy(np.ascontiguousarray(store[f"{split}_{name}"][t]))
    for name in ("hidden", "outputs"):
        array = store[f"{split}_{name}"]
        flat = (members.numpy()[:, None] * array.shape[1] + t).ravel()
        order = np.argsort(flat, kind="stable")
        rows = np.empty((flat.size, *array.shape[2:]), array.dtype)
        rows[order] = array.reshape(-1, *array.shape[2:])[flat[order]]
        batch[name] = torch.from_numpy(rows.reshape(*t.shape, *array.shape[2:]))
    return batch


def evict(entry: Path) -> bool:
    """Drop the cache entry's files from the page cache (False where the OS cannot)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for file in entry.glob("*.npy"):
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def read_through(entry: Path) -> None:
    """Read the entry's files once, so their pages are in the page cache (warm)."""
    for file in entry.glob("*.npy"):
        with open(file, "rb") as f:
            while f.read(1 << 24):
                pass


def time_gathers(data: TrajectoryDataModule, count: int) -> dict[str, float]:
    """Seconds per batch of each gather form, warm and (where possible) cold page cache;
    the cache is left warm, as ``setup``'s hash pass leaves it before training."""
    assert data.cache_path is not None
    forms = {"fancy index (used)": gather, "sorted runs": gather_sorted_runs}
    members, trials = draws(data, 1, 0)[0]
    want, got = (f(data._stores["train"], "train", members, trials) for f in forms.values())
    assert all(torch.equal(want[k], got[k]) for k in want), "gather forms disagree"
    out = {}
    for i, (name, form) in enumerate(forms.items()):
        for j, state in enumerate(("warm", "cold")):
            picked = draws(data, count, 10_000 * (1 + 2 * i + j))  # unseen draws each time
            data.teardown()  # unmap: pages still mapped here would not be dropped
            gc.collect()
            if state == "cold" and not evict(data.cache_path):
                continue
            if state == "warm":
                read_through(data.cache_path)
            store = data._stores["train"]
            started = time.perf_counter()
            for members, trials in picked:
                form(store, "train", members, trials)
            out[f"gather {state}: {name}"] = (time.perf_counter() - started) / count
    data.teardown()
    read_through(data.cache_path)
    return out


# ---------------------------------------------------------------------- loader
def drain(loader: DataLoader, device: torch.device) -> int:
    """Iterate ``loader``, copying every batch to ``device`` (non_blocking); the count."""
    count = 0
    for batch in loader:
        _ = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        count += 1
    return count


def loader_epochs(data: TrajectoryDataModule, device: torch.device, workers: int, pin: bool,
                  epochs: int) -> list[float]:
    """Seconds of each of ``epochs`` training epochs of the data module's own DataLoader,
    every batch copied to ``device``."""
    data.num_workers, data.pin_memory = workers, pin
    loader = data.train_dataloader()
    times = []
    for _ in range(epochs):
        synchronize(device)
        started = time.perf_counter()
        count = drain(loader, device)
        synchronize(device)
        times.append(time.perf_counter() - started)
        assert count == data.batches_per_epoch, (count, data.batches_per_epoch)
    del loader  # stops persistent workers
    gc.collect()
    return times


# ---------------------------------------------------------------------- step and fit
def model_for(data: TrajectoryDataModule, **kwargs: Any) -> DynamoModule:
    return DynamoModule(**{key: getattr(data, key) for key in LINKED}, **kwargs)


def meta_step_seconds(data: TrajectoryDataModule, device: torch.device, check: bool) -> float:
    """Median seconds of forward + backward + Adam on one batch on the device, no Lightning;
    with ``check``, the training step's finite-loss test too (a host-device sync)."""
    module = model_for(data, optim={"schedule": "none"}).to(device)
    optimizer = module.configure_optimizers()
    batch = {k: v.to(device) for k, v in next(iter(data.train_dataloader())).items()}

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = module.losses(batch)["loss"]
        if check and not torch.isfinite(loss):
            raise FloatingPointError("loss is not finite")
        loss.backward()
        optimizer.step()
    return time_call(step, repeats=50, warmup=10)


class EpochClock(pl.Callback):
    """Wall times of one fit epoch: start, end of ``warmup`` batches, end of the training
    batches (validation start) and end of validation; the device synchronised at each."""

    def __init__(self, device: torch.device, warmup: int) -> None:
        self.device, self.warmup, self.t = device, warmup, {}
        self.pinned = False

    def _mark(self, name: str) -> None:
        if name not in self.t:
            synchronize(self.device)
            self.t[name] = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.pinned = trainer.datamodule.resolved_pin_memory()  # what the loader was given
        self._mark("start")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx + 1 == self.warmup:
            self._mark("warm")

    def on_validation_epoch_start(self, trainer: pl.Trainer,
                                  pl_module: pl.LightningModule) -> None:
        self._mark("train_end")

    def on_validation_epoch_end(self, trainer: pl.Trainer,
                                pl_module: pl.LightningModule) -> None:
        self._mark("val_end")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark("train_end")  # no validation: the training batches end here


def fit_epoch(data: TrajectoryDataModule, device: torch.device, workers: int,
              pin: bool | None, warmup: int, folder: Path) -> dict[str, float]:
    """One ``Trainer.fit`` epoch (``pin`` None: the data module's default); its timings."""
    data.num_workers, data.pin_memory = workers, pin
    batches = data.batches_per_epoch
    warmup = min(warmup, max(1, batches // 4))
    clock = EpochClock(device, warmup)
    profiler = SimpleProfiler(dirpath=folder, filename=f"profile_w{workers}_{pin}")
    trainer = pl.Trainer(accelerator=accelerator(device), devices=1,
                         max_epochs=1, num_sanity_val_steps=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, profiler=profiler, callbacks=[clock],
                         default_root_dir=folder, gradient_clip_val=1.0, log_every_n_steps=10)
    model = model_for(data)
    trainer.fit(model, data)
    t, spent = clock.t, profiler.recorded_durations
    return {"train": t["train_end"] - t["start"],
            "per_batch": (t["train_end"] - t["warm"]) / (batches - warmup),
            "val": t.get("val_end", t["train_end"]) - t["train_end"],
            "fetch": sum(spent.get(FETCH, [])),
            "transfer": sum(sum(v) for k, v in spent.items() if k.endswith(TRANSFER)
                            and "Strategy" in k),
            "pinned": float(clock.pinned)}


# ---------------------------------------------------------------------- main
def fit_case(text: str) -> tuple[int, bool | None]:
    """``"4:auto"`` → ``(4, None)``; ``"0:on"`` → ``(0, True)``."""
    workers, _, pin = text.partition(":")
    pins = {"auto": None, "on": True, "off": False}
    if not workers.isdigit() or pin not in pins:
        raise argparse.ArgumentTypeError(f"expected WORKERS:PIN with PIN auto, on or "
                                         f"off (e.g. 4:auto), got {text!r}")
    return int(workers), pins[pin]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--members", type=int, default=1024, help="N")
    parser.add_argument("--hidden", type=int, default=32, help="members' hidden size")
    parser.add_argument("--train_trials", type=int, default=128)
    parser.add_argument("--val_trials", type=int, default=32)
    parser.add_argument("--test_trials", type=int, default=32)
    parser.add_argument("--members_per_batch", type=int, default=8, help="M")
    parser.add_argument("--samples_per_member", type=int, default=32, help="S")
    parser.add_argument("--components", type=int, default=8, help="k")
    parser.add_argument("--batches_per_epoch", type=int, default=None,
                        help="default: ceil(N · train_trials / (M · S))")
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 2],
                        help="num_workers of the loader-alone epochs")
    parser.add_argument("--fits", type=fit_case, nargs="*", default=[(0, None)],
                        metavar="WORKERS:PIN",
                        help="Trainer.fit epochs to run, as num_workers:pin_memory with pin "
                             "auto (the data module's default), on or off (none: no fit)")
    parser.add_argument("--epochs", type=int, default=2, help="loader epochs per setting")
    parser.add_argument("--gather_batches", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10, help="fit batches before timing")
    parser.add_argument("--tag", default="",
                        help="results file suffix: data_path_<tag>[_cuda].json")
    parser.add_argument("--workdir", default=None,
                        help="keep the population and cache here (default: a temp dir)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    return args


def setup_rows(args: argparse.Namespace, folder: Path, device: torch.device
               ) -> tuple[TrajectoryDataModule, list[dict[str, Any]]]:
    """Population, cache built, cache reopened; the data module ready to serve."""
    population = folder / f"population_{args.members}"
    cache = folder / "cache"
    started = time.perf_counter()
    if not (population / "manifest.json").exists():
        make_population(args.members, population, args.hidden)
    rows = [row("setup", "population written or found", time.perf_counter() - started, "s")]
    data, spent = seconds(lambda: data_module(population, cache, args), device)
    rows.append(row("setup", "data module constructed (population loaded)", spent, "s"))

    def build() -> None:  # on the device a Trainer.fit would use, as fit's hooks do
        data.trainer = pl.Trainer(accelerator=accelerator(device), devices=1, logger=False)
        data.prepare_data()
        data.setup("fit")
        data.trainer = None
    _, spent = seconds(build, device)
    built = "cache reused" if data.reused_cache else "cache built (run, write, hash)"
    rows.append(row("setup", built, spent, "s"))
    again = data_module(population, cache, args)
    _, spent = seconds(lambda: (again.prepare_data(), again.setup("fit")), device)
    rows.append(row("setup", "cache reopened (one hash pass)", spent, "s"))
    assert data.cache_path is not None
    size = sum(p.stat().st_size for p in data.cache_path.glob("*.npy"))
    rows += [row("setup", "cache entry size", size / 2**30, "GiB"),
             row("setup", "batches per epoch", data.batches_per_epoch, "count")]
    return data, rows


def main() -> None:
    args = parse()
    device = torch.device(args.device)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*isn't a writable.*|.*not writable.*")
    rows, ratios = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.workdir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        data, rows = setup_rows(args, folder, device)
        n = data.batches_per_epoch
        print(f"N = {data.num_members}, {n} batches per epoch", flush=True)

        if args.gather_batches:
            gathers = time_gathers(data, args.gather_batches)
            rows += [row(case, "per batch", value * 1e3, "ms") for case, value in gathers.items()]
            ratios["gather warm: sorted runs / fancy index"] = (
                gathers["gather warm: sorted runs"] / gathers["gather warm: fancy index (used)"])
            print(rows[-1], flush=True)

        loaders: dict[str, list[float]] = {}
        for workers in args.workers:
            for pin in ((False, True) if device.type == "cuda" else (False,)):
                case = f"loader w={workers} pin={'on' if pin else 'off'}"
                loaders[case] = times = loader_epochs(data, device, workers, pin, args.epochs)
                rows += [row(case, "first epoch", times[0], "s"),
                         row(case, "later epoch", min(times[1:] or times), "s"),
                         row(case, "per batch (later)", min(times[1:] or times) / n * 1e3,
                             "ms")]
                print(case, [round(t, 3) for t in times], flush=True)

        step = meta_step_seconds(data, device, check=False)
        synced = meta_step_seconds(data, device, check=True)
        rows += [row("meta step alone", "per batch", step * 1e3, "ms"),
                 row("meta step alone", "× batches per epoch", step * n, "s"),
                 row("meta step + finite-loss sync", "per batch", synced * 1e3, "ms")]

        for workers, pin in args.fits:
            fit = fit_epoch(data, device, workers, pin, args.warmup, folder)
            state = "on" if fit["pinned"] else "off"
            case = f"fit w={workers} pin={'default ' if pin is None else ''}{state}"
            rows += [row(case, "train batches", fit["train"], "s"),
                     row(case, "per batch (after warm-up)", fit["per_batch"] * 1e3, "ms"),
                     row(case, "validation pass", fit["val"], "s"),
                     row(case, "waiting for batches", fit["fetch"], "s"),
                     row(case, "copying to device", fit["transfer"], "s"),
                     row(case, "Lightning + step (rest)", fit["train"] - fit["fetch"]
                         - fit["transfer"], "s")]
            ratios[f"{case}: share of train epoch fetching + copying"] = (
                (fit["fetch"] + fit["transfer"]) / fit["train"])
            loader = loaders.get(f"loader w={workers} pin={state}")
            if loader:
                ratios[f"{case}: train epoch / loader epoch"] = fit["train"] / min(loader)
            ratios[f"{case}: per batch / meta step alone"] = fit["per_batch"] / step
            print(case, {k: round(v, 3) for k, v in fit.items()}, flush=True)
        data.teardown()
    finish("data_path" + (f"_{args.tag}" if args.tag else ""), args.device, rows, ratios)


if __name__ == "__main__":
    main()
