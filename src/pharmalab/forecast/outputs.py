"""Files and figures of a forecast, shared by the CLI and the study step.

Files (each written atomically):

* ``forecast.parquet`` — ``unique_id, ds, mean, q0.05 … q0.95, lo-80, hi-80, lo-95, hi-95``;
* ``paths.parquet`` — ``unique_id, ds, path, y`` (coherent sample paths);
* ``backtest_forecasts.parquet`` — the reported windows' forecasts, as ``forecast.parquet``
  plus ``cutoff`` and ``y`` (the actual);
* ``backtest_paths.parquet`` — sample paths of each reported window as of its origin,
  ``unique_id, ds, path, y, cutoff`` (for policy backtests);
* ``backtest_metrics.csv`` — per series and window: ``unique_id, level, cutoff, mase, rmsse,
  abs_error, abs_actual, wape, pinball, scaled_crps, coverage_80, coverage_95, periods``;
* ``backtest_summary.csv`` — per hierarchy level and over all series;
* ``model_choice.csv`` — per series: demand class, fallback, combination weights and each
  base model's backtest MASE;
* ``reconciliation.csv`` — the method chosen for each window and the final forecast;
* ``history.parquet`` — the bottom series' data ``unique_id, ds, y`` the forecast was made
  from (a supply backtest's naive policy reads past demand there);
* ``summing_matrix.parquet`` and ``tags.json`` — the hierarchy (Nixtla's ``S_df`` and tags);
* ``forecast_manifest.json`` — settings, notes, timings.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from pharmalab.atomic import atomic_path, write_csv, write_text
from pharmalab.forecast.pipeline import ForecastResult, ForecastSettings

FORECAST_FILE = "forecast.parquet"
PATHS_FILE = "paths.parquet"
BACKTEST_FORECASTS_FILE = "backtest_forecasts.parquet"
BACKTEST_PATHS_FILE = "backtest_paths.parquet"
METRICS_FILE = "backtest_metrics.csv"
SUMMARY_FILE = "backtest_summary.csv"
MODEL_CHOICE_FILE = "model_choice.csv"
RECONCILIATION_FILE = "reconciliation.csv"
SUMMING_MATRIX_FILE = "summing_matrix.parquet"
TAGS_FILE = "tags.json"
HISTORY_FILE = "history.parquet"
MANIFEST_FILE = "forecast_manifest.json"


def write_forecast(result: ForecastResult, folder: str | os.PathLike,
                   settings: ForecastSettings, source: dict | None = None) -> list[Path]:
    """Write every output file of ``result`` to ``folder`` (created if needed).

    Returns the paths written. Raises ``IsADirectoryError`` when a folder exists where a
    file goes (see :func:`pharmalab.atomic.atomic_path`).
    """
    folder = Path(folder)
    written = [
        _parquet(folder / FORECAST_FILE, result.forecast),
        _parquet(folder / PATHS_FILE, result.paths),
        _parquet(folder / BACKTEST_FORECASTS_FILE, result.backtest),
        _parquet(folder / BACKTEST_PATHS_FILE, result.backtest_paths),
        write_csv(folder / METRICS_FILE, result.metrics),
        write_csv(folder / SUMMARY_FILE, result.summary),
        write_csv(folder / MODEL_CHOICE_FILE, result.model_choice),
        write_csv(folder / RECONCILIATION_FILE, result.reconciliation),
        _parquet(folder / SUMMING_MATRIX_FILE, result.hierarchy.summing_matrix),
        _parquet(folder / HISTORY_FILE, _bottom_history(result)),
        write_text(folder / TAGS_FILE, json.dumps(
            {k: list(map(str, v)) for k, v in result.hierarchy.tags.items()}, indent=1)),
    ]
    manifest = {"settings": asdict(settings), "source": source or {}, "notes": result.notes,
                "timings_seconds": {k: round(v, 3) for k, v in result.timings.items()},
                "files": [p.name for p in written]}
    written.append(write_text(folder / MANIFEST_FILE, json.dumps(manifest, indent=1,
                                                                 default=str)))
    return written


def _bottom_history(result: ForecastResult) -> pd.DataFrame:
    series = result.hierarchy.series
    bottom = series[series["unique_id"].isin(set(result.hierarchy.bottom_ids))]
    return bottom[["unique_id", "ds", "y"]].reset_index(drop=True)


def _parquet(target: Path, frame: pd.DataFrame) -> Path:
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)
    return target


def fan_chart(result: ForecastResult, unique_id: str, history_periods: int = 48):
    """Plotly fan chart of one series: recent history, the mean, the 80% and 95% intervals.

    Raises ``KeyError`` for a ``unique_id`` not in the forecast.
    """
    import plotly.graph_objects as go

    fc = result.forecast[result.forecast["unique_id"] == unique_id]
    if fc.empty:
        raise KeyError(unique_id)
    hist = result.hierarchy.series
    hist = hist[hist["unique_id"] == unique_id].tail(history_periods)
    fig = go.Figure()
    for level, alpha in ((95, 0.15), (80, 0.3)):
        if f"lo-{level}" not in fc:
            continue
        fig.add_trace(go.Scatter(
            x=list(fc["ds"]) + list(fc["ds"][::-1]),
            y=list(fc[f"hi-{level}"]) + list(fc[f"lo-{level}"][::-1]),
            fill="toself", fillcolor=f"rgba(31,119,180,{alpha})", line={"width": 0},
            name=f"{level}% interval", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=hist["ds"], y=hist["y"], name="actual",
                             line={"color": "black"}))
    fig.add_trace(go.Scatter(x=fc["ds"], y=fc["mean"], name="forecast (mean)",
                             line={"color": "rgb(31,119,180)"}))
    fig.update_layout(title=unique_id, height=320, margin={"l": 40, "r": 10, "t": 40, "b": 30},
                      legend={"orientation": "h"})
    return fig


def top_level_ids(result: ForecastResult, max_series: int = 3) -> list[str]:
    """The series of the top levels, at most ``max_series`` (Total first)."""
    ids: list[str] = []
    for members in result.hierarchy.tags.values():
        for uid in members:
            if len(ids) < max_series:
                ids.append(str(uid))
    return ids


def load_sales(path: str | os.PathLike, *, time_col: str, value_col: str | None = None,
               series_cols: list[str] | None = None, hierarchy: list[str] | None = None,
               fill_missing: bool = False, data_end: str | None = None):
    """Read a sales file for forecasting: long (``value_col`` given: one row per period and
    category, e.g. PBS) or wide (one column per series, e.g. the pharmacy data).

    Returns :class:`pharmalab.sales.SalesData`. Raises
    :class:`~pharmalab.errors.SalesInputError` as the loaders do.
    """
    from pharmalab import sales

    if value_col:
        return sales.read_sales_csv(path, time_col=time_col, value_col=value_col,
                                    hierarchy=hierarchy or (), fill_missing=fill_missing)
    if hierarchy:
        from pharmalab.errors import SalesInputError

        raise SalesInputError(
            f"{Path(path).name}: a hierarchy needs a long file with a value column "
            "(--value-col); a wide file has one column per series")
    return sales.read_wide_csv(path, time_col=time_col, value_cols=series_cols,
                               fill_missing=fill_missing, data_end=data_end)


def run_forecast(data, folder: str | os.PathLike, settings: ForecastSettings,
                 progress=None, grouped_levels=()) -> tuple[ForecastResult, list[Path]]:
    """Forecast :class:`pharmalab.sales.SalesData` with :func:`forecast` and write the files.

    The loader's notes (dropped partial periods, filled gaps, short series) are carried into
    the result's notes. Returns the result and the paths written.
    """
    from pharmalab.forecast.pipeline import forecast

    result = forecast(data.frame, freq=data.freq, season_length=data.season_length,
                      hierarchy=data.hierarchy, grouped_levels=grouped_levels,
                      settings=settings, progress=progress)
    result.notes[:0] = list(data.notes)
    written = write_forecast(result, folder, settings,
                             source={"source": data.source, "freq": data.freq,
                                     "season_length": data.season_length,
                                     "hierarchy": list(data.hierarchy)})
    return result, written
