"""``dynamo demo``: the whole pipeline on the built-in default, written under ``runs/demo/``.

The built-in default is the mixed-architecture 3-bit flip-flop population (vanilla, GRU,
LSTM and UGRNN × 4 seeds, hidden size 32), the same grid as
``configs/population/flipflop.yaml``; the meta-model is the one of
``configs/dynamo/flipflop.yaml``. Stages:

1. ``runs/demo/population/`` — the trained population (manifest.json + weights/).
2. ``runs/demo/fit/`` — the DYNAMO fit: ``checkpoints/last.ckpt``, ``map.png`` (the model
   embedding map), logs, and ``emulation.json`` (per-member test scores).
3. ``runs/demo/report/`` — the analysis report of that checkpoint (what ``dynamo analyze``
   writes): ``report.html``, ``report.json`` and the PNGs, with the stage-2 test scores and
   the lighter fixed-point settings of ``DEMO_REPORT``.

Every stage runs on ``--threads`` torch intra-op threads (default 1; restored after). The
stages are thousands of small ops, each a parallel region whose threads must all get a core:
on a 2-core machine with other work running, torch's default of one thread per core made the
population stage 11× and the fit 9× slower than one thread (``benchmarks/demo_stages.py``;
a user saw the fit at 0.67 it/s against 16.7 it/s), while one thread costs about 20% on a
quiet machine.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dynamo_lightning.checks import optional_positive_int, positive_int
from dynamo_lightning.cli.options import command_parser

DEMO_POPULATION: dict[str, Any] = {
    "seed_everything": 0,
    "trainer": {
        "max_steps": 1500,
        "val_check_interval": 100,
        "check_val_every_n_epoch": None,
        "log_every_n_steps": 25,
        "callbacks": [{
            "class_path": "lightning.pytorch.callbacks.EarlyStopping",
            "init_args": {"monitor": "val/worst_member_metric", "mode": "max",
                          "stopping_threshold": 0.998, "patience": 1000},
        }],
    },
    "model": {"architectures": ["vanilla", "gru", "lstm", "ugrnn"], "hidden_sizes": [32],
              "seeds": [0, 1, 2, 3], "lr": 0.01, "clip_norm": 1.0},
    "data": {"tasks": [{"name": "flipflop", "config": {"n_bits": 3}}], "batch_size": 64,
             "steps_per_epoch": 100, "val_batch_size": 256},
    "population": {"eval_trials": 512},
}

DEMO_DYNAMO: dict[str, Any] = {
    "seed_everything": 0,
    "trainer": {"max_epochs": 30, "log_every_n_steps": 10, "gradient_clip_val": 1.0},
    "model": {"embedding_dim": 2, "meta": {"cell": "gru", "hidden_size": 64},
              "optim": {"lr": 0.003, "theta_lr": 0.03}},
    "data": {"num_components": 8, "members_per_batch": 8, "samples_per_member": 32,
             "train_trials": 512, "val_trials": 128, "test_trials": 128},
}


DEMO_THREADS = 1
"""torch intra-op threads of every demo stage (``--threads``): see the module docstring."""

NEXT_STEP = ("Next: open {report} in a browser; README.md's \"Fit DYNAMO\" section fits "
             "DYNAMO on this population with your own settings.")
"""The line the demo ends with (``{report}``: the report's path)."""

DEMO_REPORT: dict[str, Any] = {
    # dynamo analyze's defaults, spelled out (the searches run on one intra-op thread; see
    # ReportOptions.threads; docs/report.md gives measured times).
    "trials": 256, "inits_per_member": 128, "max_iters": 3000, "steps": 11,
}


def run_demo(argv: Sequence[str] = ()) -> Path:
    """Run every demo stage; returns the demo directory."""
    parser = command_parser("dynamo demo", __doc__)
    parser.add_argument("--out", default="runs/demo", help="output directory")
    parser.add_argument("--max_steps", "--max-steps", type=int, default=None,
                        help="cap on population training steps (for a quick look)")
    parser.add_argument("--max_epochs", "--max-epochs", type=int, default=None,
                        help="cap on DYNAMO training epochs (for a quick look)")
    parser.add_argument("--threads", type=int, default=DEMO_THREADS,
                        help="torch intra-op threads of every stage, restored after (1 is "
                             "fastest on a small or shared machine; more on a quiet one "
                             "with many cores)")
    args = parser.parse_args(list(argv))
    threads = positive_int("--threads", args.threads)  # all three before any stage runs
    for name, value in (("--max_steps", args.max_steps), ("--max_epochs", args.max_epochs)):
        optional_positive_int(name, value)
    out = Path(args.out)
    started = time.perf_counter()
    population_dir, summary, report_dir = run_stages(out, threads, args.max_steps,
                                                     args.max_epochs)
    minutes = (time.perf_counter() - started) / 60
    print(f"\nDemo finished in {minutes:.1f} min. Outputs:\n"
          f"  population   {population_dir}/manifest.json (+ weights/)\n"
          f"  checkpoint   {out / 'fit' / 'checkpoints' / 'last.ckpt'}\n"
          f"  map          {out / 'fit' / 'map.png'}\n"
          f"  emulation    {out / 'fit' / 'emulation.json'}  "
          f"(median hidden R² {summary['median_hidden_r2']:.3f}, "
          f"output agreement {summary['median_output_agreement']:.3f})\n"
          f"  report       {report_dir / 'report.html'}  (data: report.json)\n\n"
          + NEXT_STEP.format(report=report_dir / "report.html"))
    return out


def run_stages(out: Path, threads: int, max_steps: int | None = None,
               max_epochs: int | None = None) -> tuple[Path, dict[str, Any], Path]:
    """The three stages in order, on ``threads`` intra-op threads (the count before is
    restored after, also when a stage fails); returns the population's directory, the
    emulation summary and the report's directory."""
    from dynamo_lightning.analysis.report.timing import threads as intra_op_threads

    with intra_op_threads(threads):
        population_dir = train_demo_population(out, max_steps)
        summary = fit_demo_dynamo(out, population_dir, max_epochs)
        report_dir = write_demo_report(out, summary)
    return population_dir, summary, report_dir


def train_demo_population(out: Path, max_steps: int | None = None) -> Path:
    """Stage 1: train the default population into ``out/population``."""
    from dynamo_lightning.cli.lightning_cli import population_main

    config = copy.deepcopy(DEMO_POPULATION)
    config["trainer"]["default_root_dir"] = str(out / "population_run")
    config["trainer"]["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                   "init_args": {"save_dir": str(out / "population_run"),
                                                 "name": "logs"}}
    config["trainer"]["callbacks"].append({  # resumable: --ckpt_path last
        "class_path": "dynamo_lightning.callbacks.LastCheckpoint",
        "init_args": {"dirpath": str(out / "population_run" / "checkpoints")}})
    if max_steps is not None:
        config["trainer"]["max_steps"] = max_steps
    config["population"]["path"] = str(out / "population")
    population_main({"fit": config})
    return out / "population"


