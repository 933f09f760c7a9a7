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

The ratios compare the largest N with the smallest. ``--paths fused plain`` also times each
N side by side without the fused Triton kernels (``fused_recurrence.FASTER_UP_TO`` emptied
for that fit: every batch's members then run their cells step by step), so the fused online
forward's gain is measured in the same run. ``--members-per-batch 512 --samples 16`` is the
scale config's batch. CUDA only (the point is GPU memory).

Usage::

    python benchmarks/online_memory.py --sizes 1000 10000     # writes online_memory_cuda.json
    python benchmarks/online_memory.py --paths fused plain --members-per-batch 512 \
        --samples 16 --tag paths                              # online_memory_paths_cuda.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from common import finish, kernel_variant, row

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


def measure(n: int, folder: Path, warmup: int, steps: int, members_per_batch: int = 8,
            samples: int = 32) -> dict[str, float]:
    started = time.perf_counter()
    path = folder / f"population_{n}"
    if not path.exists():
        make_population(n, path)
    written = time.perf_counter() - started
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    data = TrajectoryDataModule(str(path), mode="online", num_components=8,
                                members_per_batch=members_per_batch, samples_per_member=samples,
                                train_trials=512, val_trials=128, test_trials=128)
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
    parser.add_argument("--members-per-batch", type=int, default=8)
    parser.add_argument("--samples", type=int, default=32, help="trials per member per batch")
    parser.add_argument("--paths", nargs="+", choices=("fused", "plain"), default=["fused"],
                        help="plain: the same fit without the fused kernels")
    parser.add_argument("--tag", default="", help="results file online_memory_<tag>_cuda")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("online_memory.py measures GPU memory: it needs a CUDA device")
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            for path in args.paths:
                label = f"N={n}" if path == "fused" else f"N={n} plain"
                with kernel_variant(path):  # plain: the fused-kernel map emptied
                    r = results[n, path] = measure(n, Path(folder), args.warmup, args.steps,
                                                   args.members_per_batch, args.samples)
                rows += [row(label, "setup peak", r["setup_peak"] / 2**20, "MiB"),
                         row(label, "train peak", r["train_peak"] / 2**20, "MiB"),
                         row(label, "s/batch", r["s_per_batch"], "s"),
                         row(label, "fit (setup + all steps)", r["fit"], "s")]
                if path == args.paths[0]:  # the later paths reuse the saved population
                    rows.append(row(f"N={n}", "population written", r["write"], "s"))
                print(label, {k: round(v, 4) for k, v in r.items()}, flush=True)
    finish("_".join(filter(None, ["online_memory", args.tag])), "cuda", rows,
           ratios(results, args.sizes, args.paths))


def ratios(results: dict[tuple[int, str], dict[str, float]], sizes: list[int],
           paths: list[str]) -> dict[str, float]:
    """Largest N against smallest on each path; plain against fused at each N."""
    small, large = min(sizes), max(sizes)
    out = {}
    for path in paths:
        suffix = "" if path == "fused" else f" ({path})"
        a, b = results[large, path], results[small, path]
        if large != small:
            out |= {f"train peak N={large} / N={small}{suffix}": a["train_peak"] / b["train_peak"],
                    f"setup peak N={large} / N={small}{suffix}": a["setup_peak"] / b["setup_peak"],
                    f"s/batch N={large} / N={small}{suffix}": a["s_per_batch"] / b["s_per_batch"]}
    if {"fused", "plain"} <= set(paths):
        for n in sizes:
            out[f"N={n}: s/batch plain / fused"] = (results[n, "plain"]["s_per_batch"]
                                                    / results[n, "fused"]["s_per_batch"])
    return out


if __name__ == "__main__":
    main()
