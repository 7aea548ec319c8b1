"""Render report sections to one self-contained HTML file (opens offline)."""

from __future__ import annotations

import datetime as _dt
import html as _html
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from pharmalab.atomic import write_text


@dataclass(frozen=True)
class Block:
    """One piece of a section: ``kind`` in {'keyvalues', 'table', 'figure', 'text'} and its
    pre-rendered, escaped HTML."""

    kind: str
    html: str
    caption: str = ""


@dataclass
class Section:
    """A titled part of the report; ``status`` ('ok' | 'failed' | 'skipped') colours it."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    status: str = "ok"
    note: str = ""


def keyvalues(values: dict, caption: str = "") -> Block:
    """A two-column list of labels and values (None shown as an em dash)."""
    rows = "".join(
        f"<tr><th>{_html.escape(str(k))}</th><td>{_html.escape(_fmt(v))}</td></tr>"
        for k, v in values.items()
    )
    return Block("keyvalues", f'<table class="kv">{rows}</table>', caption)


def table(frame: pd.DataFrame, caption: str = "", max_rows: int = 200) -> Block:
    """A data table; numbers get thousands separators, missing values show as an em dash
    (suppressed small cells are missing). At most ``max_rows`` rows are shown."""
    shown = frame.head(max_rows)
    head = "".join(f"<th>{_html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    identifiers = [str(c).endswith("_id") for c in shown.columns]  # 4059173, not 4,059,173
    for row in shown.itertuples(index=False):
        cells = []
        for value, is_id in zip(row, identifiers, strict=True):
            cls = ' class="num"' if _is_number(value) else ""
            text = str(value) if is_id and _is_number(value) else _fmt(value)
            cells.append(f"<td{cls}>{_html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = (f'<p class="more">{len(frame) - max_rows:,} more rows not shown.</p>'
            if len(frame) > max_rows else "")
    html = (f'<table class="data"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')
    return Block("table", f'<div class="scroll">{html}</div>{more}', caption)


def figure(fig, caption: str = "") -> Block:
    """A Plotly figure; the Plotly library is embedded once per report, not per figure."""
    return Block("figure", fig.to_html(full_html=False, include_plotlyjs=False), caption)


def text(message: str, caption: str = "") -> Block:
    """A paragraph of plain text."""
    return Block("text", f"<p>{_html.escape(message)}</p>", caption)


def render(path: str | Path, title: str, sections: list[Section], meta: dict) -> Path:
    """Write the report to ``path`` atomically and return the path.

    Parameters
    ----------
    path
        Output file, e.g. ``OUT/report.html``.
    title
        Study name.
    sections
        In display order.
    meta
        Shown under the title (pharmalab version, run time, output folder, …).
    """
    from plotly.offline import get_plotlyjs

    needs_plotly = any(b.kind == "figure" for s in sections for b in s.blocks)
    env = Environment(loader=PackageLoader("pharmalab.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    page = env.get_template("report.html.j2").render(
        title=title,
        sections=sections,
        meta={k: _fmt(v) for k, v in meta.items()},
        plotlyjs=get_plotlyjs() if needs_plotly else "",
        generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    )
    return write_text(path, page)


def _is_number(value) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
            and not pd.isna(value))


def _fmt(value) -> str:
    if value is None:
        return "—"
    try:
        if pd.isna(value):
            return "—"
    except (TypeError, ValueError):
        pass
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        value = float(value)
        # 125,675 rather than 1.257e+05: large amounts (units, EUR) to the unit
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) if value else "—"
    return str(value)
