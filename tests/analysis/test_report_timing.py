"""The report's stage timer: times each stage and names it when the stage fails."""

from __future__ import annotations

import pytest

from dynamo_lightning.analysis.report.timing import timed


def test_timed_records_the_stage_time():
    timings: dict[str, float] = {}
    with timed(timings, "baselines"):
        pass
    assert set(timings) == {"baselines"} and timings["baselines"] >= 0


def test_a_value_error_inside_a_stage_names_the_stage_once():
    timings: dict[str, float] = {}
    with pytest.raises(ValueError, match=r"^report stage 'baselines': Input contains NaN\.$"
                       ) as caught, timed(timings, "outer"), timed(timings, "baselines"):
        raise ValueError("Input contains NaN.")
    assert isinstance(caught.value.__cause__, ValueError)
    assert set(timings) == {"outer", "baselines"}  # timed even when it fails


def test_other_errors_pass_through_unchanged():
    with pytest.raises(RuntimeError, match=r"^a bug$"), timed({}, "grid"):
        raise RuntimeError("a bug")
