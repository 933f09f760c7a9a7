"""``report.html``: one self-contained page (inline CSS, PNGs as base64 data URIs).

It reads only ``report.json``'s content and the PNGs it names, so a report can be re-rendered
from its JSON. Every string from the report is HTML-escaped. The map and the topology map
are also drawn by an inline script one can hover (``interactive.py``); a
Content-Security-Policy keeps the page from requesting anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dynamo_lightning.analysis.report import html_parts as hp
from dynamo_lightning.analysis.report import interactive
from dynamo_lightning.analysis.report.html_uses import averaging_html, baselines_html

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#222;line-height:1.45}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
.read{background:#f4f7fb;border-left:4px solid #4a78b5;padding:.5rem .9rem;margin:.6rem 0}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.yes{color:#1a7f37;font-weight:600}.no{color:#b42318;font-weight:600}
.figs{display:flex;flex-wrap:wrap;gap:1rem}.figs figure{margin:0}
img{max-width:100%;border:1px solid #eee}figcaption{font-size:.8rem;color:#555}
.muted{color:#777}code{background:#f3f3f3;padding:0 .2rem}
.chart{position:relative;max-width:700px}.chart .hint{font-size:.85rem;margin:.3rem 0}
.colour{font-size:.85rem}.plot{display:block;width:100%;height:auto}
.plot .axes rect{fill:none;stroke:#999}.plot .axes line{stroke:#999}
.plot text{font-size:12px;fill:#444}.plot .items>*{stroke:#fff;stroke-width:.8}
.plot .items>:focus{outline:none}.plot .items>.on{stroke:#000;stroke-width:2.5}
.plot .overlay circle{fill:#fff;stroke:#000;stroke-width:.8;pointer-events:none}
.legend{display:flex;flex-wrap:wrap;gap:.2rem .9rem;align-items:center;font-size:.8rem}
.legend i{display:inline-block;width:.75rem;height:.75rem;border-radius:50%;margin-right:.3rem}
.legend .bar{display:inline-block;width:10rem;height:.7rem}
.tip{position:absolute;z-index:2;background:#fff;border:1px solid #888;padding:.35rem .55rem;
box-shadow:0 2px 6px rgba(0,0,0,.2);font-size:.78rem;max-width:24rem;pointer-events:none}
.tip table{margin:.2rem 0 0;font-size:.78rem}.tip th,.tip td{border:0;padding:0 .5rem 0 0;
background:none;overflow-wrap:anywhere}
details.static summary{cursor:pointer;color:#555;font-size:.85rem;margin:.4rem 0}
"""
HOVER = {
    "map": "Hover a point, or tab to it, for the member's id, metadata and emulation scores; "
           "the menu colours the points by another metadata key, the cluster or a score.",
    "grid": "Hover a cell, or tab to it, for its θ and every value there; the menu chooses "
            "what colours the cells. White dots: the members.",
}

READ = {
    "map": "Each point is one member's learned embedding θ_n (projected to 2-D by PCA when "
           "d > 2). Nearby points are networks the meta-model emulates with similar dynamics. "
           "Colours are metadata the fit never saw: if members cluster by a key, the map has "
           "recovered that distinction from the dynamics alone.",
    "emulation": "How well the meta-model at θ_n emulates member n on held-out test trials: "
                 "hidden R² of the aligned hidden states (1 = exact), agreement of the outputs, "
                 "and the task metric of the meta-model at θ_n beside the member's own (for a "
                 "mixed population, on the member's own computation's trials). Low "
                 "values flag members the map places unreliably.",
    "fixed_points": "Fixed points under zero input, found from states each network visits "
                    "(Sussillo & Barak 2013). Stable points are the memories/attractors; saddles "
                    "route between them. A member and the meta-model at its θ_n that enact the "
                    "same computation should have the same number of stable points ('match').",
    "interpolation": "The meta-model along the straight segment θ(α) = (1−α)θ_i + αθ_j. Within "
                     "a cluster the task metric should stay high and the topology constant; a "
                     "change in the fixed-point counts is a bifurcation (dashed lines), expected "
                     "mostly between clusters.",
    "grid": "The meta-model at every θ of a regular grid over the 2-D map: the task metric "
            "and the number of stable fixed points. Regions of one count are networks of one "
            "topology; where the count changes, the dynamics bifurcate. Between members of "
            "different computations the map shows where one computation turns into the other.",
}


