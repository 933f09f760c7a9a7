"""Acceptance experiment: can θ alone, fitted to a few labelled trials, learn a held-out
variant of a task family better than a network trained from scratch on the same trials?

Trains (if absent) a family of 3-channel leaky integrators — leaks 0, 0.05, 0.2 and 0.3 per
step, GRU and vanilla × 3 seeds (``configs/population/integrator_family.yaml``) — and fits
DYNAMO on it (``configs/dynamo/integrator_family.yaml``; the members' task configs differ, so
the fit's input task is a mixture of the four variants). The held-out variant is leak 0.1:
no member was trained on it. For n labelled trials of it,
:func:`dynamo_lightning.analysis.few_shot.few_shot_curve` fits θ alone
(``fit_embedding(x, targets=y, task=held_out)``, which a mixture module needs ``task=`` for)
and trains a GRU of the members' width from scratch on the same trials, and scores both on
fresh test trials (R²). For reference it also scores every member as it is on the held-out
variant, and tabulates model averaging per leak (:func:`~dynamo_lightning.analysis.averaging.
averaging_table`).

Acceptance: at every n ≤ 16, the θ-only fit's mean R² is above the scratch network's.

Usage::

    python experiments/few_shot.py [--epochs 30] [--out runs/experiments/few_shot]

Writes the population to ``<out>/population``, the fit to ``<out>/fit``, and the numbers,
settings and machine to ``experiments/results/few_shot.json`` (figure: ``few_shot.png``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmarks/ is a plain folder, not an installed package

from benchmarks.common import machine_info  # noqa: E402
from dynamo_lightning import tasks  # noqa: E402
from dynamo_lightning.analysis.averaging import averaging_table  # noqa: E402
from dynamo_lightning.analysis.few_shot import few_shot_curve, few_shot_figure  # noqa: E402
from dynamo_lightning.cli.demo import fit_run_settings  # noqa: E402
from dynamo_lightning.population import Population  # noqa: E402

RESULTS = REPO / "experiments" / "results"
CONFIGS = REPO / "configs"
#: Per task family: its held-out variant (a task spec no member was trained on) and the
#: architecture and width of the network trained from scratch (the members').
FAMILIES: dict[str, dict[str, Any]] = {
    "integrator": {"held_out": {"name": "integrator", "config": {"n_channels": 3, "leak": 0.1}},
                   "scratch": ("gru", 32)},
    "sine": {"held_out": {"name": "sine", "config": {"n_frequencies": 8, "min_freq": 0.02,
                                                     "max_freq": 0.09}},
             "scratch": ("gru", 64)},
}
ACCEPTANCE_MAX_N = 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), default="sine",
                        help="configs/{population,dynamo}/<family>_family.yaml")
    parser.add_argument("--out", default=None,
                        help="where the population and the fit go (default "
                             "runs/experiments/few_shot_<family>)")
    parser.add_argument("--epochs", type=int, default=30, help="DYNAMO epochs (default 30)")
    parser.add_argument("--population-steps", type=int, default=None,
                        help="override the population config's max_steps (default: keep it)")
    parser.add_argument("--reuse-fit", action="store_true",
                        help="load <out>/fit/checkpoints/last.ckpt instead of fitting again")
    parser.add_argument("--ns", type=int, nargs="+", default=[4, 8, 16, 64, 256],
                        help="numbers of labelled trials")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="repeats")
    parser.add_argument("--test-trials", type=int, default=512, help="fresh test trials")
    parser.add_argument("--theta-steps", type=int, default=300, help="Adam steps of the θ fit")
    parser.add_argument("--scratch-steps", type=int, default=500,
                        help="full-batch Adam steps of the from-scratch GRU")
    parser.add_argument("--results", default=None,
                        help="results JSON path (default experiments/results/few_shot_<family>"
                             ".json)")
    return parser.parse_args(argv)


def configs(out: Path, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The population and DYNAMO configs with this run's directories, steps and epochs."""
    name = f"{args.family}_family.yaml"
    population = yaml.safe_load((CONFIGS / "population" / name).read_text())
    if args.population_steps is not None:
        population["trainer"]["max_steps"] = args.population_steps
    population["trainer"].update({"default_root_dir": str(out), "enable_progress_bar": False})
    population["population"]["path"] = str(out / "population")
    dynamo = yaml.safe_load((CONFIGS / "dynamo" / name).read_text())
    dynamo["data"]["population"] = str(out / "population")
    dynamo["trainer"].update({"max_epochs": args.epochs, "enable_progress_bar": False,
                              **fit_run_settings(out / "fit", max(1, args.epochs))})
    return population, dynamo


def train_population(config: dict[str, Any]) -> Path:
    """Train the family unless its population directory already holds one."""
    path = Path(config["population"]["path"])
    if (path / "manifest.json").is_file():
        print(f"reusing the population at {path}")
        return path
    from dynamo_lightning.cli.lightning_cli import population_main

    population_main({"fit": copy.deepcopy(config)})
    return path


