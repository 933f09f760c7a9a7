"""Acceptance experiment: does interpolating between members of different computation show
where the stable-point count changes?

Trains (if absent) a population that mixes two computations with the same input/output
sizes — 3-bit flip-flop and 3-channel integrator members, GRU and vanilla × 2 seeds each
(``configs/population/flipflop_integrator.yaml``) — fits DYNAMO on it
(``configs/dynamo/flipflop_integrator.yaml``; the members' tasks differ, so every member is
driven by a mixture of both tasks' inputs) and walks θ along two segments with
:func:`dynamo_lightning.analysis.interpolate`:

- flip-flop → integrator (different computations): a 3-bit flip-flop holds 2³ = 8 stable
  points at zero input, an integrator a continuum (line/plane attractor: slow points or few
  stable points), so the stable count should change somewhere along the way;
- flip-flop → flip-flop (same computation): the flip-flop metric should stay within 5 points
  of the endpoints' mean.

Per α it reports stable / saddle / unstable counts and the task metric (the mixture's
``mean_task_metric``, i.e. the mean of bit accuracy on flip-flop trials and R² on integrator
trials, plus each sub-task's metric on its own trials), and the bifurcation α's.
``interpolate`` has no ``slow_tol`` option, so slow points are never classified there; a
second search at the same θ's with ``find_fixed_points(..., slow_tol=...)`` adds the slow
counts (``--slow-tol``).

Usage::

    python experiments/mixed_computation.py [--epochs 30] [--out runs/experiments/mixed]

Writes the population to ``<out>/population``, the fit to ``<out>/fit`` and the numbers,
settings and machine to ``experiments/results/mixed_computation.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
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
from dynamo_lightning.analysis.fixed_points import (  # noqa: E402
    KINDS,
    find_fixed_points,
    meta_step_fn,
    sample_inits,
)
from dynamo_lightning.demo import fit_run_settings  # noqa: E402
from dynamo_lightning.population import Population  # noqa: E402

RESULTS = REPO / "experiments" / "results" / "mixed_computation.json"
POPULATION_CONFIG = REPO / "configs" / "population" / "flipflop_integrator.yaml"
DYNAMO_CONFIG = REPO / "configs" / "dynamo" / "flipflop_integrator.yaml"
SAME_TASK_TOLERANCE = 0.05


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/experiments/mixed",
                        help="where the population, the fit and the report go")
    parser.add_argument("--epochs", type=int, default=30, help="DYNAMO epochs (default 30)")
    parser.add_argument("--population-steps", type=int, default=None,
                        help="override the population config's max_steps (default: keep it)")
    parser.add_argument("--reuse-fit", action="store_true",
                        help="load <out>/fit/checkpoints/last.ckpt instead of fitting again")
    parser.add_argument("--steps", type=int, default=11, help="points per segment")
    parser.add_argument("--inits", type=int, default=128, help="initial states per θ")
    parser.add_argument("--max-iters", type=int, default=3000, help="fixed-point iterations")
    parser.add_argument("--slow-tol", type=float, default=1e-4,
                        help="q threshold of the supplementary slow-point search")
    parser.add_argument("--trials", type=int, default=256, help="task trials per θ")
    parser.add_argument("--results", default=str(RESULTS), help="results JSON path")
    return parser.parse_args(argv)


def population_config(out: Path, max_steps: int | None = None) -> dict[str, Any]:
    """``configs/population/flipflop_integrator.yaml`` with this run's directories."""
    config = yaml.safe_load(POPULATION_CONFIG.read_text())
    if max_steps is not None:
        config["trainer"]["max_steps"] = max_steps
    config["trainer"].update({"default_root_dir": str(out), "enable_progress_bar": False})
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(out)
    config["population"]["path"] = str(out / "population")
    return config


def dynamo_config(population_dir: Path, fit_dir: Path, epochs: int) -> dict[str, Any]:
    """``configs/dynamo/flipflop_integrator.yaml`` with this run's paths and epochs."""
    config = yaml.safe_load(DYNAMO_CONFIG.read_text())
    config["data"]["population"] = str(population_dir)
    config["trainer"].update({"max_epochs": epochs, "enable_progress_bar": False,
                              **fit_run_settings(fit_dir, max(1, epochs), annotate=True)})
    return config