def write_html(report: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``out_dir/report.html`` from ``report`` and the PNGs it names; returns its path.

    Raises:
        FileNotFoundError: a PNG named in the report is missing from ``out_dir``.
    """
    out_dir = Path(out_dir)
    page = _page(report, out_dir)
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _page(report: dict[str, Any], out_dir: Path) -> str:
    meta = report["meta"]
    task = meta["task"] or {}
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        interactive.csp_meta(),
        f"<title>DYNAMO report — {hp.e(task.get('name', ''))}</title><style>{CSS}</style>",
        "</head><body>",
        "<h1>DYNAMO analysis report</h1>",
        f"<p class='muted'>{meta['num_members']} members, θ ∈ R<sup>{meta['embedding_dim']}"
        f"</sup>, task <code>{hp.e(task.get('name', '?'))}</code> "
        f"<code>{hp.e(json.dumps(task.get('config', {}), sort_keys=True))}</code> · created "
        f"{hp.e(meta['created'])} · dynamo_lightning {hp.e(meta['package']['version'])}</p>",
        _meta_table(meta),
        _map_section(report, out_dir),
        _members_section(report),
        _emulation_section(report, out_dir),
        _fixed_points_section(report, out_dir),
        _interpolation_section(report, out_dir),
        _grid_section(report, out_dir),
        baselines_html(report, out_dir),
        averaging_html(report),
        "<p class='muted'>Every number on this page, and more, is in "
        "<code>report.json</code> (schema: <code>docs/report.md</code>).</p>",
        interactive.script_html(),
        "</body></html>",
    ]
    return "\n".join(parts)


def _meta_table(meta: dict[str, Any]) -> str:
    population = meta["population"]
    machine = meta["machine"]
    match = population["checksum_matches"]
    rows = [
        ("checkpoint", meta["checkpoint"] or "—"),
        ("population", population["path"] or "—"),
        ("population checksum", f"{population['checksum'][:16]}… "
         + ("(matches the checkpoint)" if match else "(not recorded in the checkpoint)"
            if match is None else "(DIFFERS from the checkpoint's)")),
        ("machine", f"{machine['platform']}, Python {machine['python']}, torch "
         f"{machine['torch']}, {machine['device']}, {machine['threads']} threads"),
        ("settings", ", ".join(f"{k}={v}" for k, v in meta["options"].items())),
        ("time", ", ".join(f"{k} {v:.1f} s" for k, v in meta["timings"].items())),
    ]
    return hp.table(["", ""], rows, header=False)


def _map_section(report: dict[str, Any], out_dir: Path) -> str:
    section = report["map"]
    figures = [(hp.img(out_dir, name), f"coloured by {key}")
               for key, name in section["figures"].items()]
    body = interactive.chart_html(interactive.member_chart(report), "map of the members",
                                  HOVER["map"], hp.figures(figures))
    return hp.section("Map of the population", READ["map"], body)


def _members_section(report: dict[str, Any]) -> str:
    keys = [k for k in ("architecture", "task", "seed", "hidden_size", "task_metric")
            if any(k in m["metadata"] for m in report["members"])]
    projected = report["map"]["projected"]  # else the map coordinates are θ itself
    rows = [[m["index"], m["id"], m["cluster"], hp.numbers(m["theta"]),
             *([hp.numbers(m["map"])] if projected else []),
             *(m["metadata"].get(k) for k in keys)] for m in report["members"]]
    head = ["#", "id", "cluster", "θ", *(["map (x, y)"] if projected else []), *keys]
    table = hp.table(head, rows)
    return f"<h2>Members</h2>{table}"


def _emulation_section(report: dict[str, Any], out_dir: Path) -> str:
    section = report["emulation"]
    by_stage = _stage_table(report)
    if not section["keys"]:
        return hp.section("Emulation", READ["emulation"],
                          "<p class='muted'>No emulation scores (no test pass was run).</p>"
                          + by_stage)
    keys = section["keys"]
    rows = [[hp.e(m["id"]), *(m["scores"][k] for k in keys)] for m in report["members"]]
    rows.append(["<b>median</b>", *(section["median"][k] for k in keys)])
    body = hp.figures([(hp.img(out_dir, section["figure"]), "per-member test scores")])
    return hp.section("Emulation", READ["emulation"], body + hp.table(["member", *keys], rows,
                                                             raw_first=True) + by_stage)


def _stage_table(report: dict[str, Any]) -> str:
    """Hidden R² per member and stage of a feed-forward fit ("" otherwise)."""
    stages = report["emulation"].get("stages")
    if not stages:
        return ""
    head = [f"stage {s + 1}" for s in range(len(stages["median_per_stage"]))]
    rows = [[hp.e(m["id"]), *row] for m, row in zip(report["members"], stages["hidden_r2"],
                                                    strict=True)]
    rows.append(["<b>median</b>", *stages["median_per_stage"]])
    median = "—" if stages["median"] is None else hp.numbers([stages["median"]])
    return ("<p>Hidden R² per stage (depth is time for feed-forward members; blank: a stage "
            f"the member lacks). Median over members and stages: <b>{median}</b>.</p>"
            + hp.table(["member", *head], rows, raw_first=True))


def _fixed_points_section(report: dict[str, Any], out_dir: Path) -> str:
    section = report["fixed_points"]
    if section.get("applies") is False:
        return hp.section("Fixed points", READ["fixed_points"],
                          f"<p class='muted'>{hp.e(section.get('note', ''))}</p>")
    kinds = section["kinds"]
    rows = []
    for r in section["members"]:
        own, meta = r["member"] or {}, r["meta"]
        rows.append([r["id"], *(own.get(k, "—") for k in kinds), *(meta[k] for k in kinds),
                     hp.verdict(r["match"])])
    head = [*(f"member {k}" for k in kinds), *(f"meta {k}" for k in kinds)]
    fraction = section["match_fraction"]
    summary = ("<p>Stable-point counts match for <b>"
               f"{'—' if fraction is None else f'{100 * fraction:.0f}%'}</b> of the members.</p>")
    figures = [(hp.img(out_dir, name), member) for member, name in section["figures"].items()]
    body = summary + hp.table(["member", *head, "match"], rows, raw_last=True) + hp.figures(figures)
    return hp.section("Fixed points", READ["fixed_points"], body)


def _grid_section(report: dict[str, Any], out_dir: Path) -> str:
    grid = report.get("grid")
    chart = interactive.grid_chart(report)
    if not grid or not (grid.get("figure") or chart):
        return ""
    caption = (f"{grid['resolution']} × {grid['resolution']} θ's, {grid['inits_per_theta']} "
               "initial states each; white dots: the members")
    body = hp.figures([(hp.img(out_dir, grid["figure"]), caption)] if grid.get("figure") else [])
    if chart is not None:
        body = interactive.chart_html(chart, "topology map", HOVER["grid"], body)
    return hp.section("Topology map", READ["grid"], body)


def _interpolation_section(report: dict[str, Any], out_dir: Path) -> str:
    pairs = report["interpolation"]["pairs"]
    if not pairs:
        return hp.section("Interpolation", READ["interpolation"],
                        "<p class='muted'>No pairs were interpolated.</p>")
    rows, figures = [], []
    for p in pairs:
        result = p["result"]
        stable = result["counts"].get("stable", [])
        rows.append([f"{p['id_i']} → {p['id_j']}", p["relation"], *_metric_cells(result),
                     " ".join(map(str, stable)) or "—",
                     hp.numbers(result["bifurcations"]) or "none"])
        figures.append((hp.img(out_dir, p["figure"]), f"{p['id_i']} → {p['id_j']}"))
    metric_name = report["meta"]["metric_name"] or "task metric"
    if any(p["result"].get("task_metrics") for p in pairs):
        metric_name = "per-task metric"  # a mixture: each sub-task on its own trials
    head = ["segment", "relation", f"{metric_name} at α=0", "lowest along", "at α=1",
            "stable points per α", "bifurcation α's"]
    body = hp.table(head, rows) + hp.figures(figures)
    return hp.section("Interpolation", READ["interpolation"], body)


def _metric_cells(result: dict[str, Any]) -> list[Any]:
    """The metric at α = 0, its lowest value along the path and at α = 1: a number, or for
    a mixture one ``task:metric value`` per sub-task (their mean mixes scales)."""
    curves = result.get("task_metrics") or {"": result["task_metric"]}
    cells: list[list[str]] = [[], [], []]
    for key, values in curves.items():
        finite = [v for v in values if v is not None]
        for n, value in enumerate((values[0], min(finite) if finite else None, values[-1])):
            cells[n].append(f"{key} {hp.fmt(value)}" if key else value)
    return [c[0] if len(curves) == 1 else "; ".join(c) for c in cells]
