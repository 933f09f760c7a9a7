"""``report.html``: one self-contained page (inline CSS, PNGs as base64 data URIs).

It reads only ``report.json``'s content and the PNGs it names, so a report can be re-rendered
from its JSON. Every string from the report is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

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
"""

READ = {
    "map": "Each point is one member's learned embedding θ_n (projected to 2-D by PCA when "
           "d > 2). Nearby points are networks the meta-model emulates with similar dynamics. "
           "Colours are metadata the fit never saw: if members cluster by a key, the map has "
           "recovered that distinction from the dynamics alone.",
    "emulation": "How well the meta-model at θ_n emulates member n on held-out test trials: "
                 "hidden R² of the aligned hidden states (1 = exact), agreement of the outputs, "
                 "and the task metric of the meta-model at θ_n beside the member's own. Low "
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
        f"<title>DYNAMO report — {_e(task.get('name', ''))}</title><style>{CSS}</style>",
        "</head><body>",
        "<h1>DYNAMO analysis report</h1>",
        f"<p class='muted'>{meta['num_members']} members, θ ∈ R<sup>{meta['embedding_dim']}"
        f"</sup>, task <code>{_e(task.get('name', '?'))}</code> "
        f"<code>{_e(json.dumps(task.get('config', {}), sort_keys=True))}</code> · created "
        f"{_e(meta['created'])} · dynamo_lightning {_e(meta['package']['version'])}</p>",
        _meta_table(meta),
        _map_section(report, out_dir),
        _members_section(report),
        _emulation_section(report, out_dir),
        _fixed_points_section(report, out_dir),
        _interpolation_section(report, out_dir),
        _grid_section(report, out_dir),
        "<p class='muted'>Every number on this page, and more, is in "
        "<code>report.json</code> (schema: <code>docs/report.md</code>).</p>",
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
    return _table(["", ""], rows, header=False)


def _map_section(report: dict[str, Any], out_dir: Path) -> str:
    section = report["map"]
    figures = [(_img(out_dir, name), f"coloured by {key}")
               for key, name in section["figures"].items()]
    return _section("Map of the population", "map", _figures(figures))


def _members_section(report: dict[str, Any]) -> str:
    keys = [k for k in ("architecture", "task", "seed", "hidden_size", "task_metric")
            if any(k in m["metadata"] for m in report["members"])]
    projected = report["map"]["projected"]  # else the map coordinates are θ itself
    rows = [[m["index"], m["id"], m["cluster"], _numbers(m["theta"]),
             *([_numbers(m["map"])] if projected else []),
             *(m["metadata"].get(k) for k in keys)] for m in report["members"]]
    head = ["#", "id", "cluster", "θ", *(["map (x, y)"] if projected else []), *keys]
    table = _table(head, rows)
    return f"<h2>Members</h2>{table}"


def _emulation_section(report: dict[str, Any], out_dir: Path) -> str:
    section = report["emulation"]
    if not section["keys"]:
        return _section("Emulation", "emulation",
                        "<p class='muted'>No emulation scores (no test pass was run).</p>")
    keys = section["keys"]
    rows = [[_e(m["id"]), *(m["scores"][k] for k in keys)] for m in report["members"]]
    rows.append(["<b>median</b>", *(section["median"][k] for k in keys)])
    body = _figures([(_img(out_dir, section["figure"]), "per-member test scores")])
    return _section("Emulation", "emulation", body + _table(["member", *keys], rows,
                                                             raw_first=True))


def _fixed_points_section(report: dict[str, Any], out_dir: Path) -> str:
    section = report["fixed_points"]
    kinds = section["kinds"]
    rows = []
    for r in section["members"]:
        own, meta = r["member"] or {}, r["meta"]
        rows.append([r["id"], *(own.get(k, "—") for k in kinds), *(meta[k] for k in kinds),
                     _verdict(r["match"])])
    head = [*(f"member {k}" for k in kinds), *(f"meta {k}" for k in kinds)]
    fraction = section["match_fraction"]
    summary = ("<p>Stable-point counts match for <b>"
               f"{'—' if fraction is None else f'{100 * fraction:.0f}%'}</b> of the members.</p>")
    figures = [(_img(out_dir, name), member) for member, name in section["figures"].items()]
    body = summary + _table(["member", *head, "match"], rows, raw_last=True) + _figures(figures)
    return _section("Fixed points", "fixed_points", body)


def _grid_section(report: dict[str, Any], out_dir: Path) -> str:
    grid = report.get("grid")
    if not grid or not grid.get("figure"):
        return ""
    caption = (f"{grid['resolution']} × {grid['resolution']} θ's, {grid['inits_per_theta']} "
               "initial states each; white dots: the members")
    return _section("Topology map", "grid", _figures([(_img(out_dir, grid["figure"]), caption)]))


def _interpolation_section(report: dict[str, Any], out_dir: Path) -> str:
    pairs = report["interpolation"]["pairs"]
    if not pairs:
        return _section("Interpolation", "interpolation",
                        "<p class='muted'>No pairs were interpolated.</p>")
    rows, figures = [], []
    for p in pairs:
        result = p["result"]
        stable = result["counts"].get("stable", [])
        rows.append([f"{p['id_i']} → {p['id_j']}", p["relation"], *_metric_cells(result),
                     " ".join(map(str, stable)) or "—",
                     _numbers(result["bifurcations"]) or "none"])
        figures.append((_img(out_dir, p["figure"]), f"{p['id_i']} → {p['id_j']}"))
    metric_name = report["meta"]["metric_name"] or "task metric"
    if any(p["result"].get("task_metrics") for p in pairs):
        metric_name = "per-task metric"  # a mixture: each sub-task on its own trials
    head = ["segment", "relation", f"{metric_name} at α=0", "lowest along", "at α=1",
            "stable points per α", "bifurcation α's"]
    return _section("Interpolation", "interpolation", _table(head, rows) + _figures(figures))


def _metric_cells(result: dict[str, Any]) -> list[Any]:
    """The metric at α = 0, its lowest value along the path and at α = 1: a number, or for
    a mixture one ``task:metric value`` per sub-task (their mean mixes scales)."""
    curves = result.get("task_metrics") or {"": result["task_metric"]}
    cells: list[list[str]] = [[], [], []]
    for key, values in curves.items():
        finite = [v for v in values if v is not None]
        for n, value in enumerate((values[0], min(finite) if finite else None, values[-1])):
            cells[n].append(f"{key} {_fmt(value)}" if key else value)
    return [c[0] if len(curves) == 1 else "; ".join(c) for c in cells]


# ----------------------------------------------------------------------------- helpers
def _section(title: str, key: str, body: str) -> str:
    return f"<h2>{_e(title)}</h2><div class='read'><b>How to read this.</b> {_e(READ[key])}" \
           f"</div>{body}"


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], header: bool = True,
           raw_first: bool = False, raw_last: bool = False) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>")
    for row in rows:
        cells = []
        for n, value in enumerate(row):
            raw = (raw_first and n == 0) or (raw_last and n == len(row) - 1)
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            text = value if raw else _e(_fmt(value))
            cells.append(f"<td class='num'>{text}</td>" if numeric else f"<td>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _figures(items: Iterable[tuple[str, str]]) -> str:
    inner = "".join(f"<figure>{img}<figcaption>{_e(caption)}</figcaption></figure>"
                    for img, caption in items)
    return f"<div class='figs'>{inner}</div>" if inner else ""


def _img(out_dir: Path, name: str | None) -> str:
    if not name:
        return ""
    data = base64.b64encode((out_dir / name).read_bytes()).decode("ascii")
    return f"<img alt='{_e(name)}' src='data:image/png;base64,{data}'>"


def _verdict(match: bool | None) -> str:
    if match is None:
        return "<span class='muted'>n/a</span>"
    return "<span class='yes'>yes</span>" if match else "<span class='no'>no</span>"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


def _numbers(values: Sequence[float]) -> str:
    return ", ".join(_fmt(float(v)) for v in values)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)
