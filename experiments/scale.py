"""The end-to-end scale run: 10,000 recurrent networks trained, embedded and reported.

Stages, each timed:

1. ``population`` — ``configs/scale/population.yaml``: 2 computations (3-bit flip-flop,
   3-channel leaky integrator) × 5 architectures × ``--seeds`` seeds (1,000: 10,000
   members), trained stacked (on a GPU: one CUDA graph per step, fused or compiled cells,
   TF32 by the config's ``float32_matmul_precision: high``), scored and written;
2. ``fit`` — ``configs/scale/dynamo.yaml``: DYNAMO in online mode (each batch runs only its
   members), then one test pass for the held-out emulation scores (median hidden R²);
3. ``report`` — the analysis report of that checkpoint (what ``dynamo analyze`` writes), with
   settings for thousands of members: 16 initial states per member and 500 iterations for
   the fixed points, no pairwise similarity baselines (N² pairs), no topology grid.

The target (issue "scale"): all three on one H200 in at most 15 minutes, median held-out
hidden R² ≥ 0.9. ``--seeds 2 --population-steps 20 --epochs 1`` is a quick look on a CPU.

Usage::

    python experiments/scale.py [--seeds 1000] [--out runs/experiments/scale]

Writes ``<out>/population``, ``<out>/fit`` and ``<out>/report``, and the timings, scores,
settings and machine to ``experiments/results/scale.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ is a plain folder, not an installed package

from benchmarks.common import machine_info  # noqa: E402
from dynamo_lightning.cli.lightning_cli import DYNAMO_BASE  # noqa: E402

RESULTS = REPO / "experiments" / "results" / "scale.json"
POPULATION_CONFIG = REPO / "configs" / "scale" / "population.yaml"
DYNAMO_CONFIG = REPO / "configs" / "scale" / "dynamo.yaml"
TIMER = {"class_path": "dynamo_lightning.callbacks.StageTimes"}  # phases of each fit
REPORT = {"inits_per_member": 16, "max_iters": 500, "fixed_point_trials": 32, "trials": 128,
          "baselines": "none", "grid_resolution": 0, "progress": False}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/experiments/scale")
    parser.add_argument("--seeds", type=int, default=1000,
                        help="members per computation and architecture (1000: 10,000 members)")
    parser.add_argument("--population-steps", type=int, default=None,
                        help="override the population config's max_steps")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the DYNAMO config's max_epochs")
    parser.add_argument("--members-per-batch", type=int, default=None,
                        help="override the DYNAMO config's data.members_per_batch (an epoch "
                             "is N·train_trials / (M·samples_per_member) steps)")
    parser.add_argument("--accelerator", default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--results", default=str(RESULTS))
    return parser.parse_args(argv)


def population_config(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    config = yaml.safe_load(POPULATION_CONFIG.read_text())
    config["model"]["seeds"] = args.seeds
    if args.population_steps is not None:
        config["trainer"]["max_steps"] = args.population_steps
        config["trainer"]["val_check_interval"] = min(config["trainer"]["val_check_interval"],
                                                      args.population_steps)
    config["trainer"].update({"default_root_dir": str(out / "population_run"),
                              "accelerator": args.accelerator, "devices": 1,
                              "enable_progress_bar": False})
    config["population"]["path"] = str(out / "population")
    config["trainer"]["callbacks"] = [*config["trainer"].get("callbacks", []), TIMER]
    return config


def dynamo_config(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    config = yaml.safe_load(DYNAMO_CONFIG.read_text())
    config["data"]["population"] = str(out / "population")
    config["trainer"].update({"default_root_dir": str(out / "fit"),
                              "accelerator": args.accelerator, "devices": 1,
                              "enable_progress_bar": False})
    if args.epochs is not None:
        config["trainer"]["max_epochs"] = args.epochs
    if args.members_per_batch is not None:
        config["data"]["members_per_batch"] = args.members_per_batch
    # A config's callback list replaces the shared base's whole: start from the base's.
    base = yaml.safe_load(DYNAMO_BASE.read_text())["trainer"]["callbacks"]
    config["trainer"]["callbacks"] = [*config["trainer"].get("callbacks", base), TIMER]
    return config


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from dynamo_lightning.cli.analyze import run_analysis
    from dynamo_lightning.cli.demo import emulation_summary
    from dynamo_lightning.cli.lightning_cli import dynamo_main, population_main

    args = parse_args(argv)
    out = Path(args.out)
    seconds: dict[str, float] = {}
    result: dict[str, Any] = {
        "members": None, "seconds": seconds, "finished": False,
        "settings": {"seeds": args.seeds, "population_steps": args.population_steps,
                     "epochs": args.epochs, "members_per_batch": args.members_per_batch,
                     "accelerator": args.accelerator, "report": REPORT},
        "machine": machine_info()}

    population, dynamo = population_config(args, out), dynamo_config(args, out)
    result["settings"].update({  # what ran, the configs' values included
        "population_steps": population["trainer"]["max_steps"],
        "epochs": dynamo["trainer"]["max_epochs"],
        "members_per_batch": dynamo["data"]["members_per_batch"]})
    phases: dict[str, dict[str, float]] = {}
    result["phases"] = phases  # each stage's fit, phase by phase (StageTimes)
    started = time.perf_counter()
    timer = _timer(population_main({"fit": population}))
    seconds["population"] = round(time.perf_counter() - started, 1)
    phases["population"] = _phases(timer, started, after="write")
    _write(args, result)  # each stage's time is kept even if a later stage fails

    started = time.perf_counter()
    cli = dynamo_main({"fit": copy.deepcopy(dynamo)})
    timer = _timer(cli)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    phases["fit"] = _phases(timer, started, after="test")
    summary = emulation_summary(cli.model)
    ckpt = Path(cli.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    seconds["fit"] = round(time.perf_counter() - started, 1)
    members = summary["members"]
    scores = {k: [m[k] for m in members] for k in members[0] if k != "id"}
    result.update({
        "members": len(members), "median_hidden_r2": summary["median_hidden_r2"],
        "median_output_agreement": summary["median_output_agreement"],
        "median_task_metric": _task_medians(scores, cli.model.hparams.member_metadata),
        "checkpoint": str(ckpt)})
    _write(args, result)

    started = time.perf_counter()
    device = "cuda" if args.accelerator == "gpu" else "cpu"
    report = run_analysis(ckpt, out / "report", scores=scores, device=device, **REPORT)
    seconds["report"] = round(time.perf_counter() - started, 1)
    written = json.loads((report / "report.json").read_text())
    result.update({"report": str(report / "report.html"),
                   "report_timings": written.get("meta", {}).get("timings", {}),
                   "fixed_points": fixed_point_counts(written), "finished": True})
    _write(args, result)
    print(json.dumps({k: result[k] for k in ("members", "seconds", "total_seconds",
                                            "median_hidden_r2")}, indent=2))
    return result


def _task_medians(scores: dict[str, list[float]], metadata: list[dict[str, Any]]
                  ) -> dict[str, dict[str, float]]:
    """Per computation, the median task metric of its members and of the meta-model at
    their θ (each member scored on its own task: one median per metric, never mixed)."""
    medians: dict[str, dict[str, float]] = {}
    for task in sorted({str(m.get("task")) for m in metadata}):
        mine = [i for i, m in enumerate(metadata) if str(m.get("task")) == task]
        for key, name in (("task_metric_member", "member"), ("task_metric_meta", "meta")):
            values = [scores[key][i] for i in mine
                      if key in scores and not math.isnan(scores[key][i])]
            if values:
                medians.setdefault(task, {})[name] = statistics.median(values)
    return medians


def fixed_point_counts(report: dict[str, Any]) -> dict[str, int]:
    """Fixed points the report kept, of the members and of the meta-model at their θ: each
    was classified by its Jacobian's eigenvalues, the fixed-point stage's largest part
    before those ran on every core."""
    members = report.get("fixed_points", {}).get("members", [])
    return {side: sum(m[side]["total"] for m in members if m.get(side))
            for side in ("member", "meta")}


def _timer(cli: Any) -> Any:
    """The fit's StageTimes callback."""
    from dynamo_lightning.callbacks import StageTimes

    return next(c for c in cli.trainer.callbacks if isinstance(c, StageTimes))


def _phases(timer: Any, started: float, after: str) -> dict[str, float]:
    """A stage's phases: building the CLI before its fit, the fit's own (StageTimes), and
    what ran after it (``after``: writing the population, the test pass)."""
    phases = {"before_fit": timer.started_at - started, **timer.times,
              after: time.perf_counter() - timer.ended_at}
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in phases.items()}


def _write(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Write the results so far (stage times, scores) to ``--results``."""
    result["total_seconds"] = round(sum(result["seconds"].values()), 1)
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[scale] {json.dumps(result['seconds'])} -> {path}", flush=True)


if __name__ == "__main__":
    main()
