"""Each stage of ``dynamo demo`` inside the demo's process against the same stage alone.

``dynamo demo`` runs its three stages in one process (``cli/demo.py``: the population's
training, the DYNAMO fit with its test pass, the report). A stage that is much slower there
than in a fresh process points at state one stage leaves behind for the next (thread counts,
fused or compiled stacks, background threads, ...). Each round runs, each in its own
processes and for every torch intra-op thread count of ``--threads`` (the demo's
``--threads``; ``0``: torch's default, one thread per core):

- ``demo``: the whole demo (``run_demo``'s stage functions, in order, in one process), each
  stage timed;
- ``alone``: the same three stage functions, each in a fresh process: the population, then
  the fit on that population, then the report of that fit (each stage's inputs are the
  previous stage's outputs, as in the demo; the trajectory cache is built afresh in both).

The cases run in turn, their order reversed every other round, so that all see the same
stretch of a shared machine's load; ``--busy N`` keeps N other processes spinning meanwhile
(what "other work running" does to a 2-core machine). Every stage records torch's intra-op
and inter-op thread counts and Python's threads when it starts, and its CPU seconds (all
threads: one spinning in a barrier counts).

Ratios: each stage's median in-demo time over its median alone time (1.0: no state leaks
from one stage to the next), the whole demo's over the stages' alone, and per stage the
time with torch's default threads over the time with the demo's default.

Usage::

    python benchmarks/demo_stages.py                          # 30 steps, 2 epochs, 2 rounds
    python benchmarks/demo_stages.py --busy 1 --tag busy      # demo_stages_busy.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from common import finish, row

STAGES = ("population", "fit", "report")
MARK = "DEMO_STAGES "


def snapshot() -> dict[str, Any]:
    """The process-wide settings a stage inherits from the one before it."""
    return {"threads": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
            "python_threads": threading.active_count(),
            "grad_enabled": torch.is_grad_enabled()}


def timed(fn: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """``fn()`` and its record: wall and CPU seconds, the settings it started with."""
    state = snapshot()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    state.update(seconds=time.perf_counter() - wall, cpu_seconds=time.process_time() - cpu)
    return result, state


def run_stages(out: Path, stages: list[str], threads: int, max_steps: int,
               max_epochs: int) -> dict[str, Any]:
    """Run ``stages`` of the demo into ``out`` in this process, on ``threads`` intra-op
    threads as ``run_demo`` does (0: torch's default); their records by name."""
    from dynamo_lightning.analysis.report.timing import threads as intra_op_threads
    from dynamo_lightning.cli import demo

    records: dict[str, Any] = {}
    population, summary = out / "population", None
    with intra_op_threads(threads or None):
        if "population" in stages:
            population, records["population"] = timed(
                lambda: demo.train_demo_population(out, max_steps))
        if "fit" in stages:
            summary, records["fit"] = timed(
                lambda: demo.fit_demo_dynamo(out, population, max_epochs))
        if "report" in stages:
            if summary is None:
                summary = json.loads((out / "fit" / "emulation.json").read_text())
            _, records["report"] = timed(lambda: demo.write_demo_report(out, summary))
    return records


def child(stages: list[str], out: Path, threads: int, args: argparse.Namespace,
          ) -> dict[str, Any]:
    """Run ``stages`` in a fresh process; their records."""
    command = [sys.executable, __file__, "--child", ",".join(stages), "--out", str(out),
               "--threads", str(threads), "--max_steps", str(args.max_steps),
               "--max_epochs", str(args.max_epochs)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK):])


def run_case(where: str, threads: int, folder: Path, args: argparse.Namespace,
             ) -> dict[str, Any]:
    """One case: the demo in one process, or each stage alone in its own."""
    out = folder / f"{where}_t{threads}"
    if where == "demo":
        return child(list(STAGES), out, threads, args)
    records: dict[str, Any] = {}
    for stage in STAGES:
        records.update(child([stage], out, threads, args))
    return records


