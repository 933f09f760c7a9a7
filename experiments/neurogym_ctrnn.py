"""Networks from the field: neurogym's Yang et al. (2019) tasks, CTRNNs and GRUs, one map.

Stages, each timed:

1. ``population`` — ``configs/population/neurogym_ctrnn.yaml``: the three context-dependent
   decision tasks of ``yang19`` from neurogym (ctxdm1, ctxdm2, multidm: the same trials, three
   computations; dt 20 ms, trials padded to 80 steps) × continuous-time rate RNNs (``ctrnn``:
   α = dt/τ = 0.2, ReLU, recurrent noise while training) with and without Dale's law, and
   GRUs × seeds, trained stacked on whole trials; every member is scored on its own task's
   decision accuracy (fixation kept, then the right choice);
2. ``fit`` — ``configs/dynamo/neurogym_ctrnn.yaml``: DYNAMO on one input distribution that
   mixes the three tasks' trials, then one test pass (held-out hidden R² per member);
3. ``report`` — ``dynamo analyze`` with the similarity baselines (CKA, Procrustes, DSA).

Then the map is judged as the issue asks: k-means on θ (k = the number of tasks) against
the task labels and against the architectures (ARI), beside the report's clustering of
every baseline.

Usage::

    python experiments/neurogym_ctrnn.py [--out runs/experiments/neurogym_ctrnn]
    python experiments/neurogym_ctrnn.py --seeds 1 --population-steps 20 --epochs 1  # a look
    python experiments/neurogym_ctrnn.py --population-steps 300 --hidden-size 32 \
        --batch-size 32 --results experiments/results/neurogym_ctrnn_cpu.json  # 2-core CPU

``--reuse-population`` fits again on ``<out>/population`` (with, say, another
``--output-weight``) without training it again.

Writes ``<out>/population``, ``<out>/fit/version_<k>``, ``<out>/report/version_<k>`` and
the numbers, settings and machine to ``experiments/results/neurogym_ctrnn.json``.
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

RESULTS = REPO / "experiments" / "results" / "neurogym_ctrnn.json"
POPULATION_CONFIG = REPO / "configs" / "population" / "neurogym_ctrnn.yaml"
DYNAMO_CONFIG = REPO / "configs" / "dynamo" / "neurogym_ctrnn.yaml"
REPORT = {"baselines": "cka,procrustes,dsa", "progress": False, "grid_resolution": 0}
TARGETS = {"median_hidden_r2": 0.9, "ari_task": 0.9, "ari_architecture_max": 0.1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/experiments/neurogym_ctrnn")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per task and architecture (default: the config's)")
    parser.add_argument("--population-steps", type=int, default=None)
    parser.add_argument("--hidden-size", type=int, default=None,
                        help="override the members' width (the config's: 64)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="override the population's trials per step and task")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--output-weight", type=float, default=None,
                        help="override DYNAMO's λ_out (model.loss.output; the config's: 1)")
    parser.add_argument("--components", type=int, default=None,
                        help="override the members' principal components (data.num_components)")
    parser.add_argument("--reuse-population", action="store_true",
                        help="fit on <out>/population as it is, if it exists (no training)")
    parser.add_argument("--accelerator", default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--results", default=str(RESULTS))
    return parser.parse_args(argv)


def population_config(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    config = yaml.safe_load(POPULATION_CONFIG.read_text())
    if args.seeds is not None:
        config["model"]["seeds"] = list(range(args.seeds))
    if args.hidden_size is not None:
        config["model"]["hidden_sizes"] = [args.hidden_size]
    if args.batch_size is not None:
        config["data"]["batch_size"] = args.batch_size
    if args.population_steps is not None:
        config["trainer"]["max_steps"] = args.population_steps
        config["trainer"]["val_check_interval"] = min(config["trainer"]["val_check_interval"],
                                                      args.population_steps)
    config["trainer"].update({"default_root_dir": str(out / "population_run"),
                              "accelerator": args.accelerator, "devices": 1,
                              "enable_progress_bar": False})
    config["population"]["path"] = str(out / "population")
    return config


def dynamo_config(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    config = yaml.safe_load(DYNAMO_CONFIG.read_text())
    config["data"]["population"] = str(out / "population")
    config["trainer"].update({"default_root_dir": str(out / "fit"),
                              "accelerator": args.accelerator, "devices": 1,
                              "enable_progress_bar": False})
    if args.epochs is not None:
        config["trainer"]["max_epochs"] = args.epochs
    if args.output_weight is not None:
        config.setdefault("model", {}).setdefault("loss", {})["output"] = args.output_weight
    if args.components is not None:
        config["data"]["num_components"] = args.components
    return config


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from dynamo_lightning.cli.analyze import run_analysis
    from dynamo_lightning.cli.demo import emulation_summary
    from dynamo_lightning.cli.lightning_cli import dynamo_main, population_main

    args = parse_args(argv)
    out = Path(args.out)
    seconds: dict[str, float] = {}
    population, dynamo = population_config(args, out), dynamo_config(args, out)
    result: dict[str, Any] = {
        "seconds": seconds, "finished": False, "targets": TARGETS,
        "settings": {"population": population, "dynamo": dynamo, "report": REPORT},
        "machine": machine_info()}

    started = time.perf_counter()
    reused = args.reuse_population and (out / "population").is_dir()
    if not reused:
        population_main({"fit": population})
    seconds["population"] = 0.0 if reused else round(time.perf_counter() - started, 1)
    result["population_reused"] = reused
    from dynamo_lightning import Population

    members = Population.load(out / "population")
    result["members"] = member_rows(members)
    result["member_accuracy"] = accuracy_by(result["members"])
    _write(args, result)

    started = time.perf_counter()
    cli = dynamo_main({"fit": copy.deepcopy(dynamo)})
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    summary = emulation_summary(cli.model)
    seconds["fit"] = round(time.perf_counter() - started, 1)
    ckpt = Path(cli.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    scores = {k: [m[k] for m in summary["members"]] for k in summary["members"][0] if k != "id"}
    result.update({"median_hidden_r2": summary["median_hidden_r2"],
                   "min_hidden_r2": min(scores["hidden_r2"]),
                   "median_output_agreement": summary["median_output_agreement"],
                   "checkpoint": str(ckpt)})
    result.update(map_clusters(cli.model.embeddings().detach().cpu().numpy(),
                               cli.model.hparams.member_metadata))
    _write(args, result)

    started = time.perf_counter()
    device = "cuda" if args.accelerator == "gpu" else "cpu"
    report = run_analysis(ckpt, out / "report" / ckpt.parents[1].name, scores=scores,
                          device=device, **REPORT)
    seconds["report"] = round(time.perf_counter() - started, 1)
    written = json.loads((report / "report.json").read_text())
    result.update({"report": str(report / "report.html"),
                   "baselines": baseline_aris(written.get("baselines") or {}),
                   "finished": True})
    result["met"] = {
        "median_hidden_r2": result["median_hidden_r2"] >= TARGETS["median_hidden_r2"],
        "ari_task": result["kmeans_ari"]["task_label"] >= TARGETS["ari_task"],
        "ari_architecture": result["kmeans_ari"]["architecture"]
        <= TARGETS["ari_architecture_max"]}
    _write(args, result)
    print_table(result)
    return result


def member_rows(population: Any) -> list[dict[str, Any]]:
    """Each member's id, task, architecture, Dale's law and decision accuracy."""
    return [{"id": m.id, "task": m.metadata.get("task_label"),
             "architecture": m.metadata.get("architecture"),
             "dale_ratio": m.metadata.get("dale_ratio"),
             "task_metric": m.metadata.get("task_metric")} for m in population]


def accuracy_by(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median decision accuracy per task and architecture."""
    table: dict[str, dict[str, float]] = {}
    for task in sorted({r["task"] for r in rows}):
        for arch in sorted({r["architecture"] for r in rows}):
            values = [r["task_metric"] for r in rows if r["task"] == task
                      and r["architecture"] == arch and r["task_metric"] is not None]
            if values:
                table.setdefault(task, {})[arch] = statistics.median(values)
    return table


