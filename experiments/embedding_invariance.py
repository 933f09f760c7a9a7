"""Acceptance experiment: is the DYNAMO map blind to reparameterisation?

Adds exact reparameterised copies to a trained population — a unit-permuted copy of one
member of each architecture and an orthogonally rotated copy of one vanilla member — fits
DYNAMO with the demo's settings (``DEMO_DYNAMO``), tests it, and reports

- emulation: median and min per-member hidden R² and output agreement (test split), and the
  fraction of members whose meta-model task metric is within 0.02 of their own;
- invariance: for each copy, ‖θ_copy − θ_original‖ relative to the spread of the ORIGINAL
  members' θ's (diameter = max pairwise distance; also the RMS distance from their centroid),
  and the copy's nearest neighbour on the map.

Usage::

    python experiments/embedding_invariance.py [--population DIR] [--epochs 30] [--out DIR]

Writes the augmented population and the fit under ``--out`` and the numbers, settings and
machine to ``experiments/results/embedding_invariance.json``.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ is a plain folder, not an installed package

from benchmarks.common import machine_info  # noqa: E402
from dynamo_lightning import analysis as da  # noqa: E402
from dynamo_lightning.analysis.reparameterize import PERMUTABLE_GATES  # noqa: E402
from dynamo_lightning.cli.demo import DEMO_DYNAMO, fit_run_settings  # noqa: E402
from dynamo_lightning.population import Population  # noqa: E402

RESULTS = REPO / "experiments" / "results" / "embedding_invariance.json"
TARGETS = {"median_hidden_r2": 0.9, "median_output_agreement": 0.95,
           "fraction_within_2_points": 0.9, "max_copy_distance_over_diameter": 0.05}
TRAIN_HINT = "dynamo population fit --config configs/population/flipflop.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--population", default="runs/population/flipflop/population",
                        help="trained population directory (default: the flip-flop one)")
    parser.add_argument("--epochs", type=int, default=30, help="DYNAMO epochs (default 30)")
    parser.add_argument("--out", default="runs/experiments/invariance",
                        help="where the augmented population and the fit go")
    parser.add_argument("--seed", type=int, default=0, help="seed of the permutations/rotation")
    parser.add_argument("--results", default=str(RESULTS), help="results JSON path")
    return parser.parse_args(argv)


def add_copies(population: Population, seed: int) -> tuple[Population, list[dict[str, str]]]:
    """The population plus a permuted copy of the first member of each architecture and a
    rotated copy of a vanilla member (the second one, so it is independent of the first)."""
    generator = torch.Generator().manual_seed(seed)
    firsts: dict[str, str] = {}
    for member in population:
        firsts.setdefault(member.architecture, member.id)
    members, specs = [], []
    for architecture, member_id in firsts.items():
        if architecture not in PERMUTABLE_GATES:
            continue
        member = population[member_id]
        perm = torch.randperm(member.config["hidden_size"], generator=generator)
        members.append(da.permuted_copy(member, perm, f"{member_id}-perm"))
        specs.append({"id": members[-1].id, "original": member_id, "transform": "permutation"})
    vanilla = [m for m in population if m.architecture == "vanilla"]
    if vanilla:
        member = vanilla[min(1, len(vanilla) - 1)]
        q = da.random_orthogonal(member.config["hidden_size"], generator)
        members.append(da.rotated_copy(member, q, f"{member.id}-rot"))
        specs.append({"id": members[-1].id, "original": member.id, "transform": "rotation"})
    return Population([*population, *members]), specs


def dynamo_config(population_dir: Path, fit_dir: Path, epochs: int) -> dict[str, Any]:
    """``DEMO_DYNAMO`` with this run's population, directories and epochs."""
    config = copy.deepcopy(DEMO_DYNAMO)
    config["data"]["population"] = str(population_dir)
    config["trainer"].update({"max_epochs": epochs, "enable_progress_bar": False,
                              **fit_run_settings(fit_dir, max(1, epochs), annotate=True)})
    return config


def fit_and_test(config: dict[str, Any]) -> Any:
    """Fit DYNAMO through the CLI, then run the test split; returns the tested module."""
    from dynamo_lightning.cli.lightning_cli import dynamo_main

    cli = dynamo_main({"fit": config})
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    return cli.model


def emulation(model: Any) -> dict[str, Any]:
    """Medians/minima of the per-member test scores and the task-metric agreement."""
    scores = model.member_scores

    def finite(key: str) -> list[float]:
        return [v for v in scores.get(key, []) if not math.isnan(v)]

    result: dict[str, Any] = {}
    for key in ("hidden_r2", "output_agreement"):
        values = finite(key)
        result[f"median_{key}"] = statistics.median(values) if values else math.nan
        result[f"min_{key}"] = min(values) if values else math.nan
    pairs = [(a, b) for a, b in zip(scores.get("task_metric_meta", []),
                                    scores.get("task_metric_member", []), strict=True)
             if not (math.isnan(a) or math.isnan(b))]
    gaps = [abs(a - b) for a, b in pairs]
    result["fraction_within_2_points"] = (sum(g <= 0.02 for g in gaps) / len(gaps)
                                          if gaps else math.nan)
    result["max_task_metric_gap"] = max(gaps) if gaps else math.nan
    return result


