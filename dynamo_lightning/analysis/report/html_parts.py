"""Building blocks of ``report.html``: sections, tables, figures, escaped values."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from dynamo_lightning.checks import is_real


def section(title: str, read: str, body: str) -> str:
    """A titled section: the "how to read this" box, then ``body`` (HTML)."""
    return f"<h2>{e(title)}</h2><div class='read'><b>How to read this.</b> {e(read)}" \
           f"</div>{body}"


def table(head: Sequence[str], rows: Iterable[Sequence[Any]], header: bool = True,
           raw_first: bool = False, raw_last: bool = False) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
    for row in rows:
        cells = []
        for n, value in enumerate(row):
            raw = (raw_first and n == 0) or (raw_last and n == len(row) - 1)
            numeric = is_real(value)
            text = value if raw else e(fmt(value))
            cells.append(f"<td class='num'>{text}</td>" if numeric else f"<td>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def figures(items: Iterable[tuple[str, str]]) -> str:
    inner = "".join(f"<figure>{img}<figcaption>{e(caption)}</figcaption></figure>"
                    for img, caption in items)
    return f"<div class='figs'>{inner}</div>" if inner else ""


def img(out_dir: Path, name: str | None) -> str:
    if not name:
        return ""
    data = base64.b64encode((out_dir / name).read_bytes()).decode("ascii")
    return f"<img alt='{e(name)}' src='data:image/png;base64,{data}'>"


def verdict(match: bool | None) -> str:
    if match is None:
        return "<span class='muted'>n/a</span>"
    return "<span class='yes'>yes</span>" if match else "<span class='no'>no</span>"


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


def numbers(values: Sequence[float]) -> str:
    return ", ".join(fmt(float(v)) for v in values)


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)
