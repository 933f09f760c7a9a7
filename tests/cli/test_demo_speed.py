"""The CPU commands run on few intra-op threads and leave the process as they found it.

``dynamo demo``, ``dynamo analyze``'s test pass and ``dynamo place`` are thousands of small
ops; with torch's one thread per core, each op's parallel region waited for a core that other
work held, 25× slower on a 2-core machine (``benchmarks/demo_stages.py``). These tests check
the mechanism, not a timing: the thread count inside each stage, the state a stage leaves for
the next, and that the count is restored after.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from dynamo_lightning.analysis import placement
from dynamo_lightning.cli import analyze, demo, main

# The demo's stages shrunk to seconds: the same code paths, tiny sizes.
TINY_POPULATION: dict[str, Any] = {
    "seed_everything": 0,
    "trainer": {"max_steps": 2, "val_check_interval": 1, "check_val_every_n_epoch": None,
                "log_every_n_steps": 1, "enable_progress_bar": False,
                "enable_model_summary": False, "callbacks": []},
    "model": {"architectures": ["gru", "vanilla"], "hidden_sizes": [8], "seeds": [0, 1]},
    "data": {"tasks": [{"name": "flipflop", "config": {"n_bits": 2, "seq_len": 16}}],
             "batch_size": 8, "steps_per_epoch": 2, "val_batch_size": 16},
    "population": {"eval_trials": 16},
}
TINY_DYNAMO: dict[str, Any] = {
    "seed_everything": 0,
    "trainer": {"max_epochs": 1, "log_every_n_steps": 1, "enable_progress_bar": False,
                "enable_model_summary": False},
    "model": {"embedding_dim": 2, "meta": {"cell": "gru", "hidden_size": 8}},
    "data": {"num_components": 2, "members_per_batch": 2, "samples_per_member": 4,
             "train_trials": 8, "val_trials": 4, "test_trials": 4},
}
TINY_REPORT: dict[str, Any] = {"trials": 8, "inits_per_member": 4, "max_iters": 20, "steps": 2,
                               "grid_resolution": 0, "baselines": "none", "averaging": False,
                               "progress": False}


def process_state() -> dict[str, Any]:
    """What one stage could leave set for the next (a fresh process has torch's defaults)."""
    return {"threads": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
            "grad": torch.is_grad_enabled(), "anomaly": torch.is_anomaly_enabled(),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "matmul_precision": torch.get_float32_matmul_precision()}


@pytest.fixture
def two_threads() -> Iterator[int]:
    """torch on 2 intra-op threads for the test (the suite runs on 1), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def record_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str,
                 seen: list[dict[str, Any]]) -> None:
    """Wrap ``owner.name`` so each call appends the process state it starts with, then runs
    the real function."""
    real: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seen.append({"stage": name, **process_state()})
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


@pytest.fixture
def tiny_demo(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The demo's stage settings shrunk; returns the list each stage's state is recorded in."""
    monkeypatch.setattr(demo, "DEMO_POPULATION", TINY_POPULATION)
    monkeypatch.setattr(demo, "DEMO_DYNAMO", TINY_DYNAMO)
    monkeypatch.setattr(demo, "DEMO_REPORT", TINY_REPORT)
    seen: list[dict[str, Any]] = []
    for name in ("train_demo_population", "fit_demo_dynamo", "write_demo_report"):
        record_calls(monkeypatch, demo, name, seen)
    return seen


@pytest.mark.slow
def test_demo_runs_every_stage_on_one_thread_and_restores_the_count(
        tiny_demo: list[dict[str, Any]], two_threads: int, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    """Each stage starts with exactly the state the first one had (nothing leaks from the
    population's training into the fit, or from the fit into the report), on one intra-op
    thread by default; the process's own count is back afterwards."""
    before = process_state()
    demo.run_demo(["--out", str(tmp_path / "demo"), "--max-steps", "2"])
    assert [s["stage"] for s in tiny_demo] == ["train_demo_population", "fit_demo_dynamo",
                                               "write_demo_report"]
    inside = {**before, "threads": 1}
    assert all({k: v for k, v in s.items() if k != "stage"} == inside for s in tiny_demo)
    assert process_state() == before and before["threads"] == two_threads
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert str(tmp_path / "demo" / "report" / "report.html") in last
    assert '"Fit DYNAMO"' in last and (tmp_path / "demo" / "report" / "report.html").is_file()


@pytest.mark.slow
def test_demo_threads_flag_sets_the_stages_count(tiny_demo: list[dict[str, Any]],
                                                 tmp_path: Path) -> None:
    """``--threads 2`` from a process on one thread: every stage on two, one again after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        demo.run_demo(["--out", str(tmp_path / "demo"), "--max-steps", "2", "--threads", "2"])
        assert [s["threads"] for s in tiny_demo] == [2, 2, 2]
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_demo_refuses_a_thread_count_below_one(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--out", str(tmp_path / "d"), "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert "--threads must be a positive integer, got 0" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_analyze_test_pass_runs_on_the_report_threads(
        tiny_fit: dict, two_threads: int, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """``dynamo analyze``'s test pass runs on ``threads`` (default 1) like the searches, and
    the process's count is restored after the report."""
    seen: list[dict[str, Any]] = []
    record_calls(monkeypatch, analyze, "emulation_scores", seen)
    options = {k: v for k, v in TINY_REPORT.items() if k != "progress"}
    analyze.run_analysis(tiny_fit["ckpt"], tmp_path / "report", progress=False, **options)
    assert [s["threads"] for s in seen] == [1]
    assert torch.get_num_threads() == two_threads
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["members"]  # the scores of that test pass made it into the report


@pytest.mark.parametrize("threads, inside", [(None, 1), (2, 2)])
def test_place_runs_on_its_threads_and_restores_the_count(
        tiny_fit: dict, two_threads: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        threads: int | None, inside: int) -> None:
    """``dynamo place`` fits on one intra-op thread by default (``--threads`` otherwise)
    and gives the process its own count back."""
    seen: list[dict[str, Any]] = []
    record_calls(monkeypatch, placement, "place", seen)
    argv = ["place", "--ckpt_path", str(tiny_fit["ckpt"]), "--population",
            str(tiny_fit["population"]), "--out", str(tmp_path / "p"), "--trials", "4",
            "--steps", "2", "--no-progress", *([] if threads is None else
                                                ["--threads", str(threads)])]
    torch.set_num_threads(1 if inside == 2 else two_threads)
    before = torch.get_num_threads()
    assert main(argv) == 0
    assert [s["threads"] for s in seen] == [inside]
    assert torch.get_num_threads() == before
    assert (tmp_path / "p" / "placement.json").is_file()


def test_place_refuses_a_thread_count_below_one(tiny_fit: dict, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    argv = ["place", "--ckpt_path", str(tiny_fit["ckpt"]), "--population",
            str(tiny_fit["population"]), "--out", str(tmp_path / "p"), "--threads", "0"]
    assert main(argv) == 2
    assert "threads must be a positive integer or None, got 0" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
