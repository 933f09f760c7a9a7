"""Fixed points of the meta-model at many θ's: one batched search vs a loop over θ (§7).

A ``MetaRNN`` (GRU, hidden 64, d = 2, input 3; untrained, seeded) is searched for fixed
points at G embeddings θ, 64 initial states per θ drawn from its own trajectories on
flip-flop inputs at that θ (with each θ's trajectories as its outlier reference):

- ``batched``: ``find_fixed_points(meta_step_fn(meta, thetas, 64), ...)``, all G·64 rows in
  one optimisation (and one Newton / Jacobian / eigenvalue pass; on CUDA each Adam iteration
  replayed from a CUDA graph, the finder's default);
- ``loop``: the naive form, one ``find_fixed_points`` call per θ on its 64 rows.

Both use the same inits, ``tol`` and ``max_iters`` (500 by default, capped so the CPU run
stays under 4 minutes; the finder's own default is 5000) and must find the same number of
points per θ. Timed for G in ``--thetas``, the two forms interleaved; the ratio is loop
time / batched time. CPU runs use one thread by default (``--threads``): on a shared 2-core
machine two threads oversubscribe it and every op runs up to 100× slower.

Also timed: the search's inner step alone — q and its gradient, one forward and one backward
of the GRU step — per row at a loop call's batch (n rows) and at the batched call's
(G·n rows). Both forms do the same number of these row-steps, so the ratio of the two
per-row costs is what batching can gain on the step itself; the rest of the loop's cost
is per-call overhead (optimizer, checks, Newton, Jacobians) that batching pays once.

``--members``: instead, per-member searches on the demo population's vanilla and GRU members
(``--population``, default ``runs/demo/population``): 1,024 initial states sampled from the
member's own trajectories on 256 flip-flop trials (noise 0.1 × the states' std, as
``SearchOptions``), zero input, the finder's defaults (``tol`` 1e-8, ``max_iters`` 5000).
``new`` is the default search (Adam handing rows to Newton once close); ``previous`` is
``handoff=None``, Adam alone down to ``tol`` as before. Per member and form: median time of
``--repeats`` interleaved runs, points, stable points, Adam iterations, and the median ‖h*‖
of the points against the median ‖h‖ of the member's states; ratio previous / new per
member. Writes ``fixed_points_members.json``.

Usage::

    python benchmarks/fixed_points.py                  # CPU, writes fixed_points.json
    python benchmarks/fixed_points.py --device cuda    # writes fixed_points_cuda.json
    python benchmarks/fixed_points.py --members        # writes fixed_points_members.json
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial
from pathlib import Path
from typing import Any

import torch
from common import REPO_ROOT, finish, row, time_call, time_calls

import dynamo_lightning as dl
from dynamo_lightning.analysis.fixed_points import (
    FixedPointSet,
    find_fixed_points,
    frozen_parameters,
    member_step_fn,
    meta_step_fn,
    sample_inits,
)
from dynamo_lightning.meta import MetaRNN


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--thetas", type=str, default="1,4,16,64",
                        help="comma-separated numbers of θ's G")
    parser.add_argument("--inits", type=int, default=64, help="initial states per θ")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--max-iters", type=int, default=500)
    parser.add_argument("--tol", type=float, default=1e-8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (1: the machine is shared; more oversubscribe it)")
    parser.add_argument("--members", action="store_true",
                        help="per-member searches on the demo population instead")
    parser.add_argument("--population", type=Path, default=REPO_ROOT / "runs/demo/population")
    parser.add_argument("--architectures", type=str, default="vanilla,gru")
    parser.add_argument("--member-inits", type=int, default=1024)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    args.thetas = sorted({int(g) for g in args.thetas.split(",")})
    return args


class Problem:
    """The meta-model, G θ's, their inits [G·n, H] and per-θ reference states."""

    def __init__(self, meta: MetaRNN, count: int, args: argparse.Namespace) -> None:
        g = torch.Generator().manual_seed(count)
        self.meta, self.n, self.args = meta, args.inits, args
        device = next(meta.parameters()).device
        self.thetas = torch.randn(count, meta.embedding_dim, generator=g).to(device)
        x, _ = dl.tasks.get("flipflop", n_bits=meta.input_size).sample(8 * count, generator=g)
        with torch.no_grad():
            hidden = meta(x.to(device), self.thetas.repeat_interleave(8, 0))[1]
        self.references = list(hidden.reshape(count, -1, hidden.shape[-1]))
        self.inits = torch.cat([sample_inits(r, self.n, 0.1, g) for r in self.references])
        self.x = torch.zeros(meta.input_size, device=device)

    def batched(self, cuda_graphs: bool = True) -> FixedPointSet:
        step = meta_step_fn(self.meta, self.thetas, self.n)
        return find_fixed_points(step, self.x, self.inits, self.args.tol,
                                 max_iters=self.args.max_iters, reference=self.references,
                                 cuda_graphs=cuda_graphs)

    def loop(self) -> list[FixedPointSet]:
        return [find_fixed_points(meta_step_fn(self.meta, self.thetas[i : i + 1], self.n),
                                  self.x, self.inits[i * self.n : (i + 1) * self.n],
                                  self.args.tol, max_iters=self.args.max_iters,
                                  reference=self.references[i])
                for i in range(len(self.thetas))]


