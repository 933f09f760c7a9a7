"""Per-member bookkeeping at 10,000 members: sorted runs against a mask per member.

Two steps of a large fit and report cut a long list of rows into one part per member:
``TaskScores.scores`` (the test pass's task metric of every member and of the meta-model at
its θ, from all the test trials) and ``FixedPointSet.split`` (a batched fixed-point search's
points, one set per member or θ). Selecting each member's rows with a mask reads every row
once per member (N² work); both now sort the rows once and cut them into runs. This times
each against the mask-per-member way (written out here as the reference), on the same data:
the scale run's test pass (``--members`` × ``--trials`` trials of the flip-flop/integrator
mixture, T = 64) and its meta-model fixed points (``--points`` points of 128 units over
``--members`` groups). CPU only: both run on the host.

Usage::

    python benchmarks/per_member_work.py [--members 10000]   # writes per_member_work.json
"""

from __future__ import annotations

import argparse
import math

import torch
from common import finish, row, time_call

from dynamo_lightning.analysis.fixed_point_set import FixedPointSet
from dynamo_lightning.module.task_scores import TaskScores
from dynamo_lightning.tasks.mixture import MixtureTask


def masked_scores(scores: TaskScores, task: MixtureTask, members: int
                  ) -> tuple[list[float], list[float]]:
    """``TaskScores.scores`` as a mask per member computes them (the reference)."""
    trials = {k: v.cpu() for k, v in scores.compute().items()}
    meta, own = [math.nan] * members, [math.nan] * members
    for index in trials["member"].unique().tolist():
        rows = trials["member"] == index
        targets, ids = trials["targets"][rows], trials["task_ids"][rows]
        meta[index] = float(task.metric(trials["meta"][rows], targets, ids))
        own[index] = float(task.metric(trials["own"][rows], targets, ids))
    return meta, own


def test_pass(members: int, trials: int) -> tuple[TaskScores, MixtureTask]:
    """Every member's test trials, member-major batches of 512 members, as the fit has them."""
    task = MixtureTask([{"name": "flipflop", "config": {"n_bits": 3}},
                        {"name": "integrator", "config": {"n_channels": 3}}])
    generator = torch.Generator().manual_seed(0)
    scores = TaskScores()
    for start in range(0, members, 512):
        batch = torch.arange(start, min(members, start + 512))
        _, y, ids = task.sample_with_ids(len(batch) * trials, generator=generator, split="test")
        y = y.view(len(batch), trials, *y.shape[1:])
        noisy = y + 0.1 * torch.randn(y.shape, generator=generator)
        scores.update(batch, noisy, noisy, y, ids.view(len(batch), trials))
    return scores, task


def meta_points(members: int, points: int, size: int = 128) -> FixedPointSet:
    """``points`` fixed points of ``size`` units over ``members`` groups, sorted by group."""
    generator = torch.Generator().manual_seed(1)
    group = torch.randint(0, members, (points,), generator=generator).sort().values
    return FixedPointSet(
        points=torch.randn(points, size, generator=generator), q=torch.rand(points),
        eigvals=torch.randn(points, size, dtype=torch.complex64, generator=generator),
        is_stable=torch.rand(points) > 0.5, n_unstable=torch.zeros(points, dtype=torch.long),
        kind=["stable"] * points, group=group, distance_to_data=torch.rand(points),
        num_groups=members)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=64, help="test trials per member")
    parser.add_argument("--points", type=int, default=24_000,
                        help="meta-model fixed points (the 10k scale run kept 21,149)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    n = args.members
    scores, task = test_pass(n, args.trials)
    same = torch.tensor(masked_scores(scores, task, n)), torch.tensor(scores.scores(task, n))
    if not torch.allclose(*same, equal_nan=True):
        raise SystemExit("per_member_work: the two ways disagree")
    fixed = meta_points(n, args.points)
    times = {
        "task scores, sorted runs": time_call(lambda: scores.scores(task, n), args.repeats, 0),
        "task scores, a mask per member": time_call(lambda: masked_scores(scores, task, n),
                                                    args.repeats, 0),
        "fixed-point split, sorted runs": time_call(fixed.split, args.repeats, 0),
        "fixed-point split, a mask per group": time_call(
            lambda: [fixed.select(fixed.group == g) for g in range(n)], args.repeats, 0),
    }
    rows = [row(f"{case} (N={n})", "time", seconds, "s") for case, seconds in times.items()]
    ratios = {"task scores: mask / sorted": times["task scores, a mask per member"]
              / times["task scores, sorted runs"],
              "fixed-point split: mask / sorted": times["fixed-point split, a mask per group"]
              / times["fixed-point split, sorted runs"]}
    finish("per_member_work", "cpu", rows, ratios)


if __name__ == "__main__":
    main()
