"""The analysis report of a fitted DYNAMO map: ``report.json`` + PNGs + ``report.html``.

``write_report(m, population, out_dir)`` is what ``dynamo analyze`` (and ``dynamo demo``)
call after loading a checkpoint and running a test pass for the emulation scores. The JSON
schema is :data:`~.schema.SCHEMA`, documented in ``docs/report.md``. Pure: no Lightning.

Example::

    from dynamo_lightning.analysis import write_report

    out = write_report(module, population, "runs/demo/report", scores=module.member_scores)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dynamo_lightning.analysis.fitted_map import FittedMap
from dynamo_lightning.analysis.report.compute import (
    ReportOptions,
    build_report,
    compute_report,
    make_options,
)
from dynamo_lightning.analysis.report.figures import write_figures
from dynamo_lightning.analysis.report.html import write_html
from dynamo_lightning.analysis.report.schema import SCHEMA, SCHEMA_VERSION, validate_report
from dynamo_lightning.population import Population
from dynamo_lightning.tasks import Task

__all__ = [
    "INCOMPLETE",
    "SCHEMA",
    "SCHEMA_VERSION",
    "ReportOptions",
    "build_report",
    "validate_report",
    "write_html",
    "write_report",
]


INCOMPLETE = "INCOMPLETE.txt"
"""The marker of a report folder whose writing was stopped midway."""
INCOMPLETE_TEXT = ("This report was being written when its run stopped: the files here may mix "
                   "it with an earlier report in this folder. Run `dynamo analyze` again.\n")


def write_report(m: FittedMap, population: Population, out_dir: str | Path,
                 scores: dict[str, list[float]] | None = None, task: Task | None = None,
                 checkpoint: str | None = None, **options: Any) -> Path:
    """Compute the report and write ``report.json``, its PNGs and ``report.html``.

    Args:
        m: the fitted module (``DynamoModule``, read duck-typed).
        population: the population it was fitted on.
        out_dir: where the files go (created if needed; files of an earlier report with
            the same names are replaced). While they are written, ``INCOMPLETE.txt`` marks
            the folder, so a run stopped then leaves a folder that says so.
        scores: per-member emulation scores ``{name: [N]}`` from a test pass
            (``m.member_scores``); default ``m.member_scores`` if it has any.
        task: the task driving the analysis (default ``m.task``).
        checkpoint: the checkpoint's path, recorded in the report.
        **options: :class:`ReportOptions` fields (``trials``, ``inits_per_member``,
            ``pairs``, ``steps``, ``seed``, ``progress``, ...).

    Returns:
        ``out_dir`` (as a ``Path``).

    Raises:
        ValueError: a population that does not match the module, no task, a bad option.
    """
    opts = make_options(options)
    out = Path(out_dir)
    data = compute_report(m, population, task, scores=scores, checkpoint=checkpoint,
                          options=opts)
    out.mkdir(parents=True, exist_ok=True)
    # Everything is computed; only the writing is left. A run stopped while writing leaves
    # the marker, and no index of an earlier report beside this one's figures.
    (out / INCOMPLETE).write_text(INCOMPLETE_TEXT, encoding="utf-8")
    for index in ("report.json", "report.html"):
        (out / index).unlink(missing_ok=True)
    write_figures(data, out, opts.figure_members)  # and lists them in the report
    validate_report(data.report)
    text = json.dumps(data.report, indent=1, allow_nan=False)
    (out / "report.json").write_text(text + "\n", encoding="utf-8")
    write_html(data.report, out)
    (out / INCOMPLETE).unlink()
    return out