def step_cost(meta: MetaRNN, rows: int, repeats: int) -> float:
    """Seconds per row of one q-and-gradient evaluation of the meta-model's step."""
    h = torch.randn(rows, meta.state_size, device=next(meta.parameters()).device)
    x, theta = h.new_zeros(rows, meta.input_size), h.new_ones(rows, meta.embedding_dim)

    def once() -> None:
        leaf = h.clone().requires_grad_(True)
        q = 0.5 * (meta.step(leaf, x, theta) - leaf).pow(2).sum()
        torch.autograd.grad(q, leaf)

    with frozen_parameters(meta):
        return time_call(once, repeats=repeats, warmup=3) / rows


def check_agree(problem: Problem) -> tuple[int, int, int]:
    """Both forms find the same number of points at every θ; returns (points, iterations,
    row-steps: rows the batched search ran through the meta-model's step, all calls)."""
    meta, rows = problem.meta, [0]
    step = meta.step

    def counting(h: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        rows[0] += h.shape[0]
        return step(h, *args)

    meta.step = counting  # type: ignore[method-assign]
    try:  # eagerly: a CUDA graph's replays do not pass through Python
        batched = problem.batched(cuda_graphs=False)
    finally:
        del meta.step
    loop = problem.loop()
    counts = [len(part) for part in batched.split()]
    if counts != [len(fps) for fps in loop]:
        raise RuntimeError(f"batched and loop disagree: {counts} vs {[len(f) for f in loop]}")
    return len(batched), batched.iterations, rows[0]


class MemberProblem:
    """One demo member's search: its inits [n, H] and its states (the reference)."""

    def __init__(self, member: Any, count: int, device: str) -> None:
        self.net = member.module.to(device)
        config = member.metadata.get("task_config", {})
        task = dl.tasks.get(member.metadata.get("task", "flipflop"), **config)
        x, _ = task.sample(256, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            self.hidden = self.net(x.to(device))[1]
        g = torch.Generator().manual_seed(1)
        self.inits = sample_inits(self.hidden.cpu(), count, 0.1, g).to(device)
        self.x = torch.zeros(task.input_size, device=device)

    def search(self, form: str) -> FixedPointSet:
        extra = {"handoff": None} if form == "previous" else {}
        return find_fixed_points(member_step_fn(self.net), self.x, self.inits,
                                 reference=self.hidden, **extra)


def members(args: argparse.Namespace) -> None:
    """Per-member searches, new against previous, on the demo's members."""
    population = dl.Population.load(args.population)
    kinds = args.architectures.split(",")
    chosen = [m for m in population if m.architecture in kinds]
    MemberProblem(chosen[0], 8, args.device).search("new")  # warm up torch.func
    print(f"{len(chosen)} members of {args.population}, {args.member_inits} inits each, "
          f"zero input, {torch.get_num_threads()} thread(s) on {args.device}", flush=True)
    rows: list[dict[str, Any]] = []
    ratios: dict[str, float] = {}
    for member in chosen:
        problem = MemberProblem(member, args.member_inits, args.device)
        found = {form: problem.search(form) for form in ("new", "previous")}
        times = time_calls({form: partial(problem.search, form) for form in found},
                           repeats=args.repeats, warmup=0)
        data_norm = float(problem.hidden.norm(dim=-1).median())
        for form, fps in found.items():
            norm = float(fps.points.norm(dim=-1).median()) if len(fps) else float("nan")
            case = f"{member.id} {form}"
            rows += [row(case, "time", times[form], "s"), row(case, "points", len(fps), "count"),
                     row(case, "stable", fps.count("stable"), "count"),
                     row(case, "adam_iterations", fps.iterations, "count"),
                     row(case, "median_point_norm", norm, "")]
            print(f"{member.id:26s} {form:8s} {times[form]:6.2f} s  {len(fps):3d} points "
                  f"({fps.count('stable')} stable)  {fps.iterations:5d} it  median |h*| "
                  f"{norm:.2f} vs data {data_norm:.2f}", flush=True)
        rows.append(row(member.id, "median_data_norm", data_norm, ""))
        ratios[f"{member.id}: previous / new"] = times["previous"] / times["new"]
    for kind in kinds:
        for form in ("new", "previous"):
            values = [r["value"] for r in rows if r["metric"] == "time"
                      and r["case"].endswith(f" {form}") and f"-{kind}-" in r["case"]]
            if values:
                rows.append(row(f"{kind} members {form}", "median_time",
                                statistics.median(values), "s"))
    finish("fixed_points_members", args.device, rows, ratios)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.members:
        members(args)
        return
    meta = MetaRNN(3, 3, embedding_dim=2, hidden_size=args.hidden, cell="gru").to(args.device)
    Problem(meta, 1, args).batched()  # warm up torch.func (its first call costs seconds)
    print(f"MetaRNN gru H={args.hidden}, {args.inits} inits per θ, tol={args.tol}, "
          f"max_iters={args.max_iters} on {args.device}", flush=True)
    rows: list[dict[str, Any]] = []
    ratios: dict[str, float] = {}
    for count in args.thetas:
        problem = Problem(meta, count, args)
        points, iterations, row_steps = check_agree(problem)
        times = time_calls({form: getattr(problem, form) for form in ("batched", "loop")},
                           repeats=args.repeats, warmup=0)
        for form, seconds in times.items():
            rows.append(row(f"G={count} {form}", "time", seconds, "s"))
            rows.append(row(f"G={count} {form}", "time_per_theta", seconds / count * 1e3, "ms"))
        rows.append(row(f"G={count}", "points_found", points, "count"))
        rows.append(row(f"G={count}", "adam_iterations", iterations, "count"))
        rows.append(row(f"G={count} batched", "row_steps", row_steps, "count"))
        ratios[f"G={count}: loop / batched"] = times["loop"] / times["batched"]
        print(f"G={count:3d}: batched {times['batched']:7.2f} s, loop {times['loop']:7.2f} s, "
              f"ratio {ratios[f'G={count}: loop / batched']:.2f}x", flush=True)
    for count in (1, max(args.thetas)):
        per_row = step_cost(meta, count * args.inits, repeats=50)
        rows.append(row(f"step, {count * args.inits} rows", "time_per_row", per_row * 1e6, "us"))
    small, large = rows[-2]["value"], rows[-1]["value"]
    ratios[f"step per row: {args.inits} / {max(args.thetas) * args.inits} rows"] = small / large
    finish("fixed_points", args.device, rows, ratios)


if __name__ == "__main__":
    main()
