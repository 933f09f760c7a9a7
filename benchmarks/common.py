"""Helpers shared by the benchmark scripts: machine description, timing, results files.

Every script measures a fast form against its naive form side by side in one run and writes
``benchmarks/results/<name>.json`` = ``{"name", "machine": {...}, "rows": [{"case", "metric",
"value", "unit"}, ...], "ratios": {"<label>": float}}``, so a number is never
read without the machine it ran on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"

if importlib.util.find_spec("dynamo_lightning") is None:  # a checkout run without installing
    sys.path.insert(0, str(REPO_ROOT))


def cpu_model() -> str:
    """The processor's model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What a timing depends on: host, CPU, cores, torch build and threads, GPU if any."""
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cuda_device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
    }
    with contextlib.suppress(OSError):  # not on every platform
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    triton = sys.modules.get("triton")  # the fused kernels' compiler, if a benchmark loaded it
    if triton is not None:
        info["triton"] = getattr(triton, "__version__", None)
    return info


def time_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls.

    On CUDA the device is synchronised before and after each call, so the time covers the
    kernels and not only their launch.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _synchronize()
        start = time.perf_counter()
        fn()
        _synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_calls(fns: Mapping[str, Callable[[], object]], repeats: int = 5,
               warmup: int = 1) -> dict[str, float]:
    """Median seconds of each ``fns[case]()``, the cases interleaved round-robin.

    Interleaving makes the ratios between cases fair on a shared machine whose load drifts
    during the run: every case sees the same stretch of time.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {case: [] for case in fns}
    for _ in range(repeats):
        for case, fn in fns.items():
            times[case].append(time_call(fn, repeats=1, warmup=0))
    return {case: statistics.median(values) for case, values in times.items()}


def _synchronize() -> None:
    # Only once CUDA is in use: a CPU benchmark must not create a CUDA context.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@contextlib.contextmanager
def kernel_variant(path: str) -> Iterator[None]:
    """The fused-kernel settings a benchmark path names, for its run only: ``...+tf32``
    float32 matmul precision "high" (TF32 matmuls and kernel dots), ``...+dwin`` ``dW_hh``
    accumulated in the backward kernel (``DW_OUTSIDE`` off), ``...-lstm`` LSTM stacks not
    fused, ``plain`` no stack fused; any other path the defaults."""
    from dynamo_lightning.population.architectures import fused_recurrence as fr

    precision, dw_outside, widths = (torch.get_float32_matmul_precision(), fr.DW_OUTSIDE,
                                     dict(fr.FASTER_UP_TO))
    if path.endswith("+tf32"):
        torch.set_float32_matmul_precision("high")
    if path.endswith("+dwin"):
        fr.DW_OUTSIDE = False
    if path.endswith("-lstm"):
        fr.FASTER_UP_TO.pop("lstm", None)
    if path == "plain":
        fr.FASTER_UP_TO.clear()
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
        fr.DW_OUTSIDE = dw_outside
        fr.FASTER_UP_TO.clear()
        fr.FASTER_UP_TO.update(widths)


def row(case: str, metric: str, value: float, unit: str) -> dict[str, Any]:
    """One result row."""
    return {"case": case, "metric": metric, "value": float(value), "unit": unit}


def write_results(name: str, rows: Iterable[Mapping[str, Any]], ratios: Mapping[str, float],
                  results_dir: Path | None = None) -> Path:
    """Write ``<results_dir>/<name>.json`` with the machine description; returns its path."""
    directory = RESULTS_DIR if results_dir is None else Path(results_dir)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": name,
        "machine": machine_info(),
        "rows": [dict(r) for r in rows],
        "ratios": {label: float(value) for label, value in ratios.items()},
    }
    path = directory / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
    return path


def finish(name: str, device: str, rows: Sequence[Mapping[str, Any]],
           ratios: Mapping[str, float]) -> Path:
    """Write ``<name>[_cuda].json`` (see :func:`write_results`), then print the table, the
    ratios and where the results went; returns the path."""
    path = write_results(name + ("_cuda" if device == "cuda" else ""), rows, ratios)
    print()
    print_table(rows)
    print()
    width = max((len(label) for label in ratios), default=0)
    for label, value in ratios.items():
        print(f"{label:{width}s}  {value:6.2f}x")
    print(f"\nwrote {path}")
    return path


def print_table(rows: Iterable[Mapping[str, Any]]) -> None:
    """Print rows as an aligned text table (case, metric, value, unit)."""
    rows = list(rows)
    header = ("case", "metric", "value", "unit")
    cells = [[str(r["case"]), str(r["metric"]), _format(r["value"]), str(r["unit"])]
             for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for c in cells:
        print("  ".join([c[0].ljust(widths[0]), c[1].ljust(widths[1]),
                         c[2].rjust(widths[2]), c[3].ljust(widths[3])]))


def _format(value: float) -> str:
    value = float(value)
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"