def fit(config: dict[str, Any], ckpt: Path, reuse: bool) -> Any:
    """The DYNAMO fit (or the saved one with ``--reuse-fit``), on the CPU in eval mode."""
    if reuse and ckpt.is_file():
        from dynamo_lightning.module import DynamoModule

        print(f"reusing the fit {ckpt}")
        return DynamoModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
    from dynamo_lightning.cli.lightning_cli import dynamo_main

    return dynamo_main({"fit": copy.deepcopy(config)}).model.cpu().eval()


@torch.no_grad()
def members_on(population: Population, task: Any, trials: int) -> dict[str, float]:
    """Every member, as it is, on the held-out variant's test trials (R²)."""
    x, y = task.sample(trials, generator=torch.Generator().manual_seed(0), split="test")
    outputs = population.trajectories(x).outputs
    return {k: float(task.metric(out.cpu(), y)) for k, out in zip(population.ids, outputs,
                                                                    strict=True)}


def print_curve(curve: dict[str, Any], members: dict[str, float]) -> None:
    best = max(members, key=members.__getitem__)
    print(f"\nheld-out {curve['task']}: {curve['metric_name']} (mean ± std over seeds "
          f"{curve['seeds']}); best member as it is: {best} {members[best]:.3f}")
    print(f"{'n':>5} | {'θ only':>15} | {curve['architecture'] + ' from scratch':>17}")
    for i, n in enumerate(curve["ns"]):
        t, s = curve["theta"], curve["scratch"]
        print(f"{n:5d} | {_fmt(t['mean'][i])} ± {_fmt(t['std'][i])} | "
              f"  {_fmt(s['mean'][i])} ± {_fmt(s['std'][i])}")


def _fmt(value: float | None) -> str:
    return "    nan" if value is None else f"{value:7.3f}"


def acceptance(curve: dict[str, Any]) -> dict[str, Any]:
    """θ-only beats scratch (mean over seeds) at every n ≤ ``ACCEPTANCE_MAX_N``."""
    small = [i for i, n in enumerate(curve["ns"]) if n <= ACCEPTANCE_MAX_N]
    theta, scratch = curve["theta"]["mean"], curve["scratch"]["mean"]
    margins = {curve["ns"][i]: None if theta[i] is None or scratch[i] is None
               else theta[i] - scratch[i] for i in small}
    return {"theta_minus_scratch": margins,
            "passed": bool(margins) and all(v is not None and v > 0 for v in margins.values())}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    family = FAMILIES[args.family]
    out = Path(args.out or f"runs/experiments/few_shot_{args.family}")
    population_config, dynamo_config = configs(out, args)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    population = Population.load(train_population(population_config))
    seconds["population"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    model = fit(dynamo_config, out / "fit" / "checkpoints" / "last.ckpt", args.reuse_fit)
    seconds["fit"] = round(time.perf_counter() - started, 1)
    held_out = tasks.get(family["held_out"]["name"], **family["held_out"]["config"])
    members = members_on(population, held_out, args.test_trials)
    started = time.perf_counter()
    architecture, width = family["scratch"]
    curve = few_shot_curve(model, held_out, architecture, width, ns=args.ns,
                           test_trials=args.test_trials, seeds=args.seeds,
                           theta_steps=args.theta_steps, scratch_steps=args.scratch_steps)
    seconds["few_shot_curve"] = round(time.perf_counter() - started, 1)
    averaging = averaging_table(model, population, key="task_label", trials=args.test_trials)
    print_curve(curve, members)
    print("\nmodel averaging per variant (members' mean / centroid / weight average):")
    for row in averaging:
        naive = ", ".join(f"{k} {_fmt(v).strip()}" for k, v in row["weight_average"].items())
        print(f"  {row['group']:>8}: {_fmt(row['members_mean'])} / {_fmt(row['centroid'])} / "
              f"{naive}")
    check = acceptance(curve)
    print(f"\nθ-only beats scratch at every n ≤ {ACCEPTANCE_MAX_N}: "
          f"{'PASS' if check['passed'] else 'FAIL'} {check['theta_minus_scratch']}")
    results = Path(args.results or RESULTS / f"few_shot_{args.family}.json")
    results.parent.mkdir(parents=True, exist_ok=True)
    fig = few_shot_figure(curve)
    fig.savefig(results.with_suffix(".png"), dpi=90)
    plt.close(fig)
    settings = {**vars(args), "held_out": family["held_out"],
                "population_config": population_config, "dynamo_config": dynamo_config}
    results.write_text(json.dumps({
        "name": f"few_shot_{args.family}", "machine": machine_info(), "settings": settings,
        "input_task": model.task.name, "seconds": seconds, "members_on_held_out": members,
        "curve": curve, "averaging": averaging, "acceptance": check,
        "figure": results.with_suffix(".png").name}, indent=2))
    print(f"wrote {results}")
    return 0 if check["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
