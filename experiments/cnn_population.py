"""Acceptance experiment: DYNAMO on a CNN population whose members compute different things.

Trains (if absent) the digits CNN population of ``configs/population/digits_cnn.yaml`` —
three training variants of the 8×8 digits (own labels, permuted labels, digits 0–4 only)
crossed with widths 8/16, depths 2/3 and seeds 0/1, 24 members — fits the meta-CNN on it
(``configs/dynamo/digits_cnn.yaml`` over the shared base) and reads the issue's targets:

- emulation on held-out test trials: hidden R² per member and stage (median over both) and
  output agreement (the meta-CNN at θ_n makes member n's decision);
- clustering: DYNAMO's map and the similarity baselines clustered into 3, ARI against the
  training variant (``task_label``), the width (``hidden_size``) and the depth (``n_layers``);
- model averaging per variant: the meta-CNN at the centroid θ of the variant's members
  against their mean held-out accuracy, the naive weight average beside it;
- placing, few-shot θ and the interpolation of accuracy, once each, to show they run.

Usage::

    python experiments/cnn_population.py [--epochs 30] [--out runs/experiments/digits_cnn]

Writes the population to ``<out>/population``, the fit to ``<out>/fit`` and the numbers,
settings and machine to ``experiments/results/cnn_population.json``.
"""

from __future__ import annotations

import argparse
import json
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
from dynamo_lightning import analysis as da  # noqa: E402
from dynamo_lightning import tasks  # noqa: E402
from dynamo_lightning.analysis.theta_evaluation import network_metric  # noqa: E402
from dynamo_lightning.population import Population  # noqa: E402

RESULTS = REPO / "experiments" / "results" / "cnn_population.json"
POPULATION_CONFIG = REPO / "configs" / "population" / "digits_cnn.yaml"
DYNAMO_CONFIG = REPO / "configs" / "dynamo" / "digits_cnn.yaml"
KEYS = ("task_label", "hidden_size", "n_layers")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/experiments/digits_cnn")
    parser.add_argument("--epochs", type=int, default=30, help="DYNAMO epochs (default 30)")
    parser.add_argument("--trials", type=int, default=256, help="held-out trials per score")
    parser.add_argument("--reuse-fit", action="store_true",
                        help="load <out>/fit/checkpoints/last.ckpt and only run its test pass")
    parser.add_argument("--results", default=str(RESULTS))
    return parser.parse_args(argv)


def train_population(out: Path) -> Path:
    path = out / "population"
    if (path / "manifest.json").is_file():
        print(f"reusing the population at {path}")
        return path
    from dynamo_lightning.cli.lightning_cli import population_main

    config = yaml.safe_load(POPULATION_CONFIG.read_text())
    config["trainer"].update({"default_root_dir": str(out), "enable_progress_bar": False})
    config["trainer"]["callbacks"] = config["trainer"]["callbacks"][1:]  # no resume files
    config["population"]["path"] = str(path)
    population_main({"fit": config})
    return path


def fit(population: Path, fit_dir: Path, epochs: int, reuse: bool) -> Any:
    """The DYNAMO fit (run config over the shared base), then one test pass."""
    from dynamo_lightning.cli.lightning_cli import dynamo_main

    ckpt = fit_dir / "checkpoints" / "last.ckpt"
    if reuse and ckpt.is_file():
        from dynamo_lightning.cli.analyze import emulation_scores
        from dynamo_lightning.module import load_module

        print(f"reusing the fit {ckpt}")
        m = load_module(ckpt)
        m.member_scores = emulation_scores(m, ckpt, population, progress=False)
        return m

    config = yaml.safe_load(DYNAMO_CONFIG.read_text())
    config["data"]["population"] = str(population)
    config["trainer"].update({
        "default_root_dir": str(fit_dir), "max_epochs": epochs, "enable_progress_bar": False,
        "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                   "init_args": {"save_dir": str(fit_dir), "name": "logs"}},
        "callbacks": [
            {"class_path": "dynamo_lightning.callbacks.LastCheckpoint",
             "init_args": {"dirpath": str(fit_dir / "checkpoints")}},
            {"class_path": "dynamo_lightning.callbacks.FixedPoints"},  # says: does not apply
            {"class_path": "dynamo_lightning.callbacks.Interpolation",
             "init_args": {"every_n_epochs": max(1, epochs)}}]})
    cli = dynamo_main({"fit": config})
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    return cli.model.eval()


