"""The report's pre-flight memory check (:func:`dynamo_lightning.memory.analysis`): every
state the report keeps, estimated from the module, the population and the options before
the first search."""

from __future__ import annotations

from typing import Any

from dynamo_lightning.memory import Estimate, analysis, skipped
from dynamo_lightning.population import Population

__all__ = ["check_report", "report_estimate"]


def report_estimate(m: Any, population: Population, options: Any, pairs: int
                    ) -> Estimate | None:
    """The report's peak for module ``m`` (read duck-typed: ``member_ids``, ``meta``,
    ``task``, ``embeddings()``), ``population``, :class:`~.compute.ReportOptions`
    ``options`` and ``pairs`` member pairs; None without a task (nothing is run on
    trials then)."""
    task = getattr(m, "task", None)
    if task is None:
        return None
    dims = int(m.embeddings().shape[-1])
    grid = options.grid_resolution**2 if dims == 2 else 0
    width = max(stack.state_size for _, stack in population.groups())
    return analysis(len(m.member_ids), int(task.seq_len), int(m.meta.state_size),
                    int(m.meta.output_size), int(width),
                    {"pairs": pairs * options.steps, "grid": grid}, vars(options))


def check_report(m: Any, population: Population, options: Any, pairs: int,
                 device: Any = "cpu") -> None:
    """Refuse a report that does not fit on ``device`` (where its searches run)."""
    if skipped():
        return
    estimate = report_estimate(m, population, options, pairs)
    if estimate is not None:
        estimate.check(device)
