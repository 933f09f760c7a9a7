"""Time from a population to a clustering: DYNAMO's map against DSA and CKA, N = 16 ... 128.

    python benchmarks/similarity.py                             # the full sweep (long on a CPU)
    python benchmarks/similarity.py --sizes 8 16 --epochs 1 --tag smoke   # a quick look

Every case starts from a saved population of N members and ends with cluster labels:

- ``dynamo``: one ``dynamo fit`` of the demo's meta-model settings (``DEMO_DYNAMO``: meta
  GRU of 64 units, θ ∈ R², its trial counts and batch sizes) for ``--epochs`` epochs
  (default 30, the demo's), trajectory caching included (a fresh cache per run), then
  agglomerative clustering of the embeddings θ. It grows with N as the epochs do (one
  epoch visits every member's trials).
- ``cka``: the members run on ``--trials`` flip-flop trials of ``--steps`` steps, 1 − linear
  CKA of every pair, agglomerative clustering of that dissimilarity.
- ``dsa_wasserstein``: the same trajectories, one DMD per member, then the Wasserstein
  distance between DMD eigenvalues for every pair (``dsa-metric``; n_delays 8, rank 16), and
  the same clustering.
- ``dsa_angular``: DSA's angular score (the paper's metric: an optimisation over orthogonal
  similarity transforms, 1,500 iterations per pair, the package default) costs seconds per
  pair, far too slow for the sweep; it is timed on the first ``--angular-members`` members
  of the smallest population only, and recorded as seconds per pair. Rows
  ``dsa_angular_projected`` multiply that by each N's pair count: an estimate, not a
  measurement, and labelled so.

Populations: N untrained members (gru, vanilla, lstm, ugrnn in turn, one seed each, hidden
64, 3-bit flip-flop inputs). Untrained weights change none of these costs (no method's
work depends on what the weights learned), so the populations are built in a second
instead of trained for an hour; what is measured is time, not map quality. Each case is
timed once (a fit is long), all cases in one run on one machine. ``ratios`` holds each
baseline's time over DYNAMO's per N; rows ``scaling exponent`` hold the slope of log time
against log N per method (2 for a cost that grows with the pairs, 1 for one that grows with
the members). A quick look (``--sizes 8 16 --epochs 1``) gives no trustworthy exponent:
fixed costs dominate at small N.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

from common import finish, row  # noqa: E402

from dynamo_lightning import tasks  # noqa: E402
from dynamo_lightning.analysis.clustering import cluster  # noqa: E402
from dynamo_lightning.analysis.similarity import similarity  # noqa: E402
from dynamo_lightning.cli.demo import DEMO_DYNAMO  # noqa: E402
from dynamo_lightning.cli.lightning_cli import dynamo_main  # noqa: E402
from dynamo_lightning.population import Population, architectures  # noqa: E402

ARCHITECTURES = ("gru", "vanilla", "lstm", "ugrnn")
HIDDEN = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--epochs", type=int, default=30, help="DYNAMO epochs (demo: 30)")
    parser.add_argument("--trials", type=int, default=64, help="trials per baseline member")
    parser.add_argument("--steps", type=int, default=64, help="time steps per trial")
    parser.add_argument("--angular-members", type=int, default=4)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--tag", default="", help="results file suffix")
    parser.add_argument("--out", default="runs/benchmarks/similarity")
    args = parser.parse_args()
    out = Path(args.out)
    task = tasks.get("flipflop", n_bits=3, seq_len=args.steps)
    x = task.sample(args.trials, generator=torch.Generator().manual_seed(0))[0].float()
    rows, times = [], {}
    warm_up(build_population(2, out / "population_warmup"), x)
    for n in sorted(args.sizes):
        pop_dir = build_population(n, out / f"population_{n}")
        pop = Population.load(pop_dir, device=args.device)
        truth = [m.architecture for m in pop]
        times[("dynamo", n)] = time_dynamo(pop_dir, out / f"fit_{n}", args, len(set(truth)))
        for case, method, options in (("cka", "cka", {}),
                                      ("dsa_wasserstein", "dsa", {"score_method": "wasserstein"})):
            times[(case, n)] = time_pairwise(pop, x, method, options, len(set(truth)))
        for case in ("dynamo", "cka", "dsa_wasserstein"):
            rows.append(row(f"{case} N={n}", "seconds", times[(case, n)], "s"))
        print(f"N={n}: " + ", ".join(f"{c} {times[(c, n)]:.2f} s"
                                      for c in ("dynamo", "cka", "dsa_wasserstein")), flush=True)
    rows += angular_rows(out, x, sorted(args.sizes), args.angular_members)
    rows += exponent_rows(times, sorted(args.sizes))
    name = "similarity" + (f"_{args.tag}" if args.tag else "")
    finish(name, args.device, rows, ratios(times, sorted(args.sizes)))


def warm_up(pop_dir: Path, x: torch.Tensor) -> None:
    """One untimed pass of each pairwise method on 2 members: first-call costs (lazy
    imports, allocator growth) must not land on the smallest N."""
    pop = Population.load(pop_dir)
    for method in ("cka", "dsa"):
        similarity(pop, x, method)


def build_population(n: int, directory: Path) -> Path:
    """N untrained flip-flop members, architectures in turn, one seed each; saved."""
    parts = []
    for a, name in enumerate(ARCHITECTURES):
        seeds = list(range(a, n, len(ARCHITECTURES)))
        if not seeds:
            continue
        stack = architectures.build(name, num_members=len(seeds), seeds=seeds, input_size=3,
                                    output_size=3, hidden_size=HIDDEN)
        meta = [{"architecture": name, "task": "flipflop", "task_config": {"n_bits": 3},
                 "seed": s, "hidden_size": HIDDEN} for s in seeds]
        parts.append(Population.from_stack(name, stack, [f"{name}-s{s}" for s in seeds], meta))
    if directory.exists():
        shutil.rmtree(directory)
    return Population.concat(parts).save(directory, created_by="benchmarks/similarity.py")


def time_dynamo(pop_dir: Path, run_dir: Path, args: argparse.Namespace, k: int) -> float:
    """Seconds of a fresh ``dynamo fit`` (caching included) plus clustering its θ's."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    config = copy.deepcopy(DEMO_DYNAMO)
    config["data"].update({"population": str(pop_dir), "cache_dir": str(run_dir / "cache")})
    config["trainer"].update({
        "max_epochs": args.epochs, "logger": False, "enable_checkpointing": False,
        "enable_progress_bar": False, "enable_model_summary": False, "devices": 1,
        "accelerator": "gpu" if args.device == "cuda" else "cpu",
        "default_root_dir": str(run_dir)})
    started = time.perf_counter()
    cli = dynamo_main({"fit": config})
    cluster(cli.model.embeddings(), k)
    return time.perf_counter() - started