def train_population(out: Path, max_steps: int | None) -> Path:
    path = out / "population"
    if (path / "manifest.json").is_file():
        print(f"reusing the population at {path}")
        return path
    from dynamo_lightning.cli import population_main

    population_main({"fit": population_config(out, max_steps)})
    return path


def fit(config: dict[str, Any], ckpt: Path, reuse: bool) -> Any:
    if reuse and ckpt.is_file():
        from dynamo_lightning.module import DynamoModule

        print(f"reusing the fit {ckpt}")
        return DynamoModule.load_from_checkpoint(ckpt, map_location="cpu")
    from dynamo_lightning.cli import dynamo_main

    return dynamo_main({"fit": copy.deepcopy(config)}).model


def sub_task_metrics(m: Any, thetas: torch.Tensor, trials: int, seed: int) -> dict[str, list]:
    """Each sub-task's metric on its own trials at every θ (the mixture reports their mean)."""
    task = m.task
    subtasks = getattr(task, "tasks", [task])
    meta = m.meta
    param = next(meta.parameters())
    result: dict[str, list] = {}
    was_training = meta.training
    meta.eval()
    try:
        for sub in subtasks:
            x, y = sub.sample(trials, generator=torch.Generator().manual_seed(seed), split="test")
            values = []
            with torch.no_grad():
                for theta in thetas:
                    out, _ = meta(x.to(param), theta.to(param).expand(trials, -1))
                    values.append(float(sub.metric(out.cpu(), y)))
            result[f"{sub.name}:{sub.metric_name}"] = values
    finally:
        meta.train(was_training)
    return result


def slow_counts(m: Any, thetas: torch.Tensor, inits: int, max_iters: int, slow_tol: float,
                trials: int, seed: int) -> dict[str, list[int]]:
    """Counts by kind from a search like ``interpolate``'s but with ``slow_tol`` set."""
    meta = m.meta
    param = next(meta.parameters())
    task = m.task
    generator = torch.Generator().manual_seed(seed)
    with_ids = getattr(task, "sample_with_ids", None)  # a mixture task, as in interpolate
    x = (with_ids(trials, generator=generator, split="test")[0] if callable(with_ids)
         else task.sample(trials, generator=generator, split="test")[0])
    was_training = meta.training
    meta.eval()
    try:
        with torch.no_grad():
            states = []
            for theta in thetas.to(param):
                _, hidden = meta(x.to(param), theta.expand(trials, -1))
                states.append(hidden)
        init = torch.cat([sample_inits(s, inits, 0.1, generator) for s in states])
        step = meta_step_fn(meta, thetas.to(param), inits)
        found = find_fixed_points(step, torch.zeros(meta.input_size).to(param), init, 1e-8,
                                  groups=step.groups, max_iters=max_iters, slow_tol=slow_tol,
                                  reference=states)
    finally:
        meta.train(was_training)
    kinds = torch.tensor([KINDS.index(k) for k in found.kind], dtype=torch.long)
    group = found.group.cpu()
    return {k: torch.bincount(group[kinds == n], minlength=len(thetas)).tolist()
            for n, k in enumerate(KINDS)}


