"""Fixed-point classification's eigenvalues: one serial LAPACK call against the thread pool.

The report classifies every fixed point by its Jacobian's eigenvalues, computed in float64
on the CPU (:mod:`dynamo_lightning.analysis.eigenvalues`). ``torch.linalg.eigvals`` of a
batch runs one matrix after another on one core; ``eigenvalues`` splits the batch over
``torch.get_num_threads()`` threads. Both on the same random matrices (scaled to spectral
radius ≈ 1, like a trained network's Jacobians), interleaved, for the state sizes a report
meets: 32 (vanilla, GRU members), 64 (LSTM members: h and c) and 128 (the scale run's
meta-GRU). ms per matrix, and the ratio serial / pooled.

Usage::

    python benchmarks/eigenvalues.py [--count 512] [--sizes 32 64 128]   # eigenvalues.json
"""

from __future__ import annotations

import argparse

import torch
from common import finish, row, time_calls

from dynamo_lightning.analysis.eigenvalues import eigenvalues


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=512, help="matrices per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    rows, ratios = [], {}
    for size in args.sizes:
        matrices = torch.randn(args.count, size, size, generator=generator,
                               dtype=torch.float64) / size**0.5
        times = time_calls({"serial": lambda m=matrices: torch.linalg.eigvals(m),
                            "pooled": lambda m=matrices: eigenvalues(m)},
                           repeats=args.repeats)
        for case, seconds in times.items():
            label = f"H={size}, {args.count} matrices, {case}"
            label += f" ({threads} threads)" if case == "pooled" else ""
            rows.append(row(label, "time per matrix", 1e3 * seconds / args.count, "ms"))
        ratios[f"H={size}: serial / pooled"] = times["serial"] / times["pooled"]
    finish("eigenvalues", "cpu", rows, ratios)


if __name__ == "__main__":
    main()
