"""``dynamo analyze`` and the analysis report: files, schema, self-containment, errors."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from paths import CONF as TEST_CONF

from dynamo_lightning import tasks
from dynamo_lightning.analysis import build_report, map_figure
from dynamo_lightning.analysis.report import validate_report, write_report
from dynamo_lightning.analysis.report.pairs import parse_pairs, resolve_pairs
from dynamo_lightning.analysis.selection import auto_pairs
from dynamo_lightning.cli import main
from dynamo_lightning.cli.analyze import AnalysisInputError, population_dir
from dynamo_lightning.cli.demo import write_demo_report
from dynamo_lightning.module import DynamoModule
from dynamo_lightning.population import Population

CONF = str(TEST_CONF)
TINY = os.path.join(CONF, "dynamo_tiny.yaml")
# Small searches: the tests check the report's shape, not the quality of the fixed points.
FAST = ["--trials", "16", "--inits-per-member", "8", "--max-iters", "40", "--steps", "3",
        "--grid-resolution", "3", "--no-progress"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fitted(tiny_population: Population, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny population, one ``dynamo fit`` on it, and ``dynamo analyze`` of its checkpoint."""
    root = tmp_path_factory.mktemp("report")
    pop_dir = tiny_population.save(root / "population")
    assert main(["fit", "--config", TINY, f"--data.population={pop_dir}",
                 f"--data.cache_dir={root / 'cache'}", f"--trainer.default_root_dir={root}"]) == 0
    ckpt = root / "checkpoints" / "last.ckpt"
    out = root / "report"
    assert main(["analyze", "--ckpt", str(ckpt), "--out", str(out), *FAST]) == 0
    return {"root": root, "population": pop_dir, "ckpt": ckpt, "out": out,
            "report": json.loads((out / "report.json").read_text())}