def start_busy(count: int) -> list[subprocess.Popen]:
    """``count`` processes spinning in a Python loop: a core's worth of other work each."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def measure(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Every case's records, round by round (cases interleaved, order reversed each round)."""
    cases = [(where, t) for t in args.threads for where in ("demo", "alone")]
    results: dict[str, list[dict[str, Any]]] = {case_name(*c): [] for c in cases}
    busy = start_busy(args.busy)
    try:
        with tempfile.TemporaryDirectory(prefix="demo_stages_") as tmp:
            for r in range(args.rounds):
                for where, threads in cases if r % 2 == 0 else cases[::-1]:
                    record = run_case(where, threads, Path(tmp) / f"round{r}", args)
                    results[case_name(where, threads)].append(record)
                    print(f"round {r} {case_name(where, threads)}: "
                          + ", ".join(f"{s} {record[s]['seconds']:.1f} s" for s in STAGES),
                          flush=True)
    finally:
        for process in busy:
            process.kill()
    return results


def case_name(where: str, threads: int) -> str:
    return f"{where} threads={threads or 'default'}"


def report(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]]) -> None:
    rows, ratios, medians = [], {}, {}
    for case, records in results.items():
        for stage in STAGES:
            stage_records = [r[stage] for r in records]
            medians[(case, stage)] = statistics.median(r["seconds"] for r in stage_records)
            name = f"{case}/{stage}"
            rows.append(row(name, "seconds (median)", medians[(case, stage)], "s"))
            rows.append(row(name, "cpu seconds (median)",
                            statistics.median(r["cpu_seconds"] for r in stage_records), "s"))
            for key in ("threads", "interop", "python_threads"):
                rows.append(row(name, f"{key} at start", stage_records[-1][key], "count"))
    for t in args.threads:
        demo, alone = case_name("demo", t), case_name("alone", t)
        for stage in STAGES:
            ratios[f"{stage}, threads={t or 'default'}: in demo / alone"] = (
                medians[(demo, stage)] / medians[(alone, stage)])
        ratios[f"all stages, threads={t or 'default'}: in demo / alone"] = (
            sum(medians[(demo, s)] for s in STAGES) / sum(medians[(alone, s)] for s in STAGES))
    if 0 in args.threads and 1 in args.threads:
        for stage in STAGES:
            ratios[f"{stage} in demo: default threads / 1 thread"] = (
                medians[(case_name("demo", 0), stage)] / medians[(case_name("demo", 1), stage)])
        ratios["all stages in demo: default threads / 1 thread"] = (
            sum(medians[(case_name("demo", 0), s)] for s in STAGES)
            / sum(medians[(case_name("demo", 1), s)] for s in STAGES))
    settings = (f"max_steps={args.max_steps} max_epochs={args.max_epochs} busy={args.busy} "
                f"torch default threads={torch.get_num_threads()}")
    rows.append(row(f"settings: {settings}", "rounds", args.rounds, "count"))
    finish("demo_stages" + (f"_{args.tag}" if args.tag else ""), "cpu", rows, ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_steps", type=int, default=30,
                        help="population training steps (the demo's --max-steps)")
    parser.add_argument("--max_epochs", type=int, default=2,
                        help="DYNAMO epochs (the demo's --max-epochs)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 0],
                        help="intra-op thread counts to run (the demo's --threads; 0: "
                             "torch's default, one per core)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--busy", type=int, default=0,
                        help="spinning processes kept running meanwhile (other work)")
    parser.add_argument("--tag", default="", help="results file demo_stages_<tag>.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is None:
        report(args, measure(args))
        return
    threads = args.threads[0]
    records = run_stages(args.out, args.child.split(","), threads, args.max_steps,
                         args.max_epochs)
    print(MARK + json.dumps(records), flush=True)


if __name__ == "__main__":
    main()
