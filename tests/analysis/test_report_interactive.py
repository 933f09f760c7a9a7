"""The hoverable charts of ``report.html`` (``analysis/report/interactive.py``), without a
browser: the page embeds the report's own data, offers every metadata key, survives hostile
ids, requests nothing and keeps the PNGs for a reader without JavaScript."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from pathlib import Path

import pytest

from dynamo_lightning.analysis import build_report
from dynamo_lightning.analysis.map_figure import metadata_keys
from dynamo_lightning.analysis.report import write_html
from dynamo_lightning.analysis.report.interactive import colouring, json_for_script, script
from dynamo_lightning.population import Population

HOSTILE = "</script><script>alert('id')</script><!--\u2028&amp;"
CHART = re.compile(r"<script type='application/json' class='chart-data'>(.*?)</script>", re.S)


@pytest.fixture(scope="module")
def report(tiny_fit: dict) -> dict:
    """A quick report of the tiny fit (small searches, a 3 × 3 topology map, no PNGs)."""
    scores = {"hidden_r2": [0.9, 0.8, 0.5, None], "output_agreement": [1.0, 0.9, 0.7, 0.6]}
    return build_report(tiny_fit["module"], Population.load(tiny_fit["population"]),
                        scores=scores, trials=4, inits_per_member=2, max_iters=5, steps=2,
                        pairs="none", grid_resolution=3, grid_inits=2, baselines="none",
                        averaging=False, progress=False)


def page_of(report: dict, out: Path) -> str:
    return write_html(report, out).read_text(encoding="utf-8")


def charts_of(page: str) -> list[dict]:
    return [json.loads(text) for text in CHART.findall(page)]


def test_page_embeds_the_members_and_the_topology_map(report: dict, tmp_path: Path) -> None:
    members_chart, grid_chart = charts_of(page_of(report, tmp_path))
    members = report["members"]
    assert members_chart["titles"] == [m["id"] for m in members]
    assert members_chart["xy"] == [m["map"] for m in members]
    rows = dict(members_chart["rows"][2])
    assert rows["architecture"] == "vanilla" and rows["task_config"] == '{"n_bits": 3}'
    assert rows["hidden_r2"] == "0.500" and rows["cluster"] == members[2]["cluster"]
    assert "output_r2" not in rows  # a score the test pass did not give is not listed
    result = report["grid"]["result"]
    assert grid_chart["xy"] == [theta for row in result["theta_grid"] for theta in row]
    assert grid_chart["overlay"] == [m["theta"] for m in members]
    stable = next(c for c in grid_chart["colourings"] if c["name"] == "stable fixed points")
    want = [str(v) for row in result["counts"]["stable"] for v in row]
    assert [stable["order"][k] for k in stable["codes"]] == want
    assert grid_chart["colourings"][grid_chart["default"]] is stable  # the PNG's panel
    assert dict(grid_chart["rows"][0])["stable fixed points"] == want[0]


def test_select_offers_every_metadata_key_and_the_scores(report: dict, tmp_path: Path) -> None:
    page = page_of(report, tmp_path)
    select = re.search(r"<select>(.*?)</select>", page, re.S).group(1)
    options = dict(re.findall(r"<option value='(\d+)'[^>]*>([^<]*)</option>", select))
    keys = metadata_keys([m["metadata"] for m in report["members"]])
    assert set(keys) <= set(options.values()) and "seed" in keys
    assert {"cluster", "hidden_r2", "output_agreement"} <= set(options.values())
    [chart, _] = charts_of(page)
    assert [chart["colourings"][int(n)]["name"] for n in options] == list(options.values())
    chosen = re.search(r"<option value='(\d+)' selected>([^<]*)<", select).groups()
    assert chosen[1] == report["map"]["keys"][0] == "architecture"  # as the first PNG
    assert int(chosen[0]) == chart["default"]


def test_hostile_ids_stay_text(report: dict, tmp_path: Path) -> None:
    hostile = copy.deepcopy(report)
    for m in hostile["members"]:
        m["id"] = HOSTILE + m["id"]
        m["metadata"]["architecture"] = HOSTILE
    page = page_of(hostile, tmp_path)
    assert HOSTILE not in page and "alert('id')</script>" not in page
    # the two data blocks and the script are the page's only <script> elements
    assert page.count("<script") == 3 and page.count("</script>") == 3
    members_chart = charts_of(page)[0]
    assert members_chart["titles"] == [m["id"] for m in hostile["members"]]
    assert dict(members_chart["rows"][0])["architecture"] == HOSTILE
    architecture = next(c for c in members_chart["colourings"] if c["name"] == "architecture")
    assert HOSTILE in architecture["order"]


def test_json_for_script_cannot_end_its_element() -> None:
    data = {"id": HOSTILE, "x": [1.5, None], "<key>": "a\u2029b"}
    text = json_for_script(data)
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == data


def test_page_requests_nothing_and_falls_back_to_the_pngs(report: dict, tmp_path: Path) -> None:
    page = page_of(report, tmp_path)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    assert not re.search(r"<script[^>]*\bsrc", page) and "<link" not in page
    assert not re.search(r"\b(fetch|XMLHttpRequest|import\(|WebSocket)\b", script())
    policy = re.search(r"http-equiv='Content-Security-Policy' content=\"([^\"]+)\"", page)[1]
    assert "default-src 'none'" in policy and "img-src data:" in policy
    code = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy  # the one script allowed to run
    # without JavaScript: the charts stay hidden and their PNGs open below them
    assert page.count("<div class='chart' data-chart hidden>") == 2


def test_pngs_sit_in_an_open_details_below_each_chart(report: dict, tmp_path: Path) -> None:
    with_figure = copy.deepcopy(report)
    with_figure["map"]["figures"] = {"architecture": "map_architecture.png"}
    (tmp_path / "map_architecture.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    page = page_of(with_figure, tmp_path)
    wrap = re.search(r"<div class='chart-wrap'>.*?</details></div>", page, re.S).group(0)
    assert "<details class='static' open>" in wrap
    assert "alt='map_architecture.png' src='data:image/png;base64," in wrap


def test_colouring_follows_the_rule_of_the_png_maps() -> None:
    few = colouring("hidden_size", [16, 8, 8, None], "metadata")
    assert few["kind"] == "category" and few["order"] == ["8", "16", "n/a"]
    assert few["codes"] == [1, 0, 0, 2]
    real = colouring("task_metric", [0.5, 0.75, None], "metadata")
    assert real == {"name": "task_metric", "group": "metadata", "kind": "number",
                    "values": [0.5, 0.75, None], "range": [0.5, 0.75]}
    many = colouring("seed", list(range(30)), "metadata")
    assert many["kind"] == "number" and many["range"] == [0.0, 29.0]
    labels = colouring("task_config", [{"n": 3}, {"n": 3}], "metadata")
    assert labels["order"] == ["{'n': 3}"]  # str(), as the PNG legend writes it
