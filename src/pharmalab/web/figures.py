"""Plotly figures for the browser, built as plain figure dicts (``{"data": [...], "layout":
{...}}``) from the results tables: no validation pass of ``plotly.graph_objects``, so a page with
ten figures renders in milliseconds. The browser draws them with the plotly.js that ships in the
``plotly`` package. Only drawing happens here; every number comes from a results file.
"""

from __future__ import annotations

import math

import pandas as pd

_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
           "height": 380, "legend": {"orientation": "h", "y": -0.15}}
_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def _layout(title: str, **extra) -> dict:
    return {**_LAYOUT, "title": {"text": title}, **extra}


def _values(series: pd.Series) -> list:
    """JSON-safe values: NaN → None, timestamps → ISO dates."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return [None if pd.isna(v) else v.strftime("%Y-%m-%d") for v in series]
    out = []
    for v in series.tolist():
        out.append(None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
    return out


def kaplan_meier(km: pd.DataFrame, names: dict[int, str]) -> dict:
    """Step curves with 95% bands, one per cohort, from ``km_survival.csv``
    (``cohort_definition_id, time, survival, lower_95, upper_95``; time in days)."""
    data = []
    for i, (cohort, rows) in enumerate(km.groupby("cohort_definition_id", sort=False)):
        colour = _COLOURS[i % len(_COLOURS)]
        name = names.get(int(cohort), f"cohort {cohort}")
        data.append({"type": "scatter", "x": _values(rows.time), "y": _values(rows.upper_95),
                     "mode": "lines", "line": {"shape": "hv", "width": 0},
                     "showlegend": False, "hoverinfo": "skip"})
        data.append({"type": "scatter", "x": _values(rows.time), "y": _values(rows.lower_95),
                     "mode": "lines", "line": {"shape": "hv", "width": 0}, "fill": "tonexty",
                     "fillcolor": colour + "22", "showlegend": False, "hoverinfo": "skip"})
        data.append({"type": "scatter", "x": _values(rows.time), "y": _values(rows.survival),
                     "mode": "lines", "line": {"shape": "hv", "color": colour},
                     "name": name, "meta": "km-curve"})
    return {"data": data, "layout": _layout(
        "Kaplan–Meier: probability of no outcome", xaxis={"title": {"text": "days"}},
        yaxis={"title": {"text": "survival"}})}


def funnel(stages: pd.DataFrame, title: str) -> dict:
    """Attrition funnel from ``stage, persons`` rows (first row: the initial events)."""
    return {"data": [{"type": "funnel", "y": _values(stages.stage),
                      "x": _values(stages.persons), "textinfo": "value+percent initial"}],
            "layout": _layout(title, height=120 + 60 * len(stages),
                              margin={"l": 200, "r": 20, "t": 40, "b": 20})}


def bars(frame: pd.DataFrame, x: str, y: str, title: str, *, error: tuple[str, str] | None = None,
         colour: str | None = None, orientation: str = "v") -> dict:
    """Grouped bars of ``y`` by ``x`` (one trace per value of ``colour``), with optional
    asymmetric error bars from the (lower, upper) columns."""
    groups = [(None, frame)] if colour is None else list(frame.groupby(colour, sort=False))
    data = []
    for name, rows in groups:
        trace = {"type": "bar", "x": _values(rows[x]), "y": _values(rows[y])}
        if orientation == "h":
            trace = {"type": "bar", "y": _values(rows[x]), "x": _values(rows[y]),
                     "orientation": "h"}
        if name is not None:
            trace["name"] = str(name)
        if error is not None:
            axis = "error_y" if orientation == "v" else "error_x"
            trace[axis] = {"type": "data", "symmetric": False,
                           "array": _values(rows[error[1]] - rows[y]),
                           "arrayminus": _values(rows[y] - rows[error[0]])}
        data.append(trace)
    return {"data": data, "layout": _layout(title, barmode="group")}


def sunburst(pathways: pd.DataFrame, title: str) -> dict:
    """TreatmentPatterns-style sunburst from ``pathways.csv`` (``pathway``, ``n_persons``;
    suppressed rows left out): the inner ring is the first event."""
    shown = pathways.dropna(subset=["n_persons"])
    values: dict[str, int] = {}
    for pathway, n in zip(shown.pathway, shown.n_persons, strict=True):
        steps = str(pathway).split("-")
        for depth in range(1, len(steps) + 1):
            values.setdefault("-".join(steps[:depth]), 0)
        values[str(pathway)] += int(n)
    ids = list(values)
    return {"data": [{"type": "sunburst", "ids": ids, "labels": [i.split("-")[-1] for i in ids],
                      "parents": ["-".join(i.split("-")[:-1]) for i in ids],
                      "values": [values[i] for i in ids], "branchvalues": "remainder"}],
            "layout": _layout(title, height=460)}


def lines(frame: pd.DataFrame, x: str, ys: list[str], title: str, *, step: bool = False,
          y_title: str = "") -> dict:
    """One line per column of ``ys`` against ``x``."""
    shape = {"shape": "hv"} if step else {}
    return {"data": [{"type": "scatter", "mode": "lines", "x": _values(frame[x]),
                      "y": _values(frame[c]), "name": c, "line": shape} for c in ys],
            "layout": _layout(title, yaxis={"title": {"text": y_title}})}


def fan_chart(history: pd.DataFrame, forecast: pd.DataFrame, backtest: pd.DataFrame,
              paths: pd.DataFrame, title: str) -> dict:
    """History, the forecast's median with its 80% and 95% intervals, a few sample paths, and
    the backtest medians (dotted) — from ``history.parquet``, ``forecast.parquet``,
    ``backtest_forecasts.parquet`` and ``paths.parquet`` of one series."""
    data = [{"type": "scatter", "mode": "lines", "x": _values(history.ds),
             "y": _values(history.y), "name": "history", "line": {"color": "#333"}}]
    for lo, hi, shade, name in (("lo-95", "hi-95", "#1f77b422", "95% interval"),
                                ("lo-80", "hi-80", "#1f77b444", "80% interval")):
        if lo in forecast and hi in forecast:
            data.append({"type": "scatter", "mode": "lines", "x": _values(forecast.ds),
                         "y": _values(forecast[hi]), "line": {"width": 0},
                         "showlegend": False, "hoverinfo": "skip"})
            data.append({"type": "scatter", "mode": "lines", "x": _values(forecast.ds),
                         "y": _values(forecast[lo]), "line": {"width": 0}, "fill": "tonexty",
                         "fillcolor": shade, "name": name, "meta": "fan"})
    for k, (_, rows) in enumerate(paths.groupby("path", sort=True)):
        data.append({"type": "scatter", "mode": "lines", "x": _values(rows.ds),
                     "y": _values(rows.y), "line": {"color": "#1f77b4", "width": 0.5},
                     "opacity": 0.35, "name": "sample paths", "legendgroup": "paths",
                     "showlegend": k == 0})
    centre = "q0.50" if "q0.50" in forecast else "mean"
    data.append({"type": "scatter", "mode": "lines", "x": _values(forecast.ds),
                 "y": _values(forecast[centre]), "name": "forecast (median)",
                 "line": {"color": "#1f77b4", "width": 2}})
    for k, (cutoff, rows) in enumerate(backtest.groupby("cutoff", sort=True)):
        data.append({"type": "scatter", "mode": "lines", "x": _values(rows.ds),
                     "y": _values(rows[centre] if centre in rows else rows["mean"]),
                     "name": "backtest", "legendgroup": "backtest", "showlegend": k == 0,
                     "line": {"color": "#d62728", "dash": "dot"},
                     "hovertext": f"origin {pd.Timestamp(cutoff).date()}"})
    return {"data": data, "layout": _layout(title, height=420)}


def inventory(trajectory: pd.DataFrame, title: str) -> dict:
    """Backtested on-hand stock and backorders per period, one line per policy, from
    ``backtest_inventory.parquet`` rows of one series."""
    data = []
    for i, (policy, rows) in enumerate(trajectory.groupby("policy", sort=False)):
        colour = _COLOURS[i % len(_COLOURS)]
        for k, (_, window) in enumerate(rows.groupby("cutoff", sort=True)):
            data.append({"type": "scatter", "mode": "lines", "x": _values(window.ds),
                         "y": _values(window.on_hand), "name": f"{policy}: on hand",
                         "legendgroup": f"{policy}-oh", "showlegend": k == 0,
                         "line": {"color": colour}})
            data.append({"type": "bar", "x": _values(window.ds),
                         "y": _values(window.backorders), "name": f"{policy}: backorders",
                         "legendgroup": f"{policy}-bo", "showlegend": k == 0,
                         "marker": {"color": colour}, "opacity": 0.4})
    return {"data": data, "layout": _layout(title)}
