"""Plotly figures of a policy backtest: the inventory of a series under both policies, and
achieved against target service per hierarchy level."""

from __future__ import annotations

import pandas as pd

__all__ = ["inventory_trajectory", "service_level_chart", "trajectory_series"]

_COLOURS = {"forecast": "rgb(31,119,180)", "naive": "rgb(214,39,40)"}


def trajectory_series(table: pd.DataFrame, count: int = 3) -> list[str]:
    """The ``count`` series with the most demand in the backtest (for default figures)."""
    if table.empty:
        return []
    totals = table.groupby("unique_id")["demand"].sum().sort_values(ascending=False)
    return [str(u) for u in totals.index[:count]]


def inventory_trajectory(inventory: pd.DataFrame, unique_id: str, cutoff=None):
    """On-hand (above 0) and backorders (below 0) at the end of each period, the order-up-to
    levels and the actual demand of one series in one backtest window, both policies.

    Parameters
    ----------
    inventory : pandas.DataFrame
        :attr:`pharmalab.supply.backtest.BacktestResult.inventory`.
    unique_id : str
    cutoff : optional
        The window's origin; default the last window.

    Returns
    -------
    plotly.graph_objects.Figure

    Raises
    ------
    KeyError
        If the series is not in ``inventory``.
    """
    import plotly.graph_objects as go

    rows = inventory[inventory["unique_id"] == unique_id]
    if rows.empty:
        raise KeyError(unique_id)
    cutoff = rows["cutoff"].max() if cutoff is None else cutoff
    rows = rows[rows["cutoff"] == cutoff]
    fig = go.Figure()
    first = rows[rows["policy"] == rows["policy"].iloc[0]]
    fig.add_trace(go.Bar(x=first["ds"], y=first["demand"], name="actual demand",
                         marker_color="rgba(120,120,120,0.35)"))
    for policy, part in rows.groupby("policy", sort=False):
        colour = _COLOURS.get(policy, "black")
        net = part["on_hand"] - part["backorders"]
        fig.add_trace(go.Scatter(x=part["ds"], y=net, mode="lines+markers",
                                 name=f"{policy}: net inventory (end of period)",
                                 line={"color": colour}))
        reviews = part[part["review"]]
        fig.add_trace(go.Scatter(x=reviews["ds"], y=reviews["order_up_to_level"],
                                 mode="lines", line={"color": colour, "dash": "dot",
                                                     "shape": "hv"},
                                 name=f"{policy}: order-up-to level"))
    counted = rows[rows["counted"]]
    if not counted.empty:
        fig.add_vrect(x0=counted["ds"].min(), x1=counted["ds"].max(),
                      fillcolor="rgba(0,0,0,0.04)", line_width=0)
    fig.add_hline(y=0, line={"color": "black", "width": 1})
    fig.update_layout(
        title=f"{unique_id}: backtest window after {pd.Timestamp(cutoff):%Y-%m-%d}",
        height=360, margin={"l": 40, "r": 10, "t": 40, "b": 30},
        legend={"orientation": "h"}, yaxis_title="units")
    return fig


def service_level_chart(summary: pd.DataFrame):
    """Achieved service (the target's type: fill rate or cycle service level, pooled over
    series and windows) per hierarchy level, both policies, against the target.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`pharmalab.supply.backtest.summarize_backtest`.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    if summary.empty:
        return fig
    kind = summary["service_type"].iloc[0]
    measure = "fill_rate_pooled" if kind == "fill_rate" else "csl_pooled"
    label = "fill rate" if kind == "fill_rate" else "cycle service level"
    for policy in ("forecast", "naive"):
        values = summary[f"{policy}_{measure}"]
        if values.isna().all():
            continue
        fig.add_trace(go.Bar(x=summary["level"], y=values, name=f"{policy} policy",
                             marker_color=_COLOURS[policy],
                             text=[f"{v:.1%}" for v in values], textposition="outside"))
    target = float(summary["target"].iloc[0])
    fig.add_hline(y=target, line={"dash": "dash", "color": "black"},
                  annotation_text=f"target {target:.0%}")
    low = float(min(summary[[f"{p}_{measure}" for p in ("forecast", "naive")]].min().min(),
                    target))
    fig.update_layout(barmode="group", height=360, yaxis_title=f"achieved {label}",
                      yaxis={"range": [max(0.0, low - 0.1), 1.02], "tickformat": ".0%"},
                      margin={"l": 40, "r": 10, "t": 30, "b": 30},
                      legend={"orientation": "h"})
    return fig
