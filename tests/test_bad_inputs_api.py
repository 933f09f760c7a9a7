"""Bad inputs through the Python API: each raises one clear error that names the thing (the
CLI side is ``tests/cli/test_bad_inputs.py``; each layer's own tests go deeper)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import dynamo_lightning as dl
from dynamo_lightning import analysis as da
from dynamo_lightning.module import CheckpointError, load_module, read_checkpoint
from dynamo_lightning.population import Population, PopulationFormatError

NAN = float("nan")


@pytest.fixture(scope="module")
def world(tiny_fit: dict, tiny_population: Population,
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("bad_api")
    (root / "junk.ckpt").write_text("junk")
    notes = root / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    member = tiny_population["gru-s0"]
    return {"root": root, "module": tiny_fit["module"], "population": tiny_population,
            "member": member, "step": da.member_step_fn(member.module),
            "x": torch.zeros(4, 16, 3)}


CASES: dict[str, tuple[Callable[[dict], Any], type[BaseException], str]] = {
    "load-missing-population": (lambda w: Population.load(w["root"] / "nowhere"),
                                PopulationFormatError, "not found"),
    "save-over-notes": (lambda w: w["population"].save(w["root"] / "notes"),
                        PopulationFormatError, "todo.txt"),
    "trajectories-no-trials": (lambda w: w["population"].trajectories(torch.zeros(0, 16, 3)),
                               ValueError, "trial"),
    "trajectories-no-steps": (lambda w: w["population"].trajectories(torch.zeros(2, 0, 3)),
                              ValueError, "step"),
    "trajectories-negative-batch": (lambda w: w["population"].trajectories(
        w["x"], batch_size=-1), ValueError, "batch_size"),
    "trajectories-wrong-input-size": (lambda w: w["population"].trajectories(
        torch.zeros(2, 16, 5)), ValueError, "3"),
    "member-step-wrong-state": (lambda w: w["member"].step(torch.zeros(2, 5),
                                                           torch.zeros(2, 3)),
                                ValueError, "[B, 8]"),
    "fixed-points-nan-input": (lambda w: da.find_fixed_points(
        w["step"], torch.tensor([0.0, NAN, 0.0]), torch.zeros(8, 8)), ValueError, "x_const"),
    "fixed-points-nan-inits": (lambda w: da.find_fixed_points(
        w["step"], torch.zeros(3), torch.full((8, 8), NAN)), ValueError, "inits"),
    "fixed-points-wrong-state": (lambda w: da.find_fixed_points(
        w["step"], torch.zeros(3), torch.zeros(8, 5)), ValueError, "8"),
    "fit-embedding-broadcast-outputs": (lambda w: w["module"].fit_embedding(
        w["x"], outputs=torch.zeros(1, 1, 3), steps=1), ValueError, "outputs must be"),
    "fit-embedding-nothing": (lambda w: w["module"].fit_embedding(w["x"]), ValueError,
                              "needs outputs"),
    "meta-model-at-nan": (lambda w: w["module"].meta_model_at(torch.tensor([0.0, NAN])),
                          ValueError, "finite"),
    "meta-model-at-wrong-size": (lambda w: w["module"].meta_model_at(torch.zeros(3)),
                                 ValueError, "[2]"),
    "read-junk-checkpoint": (lambda w: read_checkpoint(w["root"] / "junk.ckpt"),
                             CheckpointError, "not a readable checkpoint"),
    "load-missing-checkpoint": (lambda w: load_module(w["root"] / "none.ckpt"),
                                CheckpointError, "not found"),
    "unknown-task": (lambda w: dl.tasks.get("flipflopp"), KeyError, "flipflopp"),
    "bad-task-argument": (lambda w: dl.tasks.get("flipflop", n_bits=0), ValueError,
                          "n_bits must be a positive integer"),
    "bad-search-options": (lambda w: da.SearchOptions(tol=math.inf), ValueError, "tol"),
    "interpolate-unknown-member": (lambda w: da.interpolate(w["module"], "gru-s0", "nobody"),
                                   ValueError, "unknown member 'nobody'"),
    "project-nan-embeddings": (lambda w: da.project(torch.tensor([[NAN, 0.0, 1.0]] * 4)),
                               ValueError, "NaN"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_api_raises_one_clear_error(name: str, world: dict) -> None:
    call, kind, match = CASES[name]
    with pytest.raises(kind) as info:
        call(world)
    assert match in str(info.value), str(info.value)


def test_nothing_was_written_or_lost(world: dict) -> None:
    root: Path = world["root"]
    assert (root / "notes" / "todo.txt").read_text() == "keep me"
    assert not (root / "nowhere").exists()
