"""Figures of a patient-flow demand forecast (Plotly): new starters, the share on treatment by
months since the start, the flow identity, and the demand fan chart beside the sales-series
forecast."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

_FLOW, _SALES, _HISTORY = "#1f77b4", "#ff7f0e", "#333333"


def starters_figure(starters: pd.DataFrame, title: str = "New starters per year"):
    """Bars of new starters per year and drug from ``starters`` (``unique_id, year,
    starters``; suppressed counts missing, drawn as gaps)."""
    fig = go.Figure()
    for uid, rows in starters.groupby("unique_id", sort=False):
        fig.add_bar(x=rows["year"], y=rows["starters"], name=str(uid))
    fig.update_layout(title=title, xaxis_title="year of the first fill",
                      yaxis_title="new starters (persons)", barmode="group", height=360)
    return fig


def persistence_figure(persistence: pd.DataFrame, months: int = 24):
    """The share of starters on treatment ``k`` months after the start (persistence.csv),
    per drug, for the first ``months`` months."""
    fig = go.Figure()
    for uid, rows in persistence.groupby("unique_id", sort=False):
        rows = rows[rows["k"] <= months]
        fig.add_scatter(x=rows["k"], y=rows["on_treatment"], mode="lines+markers",
                        line_shape="hv", name=str(uid))
    fig.update_layout(title="Still on treatment, by months since the first fill",
                      xaxis_title="months since the start (0 = the start month)",
                      yaxis_title="share on treatment", yaxis_range=[0, 1.05], height=360)
    return fig


def flow_check_figure(check: pd.DataFrame):
    """Units of the new starters as dispensed (engine) and as the flow identity rebuilds them,
    per year and drug (``unique_id, year, units, units_flow``)."""
    fig = go.Figure()
    for uid, rows in check.groupby("unique_id", sort=False):
        fig.add_scatter(x=rows["year"], y=rows["units"], mode="markers",
                        name=f"{uid}: dispensed")
        fig.add_scatter(x=rows["year"], y=rows["units_flow"], mode="lines",
                        name=f"{uid}: starters × on treatment × units")
    fig.update_layout(title="Flow identity: dispensed vs rebuilt from the flow, per year",
                      xaxis_title="year", yaxis_title="units", height=360)
    return fig


def demand_fan_chart(history: pd.DataFrame, flow: pd.DataFrame, sales: pd.DataFrame,
                     unique_id: str, history_months: int = 48):
    """History, the patient-flow forecast (mean, 80% band) and the sales-series forecast
    (mean, 80% band) of one drug."""
    fig = go.Figure()
    past = history[history["unique_id"] == unique_id].tail(history_months)
    fig.add_scatter(x=past["ds"], y=past["y"], name="dispensed", line_color=_HISTORY)
    for name, frame, colour in (("patient flow", flow, _FLOW),
                                ("sales series", sales, _SALES)):
        rows = frame[frame["unique_id"] == unique_id]
        if rows.empty:
            continue
        fig.add_scatter(x=list(rows["ds"]) + list(rows["ds"][::-1]),
                        y=list(rows["hi-80"]) + list(rows["lo-80"][::-1]), fill="toself",
                        line_width=0, fillcolor=colour, opacity=0.2,
                        name=f"{name}: 80% interval", hoverinfo="skip")
        fig.add_scatter(x=rows["ds"], y=rows["mean"], name=f"{name}: mean", line_color=colour)
    fig.update_layout(title=f"{unique_id}: demand from patients vs from the sales series",
                      xaxis_title="month", yaxis_title="units", height=380)
    return fig


__all__ = ["demand_fan_chart", "flow_check_figure", "persistence_figure", "starters_figure"]
