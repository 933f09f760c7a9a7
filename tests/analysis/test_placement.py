"""Placing new networks on a fitted map: ``analysis.placement`` and ``dynamo place``."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch

from dynamo_lightning.analysis import placement
from dynamo_lightning.analysis.placement import group_centres, locate, place
from dynamo_lightning.analysis.placement_figure import placement_figure
from dynamo_lightning.analysis.theta_evaluation import draw_trials
from dynamo_lightning.cli import main
from dynamo_lightning.population import Population, architectures
from dynamo_lightning.population.member import Member

FAST = {"trials": 16, "steps": 10}


# ---------------------------------------------------------------- pure bookkeeping
def _hand_made() -> placement.Placement:
    """Groups a (θ's (0, 0), (0, 2)) and b ((10, 0), (10, 2)); centres (0, 1) and (10, 1)."""
    fitted = torch.tensor([[0.0, 0.0], [0.0, 2.0], [10.0, 0.0], [10.0, 2.0]])
    fitted_meta = [{"task": "a"}, {"task": "a"}, {"task": "b"}, {"task": "b"}]
    new = torch.tensor([[1.0, 0.5], [9.0, 1.0], [5.0, 1.0]])
    new_meta = [{"task": "a"}, {"task": "a"}, {"seed": 1}]
    return locate(fitted, ["a0", "a1", "b0", "b1"], fitted_meta, new, ["n0", "n1", "n2"],
                  new_meta, key="task", losses=[0.1, 0.2, 0.3], neighbours=2)


def test_locate_finds_nearest_members_and_centres_on_known_thetas() -> None:
    p = _hand_made()
    assert p.groups == ["a", "b"] and p.group_sizes == [2, 2]
    torch.testing.assert_close(p.centres, torch.tensor([[0.0, 1.0], [10.0, 1.0]]))
    torch.testing.assert_close(p.centre_distances[:2],
                               torch.tensor([[math.hypot(1, 0.5), math.hypot(9, 0.5)], [9.0, 1.0]]))
    assert [n for n, _ in p.neighbours[0]] == ["a0", "a1"]
    assert p.neighbours[0][0][1] == pytest.approx(math.hypot(1, 0.5))
    assert [n for n, _ in p.neighbours[1]] == ["b0", "b1"]
    assert p.nearest_centre[:2] == ["a", "b"]
    assert p.correct == [True, False, None]  # n2 has no task: nothing to check
    assert p.fraction_correct == 0.5
    assert p.diameter == pytest.approx(math.hypot(10, 2))


def test_a_map_with_one_group_gives_no_verdict() -> None:
    """Every member is nearest the only centre: "correct" could not come out otherwise."""
    fitted = torch.tensor([[0.0, 0.0], [0.0, 2.0], [10.0, 0.0]])
    p = locate(fitted, ["a0", "a1", "a2"], [{"task": "a"}] * 3, torch.tensor([[1.0, 1.0]]),
               ["n0"], [{"task": "a"}], key="task", losses=[0.1], neighbours=2)
    assert p.groups == ["a"] and p.nearest_centre == ["a"]
    assert p.correct == [None] and p.fraction_correct is None
    assert "| – |" in p.to_markdown()


def test_to_dict_is_plain_json_with_relative_distances() -> None:
    record = json.loads(json.dumps(_hand_made().to_dict(), allow_nan=False))
    assert record["key"] == "task" and record["fraction_correct"] == 0.5
    assert record["groups"][1] == {"value": "b", "centre": [10.0, 1.0], "members": 2}
    first = record["members"][0]
    assert first["id"] == "n0" and first["theta"] == [1.0, 0.5] and first["loss"] == 0.1
    assert first["nearest_centre"]["value"] == "a"
    relative = first["nearest_centre"]["relative_distance"]
    assert relative == pytest.approx(math.hypot(1, 0.5) / math.hypot(10, 2))
    assert first["neighbours"][0]["id"] == "a0" and len(first["neighbours"]) == 2
    assert set(first["centre_distances"]) == {"a", "b"}
    assert [m["correct"] for m in record["members"]] == [True, False, None]


def test_to_markdown_has_one_row_per_member() -> None:
    rows = _hand_made().to_markdown().splitlines()
    assert len(rows) == 2 + 3
    assert rows[3].startswith("| n1 |") and rows[3].endswith("| no |")


def test_group_centres_skip_members_without_the_key_and_name_missing_keys() -> None:
    groups, centres, sizes = group_centres(torch.tensor([[0.0], [2.0], [9.0]]),
                                           [{"task": 1}, {"task": 1}, {}], "task")
    assert groups == ["1"] and sizes == [2] and centres.tolist() == [[1.0]]
    with pytest.raises(ValueError, match=r"'colour'.*keys: task"):
        group_centres(torch.zeros(2, 2), [{"task": "a"}, {"task": "b"}], "colour")


def test_placement_figure_marks_new_points_and_closes_on_error() -> None:
    p = _hand_made()
    fig = placement_figure(torch.tensor([[0.0, 0.0], [0.0, 2.0], [10.0, 0.0], [10.0, 2.0]]),
                           [{"task": "a"}, {"task": "a"}, {"task": "b"}, {"task": "b"}], p)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["n0", "n1", "n2"]
    plt.close(fig)
    before = plt.get_fignums()
    with pytest.raises(ValueError):  # 4 metadata for 3 points: the colours do not fit
        placement_figure(torch.zeros(3, 2), [{"task": "a"}] * 4, p)
    assert plt.get_fignums() == before


# ---------------------------------------------------------------- fitting
@pytest.fixture(scope="module")
def placed_own(tiny_fit: dict) -> placement.Placement:
    pop = Population.load(tiny_fit["population"])
    return place(tiny_fit["module"], pop, key="architecture", **FAST)


def test_place_gives_one_theta_and_record_per_member(tiny_fit: dict,
                                                     placed_own: placement.Placement) -> None:
    module = tiny_fit["module"]
    assert placed_own.ids == module.member_ids
    assert placed_own.thetas.shape == (4, module.embeddings().shape[1])
    assert placed_own.groups == ["gru", "lstm", "vanilla"]
    assert placed_own.centre_distances.shape == (4, 3)
    assert all(len(n) == 3 for n in placed_own.neighbours)
    assert all(math.isfinite(v) for v in placed_own.losses)
    assert len(placed_own.correct) == 4 and None not in placed_own.correct
    json.dumps(placed_own.to_dict(), allow_nan=False)


def test_place_is_fit_embedding_on_fresh_trials_and_deterministic(
        tiny_fit: dict, placed_own: placement.Placement) -> None:
    module, pop = tiny_fit["module"], Population.load(tiny_fit["population"])
    member = pop[0]
    copy = Population([Member("copy", member.architecture, member.config,
                               {**member.metadata, "seed": 99}, member.state)])
    again = place(module, copy, key="architecture", **FAST)
    torch.testing.assert_close(again.thetas[0], placed_own.thetas[0])
    x, _, _ = draw_trials(module.task, FAST["trials"], torch.Generator().manual_seed(0))
    outputs, hidden = member.module(x)
    theta = module.fit_embedding(x, outputs=outputs, hidden=hidden, steps=FAST["steps"])
    torch.testing.assert_close(placed_own.thetas[0], theta.float())


def test_place_refuses_members_of_another_input_size(tiny_fit: dict) -> None:
    with pytest.raises(ValueError, match=r"input_size 3.*'odd' \(2\)"):
        place(tiny_fit["module"], _odd_population(), **FAST)
    with pytest.raises(ValueError, match="trials"):
        place(tiny_fit["module"], Population.load(tiny_fit["population"]), trials=0)


def _odd_population() -> Population:
    stack = architectures.build("gru", num_members=1, seeds=[0], input_size=2,
                                output_size=3, hidden_size=4)
    return Population.from_stack("gru", stack, ["odd"], [{"task": "flipflop"}])


# ---------------------------------------------------------------- command line
def test_cli_writes_json_png_and_markdown_into_the_run_by_default(
        tiny_fit: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    shutil.copy(tiny_fit["ckpt"], ckpt)
    assert main(["place", "--ckpt", str(ckpt), "--population", str(tiny_fit["population"]),
                 "--trials", "16", "--steps", "5", "--no-progress"]) == 0
    out = tmp_path / "run" / "placement"
    assert {p.name for p in out.iterdir()} == {"placement.json", "placement.png",
                                               "placement.md"}
    record = json.loads((out / "placement.json").read_text())
    assert record["checkpoint"] == str(ckpt) and record["settings"]["trials"] == 16
    assert [m["id"] for m in record["members"]] == tiny_fit["module"].member_ids
    printed = capsys.readouterr().out
    assert "| gru-s0 |" in printed and str(out) in printed


@pytest.fixture
def bad_inputs(tiny_fit: dict, tmp_path: Path) -> dict[str, list[str]]:
    ckpt, pop = str(tiny_fit["ckpt"]), str(tiny_fit["population"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "bad.ckpt").write_text("not a checkpoint")
    odd = str(_odd_population().save(tmp_path / "odd"))
    out = ["--out", str(tmp_path / "out")]  # never the shared fit's run directory
    cases = {
        "not found": ["--ckpt_path", str(tmp_path / "none.ckpt"), "--population", pop],
        "bad.ckpt is not a readable checkpoint (truncated, or not a PyTorch file": [
            "--ckpt_path", str(tmp_path / "bad.ckpt"), "--population", pop],
        "manifest.json not found": ["--ckpt_path", ckpt, "--population",
                                    str(tmp_path / "empty")],
        "input_size 3": ["--ckpt_path", ckpt, "--population", odd],
        "cannot write there": ["--ckpt_path", ckpt, "--population", pop, "--out",
                               str(tmp_path / "file" / "out")],
        "no fitted member has metadata key 'colour'": ["--ckpt_path", ckpt, "--population",
                                                       pop, "--key", "colour"],
    }
    return {k: v if "--out" in v else v + out for k, v in cases.items()}


def test_each_user_mistake_is_one_error_line_and_status_2_before_fitting(
        bad_inputs: dict[str, list[str]], capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement, "place", lambda *a, **k: pytest.fail("fitted anyway"))
    for message, args in bad_inputs.items():
        assert main(["place", *args]) == 2, message
        err = capsys.readouterr().err
        assert err.startswith("dynamo place: error: ") and message in err, (message, err)
        assert err.count("\n") == 1 and "Traceback" not in err


def test_console_command_reports_a_missing_checkpoint_in_one_line(tiny_fit: dict,
                                                                  tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "dynamo_lightning.cli", "place",
                             "--ckpt_path", str(tmp_path / "none.ckpt"), "--population",
                             str(tiny_fit["population"])], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"dynamo place: error: checkpoint {tmp_path / 'none.ckpt'} not found"]
