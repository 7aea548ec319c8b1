"""Policy backtest: the (R, S) policy from each backtest window's forecast, and the naive
policy, simulated against the demand that followed.

For each series and backtest window (origin = ``cutoff``; the ``H`` periods after it):

* **Forecast-driven policy** — at each review ``k`` (periods ``0, R, 2R, …`` of the window
  whose protection period ``k … k + L + R − 1`` lies inside the window),
  ``S_k`` = :func:`pharmalab.supply.plan.level_at` from the window's forecast (its sample
  paths in ``backtest_paths.parquet``, else its quantiles), made at the origin and not
  updated with the demand seen in the window.
* **Naive policy** — one level for the whole window from the demand before the origin
  (:func:`pharmalab.supply.naive.naive_order_up_to_level`), the same information set.
* **Start** — at the first review the inventory position is ``S_0``: the pipeline holds the
  ``L`` orders placed before the origin, each the policy's expected demand of its arrival
  period (the forecast mean; the moving average for the naive policy), and the net inventory
  is ``S_0`` minus the pipeline; the first order is 0. Periods ``0 … L − 1`` depend on this
  start only and are not counted.
* **Counted periods** — the review cycles (``k + L … k + L + R − 1``) of the reviews above,
  i.e. the periods ``L … H − 1`` when ``R = 1``. Achieved fill rate, cycle service level,
  average on-hand, stock-out periods and cost over them
  (:func:`pharmalab.supply.simulate.achieved`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pharmalab.errors import SupplyInputError
from pharmalab.supply.leadtime import SeriesForecast
from pharmalab.supply.naive import naive_order_up_to_level
from pharmalab.supply.plan import level_at
from pharmalab.supply.settings import PolicySettings
from pharmalab.supply.simulate import Achieved, achieved, review_cycles, simulate

__all__ = ["BACKTEST_COLUMNS", "BacktestResult", "backtest_policies", "summarize_backtest"]

POLICIES = ("forecast", "naive")
_MEASURES = ["order_up_to_level", "fill_rate", "csl", "avg_on_hand", "avg_backorders",
             "stockout_periods", "filled", "holding_cost", "shortage_cost", "cost"]
BACKTEST_COLUMNS = (
    ["unique_id", "level", "cutoff", "service_type", "target", "periods", "cycles", "demand",
     "demand_model", "forecast_expected_csl", "forecast_expected_fill_rate"]
    + [f"{p}_{m}" for p in POLICIES for m in _MEASURES])


@dataclass
class BacktestResult:
    """Policy backtest results.

    Attributes
    ----------
    table : pandas.DataFrame
        ``backtest.csv``, one row per series and window (:data:`BACKTEST_COLUMNS`):
        ``unique_id, level, cutoff`` (the window's origin), ``service_type, target``,
        ``periods`` and ``cycles`` counted, ``demand`` (actual, units, over the counted
        periods), ``demand_model`` (of the first review), ``forecast_expected_csl`` and
        ``forecast_expected_fill_rate`` (the model's values, mean over reviews); then for
        ``p`` in ``forecast, naive``: ``p_order_up_to_level`` (mean over reviews, units),
        ``p_fill_rate``, ``p_csl`` (achieved), ``p_avg_on_hand``, ``p_avg_backorders``
        (units, end of period), ``p_stockout_periods``, ``p_filled`` (units met from stock),
        ``p_holding_cost``, ``p_shortage_cost``, ``p_cost`` (per period). The naive columns
        are empty without history.
    summary : pandas.DataFrame
        :func:`summarize_backtest` of ``table``.
    inventory : pandas.DataFrame
        Period-by-period simulation of every series, window and policy:
        ``unique_id, cutoff, policy, ds, counted`` and the
        :func:`~pharmalab.supply.simulate.simulate` columns.
    notes : list of str
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    inventory: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _row(prefix: str, level: float, a: Achieved | None) -> dict:
    if a is None:
        return {f"{prefix}_{m}": np.nan for m in _MEASURES}
    return {f"{prefix}_order_up_to_level": level, f"{prefix}_fill_rate": a.fill_rate,
            f"{prefix}_csl": a.csl, f"{prefix}_avg_on_hand": a.avg_on_hand,
            f"{prefix}_avg_backorders": a.avg_backorders,
            f"{prefix}_stockout_periods": a.stockout_periods, f"{prefix}_filled": a.filled,
            f"{prefix}_holding_cost": a.holding_cost,
            f"{prefix}_shortage_cost": a.shortage_cost, f"{prefix}_cost": a.total_cost}


def _run(actual: np.ndarray, levels: np.ndarray, start_level: float, pipeline: np.ndarray,
         cycles, settings: PolicySettings) -> tuple[pd.DataFrame, Achieved]:
    L, R = settings.lead_time, settings.review_period
    sim = simulate(actual, levels, lead_time=L, review_period=R,
                   initial_net_inventory=start_level - float(pipeline.sum()),
                   pipeline=pipeline)
    return sim, achieved(sim, cycles, lead_time=L, h=settings.h, p=settings.shortage_cost)


def backtest_policies(windows: Mapping[tuple, SeriesForecast], actuals: pd.DataFrame,
                      settings: PolicySettings, history: pd.DataFrame | None = None,
                      level_of: Mapping[str, str] | None = None,
                      tags: Mapping[str, list[str]] | None = None) -> BacktestResult:
    """Simulate the forecast-driven and the naive (R, S) policies on every backtest window.

    Parameters
    ----------
    windows : mapping
        ``(unique_id, cutoff)`` → :class:`SeriesForecast` of that window
        (:meth:`ForecastFolder.backtest_forecasts`).
    actuals : pandas.DataFrame
        ``unique_id, cutoff, ds, y``: the actual demand of each window (units).
    settings : PolicySettings
    history : pandas.DataFrame, optional
        Past demand, wide: index ``ds``, one column per series
        (:func:`pharmalab.supply.inputs.series_history`). Without it the naive columns are
        empty.
    level_of : mapping, optional
        ``unique_id`` → hierarchy level.
    tags : mapping, optional
        Level → series (for the order of the summary's levels).

    Returns
    -------
    BacktestResult

    Raises
    ------
    SupplyInputError
        If ``L + R`` exceeds the windows' horizon.
    """
    L, R = settings.lead_time, settings.review_period
    act = actuals.set_index(["unique_id", "cutoff"]).sort_index()
    groups = act.groupby(level=[0, 1], sort=False).indices
    rows, sims, notes = [], [], []
    missing_actual = no_history = 0
    for key, fc in windows.items():
        uid, cutoff = key
        index = groups.get((uid, cutoff))
        if index is None:
            missing_actual += 1
            continue
        part = act.iloc[index]
        y = pd.Series(part["y"].to_numpy(dtype=float),
                      index=pd.DatetimeIndex(part["ds"])).reindex(pd.DatetimeIndex(fc.ds))
        if y.isna().any():
            missing_actual += 1
            continue
        actual = np.maximum(y.to_numpy(), 0.0)
        cycles = review_cycles(fc.horizon, L, R)
        if not cycles:
            raise SupplyInputError(
                f"lead time + review period ({L + R} periods) exceed the backtest horizon "
                f"({fc.horizon} periods): no review has its protection period inside a window")
        levels = np.full(fc.horizon, np.nan)
        lv = [level_at(fc, k, settings) for k, _ in cycles]
        for (k, _), item in zip(cycles, lv, strict=True):
            levels[k] = item.S
        means = fc.period_means()
        f_sim, f_ach = _run(actual, levels, levels[0], means[:L], cycles, settings)
        row = {"unique_id": uid, "level": (level_of or {}).get(uid, ""), "cutoff": cutoff,
               "service_type": settings.service_type, "target": settings.service_level,
               "periods": f_ach.periods, "cycles": f_ach.cycles, "demand": f_ach.demand,
               "demand_model": lv[0].protection.model,
               "forecast_expected_csl": float(np.mean([x.expected_csl for x in lv])),
               "forecast_expected_fill_rate": float(np.mean([x.expected_fill_rate
                                                             for x in lv]))}
        row.update(_row("forecast", float(np.nanmean(levels)), f_ach))
        sims.append(_trajectory(f_sim, uid, cutoff, "forecast", fc.ds, cycles, L))
        naive = None
        if history is not None and uid in history.columns:
            past = history[uid]
            naive = naive_order_up_to_level(
                past[past.index <= cutoff].to_numpy(), lead_time=L, review_period=R,
                service_level=settings.service_level, window=settings.naive_window)
        if naive is None or np.isnan(naive.S):
            no_history += 1
            row.update(_row("naive", np.nan, None))
        else:
            n_levels = np.full(fc.horizon, np.nan)
            n_levels[[k for k, _ in cycles]] = naive.S
            n_sim, n_ach = _run(actual, n_levels, naive.S, np.full(L, naive.mean), cycles,
                                settings)
            row.update(_row("naive", naive.S, n_ach))
            sims.append(_trajectory(n_sim, uid, cutoff, "naive", fc.ds, cycles, L))
        rows.append(row)
    if missing_actual:
        notes.append(f"{missing_actual} series-windows without complete actual demand were "
                     "left out of the backtest.")
    if history is None:
        notes.append("No sales history was given: the naive policy was not backtested.")
    elif no_history:
        notes.append(f"{no_history} series-windows had fewer than 2 periods of history before "
                     "the origin: no naive policy for them.")
    table = pd.DataFrame(rows, columns=BACKTEST_COLUMNS)
    inventory = pd.concat(sims, ignore_index=True) if sims else pd.DataFrame()
    return BacktestResult(table, summarize_backtest(table, tags), inventory, notes)


def _trajectory(sim: pd.DataFrame, uid: str, cutoff, policy: str, ds: np.ndarray, cycles,
                lead_time: int) -> pd.DataFrame:
    counted = np.zeros(len(sim), dtype=bool)
    for k, end in cycles:
        counted[k + lead_time:end + 1] = True
    return sim.assign(unique_id=uid, cutoff=cutoff, policy=policy,
                      ds=pd.DatetimeIndex(ds), counted=counted)


def summarize_backtest(table: pd.DataFrame, tags: Mapping[str, list[str]] | None = None
                       ) -> pd.DataFrame:
    """Achieved service and stock of both policies per hierarchy level (and over all).

    When the naive policy was backtested, only the series-windows that have both policies
    are summarized (so the two columns compare the same demand).

    Parameters
    ----------
    table : pandas.DataFrame
        :attr:`BacktestResult.table`.
    tags : mapping, optional
        Level → series; levels are listed in this order, then ``all``.

    Returns
    -------
    pandas.DataFrame
        Per level: ``level, series, windows, service_type, target, demand`` and per policy
        ``p`` in ``forecast, naive``: ``p_fill_rate_pooled`` (``Σ filled / Σ demand`` over
        series and windows), ``p_fill_rate_mean`` (mean over series of each series'
        ``Σ filled / Σ demand`` over its windows; series without demand left out),
        ``p_csl_pooled`` (cycles without stock-out / cycles), ``p_avg_on_hand`` (sum over
        the series of their average on-hand, averaged over windows; units),
        ``p_stockout_periods`` (total), ``p_cost`` (per period, summed over series, averaged
        over windows); and ``stock_ratio`` = forecast / naive average on-hand.
    """
    columns = ["level", "series", "windows", "service_type", "target", "demand"]
    for p in POLICIES:
        columns += [f"{p}_fill_rate_pooled", f"{p}_fill_rate_mean", f"{p}_csl_pooled",
                    f"{p}_avg_on_hand", f"{p}_stockout_periods", f"{p}_cost"]
    columns.append("stock_ratio")
    if table.empty:
        return pd.DataFrame(columns=columns)
    data = table
    if table["naive_fill_rate"].notna().any() or table["naive_avg_on_hand"].notna().any():
        data = table[table["naive_avg_on_hand"].notna()]
    groups: list[tuple[str, pd.DataFrame]] = []
    seen = set(data["level"])
    for level in (tags or {}):
        if level in seen:
            groups.append((level, data[data["level"] == level]))
    for level in sorted(seen - set(tags or {})):
        if level:
            groups.append((level, data[data["level"] == level]))
    groups.append(("all", data))
    rows = []
    for level, part in groups:
        windows = part["cutoff"].nunique()
        row = {"level": level, "series": part["unique_id"].nunique(), "windows": windows,
               "service_type": part["service_type"].iloc[0], "target": part["target"].iloc[0],
               "demand": part["demand"].sum()}
        for p in POLICIES:
            demand = part["demand"].sum()
            filled = part[f"{p}_filled"].sum(min_count=1)
            per = part.groupby("unique_id")[[f"{p}_filled", "demand"]].sum(min_count=1)
            per = per[per["demand"] > 0]
            cycles = part["cycles"].sum()
            ok = (part[f"{p}_csl"] * part["cycles"]).sum(min_count=1)
            row.update({
                f"{p}_fill_rate_pooled": filled / demand if demand > 0 else np.nan,
                f"{p}_fill_rate_mean": float((per[f"{p}_filled"] / per["demand"]).mean()),
                f"{p}_csl_pooled": ok / cycles if cycles else np.nan,
                f"{p}_avg_on_hand": part[f"{p}_avg_on_hand"].sum(min_count=1) / windows,
                f"{p}_stockout_periods": part[f"{p}_stockout_periods"].sum(min_count=1),
                f"{p}_cost": part[f"{p}_cost"].sum(min_count=1) / windows})
        naive = row["naive_avg_on_hand"]
        row["stock_ratio"] = (row["forecast_avg_on_hand"] / naive
                              if naive and not np.isnan(naive) else np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)
