"""Online trajectories: peak GPU memory and time per batch against the population's size N.

``data.mode: online`` computes every batch's targets on the accelerator from the batch's own
members (their parameters gathered from the stacks), so a batch's memory and time should not
grow with N. Populations of N untrained members (half GRU, half vanilla tanh RNN, hidden 32,
3-bit flip-flop inputs, T = 64) are saved, then a DYNAMO fit runs in online mode (the base
settings: 8 members × 32 trials per batch, meta-GRU of 64 units, k = 8) through a Lightning
``Trainer``. Measured per N:

- ``setup peak``: peak GPU memory while the data module fits the members' projections (it
  runs the whole population once over the training trials, in chunks of trials sized to
  ``TRAJECTORY_CHUNK_BYTES``);
- ``train peak``: peak GPU memory over the training steps (reset after setup);
- ``s/batch``: wall time per training step after a warm-up.

The ratios compare the largest N with the smallest. CUDA only (the point is GPU memory).

Usage::

    python benchmarks/online_memory.py --sizes 1000 10000     # writes online_memory_cuda.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from common import finish, row

from dynamo_lightning.data import TrajectoryDataModule
from dynamo_lightning.module import DynamoModule
from dynamo_lightning.population import Population, architectures

# What the CLI links from the data module into the model (DynamoCLI's DATA_TO_MODEL).
LINKED = ("num_members", "input_size", "output_size", "num_components", "output_kind",
          "member_ids", "member_metadata", "population_path", "population_checksum",
          "task_spec")


def make_population(n: int, path: Path, hidden: int = 32) -> Path:
    """N untrained members, half GRU and half vanilla, saved under ``path``."""
    parts = []
    for name, count in (("gru", n // 2), ("vanilla", n - n // 2)):
        stack = architectures.build(name, num_members=count, seeds=list(range(count)),
                                    input_size=3, output_size=3, hidden_size=hidden)
        ids = [f"{name}-{i}" for i in range(count)]
        metadata = [{"architecture": name, "seed": i, "task": "flipflop",
                     "task_config": {"n_bits": 3}} for i in range(count)]
        parts.append(Population.from_stack(name, stack, ids, metadata))
    return Population.concat(parts).save(path)


class Meter(pl.Callback):
    """Peak memory of setup and of training; time per step after ``warmup`` steps."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.values = warmup, {}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.cuda.synchronize()
        self.values["setup_peak"] = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup:
            torch.cuda.synchronize()
            self.values["t0"] = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.cuda.synchronize()
        self.values["t1"] = time.perf_counter()
        self.values["train_peak"] = torch.cuda.max_memory_allocated()


def measure(n: int, folder: Path, warmup: int, steps: int) -> dict[str, float]:
    started = time.perf_counter()
    path = make_population(n, folder / f"population_{n}")
    written = time.perf_counter() - started
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    data = TrajectoryDataModule(str(path), mode="online", num_components=8, members_per_batch=8,
                                samples_per_member=32, train_trials=512, val_trials=128,
                                test_trials=128)
    model = DynamoModule(**{key: getattr(data, key) for key in LINKED})
    meter = Meter(warmup)
    trainer = pl.Trainer(accelerator="gpu", devices=1, max_steps=warmup + steps,
                         limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[meter])
    fit_started = time.perf_counter()
    trainer.fit(model, data)
    v = meter.values
    return {"setup_peak": v["setup_peak"], "train_peak": v["train_peak"],
            "s_per_batch": (v["t1"] - v["t0"]) / steps, "write": written,
            "fit": time.perf_counter() - fit_started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("online_memory.py measures GPU memory: it needs a CUDA device")
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            r = results[n] = measure(n, Path(folder), args.warmup, args.steps)
            rows += [row(f"N={n}", "setup peak", r["setup_peak"] / 2**20, "MiB"),
                     row(f"N={n}", "train peak", r["train_peak"] / 2**20, "MiB"),
                     row(f"N={n}", "s/batch", r["s_per_batch"], "s"),
                     row(f"N={n}", "population written", r["write"], "s"),
                     row(f"N={n}", "fit (setup + all steps)", r["fit"], "s")]
            print({k: round(v, 4) for k, v in r.items()}, flush=True)
    small, large = min(results), max(results)
    ratios = {f"train peak N={large} / N={small}":
              results[large]["train_peak"] / results[small]["train_peak"],
              f"setup peak N={large} / N={small}":
              results[large]["setup_peak"] / results[small]["setup_peak"],
              f"s/batch N={large} / N={small}":
              results[large]["s_per_batch"] / results[small]["s_per_batch"]}
    finish("online_memory", "cuda", rows, ratios)


if __name__ == "__main__":
    main()