def test_report_html_is_self_contained(fitted: dict) -> None:
    page = (fitted["out"] / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert not re.search(r"<script[^>]*\bsrc", page) and "<link" not in page  # inline only
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == len(fitted["report"]["figures"]) > 0  # every PNG, inlined once
    assert all(base64.b64decode(i)[:8] == PNG_MAGIC for i in images)
    for heading in ("Map of the population", "Members", "Emulation", "Fixed points",
                    "Interpolation", "Topology map", "The map beside similarity baselines",
                    "Model averaging"):
        assert f"<h2>{heading}</h2>" in page
    assert page.count("How to read this.") == 7
    assert plt.get_fignums() == []  # every figure was closed


def test_report_json_follows_the_schema(fitted: dict, tiny_population: Population) -> None:
    text = (fitted["out"] / "report.json").read_text()

    def no_constant(name: str) -> None:
        raise AssertionError(f"report.json holds {name}, which is not JSON")

    report = json.loads(text, parse_constant=no_constant)
    validate_report(report)  # required keys and types of every section
    n = len(tiny_population)
    meta = report["meta"]
    assert meta["schema_version"] == 1 and meta["num_members"] == n
    assert meta["embedding_dim"] == 2 and meta["task"]["name"] == "flipflop"
    assert meta["checkpoint"] == str(fitted["ckpt"])
    assert meta["population"]["checksum"] == tiny_population.checksum
    assert meta["population"]["checksum_matches"] is True
    assert meta["options"]["inits_per_member"] == 8 and meta["options"]["steps"] == 3
    members = report["members"]
    assert [m["id"] for m in members] == tiny_population.ids
    module = DynamoModule.load_from_checkpoint(fitted["ckpt"])
    np.testing.assert_allclose([m["theta"] for m in members], module.embeddings().numpy(),
                               rtol=1e-6)
    for m in members:  # the test pass ran: every score is a number
        assert all(isinstance(v, float) for v in m["scores"].values()), m["scores"]
    assert set(report["emulation"]["keys"]) == set(members[0]["scores"])
    points = report["fixed_points"]
    assert len(points["members"]) == n and points["input"] == "zeros"
    for row in points["members"]:
        assert row["match"] == (row["member"]["stable"] == row["meta"]["stable"])
        assert row["meta"]["total"] == sum(row["meta"][k] for k in points["kinds"])
    matches = [r["match"] for r in points["members"]]
    assert points["match_fraction"] == pytest.approx(sum(matches) / n)
    pairs = report["interpolation"]["pairs"]
    # gru-s0/gru-s1 share a cluster; the across pairs join the other clusters.
    assert [(p["id_i"], p["id_j"], p["relation"]) for p in pairs] == [
        ("gru-s0", "gru-s1", "within"), ("gru-s1", "vanilla-s2", "across"),
        ("gru-s1", "lstm-s3", "across")]
    for pair, bif in zip(pairs, report["bifurcations"], strict=True):
        result = pair["result"]
        assert result["alphas"] == [0.0, 0.5, 1.0] and len(result["task_metric"]) == 3
        assert result["endpoints"] == [pair["id_i"], pair["id_j"]]
        assert bif["alphas"] == result["bifurcations"] and bif["i"] == pair["i"]
    grid = report["grid"]  # d = 2: the topology map over the map's bounding box
    assert grid["resolution"] == 3 and grid["figure"] == "grid.png"
    cells = np.array(grid["result"]["theta_grid"])
    assert cells.shape == (3, 3, 2) and np.all(np.diff(cells[0, :, 0]) > 0)
    assert np.array(grid["result"]["counts"]["stable"]).shape == (3, 3)
    thetas = np.array([m["theta"] for m in members])
    assert np.all(cells[0, 0] < thetas.min(0)) and np.all(cells[-1, -1] > thetas.max(0))


def test_every_referenced_png_exists(fitted: dict) -> None:
    report, out = fitted["report"], fitted["out"]
    named = set(report["figures"])
    assert named == {p.name for p in out.glob("*.png")}
    for name in named:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert set(report["map"]["figures"].values()) <= named
    assert {f"map_{k}.png" for k in report["map"]["keys"]} <= named
    assert "map_architecture.png" in named and report["emulation"]["figure"] == "emulation.png"
    assert report["fixed_points"]["figures"]  # a few members, member vs meta side by side
    assert all(name.startswith("fixed_points_") and name in named
               for name in report["fixed_points"]["figures"].values())
    for pair in report["interpolation"]["pairs"]:
        assert pair["figure"] == f"interpolation_{pair['i']}_{pair['j']}.png"
        assert pair["figure"] in named


def test_moved_population_is_named_with_the_fix(fitted: dict, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    checkpoint = torch.load(fitted["ckpt"], map_location="cpu", weights_only=True)
    gone = tmp_path / "moved_away" / "population"
    checkpoint["hyper_parameters"]["population_path"] = str(gone)
    moved = tmp_path / "moved.ckpt"
    torch.save(checkpoint, moved)
    assert main(["analyze", "--ckpt", str(moved), "--out", str(tmp_path / "r"), *FAST]) == 2
    err = capsys.readouterr().err
    assert str(gone) in err and "--population" in err and "moved" in err
    assert not (tmp_path / "r").exists()
    module = DynamoModule.load_from_checkpoint(moved)
    assert population_dir(module, fitted["population"]) == fitted["population"]
    with pytest.raises(AnalysisInputError, match=r"manifest\.json not found"):
        population_dir(module, tmp_path)


def test_missing_checkpoint_and_bad_pairs_are_named(fitted: dict, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    assert main(["analyze", "--ckpt", str(tmp_path / "none.ckpt"), "--out", str(tmp_path)]) == 2
    assert "none.ckpt not found" in capsys.readouterr().err
    argv = ["analyze", "--ckpt", str(fitted["ckpt"]), "--out", str(tmp_path / "r"), *FAST]
    assert main([*argv, "--pairs", "gru-s0:nobody"]) == 2
    assert "unknown member 'nobody'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--pairs", "gru-s0"])
    assert "a:b,c:d" in capsys.readouterr().err
    assert main([*argv, "--grid-resolution", "1", "--no-test"]) == 2  # before any work
    assert "grid_resolution must be 0 (no grid) or an integer >= 2" in capsys.readouterr().err
    assert main([*argv, "--device", "gpu9", "--no-test"]) == 2
    assert "--device gpu9: Invalid device string" in capsys.readouterr().err
    assert main([*argv, "--baselines", "cka,svcca", "--no-test"]) == 2  # before any work
    assert "unknown method(s) ['svcca']" in capsys.readouterr().err


def test_report_compares_the_map_with_every_baseline(fitted: dict) -> None:
    section = fitted["report"]["baselines"]
    methods = section["methods"]
    assert list(methods) == ["dynamo", "cka", "procrustes", "weights", "dsa"]
    # the tiny population has one task: the clusters are counted by architecture
    assert section["key"] == "architecture" and section["n_clusters"] == 3
    n = fitted["report"]["meta"]["num_members"]
    for name, entry in methods.items():
        if entry["error"]:  # only a baseline whose optional package is missing
            assert name == "dsa" and "dynamo-lightning[baselines]" in entry["error"]
            continue
        assert len(entry["labels"]) == n and len(entry["mds"]) == n
        assert set(entry["scores"]) >= {"architecture"} and "dissimilarity" not in entry
        assert -1.0 <= entry["scores"]["architecture"]["ari"] <= 1.0
    assert section["figure"] == "baselines.png" and "baselines.png" in fitted["report"]["figures"]


def test_report_averages_each_computation(fitted: dict) -> None:
    section = fitted["report"]["averaging"]
    assert section["key"] == "task"
    [row] = section["groups"]  # one task: every member in one group
    assert row["group"] == "flipflop" and len(row["members"]) == 4
    assert row["members_mean"] == pytest.approx(sum(row["member_metrics"]) / 4)
    assert set(row["weight_average"]) == {"gru"}  # the only architecture with two members
    assert 0.0 <= row["centroid"] <= 1.0 and len(row["theta_bar"]) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_analyze_runs_the_searches_on_a_gpu(fitted: dict, tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    assert main(["analyze", "--ckpt", str(fitted["ckpt"]), "--out", str(out), "--device",
                 "cuda", "--no-test", *FAST]) == 0
    report = json.loads((out / "report.json").read_text())
    validate_report(report)
    assert report["meta"]["machine"]["device"] == torch.cuda.get_device_name(0)
    assert [r["id"] for r in report["fixed_points"]["members"]] == [
        r["id"] for r in fitted["report"]["fixed_points"]["members"]]
    assert report["grid"]["figure"] == "grid.png" and (out / "grid.png").is_file()


def test_build_report_takes_scores_and_explicit_pairs(fitted: dict) -> None:
    module = DynamoModule.load_from_checkpoint(fitted["ckpt"])
    population = Population.load(fitted["population"])
    scores = {"hidden_r2": [0.5, 0.6, 0.7, float("nan")], "output_agreement": [1.0] * 4}
    report = build_report(module, population, scores=scores, pairs=[("lstm-s3", 0)], steps=2,
                          trials=8, inits_per_member=4, max_iters=10, progress=False)
    assert [m["scores"]["hidden_r2"] for m in report["members"]] == [0.5, 0.6, 0.7, None]
    assert report["members"][0]["scores"]["task_metric_meta"] is None  # not given
    assert report["emulation"]["median"]["hidden_r2"] == pytest.approx(0.6)
    assert report["emulation"]["keys"] == ["hidden_r2", "output_agreement"]
    assert [(p["i"], p["j"]) for p in report["interpolation"]["pairs"]] == [(3, 0)]
    assert report["figures"] == []  # build_report computes; write_report draws
    short = tasks.get("flipflop", n_bits=3, seq_len=8)  # another input task than the fit's
    report = build_report(module, population, short, pairs="none", trials=4,
                          inits_per_member=2, max_iters=5, grid_resolution=0, progress=False)
    assert report["meta"]["task"] == {"name": "flipflop", "config": short.config()}
    assert report["interpolation"]["pairs"] == [] and report["bifurcations"] == []
    assert report["grid"] is None and "grid" not in report["meta"]["timings"]
    report = build_report(module, population, pairs="none", trials=4, inits_per_member=2,
                          max_iters=5, grid_resolution=0, baselines="none", averaging=False,
                          progress=False)
    assert report["baselines"] is None and report["averaging"] is None
    with pytest.raises(ValueError, match=r"unknown report option.*inits"):
        build_report(module, population, inits=4)
    with pytest.raises(ValueError, match="not the module's"):
        build_report(module, population[:3])


def test_demo_stage_reuses_the_test_scores(fitted: dict, tmp_path: Path) -> None:
    fit = tmp_path / "fit" / "checkpoints"
    fit.mkdir(parents=True)
    (fit / "last.ckpt").write_bytes(fitted["ckpt"].read_bytes())
    ids = [m["id"] for m in fitted["report"]["members"]]
    summary = {"members": [{"id": i, "hidden_r2": 0.25 + k / 10, "output_agreement": 0.5}
                           for k, i in enumerate(ids)]}
    report_dir = write_demo_report(tmp_path, summary)
    assert report_dir == tmp_path / "report" and (report_dir / "report.html").is_file()
    report = json.loads((report_dir / "report.json").read_text())
    assert [m["scores"]["hidden_r2"] for m in report["members"]] == [0.25, 0.35, 0.45, 0.55]


def test_auto_pairs_within_then_across_clusters() -> None:
    meta = [{"task": "flipflop", "architecture": a} for a in
            ("gru", "gru", "gru", "lstm", "lstm", "vanilla", "ugrnn")]
    assert auto_pairs(meta) == [(0, 1), (3, 4), (2, 4), (5, 6)]
    labelled = [{"task": "mixture", "task_label": t, "architecture": "gru"} for t in "aabb"]
    assert auto_pairs(labelled) == [(0, 1), (2, 3), (1, 3)]
    assert auto_pairs([{"architecture": "gru"}]) == []
    # two computations × two architectures: across pairs change the computation only
    mixed = [{"task": t, "architecture": a} for t in ("flipflop", "integrator")
             for a in ("gru", "gru", "vanilla", "vanilla")]
    assert auto_pairs(mixed) == [(0, 1), (2, 3), (1, 5), (3, 7)]
    ids = ["a", "b", "c"]
    assert resolve_pairs([("c", "0")], ids, [{}] * 3) == [(2, 0)]
    assert resolve_pairs("none", ids, [{}] * 3) == []
    assert parse_pairs("a:b,2:0") == [("a", "b"), ("2", "0")]
    with pytest.raises(ValueError, match="itself"):
        resolve_pairs([("a", 0)], ids, [{}] * 3)


def test_map_figure_draws_a_panel_per_key() -> None:
    xy = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    meta = [{"architecture": a, "task_metric": m} for a, m in
            (("gru", 0.91), ("lstm", 0.55), ("gru", 0.73))]
    fig = map_figure(xy, ["a", "b", "c"], meta, ["architecture", "task_metric"], "pca", 2,
                     annotate=True)
    try:
        visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
        assert [ax.get_title() for ax in visible] == ["architecture", "task_metric"]
        assert len(fig.axes) == 3  # two panels and the task_metric colorbar
    finally:
        plt.close(fig)


def test_long_category_labels_are_cut_and_their_legend_sits_under_the_axes() -> None:
    configs = [{"n_bits": 3, "seq_len": 64, "pulse_prob": 0.05},
               {"n_channels": 3, "seq_len": 64, "noise": 0.1, "leak": 0.1, "bound": 1.0}]
    meta = [{"task_config": configs[i % 2], "architecture": "gru" if i < 2 else "lstm"}
            for i in range(4)]
    xy = np.arange(8.0).reshape(4, 2)
    fig = map_figure(xy, list("abcd"), meta, ["task_config", "architecture"], "pca", 2)
    try:
        long, short = (ax.get_legend() for ax in fig.axes[:2])
        labels = [t.get_text() for t in long.get_texts()]
        assert max(map(len, labels)) <= 60 and labels[1].endswith("…")
        assert long.get_bbox_to_anchor().y0 < fig.axes[0].get_window_extent().y0  # below
        assert short._loc == 0  # "best": short labels stay inside
    finally:
        plt.close(fig)


def test_stacked_member_search_equals_member_by_member() -> None:
    from dynamo_lightning.analysis import find_fixed_points, member_step_fn
    from dynamo_lightning.analysis.member_dynamics import StackStep
    from dynamo_lightning.population.architectures import MemberNetwork, build

    stack = build("gru", num_members=3, seeds=[0, 1, 2], input_size=3, output_size=3,
                  hidden_size=8).requires_grad_(False)
    rows = torch.arange(3).repeat_interleave(5)
    step = StackStep(stack, rows)
    h, x = torch.randn(15, 8), torch.randn(15, 3)
    alone = [MemberNetwork(build("gru", num_members=1, seeds=[g], input_size=3, output_size=3,
                                 hidden_size=8)) for g in range(3)]
    want = torch.cat([alone[g].step(h[rows == g], x[rows == g]) for g in range(3)])
    torch.testing.assert_close(step(h, x), want)
    some = torch.tensor([0, 3, 6, 7, 14])  # after converged rows leave the batch
    torch.testing.assert_close(step.subset(some)(h[some], x[some]), want[some])
    inits = 0.5 * torch.randn(15, 8, generator=torch.Generator().manual_seed(0))
    found = find_fixed_points(step, torch.zeros(3), inits, groups=step.groups, max_iters=300)
    for g, part in enumerate(found.split()):
        own = find_fixed_points(member_step_fn(alone[g]), torch.zeros(3), inits[rows == g],
                                max_iters=300)
        assert part.kind == own.kind
        torch.testing.assert_close(part.points, own.points, atol=1e-4, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_stacked_member_search_on_cuda_graphs_matches_eager(arch: str) -> None:
    from dynamo_lightning.analysis import find_fixed_points
    from dynamo_lightning.analysis.member_dynamics import StackStep
    from dynamo_lightning.population.architectures import build

    stack = build(arch, num_members=3, seeds=[0, 1, 2], input_size=3, output_size=3,
                  hidden_size=8).requires_grad_(False).cuda()
    rows = torch.arange(3).repeat_interleave(16).cuda()
    step = StackStep(stack, rows)
    size = 16 if arch == "lstm" else 8
    inits = 0.5 * torch.randn(48, size, generator=torch.Generator().manual_seed(0)).cuda()
    runs = [find_fixed_points(step, torch.zeros(3, device="cuda"), inits, groups=step.groups,
                              max_iters=400, cuda_graphs=graphs) for graphs in (True, False)]
    assert runs[0].kind == runs[1].kind and runs[0].iterations == runs[1].iterations
    torch.testing.assert_close(runs[0].points, runs[1].points, atol=1e-4, rtol=0)


def test_interpolation_table_cells_show_each_sub_task_of_a_mixture() -> None:
    from dynamo_lightning.analysis.report.html import _metric_cells

    single = {"task_metric": [0.9, None, 0.7, 0.8], "task_metrics": {}}
    assert _metric_cells(single) == [0.9, 0.7, 0.8]
    mixed = {"task_metric": [0.5, 0.5], "task_metrics": {"ff:acc": [1.0, 0.9],
                                                         "int:r2": [-2.0, 0.95]}}
    assert _metric_cells(mixed) == ["ff:acc 1.000; int:r2 -2.000", "ff:acc 0.900; int:r2 -2.000",
                                    "ff:acc 0.900; int:r2 0.950"]


def _scored_members(count: int, with_task: bool) -> dict:
    """A report's ``members`` and ``emulation``/``meta`` parts, scores drawn at random."""
    rng = np.random.default_rng(0)
    archs = ["gru", "lstm", "vanilla"]
    members = [{"id": f"{archs[i % 3]}-{i}", "metadata": {"architecture": archs[i % 3]},
                "scores": {"hidden_r2": float(rng.uniform(0.8, 1.0)), "output_r2": None,
                           "output_agreement": float(rng.uniform(0.9, 1.0)),
                           "task_metric_meta": float(rng.uniform(0, 1)) if with_task else None,
                           "task_metric_member": float(rng.uniform(0, 1)) if with_task else None}}
               for i in range(count)]
    members[7]["scores"]["hidden_r2"] = 0.5  # the lowest, named in the large figure
    return {"members": members, "emulation": {"keys": ["hidden_r2", "output_agreement"]},
            "meta": {"metric_name": "accuracy"}}


@pytest.mark.parametrize("count", [12, 5000])
def test_emulation_png_stays_readable_at_any_population_size(count: int, tmp_path: Path,
                                                             monkeypatch) -> None:
    """Up to LABELLED_UP_TO members each is a labelled marker; thousands become one box per
    architecture, so the figure's width no longer grows with N (it was 0.45 inch a member:
    90,000 pixels at 2,000 members)."""
    from dynamo_lightning.analysis.report import figures

    titles: list[str] = []
    save = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, path: (
        titles.extend(ax.get_title(loc="left") for ax in fig.axes), save(fig, path)))
    name = figures._emulation_png(_scored_members(count, with_task=True), tmp_path)
    height, width = plt.imread(tmp_path / name).shape[:2]
    if count <= figures.LABELLED_UP_TO:
        assert width > 0.45 * count * figures.DPI  # a column per member
    else:
        assert width < 1000 and height < 1000
        assert "lowest: lstm-7 (0.5)" in titles[0]


def test_a_mixed_populations_emulation_boxes_split_by_task_on_its_own_metric(
        tmp_path: Path, monkeypatch) -> None:
    """Members of two computations: a box per architecture and task, and the task-metric
    axis says each member is scored on its own task (not the mixture's mean)."""
    from dynamo_lightning.analysis.report import figures

    report = _scored_members(120, with_task=True)
    for i, member in enumerate(report["members"]):
        member["metadata"]["task"] = ["flipflop", "integrator"][i % 2]
    report["meta"] = {"metric_name": "mean_task_metric", "task": {"name": "mixture"}}
    seen: dict[str, list[str]] = {}
    save = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, path: (
        seen.update(ticks=[t.get_text() for t in fig.axes[-1].get_xticklabels()],
                    ylabel=[fig.axes[-1].get_ylabel()]), save(fig, path)))
    figures._emulation_png(report, tmp_path)
    assert len(seen["ticks"]) == 6  # 3 architectures × 2 tasks
    assert "gru\nflipflop\n(20)" in seen["ticks"] and "lstm\nintegrator\n(20)" in seen["ticks"]
    assert seen["ylabel"] == ["own task's metric"]


def test_a_report_stopped_while_writing_is_marked(fitted: dict, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An earlier report's index must not sit beside half of a new report's figures."""
    import dynamo_lightning.analysis.report as report_module

    out = tmp_path / "report"
    shutil.copytree(fitted["out"], out)  # an earlier, complete report in the folder
    assert not (out / report_module.INCOMPLETE).exists()

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_module, "write_html", stopped)
    module = DynamoModule.load_from_checkpoint(fitted["ckpt"])
    with pytest.raises(KeyboardInterrupt):
        write_report(module, Population.load(fitted["population"]), out, steps=2, trials=8,
                     inits_per_member=4, max_iters=10, progress=False, grid_resolution=0)
    assert "Run `dynamo analyze` again" in (out / report_module.INCOMPLETE).read_text()
    assert not (out / "report.html").exists()  # the earlier one's index is gone
    monkeypatch.undo()
    write_report(module, Population.load(fitted["population"]), out, steps=2, trials=8,
                 inits_per_member=4, max_iters=10, progress=False, grid_resolution=0)
    assert not (out / report_module.INCOMPLETE).exists() and (out / "report.html").is_file()
