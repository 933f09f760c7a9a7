"""``dynamo demo``: the whole pipeline on the built-in default, written under ``runs/demo/``.

The built-in default is the mixed-architecture 3-bit flip-flop population (vanilla, GRU,
LSTM and UGRNN × 4 seeds, hidden size 32), the same grid as
``configs/population/flipflop.yaml``. Stages that exist today:

1. ``runs/demo/population/`` — the trained population (manifest.json + weights/).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEMO_POPULATION: dict[str, Any] = {
    "seed_everything": 0,
    "trainer": {
        "max_steps": 1500,
        "val_check_interval": 100,
        "check_val_every_n_epoch": None,
        "log_every_n_steps": 25,
        "enable_checkpointing": False,
        "callbacks": [{
            "class_path": "lightning.pytorch.callbacks.EarlyStopping",
            "init_args": {"monitor": "val/worst_member_metric", "mode": "max",
                          "stopping_threshold": 0.99, "patience": 1000},
        }],
    },
    "model": {"architectures": ["vanilla", "gru", "lstm", "ugrnn"], "hidden_sizes": [32],
              "seeds": [0, 1, 2, 3], "lr": 0.01, "clip_norm": 1.0},
    "data": {"tasks": [{"name": "flipflop", "config": {"n_bits": 3}}], "batch_size": 64,
             "steps_per_epoch": 100, "val_batch_size": 256},
    "population": {"eval_trials": 512},
}


def run_demo(argv: Sequence[str] = ()) -> Path:
    """Run every demo stage; returns the demo directory."""
    parser = argparse.ArgumentParser(prog="dynamo demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="cap on population training steps (for a quick look)")
    args = parser.parse_args(list(argv))
    out = Path(args.out)
    started = time.perf_counter()
    population_dir = train_demo_population(out, args.max_steps)
    minutes = (time.perf_counter() - started) / 60
    print(f"\nDemo finished in {minutes:.1f} min. Outputs:\n"
          f"  population  {population_dir}/manifest.json (+ weights/)\n"
          f"  logs        {out / 'population_run'}/")
    return out


def train_demo_population(out: Path, max_steps: int | None = None) -> Path:
    """Stage 1: train the default population into ``out/population``."""
    from dynamo_lightning.cli import population_main

    config = _deep_copy(DEMO_POPULATION)
    config["trainer"]["default_root_dir"] = str(out / "population_run")
    config["trainer"]["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                   "init_args": {"save_dir": str(out / "population_run"),
                                                 "name": "logs"}}
    if max_steps is not None:
        config["trainer"]["max_steps"] = max_steps
    config["population"]["path"] = str(out / "population")
    population_main({"fit": config})
    return out / "population"


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