def fit_demo_dynamo(out: Path, population_dir: Path, max_epochs: int | None = None,
                    ) -> dict[str, Any]:
    """Stage 2: fit DYNAMO into ``out/fit``, test it, write ``emulation.json``."""
    from dynamo_lightning.cli.lightning_cli import dynamo_main

    fit_dir = out / "fit"
    config = copy.deepcopy(DEMO_DYNAMO)
    config["trainer"].update(fit_run_settings(fit_dir, every_n_epochs=10))
    if max_epochs is not None:
        config["trainer"]["max_epochs"] = max_epochs
    config["data"]["population"] = str(population_dir)
    cli = dynamo_main({"fit": config})
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    summary = emulation_summary(cli.model)
    (fit_dir / "emulation.json").write_text(json.dumps(summary, indent=2))
    return summary


def write_demo_report(out: Path, summary: dict[str, Any]) -> Path:
    """Stage 3: the analysis report of the fit's ``last.ckpt`` into ``out/report``, reusing
    stage 2's test scores (``summary["members"]``) instead of a second test pass."""
    from dynamo_lightning.cli.analyze import run_analysis

    members = summary["members"]
    keys = [k for k in members[0] if k != "id"] if members else []
    scores = {k: [m[k] for m in members] for k in keys}
    ckpt = out / "fit" / "checkpoints" / "last.ckpt"
    return run_analysis(ckpt, out / "report", scores=scores, **DEMO_REPORT)


def fit_run_settings(fit_dir: Path, every_n_epochs: int, annotate: bool = False,
                     ) -> dict[str, Any]:
    """Trainer settings that put a DYNAMO fit's outputs in ``fit_dir``: CSV logs,
    ``checkpoints/last.ckpt`` (rewritten every epoch: ``--ckpt_path last`` resumes) and the
    final map as ``map.png``."""
    return {
        "default_root_dir": str(fit_dir),
        "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                   "init_args": {"save_dir": str(fit_dir), "name": "logs"}},
        "callbacks": [
            {"class_path": "dynamo_lightning.callbacks.LastCheckpoint",
             "init_args": {"dirpath": str(fit_dir / "checkpoints")}},
            {"class_path": "dynamo_lightning.callbacks.EmbeddingManifold",
             "init_args": {"every_n_epochs": every_n_epochs, "annotate": annotate,
                           "map_path": str(fit_dir / "map.png")}},
        ]}


def emulation_summary(model: Any) -> dict[str, Any]:
    """Per-member test scores of a tested ``DynamoModule`` and their medians."""
    scores = model.member_scores
    members = []
    for i, member_id in enumerate(model.member_ids):
        members.append({"id": member_id, **{k: v[i] for k, v in scores.items()}})

    def median(key: str) -> float:
        values = [v for v in scores.get(key, []) if not math.isnan(v)]
        return statistics.median(values) if values else math.nan

    return {"median_hidden_r2": median("hidden_r2"),
            "median_output_agreement": median("output_agreement"),
            "median_output_r2": median("output_r2"), "members": members}
