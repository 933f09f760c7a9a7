"""``report.html`` in a real browser: hovering names a member, the select recolours the map,
the topology map's cells tell their θ, and the page requests nothing but itself.

Runs when the Python package ``playwright`` and a Chromium are present (``make browser-test``
installs both: Debian's Chromium, never ``playwright install``), and skips otherwise.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the browser test needs the Python package playwright (make browser-test)")
CHROMIUM = shutil.which("chromium") or next(
    (p for p in ("/usr/bin/chromium",) if Path(p).is_file()), None)
if CHROMIUM is None:
    pytest.skip("no Chromium (/usr/bin/chromium or on PATH; make browser-test installs it)",
                allow_module_level=True)

from dynamo_lightning.analysis.report import write_report  # noqa: E402
from dynamo_lightning.population import Population  # noqa: E402

# This machine has no network: Chromium's own background connections are switched off.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report_page(tiny_fit: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``report.html`` (with its PNGs) of the tiny fit, small searches, a 3 × 3 grid."""
    out = tmp_path_factory.mktemp("browser_report")
    scores = {"hidden_r2": [0.9, 0.8, 0.5, None], "output_agreement": [1.0, 0.9, 0.7, 0.6]}
    write_report(tiny_fit["module"], Population.load(tiny_fit["population"]), out,
                 scores=scores, trials=4, inits_per_member=2, max_iters=5, steps=2,
                 pairs="none", grid_resolution=3, grid_inits=2, baselines="none",
                 averaging=False, progress=False)
    return {"url": (out / "report.html").as_uri(),
            "report": json.loads((out / "report.json").read_text())}


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        yield p


def launch(playwright: Any, profile: Path, javascript: bool = True) -> Any:
    """Debian's Chromium on a fresh profile (a persistent context: its own user-data-dir)."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, args=ARGS, headless=True,
        java_script_enabled=javascript, viewport={"width": 1100, "height": 900})


@pytest.fixture(scope="module")
def browser(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    context = launch(playwright, tmp_path_factory.mktemp("chromium_profile"))
    yield context
    context.close()


@pytest.fixture()
def opened(browser: Any, report_page: dict) -> Iterator[dict]:
    """The report in a new tab, with every request and every console error it causes."""
    page = browser.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(report_page["url"])
    yield {"page": page, "requests": requests, "errors": errors, **report_page}
    page.close()


def isolated_member(report: dict) -> int:
    """The member farthest from its nearest neighbour on the map (no point covers it)."""
    xy = [m["map"] for m in report["members"]]
    return max(range(len(xy)), key=lambda i: min(
        math.dist(xy[i], xy[j]) for j in range(len(xy)) if j != i))


def hover(page: Any, item: Any) -> None:
    """The pointer onto an item's centre (a real move: covered items are found too)."""
    item.scroll_into_view_if_needed()
    box = item.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def fills(chart: Any) -> list[str]:
    return chart.locator("svg .items > *").evaluate_all("(n) => n.map(e => e.getAttribute('fill'))")


def test_hovering_a_member_shows_its_id_metadata_and_scores(opened: dict) -> None:
    page, report = opened["page"], opened["report"]
    chart = page.locator("[data-chart]").first
    assert chart.is_visible() and not page.locator("details.static").first.get_attribute("open")
    i = isolated_member(report)
    member = report["members"][i]
    tip = chart.locator(".tip")
    assert tip.is_hidden()
    hover(page, chart.locator(f"circle[data-i='{i}']"))
    assert tip.is_visible()
    text = tip.inner_text()
    assert text.splitlines()[0] == member["id"]
    assert member["metadata"]["architecture"] in text and "hidden_r2" in text
    page.mouse.move(1, 1)
    assert tip.is_hidden()
    other = (i + 1) % len(report["members"])
    chart.locator(f"circle[data-i='{other}']").focus()  # the keyboard gets the same tooltip
    assert tip.inner_text().splitlines()[0] == report["members"][other]["id"]
    assert opened["errors"] == []


def test_the_select_recolours_the_points(opened: dict) -> None:
    chart = opened["page"].locator("[data-chart]").first
    legend = chart.locator(".legend")
    before = fills(chart)
    assert legend.inner_text().startswith("architecture") and len(set(before)) == 3
    chart.locator("select").select_option(label="seed")
    after = fills(chart)
    assert after != before and len(set(after)) == 4  # four seeds, four colours
    assert legend.inner_text().startswith("seed")
    chart.locator("select").select_option(label="output_agreement")  # a number: a scale
    assert all(f.startswith("rgb(") for f in fills(chart))
    assert legend.locator(".bar").count() == 1
    assert opened["errors"] == []


def test_hovering_a_topology_cell_shows_its_theta_and_values(opened: dict) -> None:
    page, report = opened["page"], opened["report"]
    chart = page.locator("[data-chart]").nth(1)
    centre = report["grid"]["result"]["theta_grid"][1][1]
    hover(page, chart.locator("rect[data-i='4']"))  # row 1, column 1 of the 3 × 3 grid
    text = chart.locator(".tip").inner_text()
    assert text.startswith(f"θ = ({centre[0]:.3f}, {centre[1]:.3f})")
    stable = report["grid"]["result"]["counts"]["stable"][1][1]
    assert f"stable fixed points\t{stable}" in text
    assert chart.locator("svg .overlay circle").count() == len(report["members"])


def test_the_page_requests_nothing_but_itself(opened: dict) -> None:
    page = opened["page"]
    chart = page.locator("[data-chart]").first
    hover(page, chart.locator("circle[data-i='0']"))
    chart.locator("select").select_option(label="cluster")
    page.wait_for_load_state("networkidle")
    assert opened["requests"] == [opened["url"]]
    assert opened["errors"] == []


def test_without_javascript_the_pngs_remain(playwright: Any, report_page: dict,
                                            tmp_path: Path) -> None:
    context = launch(playwright, tmp_path / "profile", javascript=False)
    try:
        page = context.new_page()
        page.goto(report_page["url"])
        assert page.locator("[data-chart]").first.is_hidden()
        static = page.locator("details.static").first
        assert static.get_attribute("open") is not None
        assert static.locator("img").first.is_visible()
    finally:
        context.close()