def segment(m: Any, i: str, j: str, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    result = da.interpolate(m, i, j, steps=args.steps, inits_per_theta=args.inits,
                            max_iters=args.max_iters, trials=args.trials)
    seconds = time.perf_counter() - started
    out: dict[str, Any] = {"from": i, "to": j, "alphas": result.alphas.tolist(),
                           "metric_name": result.metric_name,
                           "task_metric": [None if math.isnan(v) else v
                                           for v in result.task_metric.tolist()],
                           "counts": {k: v.tolist() for k, v in result.counts.items()},
                           "bifurcations": result.bifurcations,
                           "bifurcations_all_kinds": da.bifurcation_alphas(
                               result.alphas, result.counts, kinds=None),
                           "interpolate_seconds": round(seconds, 1)}
    out["sub_task_metrics"] = sub_task_metrics(m, result.thetas, args.trials, seed=0)
    started = time.perf_counter()
    slow = slow_counts(m, result.thetas, args.inits, args.max_iters, args.slow_tol,
                       args.trials, seed=0)
    out["with_slow_tol"] = {"slow_tol": args.slow_tol, "counts": slow,
                            "bifurcations": da.bifurcation_alphas(result.alphas, slow),
                            "seconds": round(time.perf_counter() - started, 1)}
    return out


def print_segment(name: str, seg: dict[str, Any]) -> None:
    print(f"\n{name}: {seg['from']} -> {seg['to']}  ({seg['interpolate_seconds']} s)")
    subs = list(seg["sub_task_metrics"])
    head = "  ".join(f"{s.split(':')[0][:10]:>10}" for s in subs)
    print(f"{'alpha':>5} {'stable':>6} {'saddle':>6} {'unst':>5} | {'+slow_tol: st':>13} "
          f"{'sad':>4} {'slow':>4} | {'mean_metric':>11} {head}")
    slow = seg["with_slow_tol"]["counts"]
    for s, a in enumerate(seg["alphas"]):
        c = seg["counts"]
        metric = seg["task_metric"][s]
        subs_s = "  ".join(f"{seg['sub_task_metrics'][k][s]:10.3f}" for k in subs)
        print(f"{a:5.2f} {c['stable'][s]:6d} {c['saddle'][s]:6d} {c['unstable'][s]:5d} | "
              f"{slow['stable'][s]:13d} {slow['saddle'][s]:4d} {slow['slow'][s]:4d} | "
              f"{(math.nan if metric is None else metric):11.3f} {subs_s}")
    print(f"bifurcations (stable count): {seg['bifurcations']}; "
          f"with slow_tol: {seg['with_slow_tol']['bifurcations']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    started = time.perf_counter()
    population_dir = train_population(out, args.population_steps)
    population_seconds = time.perf_counter() - started
    population = Population.load(population_dir)
    by_task: dict[str, list[str]] = {}
    for member in population:
        by_task.setdefault(member.metadata["task"], []).append(member.id)
    own = {member.id: member.metadata.get("task_metric") for member in population}
    print("members:", json.dumps(own, indent=1))
    flipflops, integrators = by_task["flipflop"], by_task["integrator"]
    config = dynamo_config(population_dir, out / "fit", args.epochs)
    started = time.perf_counter()
    model = fit(config, out / "fit" / "checkpoints" / "last.ckpt", args.reuse_fit)
    fit_seconds = time.perf_counter() - started
    ids = [str(k) for k in model.member_ids]
    # different computations: the first flip-flop member and an integrator member of the
    # same architecture (so the change is the computation, not the cell type)
    ff = flipflops[0]
    arch = population[ff].architecture
    intg = next((k for k in integrators if population[k].architecture == arch), integrators[0])
    ff2 = next((k for k in flipflops[1:] if population[k].architecture == arch), flipflops[1])
    mixed = segment(model, ff, intg, args)
    same = segment(model, ff, ff2, args)
    print_segment("different computations", mixed)
    print_segment("same computation", same)
    key = next(k for k in same["sub_task_metrics"] if k.startswith("flipflop"))
    values = same["sub_task_metrics"][key]
    mean_ends = (values[0] + values[-1]) / 2
    worst = max(abs(v - mean_ends) for v in values)
    stable = mixed["counts"]["stable"]
    checks = {
        "flipflop_end_has_8_stable": {"value": stable[0], "passed": stable[0] == 8},
        "stable_count_changes": {"value": mixed["bifurcations"],
                                 "passed": bool(mixed["bifurcations"])},
        "same_task_within_5_points": {"value": worst, "mean_of_endpoints": mean_ends,
                                      "target": SAME_TASK_TOLERANCE,
                                      "passed": worst <= SAME_TASK_TOLERANCE},
    }
    print("\nChecks")
    for name, check in checks.items():
        print(f"  {name:<30} {check['value']}  {'PASS' if check['passed'] else 'FAIL'}")
    result = {"name": "mixed_computation", "machine": machine_info(),
              "settings": {"out": str(out), "epochs": args.epochs, "steps": args.steps,
                           "inits_per_theta": args.inits, "max_iters": args.max_iters,
                           "trials": args.trials, "slow_tol": args.slow_tol,
                           "population_config": population_config(out, args.population_steps),
                           "dynamo_config": config},
              "population_seconds": round(population_seconds, 1),
              "fit_seconds": round(fit_seconds, 1),
              "members": [{"id": k, "task": population[k].metadata["task"],
                           "architecture": population[k].architecture,
                           "task_metric": own[k],
                           "theta": model.embeddings()[ids.index(k)].tolist()} for k in ids],
              "different_computation": mixed, "same_computation": same, "checks": checks}
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
