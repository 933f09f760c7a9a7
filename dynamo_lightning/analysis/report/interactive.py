"""The hoverable charts of ``report.html``: the map of members and the topology map.

With hundreds of members a static scatter cannot be read: which point is which member, and
how well is it emulated? Each chart here is the report's own data as a JSON *chart*, drawn
in the page as SVG by one small script (``map.js``, inlined): hovering or focusing a point
(a grid cell) shows its tooltip rows, and a ``<select>`` switches the colouring.

A chart is ``{"shape": "point"|"cell", "axes": [x label, y label], "xy": [[x, y]] (items),
"cell": [w, h] (cells only), "titles": [str], "rows": [[[name, text]]], "colourings":
[colouring], "default": int, "overlay": [[x, y]]}``; a colouring is ``{"name", "group",
"kind": "category", "order": [label], "codes": [int]}`` or ``{"name", "group", "kind":
"number", "values": [float?], "range": [lo, hi]}``. Colours, legend and layout are left to
the script.

The page stays one file that requests nothing: the data sit in ``<script
type="application/json">`` blocks escaped for that context (:func:`json_for_script`), and a
Content-Security-Policy (:func:`csp_meta`) lets only this script run and nothing load. With
JavaScript off the charts stay hidden and the PNGs (kept below them) are what one sees.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
from importlib import resources
from typing import Any

from dynamo_lightning.analysis.map_figure import MAX_CATEGORIES, metadata_keys
from dynamo_lightning.analysis.plots import MIN_METRIC_SPAN
from dynamo_lightning.analysis.report import html_parts as hp
from dynamo_lightning.checks import is_real

__all__ = ["chart_html", "csp_meta", "grid_chart", "json_for_script", "member_chart",
           "script_html"]

_SCRIPT_CLOSE = "</script"


@functools.cache
def script() -> str:
    """The chart script (``map.js``, package data), checked safe to inline."""
    text = resources.files(__package__).joinpath("map.js").read_text(encoding="utf-8")
    if _SCRIPT_CLOSE in text.lower():
        raise ValueError(f"map.js contains {_SCRIPT_CLOSE!r}, which would end its <script>")
    return text


def script_html() -> str:
    """The ``<script>`` element that draws every chart of the page (once, at its end)."""
    return f"<script>{script()}</script>"


def csp_meta() -> str:
    """A Content-Security-Policy that lets the page load nothing: no request, whatever a
    report string holds; only :func:`script` (by its hash) may run, images only from data."""
    digest = base64.b64encode(hashlib.sha256(script().encode("utf-8")).digest()).decode()
    policy = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
              f"script-src 'sha256-{digest}'")
    return f"<meta http-equiv='Content-Security-Policy' content=\"{policy}\">"


def json_for_script(data: Any) -> str:
    """``data`` as JSON that cannot leave a ``<script>`` element: ``<``, ``>`` and ``&`` are
    written as ``\\u003c`` etc. (so ``</script>`` or ``<!--`` in a member id stays text),
    and so are U+2028/U+2029 (line breaks to some JavaScript parsers)."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def chart_html(chart: dict[str, Any], label: str, hint: str, fallback: str) -> str:
    """A chart's box (hidden until the script draws it: ``hint`` says how to use it), then
    ``fallback`` (the PNGs) in a ``<details>`` open without JavaScript, which the script
    closes."""
    options = _options(chart["colourings"], chart["default"])
    select = ("<label class='colour'>colour by <select>"
              f"{options}</select></label>") if len(chart["colourings"]) > 1 else ""
    box = (f"<div class='chart' data-chart hidden><p class='hint muted'>{hp.e(hint)}</p>{select}"
           f"<svg class='plot' viewBox='0 0 640 440' role='group' aria-label='{hp.e(label)}'>"
           "</svg><div class='legend'></div><div class='tip' role='tooltip' hidden></div>"
           f"<script type='application/json' class='chart-data'>{json_for_script(chart)}"
           "</script></div>")
    static = (f"<details class='static' open><summary>static figures (PNG)</summary>"
              f"{fallback}</details>") if fallback else ""
    return f"<div class='chart-wrap'>{box}{static}</div>"


def member_chart(report: dict[str, Any]) -> dict[str, Any]:
    """The map of members: one point per member at its map coordinates; its tooltip names
    it and lists its cluster, metadata and emulation scores; coloured by any metadata key,
    the cluster or a score."""
    members = report["members"]
    metadata = [m["metadata"] for m in members]
    scores = report["emulation"]["keys"]
    colourings = [colouring(k, [m.get(k) for m in metadata], "metadata")
                  for k in metadata_keys(metadata)]
    colourings.append(colouring("cluster", [m["cluster"] for m in members], "member"))
    colourings += [colouring(k, [m["scores"][k] for m in members], "emulation score")
                   for k in scores]
    names = [c["name"] for c in colourings]
    drawn = [k for k in report["map"]["keys"] if k in names]
    default = names.index(drawn[0] if drawn else "cluster")  # as the first PNG
    rows = [[("index", str(m["index"])), ("cluster", m["cluster"]),
             ("map", hp.numbers(m["map"])),
             *((k, _text(m["metadata"][k])) for k in m["metadata"]),
             *((k, hp.fmt(m["scores"][k])) for k in scores)] for m in members]
    method, dim = report["map"]["method"], report["meta"]["embedding_dim"]
    return {"shape": "point", "axes": _axis_labels(method, dim),
            "xy": [m["map"] for m in members], "titles": [m["id"] for m in members],
            "rows": rows, "colourings": colourings, "default": default, "overlay": []}


