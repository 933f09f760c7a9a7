"""Acceptance experiment: the map's uses on a mixed-computation, mixed-architecture population.

The population (``configs/population/mixed.yaml``) holds 3-bit flip-flops and 3-channel
leaky integrators, each in all five recurrent architectures (vanilla, relu, gru, lstm,
ugrnn) × 3 seeds. To it the fit adds three networks whose computation is known to equal a
member's:

- an *imported* copy: a GRU member exported to ``torch.nn.GRU`` + ``nn.Linear`` and brought
  back with ``Population.from_torch``;
- a *permuted* copy of an LSTM member (hidden units relabelled);
- a *rescaled* copy of a ReLU member (units scaled by positive factors; exact for ReLU).

DYNAMO is fitted on the 33 networks (``configs/dynamo/mixed.yaml``), then ``dynamo analyze``
writes the report, which clusters the map beside CKA, Procrustes, weight distance and DSA and
averages models per computation. The experiment then reads, against the issue's targets:

- ARI(DYNAMO clusters, computation) ≥ 0.95 and ARI(DYNAMO clusters, architecture) ≤ 0.1,
  with every baseline's ARIs beside them (from ``report.json``);
- each copy within 5 % of the map's diameter of its original;
- the centroid network of each computation's members ≥ 95 % of their mean task metric,
  with the naive weight average beside it (from ``report.json``);
- members held out of the fit (seed 3 of every group, trained separately), placed with
  ``analysis.place``, nearer their own computation's centre than the other's for ≥ 90 %;
- θ-only fitting from 16 labelled trials of one sub-task works on this mixture population.

Usage::

    python experiments/map_uses.py [--out runs/experiments/map_uses] [--population DIR]

Writes ``experiments/results/map_uses.json`` (numbers, settings, machine) and keeps the
populations, the fit and the report under ``--out``.
"""

from __future__ import annotations

import argparse
import json
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
from dynamo_lightning.cli.demo import fit_run_settings  # noqa: E402
from dynamo_lightning.population import Population, to_torch  # noqa: E402

