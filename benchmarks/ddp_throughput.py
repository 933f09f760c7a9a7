"""DYNAMO training throughput on one device against two under DDP, side by side in one run.

A population of N untrained members (half GRU, half vanilla tanh RNN, hidden 32, 3-bit
flip-flop inputs, T = 64) is saved once; then the same online-mode fit (128 members × 16
trials per batch by default, as the scale run had when this was measured, a meta-GRU of 128
units, k = 8) runs with
``devices=1`` and with ``devices=2, strategy="ddp"``, each in its own process tree. An epoch
is a fixed number of member-major batches; under DDP Lightning's distributed sampler gives
each rank half of them, so two devices should take half the time per epoch. Measured per
setting: the mean time of the epochs after the first (the first pays compilation and
allocator warm-up) and the throughput in member-trials per second, all ranks together.

``--accelerator cpu`` runs the same comparison with two gloo processes, which checks the
script on a machine without GPUs (the ratio then says little: the processes share cores).

Usage::

    python benchmarks/ddp_throughput.py --members 2048            # writes ddp_throughput_cuda.json
    python benchmarks/ddp_throughput.py --accelerator cpu --members 64 --batches 8 \\
        --members-per-batch 16 --epochs 2                        # a check on CPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from common import finish, row
from online_memory import LINKED, make_population

from dynamo_lightning.data import TrajectoryDataModule
from dynamo_lightning.module import DynamoModule

META = {"cell": "gru", "hidden_size": 128, "conditioning": "concat"}


class EpochClock(pl.Callback):
    """Wall time of every training epoch, the device synchronised at both ends."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _synchronize(trainer)
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _synchronize(trainer)
        self.seconds.append(time.perf_counter() - self._start)


def _synchronize(trainer: pl.Trainer) -> None:
    if trainer.strategy.root_device.type == "cuda":
        torch.cuda.synchronize(trainer.strategy.root_device)
    trainer.strategy.barrier()  # an epoch ends when the slowest rank's does


def child(args: argparse.Namespace) -> None:
    """One setting: fit, then (rank 0) write the epoch times to ``args.result``."""
    data = TrajectoryDataModule(args.population, mode="online", num_components=8,
                                members_per_batch=args.members_per_batch,
                                samples_per_member=args.samples_per_member,
                                train_trials=256, val_trials=64, test_trials=64,
                                batches_per_epoch=args.batches)
    model = DynamoModule(**{key: getattr(data, key) for key in LINKED}, meta=META)
    clock = EpochClock()
    trainer = pl.Trainer(accelerator=args.accelerator, devices=args.devices,
                         strategy="ddp" if args.devices > 1 else "auto",
                         max_epochs=args.epochs, limit_val_batches=0, num_sanity_val_steps=0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[clock])
    trainer.fit(model, data)
    if trainer.global_rank == 0:
        Path(args.result).write_text(json.dumps({
            "epoch_seconds": clock.seconds, "world_size": trainer.world_size,
            "batches_per_rank": trainer.num_training_batches}))


def run_setting(args: argparse.Namespace, devices: int, population: Path,
                folder: Path) -> dict[str, Any]:
    result = folder / f"devices_{devices}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--devices", str(devices),
               "--population", str(population), "--result", str(result),
               "--accelerator", args.accelerator, "--batches", str(args.batches),
               "--epochs", str(args.epochs), "--members-per-batch", str(args.members_per_batch),
               "--samples-per-member", str(args.samples_per_member)]
    subprocess.run(command, check=True, cwd=folder, env={**os.environ, "PYTHONPATH": _path()})
    measured = json.loads(result.read_text())
    steady = measured["epoch_seconds"][1:] or measured["epoch_seconds"]
    seconds = statistics.mean(steady)
    items = args.batches * args.members_per_batch * args.samples_per_member
    print(f"devices={devices}: epochs {[round(s, 2) for s in measured['epoch_seconds']]} s, "
          f"{measured['batches_per_rank']} batches per rank", flush=True)
    return {"batches_per_rank": measured["batches_per_rank"], "epoch_seconds": seconds,
            "items_per_second": items / seconds}


def _path() -> str:
    """The benchmarks folder and the repository, ahead of what the caller had."""
    here = Path(__file__).resolve().parent
    parts = [str(here), str(here.parent), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=2048, help="population size N")
    parser.add_argument("--batches", type=int, default=256, help="training batches per epoch")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--members-per-batch", type=int, default=128)
    parser.add_argument("--samples-per-member", type=int, default=16)
    parser.add_argument("--accelerator", default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--population", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.accelerator == "gpu" and torch.cuda.device_count() < 2:
        raise SystemExit(f"ddp_throughput.py compares 1 and 2 GPUs; this machine has "
                         f"{torch.cuda.device_count()} (use --accelerator cpu to check it)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        population = make_population(args.members, folder / "population")
        results = {d: run_setting(args, d, population, folder) for d in (1, 2)}
    case = f"N={args.members}, {args.members_per_batch}x{args.samples_per_member} per batch"
    rows = []
    for devices, r in results.items():
        name = f"{args.accelerator} x{devices}, {case}"
        rows += [row(name, "epoch", r["epoch_seconds"], "s"),
                 row(name, "throughput", r["items_per_second"], "member-trials/s"),
                 row(name, "batches per rank", r["batches_per_rank"], "batches")]
    ratio = results[2]["items_per_second"] / results[1]["items_per_second"]
    finish("ddp_throughput", "cuda" if args.accelerator == "gpu" else "cpu", rows,
           {"throughput 2 devices / 1": ratio})


if __name__ == "__main__":
    main()