def emulation(m: Any) -> dict[str, Any]:
    scores = m.member_scores
    stages = [v for row in scores["stage_hidden_r2"] for v in row if v == v]  # NaN: no stage
    return {"stage_hidden_r2_median": statistics.median(stages),
            "stage_hidden_r2_min": min(stages),
            "hidden_r2_median": statistics.median(scores["hidden_r2"]),
            "output_agreement_median": statistics.median(scores["output_agreement"]),
            "output_agreement_min": min(scores["output_agreement"]),
            "task_metric_meta_median": statistics.median(scores["task_metric_meta"]),
            "task_metric_member_median": statistics.median(scores["task_metric_member"])}


def clustering(m: Any, population: Population, trials: int) -> dict[str, Any]:
    x, _, _ = m.task.sample_with_ids(trials, generator=torch.Generator().manual_seed(0),
                                     split="test")
    metadata = m.member_metadata
    result = da.compare_methods(m.embeddings(), population, x.float(), metadata,
                                methods=("cka", "procrustes", "weights"), key="task_label")
    return {name: {"ari": {k: (entry["scores"] or {}).get(k, {}).get("ari") for k in KEYS},
                   "error": entry["error"]} for name, entry in result["methods"].items()}


def uses(m: Any, population: Population, trials: int) -> dict[str, Any]:
    """Placing one member, few-shot θ on one variant and the accuracy along one segment."""
    started = time.perf_counter()
    placed = da.place(m, Population([population[0]]), trials=64, steps=50, key="task_label")
    meta = population[0].metadata
    variant = tasks.get(meta["task"], **meta["task_config"])
    x, y = variant.sample(16, generator=torch.Generator().manual_seed(3), split="train")
    theta = m.fit_embedding(x.float(), targets=y, task=variant, steps=100)
    xt, yt = variant.sample(trials, generator=torch.Generator().manual_seed(4), split="test")
    few_shot = network_metric(variant, m.meta_model_at(theta), xt, yt)
    ids = m.member_ids
    segment = da.interpolate(m, ids[0], ids[-1], steps=5, fixed_points=False)
    return {"placed": {"id": population.ids[0], "variant": meta.get("task_label"),
                       **placed.to_dict()["members"][0]["nearest_centre"]},
            "few_shot_16_accuracy": few_shot,
            "interpolation": {"from": ids[0], "to": ids[-1],
                              "task_metric": segment.task_metric.tolist()},
            "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    out = (REPO / args.out).resolve()
    times: dict[str, float] = {}
    started = time.perf_counter()
    population_dir = train_population(out)
    times["population"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    m = fit(population_dir, out / "fit", args.epochs, args.reuse_fit)
    times["fit_and_test"] = round(time.perf_counter() - started, 1)
    population = Population.load(population_dir)
    started = time.perf_counter()
    results: dict[str, Any] = {"emulation": emulation(m),
                               "clustering": clustering(m, population, args.trials)}
    averaging = da.averaging_table(m, population, key="task_label", trials=args.trials)
    results["averaging"] = [{k: row[k] for k in ("group", "members_mean", "centroid", "ratio",
                                                 "weight_average")} for row in averaging]
    times["analysis"] = round(time.perf_counter() - started, 1)
    results["uses"] = uses(m, population, args.trials)
    results.update({"settings": vars(args), "seconds": times, "machine": machine_info(),
                    "members": len(population)})
    Path(args.results).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: results[k] for k in ("emulation", "clustering", "averaging")},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
