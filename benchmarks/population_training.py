"""Population training: steps/s and member-steps/s of ``dynamo population fit``'s step.

Cases (B = 64 trials per batch and task, T = 64 steps, hidden 32, Adam, per-member clip):

- ``grid30``: 2 tasks (3-bit flip-flop, 3-channel integrator) × 5 architectures (vanilla,
  relu, gru, lstm, ugrnn) × 3 seeds: 10 groups of 3;
- ``grid256``: 2 tasks × 4 architectures (vanilla, gru, lstm, ugrnn) × 32 seeds: 8 groups
  of 32;
- ``stack4096``: one group, 4,096 GRU members on the flip-flop task;
- ``scale10k``: the scale run's population (``configs/scale/population.yaml``): 2 tasks × 5
  architectures × 1,000 seeds, 10 groups of 1,000 (not in the default cases: 10,000 members);
- ``ctrnn``: 2 tasks × the ``ctrnn`` architecture's rate and current forms × no Dale / Dale
  (0.8) × 32 seeds, α = 0.2, relu, recurrent noise 0.1: 8 groups of 32 (not in the default
  cases).

Each case trains through a Lightning ``Trainer`` (what ``dynamo population fit`` runs: the
loop, the optimiser step, logging), once per path side by side: ``eager`` (the step as
PyTorch ops launched from Python, the path before CUDA graphs) and, on CUDA, ``graphed``
(``PopulationModule(cuda_graphs=True)``: forward, loss, backward and clip of every group
replayed from one CUDA graph, each group on its own stream, cells not compiled),
``graphed+compiled`` (also ``compile_cells``: each cell ``torch.compile``'d, fusing its gate
arithmetic; the default on CUDA before ``fused_cells``) and ``graphed+fused`` (also
``fused_cells``: GRU, tanh, ReLU and LSTM stacks run their whole time loop as one Triton
kernel, forward and backward; UGRNN stacks compiled as before; the default on CUDA;
ctrnn stacks compiled: their leaky kernels are not in ``fused_recurrence.FASTER_UP_TO`` yet);
``graphed+fused+ctrnn`` is ``graphed+fused`` with the ctrnn stacks fused too (both leaky
cells added to ``FASTER_UP_TO`` up to H=64 for its run; it runs only for cases with ctrnn
members);
``graphed+fused+dwin`` is that with the backward kernel accumulating ``dW_hh`` itself, as
before ``graphed+fused`` moved it to batched matmuls after the kernel
(``fused_recurrence.DW_OUTSIDE = False``; both read the same batch-major projections);
``graphed+fused+tf32`` is ``graphed+fused`` with
``torch.set_float32_matmul_precision("high")`` for its run: every float32 matmul, the
kernels' dots included, in TF32; ``graphed+fused-lstm`` is ``graphed+fused`` with the LSTM
stacks compiled instead of fused ("lstm" dropped from ``fused_recurrence.FASTER_UP_TO`` for
its run: the default before this path's comparison put the LSTM in it). The other paths run with
``fused_cells`` off, so they measure what they did before it. Timed
from the end of ``--warmup`` steps (the graph is captured in the first) to the end of
``--steps`` more, with the device synchronised at both ends. Also timed per case: start-up
(building the module: every member's seeded initialisation) and writing (scoring every
member on 512 test trials and saving the population), which a ``dynamo population fit``
pays once.

Usage::

    python benchmarks/population_training.py                 # CPU: writes population_training.json
    python benchmarks/population_training.py --device cuda   # population_training_cuda.json
    python benchmarks/population_training.py --device cuda --cases stack4096 \
        --paths graphed+compiled graphed+fused                # two paths, no eager baseline
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import torch
from common import finish, kernel_variant, row

from dynamo_lightning.population.datamodule import TaskDataModule
from dynamo_lightning.population.training import PopulationModule
from dynamo_lightning.population.writer import PopulationWriter

TASKS = [{"name": "flipflop", "config": {"n_bits": 3}},
         {"name": "integrator", "config": {"n_channels": 3}}]
CASES: dict[str, dict[str, Any]] = {
    "grid30": {"tasks": TASKS, "architectures": ["vanilla", "relu", "gru", "lstm", "ugrnn"],
               "seeds": list(range(3))},
    "grid256": {"tasks": TASKS, "architectures": ["vanilla", "gru", "lstm", "ugrnn"],
                "seeds": list(range(32))},
    "stack4096": {"tasks": TASKS[:1], "architectures": ["gru"], "seeds": list(range(4096))},
    "scale10k": {"tasks": TASKS, "architectures": ["vanilla", "relu", "gru", "lstm", "ugrnn"],
                 "seeds": list(range(1000))},
    "ctrnn": {"tasks": TASKS, "seeds": list(range(32)), "architectures": [
        {"name": "ctrnn", "config": {"form": ["rate", "current"], "dale_ratio": [None, 0.8],
                                     "noise_std": 0.1}}]},
}
DEFAULT_CASES = ["grid30", "grid256", "stack4096"]
CUDA_PATHS = ["eager", "graphed", "graphed+compiled", "graphed+fused", "graphed+fused+dwin",
              "graphed+fused+tf32", "graphed+fused-lstm", "graphed+fused+ctrnn"]
FUSED = ("graphed+fused", "graphed+fused+dwin", "graphed+fused+tf32", "graphed+fused-lstm",
         "graphed+fused+ctrnn")
COMPILED = ("graphed+compiled", *FUSED)  # fused: the stacks not fused (UGRNN, LSTM) compiled


@contextmanager
def ctrnn_fused(path: str) -> Iterator[None]:
    """For ``graphed+fused+ctrnn``: the leaky cells in ``FASTER_UP_TO`` (up to H=64) for the
    run only; any other path as it is."""
    from dynamo_lightning.population.architectures import fused_recurrence as fr

    widths = dict(fr.FASTER_UP_TO)
    if path.endswith("+ctrnn"):
        fr.FASTER_UP_TO.update(dict.fromkeys(fr.LEAKY, fr.MAX_HIDDEN))
    try:
        yield
    finally:
        fr.FASTER_UP_TO.clear()
        fr.FASTER_UP_TO.update(widths)


def has_ctrnn(case: str) -> bool:
    return any(isinstance(a, dict) and a["name"] == "ctrnn" for a in CASES[case]["architectures"])


class StepClock(pl.Callback):
    """Wall time from the end of step ``start`` to the end of the fit, device synchronised."""

    def __init__(self, start: int) -> None:
        self.start, self.t0, self.t1 = start, None, None

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.start:
            _sync()
            self.t0 = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _sync()
        self.t1 = time.perf_counter()


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def build(case: str, cuda_graphs: bool, compiled: bool = False,
          fused: bool = False) -> tuple[PopulationModule, float]:
    spec = CASES[case]
    started = time.perf_counter()
    module = PopulationModule(tasks=spec["tasks"], architectures=spec["architectures"],
                              hidden_sizes=[32], seeds=spec["seeds"], cuda_graphs=cuda_graphs,
                              compile_cells=compiled, fused_cells=fused)
    return module, time.perf_counter() - started


def train_rate(case: str, device: str, cuda_graphs: bool, warmup: int, steps: int,
               compiled: bool = False, fused: bool = False
               ) -> tuple[float, int, float, float]:
    """(steps/s, members, start-up seconds, last logged loss per member) of one training
    run; every path starts from the same members and draws the same batches, so the losses
    show whether a path (TF32, say) trains as well."""
    module, startup = build(case, cuda_graphs, compiled, fused)
    data = TaskDataModule(tasks=CASES[case]["tasks"], batch_size=64,
                          steps_per_epoch=warmup + steps)
    clock = StepClock(warmup)
    trainer = pl.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1,
                         max_steps=warmup + steps, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[clock], log_every_n_steps=25)
    trainer.fit(module, data)
    loss = float(trainer.callback_metrics.get("train/loss", float("nan")))
    return steps / (clock.t1 - clock.t0), len(module.member_ids), startup, loss


def write_seconds(case: str, device: str) -> tuple[float, float]:
    """Seconds of (scoring every member on 512 test trials, the whole write: scoring and
    saving the population)."""
    module, _ = build(case, cuda_graphs=False)
    module.to(device)
    with tempfile.TemporaryDirectory() as folder:
        writer = PopulationWriter(str(Path(folder) / "population"), eval_trials=512)
        trainer = SimpleNamespace(global_step=0, default_root_dir=folder)
        started = time.perf_counter()
        for group, stack in zip(module.groups, module.stacks, strict=True):
            writer._score(module, group, stack, None)
        _sync()
        scoring = time.perf_counter() - started
        started = time.perf_counter()
        writer._write(trainer, module)
        _sync()
        return scoring, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, choices=list(CASES))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps of the graphed path, and of the eager path on CPU "
                             "(default: 200 on CUDA, 20 on CPU, 2 for stack4096 on CPU)")
    parser.add_argument("--paths", nargs="+", default=list(CUDA_PATHS), choices=CUDA_PATHS,
                        help="paths to time on CUDA (ratios are to eager when it runs); "
                             "a CPU runs eager only")
    parser.add_argument("--eager_steps", type=int, default=30,
                        help="timed steps of the eager path on CUDA (a few steps/s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (CUDA)")
    parser.add_argument("--tag", default="",
                        help="suffix of the results file (population_training_<tag>[_cuda]"
                             ".json), so that a run of some cases keeps the full run's file")
    parser.add_argument("--write_only", action="store_true",
                        help="time only start-up and writing (no training); writes "
                             "population_writing[_cuda].json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, ratios = [], {}
    paths = ([] if args.write_only else
             [p for p in CUDA_PATHS if p in args.paths] if args.device == "cuda" else ["eager"])
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    for case in args.cases:
        steps = args.steps or (200 if args.device == "cuda" else
                               2 if case == "stack4096" else 20)
        rates = {}
        for path in paths:
            if path.endswith("+ctrnn") and not has_ctrnn(case):
                continue  # the same run as graphed+fused
            timed = args.eager_steps if path == "eager" and args.device == "cuda" else steps
            with kernel_variant(path), ctrnn_fused(path):
                rate, members, startup, loss = train_rate(
                    case, args.device, path != "eager", args.warmup, timed,
                    compiled=path in COMPILED, fused=path in FUSED)
            rates[path] = rate
            rows += [row(f"{case} {path}", "steps/s", rate, "1/s"),
                     row(f"{case} {path}", "member-steps/s", rate * members, "1/s"),
                     row(f"{case} {path}", "last train loss per member", loss, "")]
            print(f"{case:10s} {path:18s} {rate:9.2f} steps/s  {rate * members:12.0f} "
                  f"member-steps/s  (start-up {startup:.2f} s, last loss {loss:.4g})", flush=True)
        if not paths:
            _, startup = build(case, cuda_graphs=False)
        rows.append(row(case, "start-up", startup, "s"))
        scoring, writing = write_seconds(case, args.device)
        rows.append(row(case, "score 512 trials", scoring, "s"))
        rows.append(row(case, "write (score 512 trials + save)", writing, "s"))
        for path in paths[1:] if "eager" in rates else []:
            ratios[f"{case}: {path} / eager"] = rates[path] / rates["eager"]
        for slower, faster in (("graphed+compiled", "graphed+fused"),
                               ("graphed+fused+dwin", "graphed+fused"),
                               ("graphed+fused", "graphed+fused+tf32"),
                               ("graphed+fused-lstm", "graphed+fused"),
                               ("graphed+fused", "graphed+fused+ctrnn"),
                               ("graphed+compiled", "graphed+fused+ctrnn")):
            if {slower, faster} <= rates.keys():
                ratios[f"{case}: {faster} / {slower}"] = rates[faster] / rates[slower]
    name = "population_writing" if args.write_only else "population_training"
    finish(name + (f"_{args.tag}" if args.tag else ""), args.device, rows, ratios)


if __name__ == "__main__":
    main()
