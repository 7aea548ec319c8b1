"""Forecast accuracy: MASE, RMSSE, WAPE, scaled CRPS and interval coverage.

Scaled errors divide by the in-sample error of the seasonal naive method on the training data
that the forecast saw (Hyndman & Koehler 2006; RMSSE as in the M5 competition), so every
backtest window has its own scale. Series whose scale is zero (constant training data, e.g. all
zeros) have no scaled error; they are left out of means and counted in ``n_unscaled``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def seasonal_scales(train: pd.DataFrame, season_length: int) -> pd.DataFrame:
    """In-sample seasonal naive errors of each series.

    Parameters
    ----------
    train
        ``unique_id``, ``ds``, ``y``: the training data of one backtest window.
    season_length
        Periods per season (12 monthly, 52 weekly); a series shorter than a season plus one
        is scaled by the naive (lag 1) errors instead.

    Returns
    -------
    pandas.DataFrame
        Index ``unique_id``; ``mae_scale`` = mean |y_t − y_{t−m}| and ``rmse_scale`` =
        sqrt(mean (y_t − y_{t−m})²), float64 in the unit of ``y``.
    """
    train = train.sort_values(["unique_id", "ds"])
    grouped = train.groupby("unique_id")["y"]
    lag = grouped.transform("size").gt(season_length).map({True: season_length, False: 1})
    diff = pd.concat([grouped.diff(season_length).where(lag == season_length),
                      grouped.diff(1).where(lag == 1)], axis=1).sum(axis=1, min_count=1)
    frame = pd.DataFrame({"unique_id": train["unique_id"], "d": diff}).dropna()
    out = frame.groupby("unique_id")["d"].agg(
        mae_scale=lambda d: d.abs().mean(), rmse_scale=lambda d: float(np.sqrt((d ** 2).mean())))
    return out


def quantile_column(q: float) -> str:
    """Name of a quantile column: ``q0.05`` … ``q0.95``."""
    return f"q{q:.3f}".rstrip("0") if round(q * 100) != q * 100 else f"q{q:.2f}"


def window_metrics(forecasts: pd.DataFrame, scales: pd.DataFrame,
                   quantiles: Sequence[float] = (), levels: Sequence[int] = ()) -> pd.DataFrame:
    """Per-series accuracy of one forecast over one window (or several windows).

    Parameters
    ----------
    forecasts
        ``unique_id``, ``cutoff``, ``ds``, ``y`` (actual), ``mean`` (the point forecast), and
        optionally the quantile columns (``q0.05``…) and ``lo-80``/``hi-80`` columns.
    scales
        :func:`seasonal_scales` of the same window, indexed by ``unique_id`` (with a
        ``cutoff`` level when ``forecasts`` spans several windows).
    quantiles, levels
        Which quantile columns and interval levels to score.

    Returns
    -------
    pandas.DataFrame
        One row per (``unique_id``, ``cutoff``): ``mase``, ``rmsse`` (float64; NaN when the
        scale is zero), ``abs_error``, ``abs_actual`` (sums over the horizon, for WAPE),
        ``wape``, ``pinball`` (sum over horizon of the mean pinball loss over ``quantiles``),
        ``scaled_crps`` (2 × pinball / Σ|y|, Nixtla's ``scaled_crps``), ``coverage_<L>``
        (share of periods with y inside the L% interval), ``periods``.

    References
    ----------
    Hyndman & Koehler (2006) *Another look at measures of forecast accuracy*; Makridakis et al.
    (2022) M5 (RMSSE); Gneiting & Raftery (2007) CRPS as the integral of pinball losses.
    """
    f = forecasts
    error = f["y"] - f["mean"]
    parts = {
        "abs_error": error.abs(), "sq_error": error ** 2, "abs_actual": f["y"].abs(),
        "periods": pd.Series(1, index=f.index),
    }
    if quantiles:
        pinball = sum(_pinball(f["y"], f[quantile_column(q)], q) for q in quantiles)
        parts["pinball"] = pinball / len(quantiles)
    for level in levels:
        inside = (f["y"] >= f[f"lo-{level}"]) & (f["y"] <= f[f"hi-{level}"])
        parts[f"inside_{level}"] = inside.astype("float64")
    frame = pd.DataFrame(parts).assign(unique_id=f["unique_id"], cutoff=f["cutoff"])
    sums = frame.groupby(["unique_id", "cutoff"]).sum()
    scale = scales.reindex(sums.index if scales.index.nlevels == 2 else
                           sums.index.get_level_values("unique_id"))
    mae_scale = scale["mae_scale"].to_numpy()
    rmse_scale = scale["rmse_scale"].to_numpy()
    n = sums["periods"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out = pd.DataFrame(index=sums.index)
        out["mase"] = np.where(mae_scale > 0, sums["abs_error"] / n / mae_scale, np.nan)
        out["rmsse"] = np.where(rmse_scale > 0,
                                np.sqrt(sums["sq_error"] / n) / rmse_scale, np.nan)
        out["abs_error"] = sums["abs_error"]
        out["abs_actual"] = sums["abs_actual"]
        out["wape"] = np.where(sums["abs_actual"] > 0, sums["abs_error"] / sums["abs_actual"],
                               np.nan)
        if quantiles:
            out["pinball"] = sums["pinball"]
            out["scaled_crps"] = np.where(sums["abs_actual"] > 0,
                                          2 * sums["pinball"] / sums["abs_actual"], np.nan)
        for level in levels:
            out[f"coverage_{level}"] = sums[f"inside_{level}"] / n
    out["periods"] = n.astype("int64")
    return out.reset_index()


def summarize_metrics(per_series: pd.DataFrame, level_of: dict[str, str]) -> pd.DataFrame:
    """Means of :func:`window_metrics` rows over all series and per hierarchy level.

    Returns
    -------
    pandas.DataFrame
        ``level`` (``all`` then each level), ``series``, ``windows``, ``mase`` (mean),
        ``mase_median``, ``rmsse`` (mean), ``wape`` (pooled Σ|e| / Σ|y|), ``scaled_crps``
        (mean), ``coverage_<L>`` (pooled share of periods), ``n_unscaled`` (series-windows
        left out of the scaled means because their scale is zero).
    """
    frame = per_series.assign(level=per_series["unique_id"].map(level_of))
    coverage = [c for c in frame.columns if c.startswith("coverage_")]
    rows = []
    groups = [("all", frame)] + [(name, frame[frame["level"] == name])
                                 for name in dict.fromkeys(level_of.values())]
    for name, g in groups:
        scaled = g["mase"].notna()
        row = {"level": name, "series": g["unique_id"].nunique(),
               "windows": g["cutoff"].nunique(),
               "mase": g.loc[scaled, "mase"].mean(), "mase_median": g.loc[scaled, "mase"].median(),
               "rmsse": g["rmsse"].mean(),
               "wape": g["abs_error"].sum() / g["abs_actual"].sum()
               if g["abs_actual"].sum() > 0 else np.nan}
        if "scaled_crps" in g:
            row["scaled_crps"] = g["scaled_crps"].mean()
        for c in coverage:
            row[c] = (g[c] * g["periods"]).sum() / g["periods"].sum()
        row["n_unscaled"] = int((~scaled).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _pinball(y: pd.Series, q_forecast: pd.Series, q: float) -> pd.Series:
    diff = y - q_forecast
    return np.maximum(q * diff, (q - 1) * diff)