def map_clusters(theta: Any, metadata: list[dict[str, Any]]) -> dict[str, Any]:
    """k-means on θ (k = number of tasks, 10 restarts) scored against task and architecture."""
    from dynamo_lightning.analysis import cluster, cluster_scores

    tasks = [m.get("task_label") for m in metadata]
    labels = cluster(theta, len(set(tasks)), method="kmeans")
    scores = cluster_scores(labels, [{"task_label": t, "architecture": m.get("architecture")}
                                     for t, m in zip(tasks, metadata, strict=True)])
    return {"kmeans_ari": {k: scores.get(k, {}).get("ari", math.nan)
                           for k in ("task_label", "architecture")},
            "theta": theta.tolist()}


def baseline_aris(baselines: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """The report's clustering of each method (DYNAMO's map and the baselines): ARI against
    task and architecture, and seconds."""
    rows = {}
    for name, entry in (baselines.get("methods") or {}).items():
        scores = entry.get("scores") or {}
        rows[name] = {key: (scores.get(key) or {}).get("ari")
                      for key in ("task_label", "architecture")}
        rows[name]["seconds"] = entry.get("seconds")
        rows[name]["error"] = entry.get("error")
    return rows


def print_table(result: dict[str, Any]) -> None:
    print(f"{'method':<12}{'ARI task':>10}{'ARI arch':>10}")
    print(f"{'θ k-means':<12}{result['kmeans_ari']['task_label']:>10.3f}"
          f"{result['kmeans_ari']['architecture']:>10.3f}")
    for name, row in result["baselines"].items():
        task, arch = row["task_label"], row["architecture"]
        print(f"{name:<12}{_fmt(task):>10}{_fmt(arch):>10}")
    print(f"median hidden R² {result['median_hidden_r2']:.3f}; times {result['seconds']}")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def _write(args: argparse.Namespace, result: dict[str, Any]) -> None:
    result["total_seconds"] = round(sum(result["seconds"].values()), 1)
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"[neurogym_ctrnn] {json.dumps(result['seconds'])} -> {path}", flush=True)


if __name__ == "__main__":
    main()