RESULTS = REPO / "experiments" / "results" / "map_uses.json"
POPULATION_CONFIG = REPO / "configs" / "population" / "mixed.yaml"
DYNAMO_CONFIG = REPO / "configs" / "dynamo" / "mixed.yaml"
COPY_OF = {"imported": "flipflop-gru-h32-s0", "permuted": "leaky_integrator-lstm-h32-s1",
           "rescaled": "flipflop-relu-h32-s2"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/experiments/map_uses")
    parser.add_argument("--population", default=None,
                        help="an already trained configs/population/mixed.yaml population")
    parser.add_argument("--epochs", type=int, default=30, help="DYNAMO epochs")
    parser.add_argument("--reuse-fit", action="store_true")
    parser.add_argument("--results", default=str(RESULTS))
    return parser.parse_args(argv)


def train_population(path: Path, seeds: list[int]) -> Path:
    """``configs/population/mixed.yaml`` with ``seeds``, written to ``path`` (reused if there)."""
    if (path / "manifest.json").is_file():
        print(f"reusing the population at {path}")
        return path
    from dynamo_lightning.cli.lightning_cli import population_main

    config = yaml.safe_load(POPULATION_CONFIG.read_text())
    root = path.parent
    config["model"]["seeds"] = seeds
    config["trainer"].update({"default_root_dir": str(root), "enable_progress_bar": False})
    config["population"]["path"] = str(path)
    population_main({"fit": config})
    return path


def with_copies(pop: Population, out: Path) -> Path:
    """``pop`` plus the imported, permuted and rescaled copies, saved under ``out``."""
    path = out / "fit_population"
    if (path / "manifest.json").is_file():
        return path
    source = pop[COPY_OF["imported"]]
    rnn, readout = to_torch(source)
    imported = Population.from_torch(
        {"imported-" + source.id: (rnn, readout)},
        metadata={"imported-" + source.id: {**source.metadata, "copy_of": source.id}})
    lstm = pop[COPY_OF["permuted"]]
    generator = torch.Generator().manual_seed(0)
    permuted = da.permuted_copy(lstm, torch.randperm(lstm.config["hidden_size"],
                                                     generator=generator),
                                "permuted-" + lstm.id)
    relu = pop[COPY_OF["rescaled"]]
    scales = torch.exp(torch.randn(relu.config["hidden_size"], generator=generator))
    rescaled = da.rescaled_copy(relu, scales, "rescaled-" + relu.id)
    Population([*pop, *imported, permuted, rescaled]).save(path)
    return path


def fit(population: Path, fit_dir: Path, epochs: int, reuse: bool) -> Path:
    ckpt = fit_dir / "checkpoints" / "last.ckpt"
    if reuse and ckpt.is_file():
        return ckpt
    from dynamo_lightning.cli.lightning_cli import dynamo_main

    config = yaml.safe_load(DYNAMO_CONFIG.read_text())
    config["data"]["population"] = str(population)
    config["data"]["cache_dir"] = str(fit_dir / "cache")
    config["trainer"].update({"max_epochs": epochs, "enable_progress_bar": False,
                              **fit_run_settings(fit_dir, max(1, epochs), annotate=False)})
    dynamo_main({"fit": config})
    return ckpt


def copy_distances(m: Any) -> dict[str, Any]:
    """Each copy's distance to its original, as a fraction of the map's diameter."""
    theta = m.embeddings()
    diameter = float(torch.cdist(theta, theta).max())
    index = {member_id: i for i, member_id in enumerate(m.member_ids)}
    out = {}
    for kind, original in COPY_OF.items():
        copy = index[f"{kind}-{original}"]
        distance = float((theta[copy] - theta[index[original]]).norm())
        out[kind] = {"original": original, "fraction_of_diameter": distance / diameter}
    return out


def few_shot_on_mixture(m: Any, n: int = 16, seed: int = 0) -> dict[str, Any]:
    """θ from ``n`` labelled flip-flop trials on the mixture population's map, scored on
    fresh flip-flop trials, beside the flip-flop members' own θ's scored the same way."""
    from dynamo_lightning import tasks

    task = tasks.get("flipflop", n_bits=3)
    x, y = task.sample(n, generator=torch.Generator().manual_seed(seed))
    theta = m.fit_embedding(x, targets=y, task="flipflop")
    xt, yt = task.sample(512, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        fitted = task.metric(m.meta_model_at(theta)(xt)[0], yt)
    return {"n": n, "task": "flipflop", "metric_name": task.metric_name, "metric": fitted,
            "theta": theta.tolist()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from dynamo_lightning.cli.analyze import run_analysis
    from dynamo_lightning.module import DynamoModule

    out = Path(args.out)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    pop_dir = Path(args.population) if args.population else train_population(
        out / "population_run" / "population", [0, 1, 2])
    heldout_dir = train_population(out / "heldout_run" / "population", [3])
    timings["populations"] = time.perf_counter() - started
    fit_pop = with_copies(Population.load(pop_dir), out)
    started = time.perf_counter()
    ckpt = fit(fit_pop, out / "fit", args.epochs, args.reuse_fit)
    timings["fit"] = time.perf_counter() - started
    started = time.perf_counter()
    report_dir = run_analysis(ckpt, out / "report", progress=False)
    timings["report"] = time.perf_counter() - started
    report = json.loads((report_dir / "report.json").read_text())
    m = DynamoModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
    started = time.perf_counter()
    placement = da.place(m, Population.load(heldout_dir))
    timings["place"] = time.perf_counter() - started
    return {"emulation": report["emulation"]["median"], "baselines": report["baselines"],
            "averaging": report["averaging"], "copies": copy_distances(m),
            "placement": placement.to_dict(), "few_shot_mixture": few_shot_on_mixture(m),
            "timings_s": timings, "report": str(report_dir / "report.html")}


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's acceptance numbers, read from ``result``."""
    methods = result["baselines"]["methods"]
    key = result["baselines"]["key"]
    ari = {name: {k: (entry.get("scores") or {}).get(k, {}).get("ari")
                  for k in (key, "architecture")} for name, entry in methods.items()}
    ratios = {str(g["group"]): g["ratio"] for g in result["averaging"]["groups"]}
    copies = {k: v["fraction_of_diameter"] for k, v in result["copies"].items()}
    return {"ari": ari, "centroid_ratio": ratios, "copies_fraction_of_diameter": copies,
            "placement_fraction_correct": result["placement"].get("fraction_correct"),
            "few_shot_mixture_metric": result["few_shot_mixture"]["metric"]}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    result = run(args)
    result["summary"] = summary(result)
    result["settings"] = {"epochs": args.epochs, "population_config": str(POPULATION_CONFIG.name),
                          "dynamo_config": str(DYNAMO_CONFIG.name)}
    result["machine"] = machine_info()
    Path(args.results).write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps(result["summary"], indent=1))
    print(f"results: {args.results}; report: {result['report']}")


if __name__ == "__main__":
    main()
