"""The scale run's script end to end at a toy size: every stage runs and is timed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from paths import REPO

pytestmark = pytest.mark.slow


def load_script():
    spec = importlib.util.spec_from_file_location("scale_script",
                                                  REPO / "experiments" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_stage_is_timed_and_the_report_written(tmp_path: Path) -> None:
    results = tmp_path / "scale.json"
    load_script().main(["--seeds", "2", "--population-steps", "14", "--epochs", "1",
                        "--members-per-batch", "4", "--accelerator", "cpu",
                        "--out", str(tmp_path / "run"), "--results", str(results)])
    written = json.loads(results.read_text())
    assert written["finished"] is True
    assert written["settings"]["members_per_batch"] == 4
    assert (written["settings"]["population_steps"], written["settings"]["epochs"]) == (14, 1)
    assert written["members"] == 20  # 2 computations × 5 architectures × 2 seeds
    assert set(written["seconds"]) == {"population", "fit", "report"}
    assert all(v > 0 for v in written["seconds"].values())
    assert written["total_seconds"] == pytest.approx(sum(written["seconds"].values()), abs=0.2)
    assert "fixed_points" in written["report_timings"]
    assert written["fixed_points"]["member"] > 0 and written["fixed_points"]["meta"] >= 0
    population, fit = written["phases"]["population"], written["phases"]["fit"]
    assert (population["steps"], population["validations"]) == (4, 1)  # 14 − 10 warm-up
    assert population["write"] > 0 and fit["test"] > 0 and fit["validations"] == 1
    assert sum(population[k] for k in ("before_fit", "fit", "write")) <= (
        written["seconds"]["population"] + 0.1)
    assert 0 <= written["median_output_agreement"] <= 1
    assert set(written["median_task_metric"]) == {"flipflop", "integrator"}  # one per metric
    assert 0 <= written["median_task_metric"]["flipflop"]["member"] <= 1  # bit accuracy
    assert (tmp_path / "run" / "report" / "report.html").is_file()
    fitted = yaml.safe_load(next((tmp_path / "run" / "fit").glob("*/config.yaml")).read_text())
    assert fitted["data"]["members_per_batch"] == 4  # the override reached the fit