def invariance(model: Any, copies: list[dict[str, str]]) -> dict[str, Any]:
    """Distances of each copy to its original, relative to the originals' spread."""
    ids = model.member_ids
    theta = model.embeddings().double()
    copy_ids = {c["id"] for c in copies}
    originals = theta[[i for i, m in enumerate(ids) if m not in copy_ids]]
    distances = torch.cdist(theta, theta)
    original_distances = torch.cdist(originals, originals)
    diameter = float(original_distances.max())
    rms = float((originals - originals.mean(0)).pow(2).sum(-1).mean().sqrt())
    nn_original = (original_distances + torch.diag(torch.full((len(originals),), math.inf)))
    rows = []
    for c in copies:
        i, j = ids.index(c["id"]), ids.index(c["original"])
        others = distances[i].clone()
        others[i] = math.inf
        nearest = int(others.argmin())
        distance = float(distances[i, j])
        rows.append({**c, "distance": distance, "over_diameter": distance / diameter,
                     "over_rms": distance / rms, "nearest": ids[nearest],
                     "nearest_distance": float(others[nearest]),
                     "nearest_is_original": nearest == j})
    return {"diameter": diameter, "rms_from_centroid": rms,
            "median_nn_distance_originals": float(nn_original.min(1).values.median()),
            "copies": rows,
            "max_copy_distance_over_diameter": max((r["over_diameter"] for r in rows),
                                                   default=math.nan)}


def verdicts(numbers: dict[str, float]) -> dict[str, dict[str, Any]]:
    return {key: {"value": numbers[key], "target": target,
                  "passed": bool(numbers[key] <= target if key.startswith("max_copy")
                                 else numbers[key] >= target)}
            for key, target in TARGETS.items()}


def print_table(emu: dict[str, Any], inv: dict[str, Any], checks: dict[str, Any]) -> None:
    print("\nEmulation (test split)")
    for key in ("median_hidden_r2", "min_hidden_r2", "median_output_agreement",
                "min_output_agreement", "fraction_within_2_points", "max_task_metric_gap"):
        print(f"  {key:<28} {emu[key]:.4f}")
    print(f"\nMap spread of the original members: diameter {inv['diameter']:.4f}, "
          f"RMS from centroid {inv['rms_from_centroid']:.4f}, "
          f"median nearest-neighbour distance {inv['median_nn_distance_originals']:.4f}")
    print(f"{'copy':<32} {'transform':<12} {'dist':>7} {'/diam':>7} {'/rms':>7}  nearest")
    for r in inv["copies"]:
        mark = "(original)" if r["nearest_is_original"] else ""
        print(f"{r['id']:<32} {r['transform']:<12} {r['distance']:7.4f} "
              f"{r['over_diameter']:7.3f} {r['over_rms']:7.3f}  {r['nearest']} {mark}")
    print("\nAcceptance targets")
    for key, check in checks.items():
        sign = "<=" if key.startswith("max_copy") else ">="
        print(f"  {key:<34} {check['value']:.4f} {sign} {check['target']:<5} "
              f"{'PASS' if check['passed'] else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    population_dir = Path(args.population)
    if not (population_dir / "manifest.json").is_file():
        print(f"no population at {population_dir}; train it first with:\n  {TRAIN_HINT}",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    augmented, copies = add_copies(Population.load(population_dir), args.seed)
    augmented_dir = augmented.save(out / "population", created_by="embedding_invariance.py")
    config = dynamo_config(augmented_dir, out / "fit", args.epochs)
    started = time.perf_counter()
    model = fit_and_test(copy.deepcopy(config))  # the CLI turns parts of it into Namespaces
    seconds = time.perf_counter() - started
    emu, inv = emulation(model), invariance(model, copies)
    checks = verdicts({**emu, **inv})
    print_table(emu, inv, checks)
    scores = model.member_scores
    members = [{"id": m, "theta": model.embeddings()[i].tolist(),
                **{k: v[i] for k, v in scores.items()}} for i, m in enumerate(model.member_ids)]
    result = {"name": "embedding_invariance", "machine": machine_info(),
              "settings": {"population": str(population_dir), "epochs": args.epochs,
                           "seed": args.seed, "out": str(out), "dynamo_config": config},
              "fit_and_test_seconds": round(seconds, 1), "emulation": emu, "invariance": inv,
              "targets": checks, "members": members}
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {path} (fit + test {seconds / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