def grid_chart(report: dict[str, Any]) -> dict[str, Any] | None:
    """The topology map: one cell per grid θ; its tooltip gives θ and every layer's value
    (fixed-point counts of each kind, the task metric); coloured by any layer. None when
    the report has no grid."""
    grid = report.get("grid")
    if not grid:
        return None
    result = grid["result"]
    cells = [theta for row in result["theta_grid"] for theta in row]  # row r, column c
    layers = {f"{kind} fixed points": values for kind, values in result["counts"].items()}
    metrics = result.get("task_metrics") or {result["metric_name"] or "task metric":
                                         result["task_metric"]}
    layers.update(metrics)
    flat = {name: [v for row in values for v in row] for name, values in layers.items()}
    flat = {name: values for name, values in flat.items() if any(v is not None for v in values)}
    if not flat:
        return None
    colourings = [colouring(name, values, "metric" if name in metrics else "fixed points",
                            _metric_range(values) if name in metrics else None)
                  for name, values in flat.items()]
    rows = [[(name, hp.fmt(values[n])) for name, values in flat.items()]
            for n in range(len(cells))]
    return {"shape": "cell", "axes": ["θ₁", "θ₂"], "xy": cells, "cell": _cell_size(cells),
            "titles": [f"θ = ({hp.numbers(theta)})" for theta in cells], "rows": rows,
            "colourings": colourings,
            "default": next((n for n, c in enumerate(colourings)
                             if c["name"] == "stable fixed points"), 0),
            "overlay": [m["theta"] for m in report["members"]]}


def colouring(name: str, values: list[Any], group: str,
              value_range: list[float] | None = None) -> dict[str, Any]:
    """How one key colours the items: a continuous scale for numbers that are not a few
    integers (the rule of the PNG maps), else a palette over its sorted labels."""
    numbers = [v for v in values if v is not None]
    if numbers and all(is_real(v) for v in numbers) and (
            any(float(v) != int(v) for v in numbers if math.isfinite(v))
            or len(set(numbers)) > MAX_CATEGORIES):
        finite = [float(v) for v in numbers if math.isfinite(v)] or [0.0]
        return {"name": name, "group": group, "kind": "number",
                "values": [None if v is None else float(v) for v in values],
                "range": value_range or [min(finite), max(finite)]}
    labels = ["n/a" if v is None else str(v) for v in values]
    order = sorted(set(labels), key=_sort_key)
    code = {label: n for n, label in enumerate(order)}
    return {"name": name, "group": group, "kind": "category", "order": order,
            "codes": [code[label] for label in labels]}


def _metric_range(values: list[Any]) -> list[float] | None:
    """As the topology PNG: metrics bounded by 1 coloured from −1 up, spanning at least
    ``MIN_METRIC_SPAN`` (0.9973 vs 0.9986 is no contrast)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    high, lowest = max(finite), min(finite)
    low = max(lowest, -1.0) if high <= 1.0 else lowest
    return [min(low, high - MIN_METRIC_SPAN), high]


def _cell_size(cells: list[list[float]]) -> list[float]:
    """The grid's spacing along θ₁ and θ₂ (one cell's width and height)."""
    xs, ys = sorted({c[0] for c in cells}), sorted({c[1] for c in cells})
    return [xs[1] - xs[0] if len(xs) > 1 else 1.0, ys[1] - ys[0] if len(ys) > 1 else 1.0]


def _options(colourings: list[dict[str, Any]], default: int) -> str:
    groups: dict[str, list[str]] = {}
    for n, c in enumerate(colourings):
        chosen = " selected" if n == default else ""
        groups.setdefault(c["group"], []).append(
            f"<option value='{n}'{chosen}>{hp.e(c['name'])}</option>")
    return "".join(f"<optgroup label='{hp.e(group)}'>{''.join(items)}</optgroup>"
                   for group, items in groups.items())


def _axis_labels(method: str, dim: int) -> list[str]:
    if dim > 2:
        return [f"{method.upper()} 1 of θ (d = {dim})", f"{method.upper()} 2"]
    return ["θ₁", "θ₂" if dim == 2 else "(d = 1)"]


def _text(value: Any) -> str:
    """A metadata value as tooltip text (objects as sorted JSON)."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return hp.fmt(value)


def _sort_key(label: str) -> tuple[int, float, str]:
    """Numbers in numeric order first, then other labels alphabetically (as the PNGs)."""
    try:
        return 0, float(label), label
    except ValueError:
        return 1, 0.0, label
