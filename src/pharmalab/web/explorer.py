"""The forecast and supply explorer: one series of a forecast folder (``pharmalab forecast``'s
format) at a time — its history, backtest and fan chart, model choice and accuracy, and, in a
study with a supply step, its inventory policy and backtested inventory trajectory. Parquet
files are read by the rows of that series only."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from pharmalab.web import figures
from pharmalab.web.tables import Table, csv, parquet_columns, series_rows, to_table
from pharmalab.web.workspace import Entry, NotInWorkspace, Workspace

#: Sample paths drawn in the fan chart (all of them stay in paths.parquet).
PATHS_SHOWN = 20


@dataclass
class SeriesView:
    """What the explorer shows for one series."""

    unique_id: str
    figures: list[tuple[str, str, dict]]
    tables: list[Table]
    facts: dict


def _prefix(folder: str) -> str:
    return "" if folder in ("", ".") else folder.strip("/") + "/"


def levels(ws: Workspace, entry: Entry, folder: str) -> dict[str, list[str]]:
    """The hierarchy's levels, top first: ``{level: [unique_id, …]}`` from ``tags.json``, else
    one level 'Series' with every id of ``forecast.parquet``.

    Raises
    ------
    NotInWorkspace
        If the folder holds no forecast.
    """
    prefix = _prefix(folder)
    try:
        tags = json.loads(ws.resolve(entry, prefix + "tags.json").read_text(encoding="utf-8"))
        if isinstance(tags, dict) and tags:
            return {str(k): [str(v) for v in vs] for k, vs in tags.items()}
    except (NotInWorkspace, ValueError):
        pass
    ids = parquet_columns(ws.resolve(entry, prefix + "forecast.parquet"), ["unique_id"])
    return {"Series": sorted(ids.unique_id.astype(str).unique())}


def children(level_ids: dict[str, list[str]], unique_id: str) -> list[str]:
    """The series one level below ``unique_id`` (ids are the path of categories joined by
    '/', as :mod:`pharmalab.forecast.hierarchy` names them)."""
    names = list(level_ids)
    for i, name in enumerate(names[:-1]):
        if unique_id in level_ids[name]:
            below = level_ids[names[i + 1]]
            if i == 0 and len(level_ids[name]) == 1:
                return below
            return [u for u in below if u.startswith(unique_id + "/")]
    return []


def series_view(ws: Workspace, entry: Entry, folder: str, unique_id: str) -> SeriesView:
    """Figures and tables of one series.

    Raises
    ------
    NotInWorkspace
        If the folder holds no forecast or the series is not in it.
    """
    prefix = _prefix(folder)
    forecast = series_rows(ws.resolve(entry, prefix + "forecast.parquet"), unique_id)
    if forecast.empty:
        raise NotInWorkspace(unique_id)
    history = _history(ws, entry, prefix, unique_id)
    backtest = _optional_rows(ws, entry, prefix + "backtest_forecasts.parquet", unique_id)
    paths = _optional_rows(ws, entry, prefix + "paths.parquet", unique_id)
    if not paths.empty:
        paths = paths[paths.path < PATHS_SHOWN]
    views = [("fan", f"{unique_id}: history, backtest and forecast", figures.fan_chart(
        history if not history.empty else pd.DataFrame({"ds": [], "y": []}),
        forecast, backtest if not backtest.empty else pd.DataFrame({"cutoff": []}),
        paths if not paths.empty else pd.DataFrame({"path": []}), unique_id))]
    tables = [to_table(forecast.drop(columns=["unique_id"]), "Forecast quantiles",
                       file=prefix + "forecast.parquet")]
    facts = {}
    choice = _optional_csv(ws, entry, prefix + "model_choice.csv")
    if choice is not None:
        row = choice[choice.unique_id.astype(str) == unique_id]
        if not row.empty:
            record = row.iloc[0]
            facts.update({k: record[k] for k in ("level", "demand_class", "combination",
                                                 "best_model") if k in record})
            models = [c[len("mase_"):] for c in row.columns if c.startswith("mase_")]
            per_model = pd.DataFrame({
                "model": models,
                "weight": [record.get(f"weight_{m}") for m in models],
                "backtest_mase": [record.get(f"mase_{m}") for m in models]})
            tables.append(to_table(per_model.dropna(how="all", subset=["weight",
                                                                       "backtest_mase"]),
                                   "Models: weight in the forecast and backtest MASE",
                                   file=prefix + "model_choice.csv"))
    metrics = _optional_csv(ws, entry, prefix + "backtest_metrics.csv")
    if metrics is not None:
        rows = metrics[metrics.unique_id.astype(str) == unique_id]
        tables.append(to_table(rows.drop(columns=["unique_id"]), "Backtest accuracy per window",
                               file=prefix + "backtest_metrics.csv"))
    if entry.kind == "study" and prefix == "forecast/":
        _supply(ws, entry, unique_id, views, tables)
    return SeriesView(unique_id, views, tables, facts)


def _supply(ws, entry, unique_id, views, tables) -> None:
    policy = _optional_csv(ws, entry, "supply/policy.csv")
    if policy is not None:
        rows = policy[policy.unique_id.astype(str) == unique_id]
        if not rows.empty:
            tables.append(to_table(rows.drop(columns=["unique_id"]), "Inventory policy",
                                   file="supply/policy.csv"))
    trajectory = _optional_rows(ws, entry, "supply/backtest_inventory.parquet", unique_id)
    if not trajectory.empty:
        views.append(("inventory", "Backtested inventory: on hand and backorders per period",
                      figures.inventory(trajectory, f"{unique_id}: inventory backtest")))


def _history(ws, entry, prefix: str, unique_id: str) -> pd.DataFrame:
    """The series' history: its rows of ``history.parquet`` (bottom series), else the sum of
    its bottom series' rows, by the summing matrix (``summing_matrix.parquet``, Nixtla's
    ``S_df``) — as the forecast aggregated them."""
    history = _optional_rows(ws, entry, prefix + "history.parquet", unique_id)
    if not history.empty:
        return history
    try:
        matrix = series_rows(ws.resolve(entry, prefix + "summing_matrix.parquet"), unique_id)
    except NotInWorkspace:
        return history
    if matrix.empty:
        return history
    row = matrix.drop(columns=["unique_id"]).iloc[0]
    bottom = [str(c) for c, v in row.items() if v == 1]
    rows = _optional_rows(ws, entry, prefix + "history.parquet", bottom)
    if rows.empty:
        return rows
    return rows.groupby("ds", as_index=False)["y"].sum().assign(unique_id=unique_id)


def _optional_rows(ws, entry, rel, unique_id) -> pd.DataFrame:
    try:
        return series_rows(ws.resolve(entry, rel), unique_id)
    except NotInWorkspace:
        return pd.DataFrame()


def _optional_csv(ws, entry, rel) -> pd.DataFrame | None:
    try:
        return csv(ws.resolve(entry, rel))
    except NotInWorkspace:
        return None