def time_pairwise(pop: Population, x: torch.Tensor, method: str, options: dict,
                  k: int) -> float:
    """Seconds of trajectories + every pair + clustering the dissimilarity."""
    started = time.perf_counter()
    d = similarity(pop, x, method, **options)
    cluster(d, k, precomputed=True)
    return time.perf_counter() - started


def angular_rows(out: Path, x: torch.Tensor, sizes: list[int], members: int) -> list[dict]:
    """DSA angular on the first ``members`` members of the smallest population: seconds
    per pair measured, and projected to every N (labelled as a projection)."""
    pop = Population.load(out / f"population_{sizes[0]}")[:members]
    pairs = len(pop) * (len(pop) - 1) // 2
    started = time.perf_counter()
    similarity(pop, x, "dsa", score_method="angular", iterations=1500)
    per_pair = (time.perf_counter() - started) / max(1, pairs)
    rows = [row(f"dsa_angular {len(pop)} members", "seconds_per_pair", per_pair, "s")]
    rows += [row(f"dsa_angular_projected N={n}", "seconds (estimate)",
                 per_pair * n * (n - 1) / 2, "s") for n in sizes]
    return rows


def ratios(times: dict[tuple[str, int], float], sizes: list[int]) -> dict[str, float]:
    """Baseline time / DYNAMO time, per N."""
    return {f"{case} / dynamo, N={n}": times[(case, n)] / times[("dynamo", n)]
            for n in sizes for case in ("cka", "dsa_wasserstein")}


def exponent_rows(times: dict[tuple[str, int], float], sizes: list[int]) -> list[dict]:
    """Per method, the least-squares slope of log time against log N (needs ≥ 2 sizes)."""
    if len(sizes) < 2:
        return []
    return [row(case, "scaling exponent (slope of log t vs log N)",
                np.polyfit(np.log(sizes), np.log([times[(case, n)] for n in sizes]), 1)[0], "")
            for case in ("dynamo", "cka", "dsa_wasserstein")]


if __name__ == "__main__":
    main()
