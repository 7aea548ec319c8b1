"""Benchmark: the default forecasting pipeline against Nixtla baselines on PBS and the pharmacy.

**PBS** (``../shared/data/sales/pbs.csv``, target ``Scripts``): the hierarchy Total /
Concession / Concession×Type / Concession×Type×ATC1 / Concession×Type×ATC1×ATC2 (403 series,
336 at the bottom, aggregated by :func:`pharmalab.forecast.build_hierarchy`); rolling origin,
3 windows of horizon 12 ending June 2008 (origins June 2005, 2006, 2007).

* Baseline, measured in the same run: each of SeasonalNaive, AutoETS and AutoTheta (season 12)
  alone on every series with statsforecast's ``cross_validation(h=12, n_windows=3,
  step_size=12, fitted=True)`` (``n_jobs=2``), then per window unreconciled, BottomUp,
  MinTrace ``wls_var`` and MinTrace ``mint_shrink`` (hierarchicalforecast's
  ``HierarchicalReconciliation.reconcile`` with ``Y_df`` = that window's in-sample fitted
  values from ``cross_validation_fitted_values()``, as a Nixtla user would; forecasts are
  used as they come, negatives included). The baseline is the best of these twelve by mean
  MASE over all series.
* Ours: ``forecast(frame, freq="MS", season_length=12, hierarchy=…,
  settings=ForecastSettings())`` (horizon 12, 3 reported windows plus its own warm-up
  window); its reported cutoffs must be the baseline's (asserted).
* Scoring: both sides through :func:`pharmalab.forecast.window_metrics` /
  :func:`~pharmalab.forecast.summarize_metrics`: MASE per (series, window) scaled by the
  seasonal (m = 12) naive in-sample error of that window's training data; mean / median over
  every (series, window) pair with a non-zero scale (all-zero series have none and are left
  out, counted in ``n_unscaled``); per-level MASE = mean over the level's series.
* Targets: accuracy — our mean MASE ≤ 0.95 × the baseline's, our median ≤ the baseline's, and
  no level's MASE above the baseline's by more than 2%; calibration — coverage of our 80%
  intervals in [0.75, 0.85] and of our 95% intervals in [0.91, 0.98] (summary row ``all``);
  speed — wall time of the whole ``forecast()`` call (backtest and final forecast) ≤ 3 × the
  wall time of the AutoETS baseline's ``cross_validation`` (fitted=True) in the same process.
  AutoETS is timed twice (before and after our pipeline) and the faster run is used.

**Pharmacy** (``pharmacy_serbia/salesweekly.csv``, 8 weekly series, the partial last week
dropped with ``data_end`` = the daily file's last day), no hierarchy, season 52, the last 52
weeks as test: horizon 13, 4 windows of step 13. Ours with ``ForecastSettings(horizon=13,
backtest_windows=4)`` against SeasonalNaive(52), AutoETS(season_length=52) (as is: it often
fits a non-seasonal model; the chosen forms are reported), MSTL(52) with an AutoETS trend, and
AutoTheta(52) on the same windows, scored the same way.

Usage: python benchmarks/forecast_pbs.py [--skip-pharmacy]   (writes the "Forecasting"
section of benchmarks/RESULTS.md)
"""

from __future__ import annotations

import os

os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # before numpy / LightGBM start OpenMP

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _results import update_section  # noqa: E402

from pharmalab.forecast import (  # noqa: E402
    ForecastSettings,
    build_hierarchy,
    forecast,
    seasonal_scales,
    summarize_metrics,
    window_metrics,
)
from pharmalab.sales import read_sales_csv, read_wide_csv  # noqa: E402

DATA = (HERE / ".." / ".." / "shared" / "data" / "sales").resolve()
PBS_HIERARCHY = ["Concession", "Type", "ATC1", "ATC2"]
PBS_CUTOFFS = list(pd.to_datetime(["2005-06-01", "2006-06-01", "2007-06-01"]))
PHARMACY_COLUMNS = ["M01AB", "M01AE", "N02BA", "N02BE", "N05B", "N05C", "R03", "R06"]
BASE_MODELS = ("SeasonalNaive", "AutoETS", "AutoTheta")
RECONCILERS = ("unreconciled", "BottomUp", "MinTrace_wls_var", "MinTrace_mint_shrink")
N_JOBS = 2
START = time.perf_counter()


def say(message: str) -> None:
    print(f"[{time.perf_counter() - START:7.1f} s] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# Scoring (identical for both sides)
# --------------------------------------------------------------------------------------------

def window_scales(series: pd.DataFrame, cutoffs, season_length: int) -> pd.DataFrame:
    """Seasonal naive in-sample scales of each window's training data, index (unique_id,
    cutoff), as the pipeline computes them."""
    scales = {c: seasonal_scales(series[series["ds"] <= c], season_length) for c in cutoffs}
    return pd.concat(scales, names=["cutoff"]).swaplevel().sort_index()


def score(forecasts: pd.DataFrame, scales: pd.DataFrame, level_of: dict) -> tuple:
    """Per-(series, window) metrics and their summary for ``unique_id, cutoff, ds, y, mean``."""
    metrics = window_metrics(forecasts[["unique_id", "cutoff", "ds", "y", "mean"]], scales)
    return metrics, summarize_metrics(metrics, level_of)


def summary_row(summary: pd.DataFrame, levels: list[str]) -> dict:
    """Mean and median MASE, RMSSE, WAPE over all series, then the MASE of each level."""
    by = summary.set_index("level")
    row = {"mase": by.loc["all", "mase"], "median": by.loc["all", "mase_median"],
           "rmsse": by.loc["all", "rmsse"], "wape": by.loc["all", "wape"],
           "n_unscaled": int(by.loc["all", "n_unscaled"])}
    for level in levels:
        row[level] = by.loc[level, "mase"]
    return row


# --------------------------------------------------------------------------------------------
# Nixtla baselines
# --------------------------------------------------------------------------------------------

def statsforecast_cv(series: pd.DataFrame, model, *, freq: str, horizon: int, n_windows: int,
                     step: int, fitted: bool) -> tuple:
    """One model's rolling-origin forecasts: (cv, fitted values or None, wall seconds)."""
    from statsforecast import StatsForecast

    sf = StatsForecast(models=[model], freq=freq, n_jobs=N_JOBS)
    clock = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = sf.cross_validation(df=series, h=horizon, n_windows=n_windows, step_size=step,
                                 fitted=fitted)
    seconds = time.perf_counter() - clock
    values = sf.cross_validation_fitted_values() if fitted else None
    return cv.reset_index(drop=True), values, seconds


def reconcile_windows(cv: pd.DataFrame, fitted: pd.DataFrame, name: str, hier) -> dict:
    """Unreconciled and reconciled forecasts of one model, window by window, as
    ``unique_id, cutoff, ds, y, mean`` frames keyed by reconciliation method."""
    from hierarchicalforecast.core import HierarchicalReconciliation
    from hierarchicalforecast.methods import BottomUp, MinTrace

    columns = {name: "unreconciled", f"{name}/BottomUp": "BottomUp",
               f"{name}/MinTrace_method-wls_var": "MinTrace_wls_var",
               f"{name}/MinTrace_method-mint_shrink": "MinTrace_mint_shrink"}
    reconciler = HierarchicalReconciliation(
        [BottomUp(), MinTrace(method="wls_var"), MinTrace(method="mint_shrink")])
    parts = {method: [] for method in RECONCILERS}
    for cutoff, window in cv.groupby("cutoff"):
        y_hat = window[["unique_id", "ds", name]]
        y_fit = fitted.loc[fitted["cutoff"] == cutoff, ["unique_id", "ds", "y", name]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rec = reconciler.reconcile(Y_hat_df=y_hat, Y_df=y_fit, S_df=hier.summing_matrix,
                                       tags=hier.tags)
        rec = rec.merge(window[["unique_id", "ds", "y"]], on=["unique_id", "ds"])
        for column, method in columns.items():
            parts[method].append(rec[["unique_id", "ds", "y"]].assign(
                cutoff=cutoff, mean=rec[column].to_numpy()))
    return {method: pd.concat(frames, ignore_index=True) for method, frames in parts.items()}


def pbs_models() -> dict:
    from statsforecast.models import AutoETS, AutoTheta, SeasonalNaive

    return {"SeasonalNaive": SeasonalNaive(season_length=12),
            "AutoETS": AutoETS(season_length=12), "AutoTheta": AutoTheta(season_length=12)}


def pbs_baseline(hier, scales: pd.DataFrame) -> tuple:
    """The twelve baseline rows, the scored pairs of each, and the timings."""
    level_of, levels = hier.level_of, list(hier.tags)
    rows, metrics, seconds, negatives = [], {}, {}, {}
    for name, model in pbs_models().items():
        say(f"baseline {name}: cross_validation (fitted=True)")
        cv, fitted, seconds[name] = statsforecast_cv(
            hier.series, model, freq="MS", horizon=12, n_windows=3, step=12, fitted=True)
        assert sorted(cv["cutoff"].unique()) == PBS_CUTOFFS, cv["cutoff"].unique()
        say(f"  {seconds[name]:.1f} s; reconciling 3 windows")
        clock = time.perf_counter()
        forecasts = reconcile_windows(cv, fitted, name, hier)
        seconds[f"{name} reconciliation"] = time.perf_counter() - clock
        for method, frame in forecasts.items():
            m, summary = score(frame, scales, level_of)
            metrics[(name, method)] = m
            negatives[(name, method)] = int((frame["mean"] < -0.5).sum())
            rows.append({"model": name, "reconciliation": method,
                         **summary_row(summary, levels)})
    return pd.DataFrame(rows), metrics, seconds, negatives


def time_autoets(series: pd.DataFrame, fitted: bool) -> float:
    from statsforecast.models import AutoETS

    return statsforecast_cv(series, AutoETS(season_length=12), freq="MS", horizon=12,
                            n_windows=3, step=12, fitted=fitted)[2]


def warm_up(series: pd.DataFrame) -> None:
    """Import every library and run each statsforecast model once on one short series, so
    that neither side pays the first-import cost in its timing."""
    import hierarchicalforecast.core  # noqa: F401
    import lightgbm  # noqa: F401
    import mlforecast  # noqa: F401
    from statsforecast import StatsForecast

    one = series[series["unique_id"] == "Total"].tail(60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        StatsForecast(models=list(pbs_models().values()), freq="MS", n_jobs=1).forecast(
            df=one, h=12)


# --------------------------------------------------------------------------------------------
# PBS
# --------------------------------------------------------------------------------------------

def load_pbs():
    say("reading PBS")
    sales = read_sales_csv(DATA / "pbs.csv", time_col="Month", value_col="Scripts",
                           hierarchy=PBS_HIERARCHY)
    hier = build_hierarchy(sales.frame, PBS_HIERARCHY)
    n_bottom = len(hier.bottom_ids)
    say(f"  {hier.series['unique_id'].nunique()} series ({n_bottom} bottom); "
        f"notes: {'; '.join(sales.notes) or 'none'}")
    return sales, hier


def run_ours(frame: pd.DataFrame, *, freq: str, season_length: int, hierarchy, settings):
    say("our pipeline: forecast()")
    clock = time.perf_counter()
    result = forecast(frame, freq=freq, season_length=season_length, hierarchy=hierarchy,
                      settings=settings, progress=lambda stage: say(f"  ours: {stage}"))
    seconds = time.perf_counter() - clock
    say(f"  ours: {seconds:.1f} s")
    return result, seconds


def check_same_pairs(ours: pd.DataFrame, baseline: pd.DataFrame) -> None:
    """Both sides must score the same (series, window) pairs."""
    def pairs(m):
        return set(map(tuple, m.loc[m["mase"].notna(), ["unique_id", "cutoff"]].to_numpy()))
    assert pairs(ours) == pairs(baseline), "ours and the baseline score different pairs"


def pbs() -> tuple[str, list[str]]:
    sales, hier = load_pbs()
    levels = list(hier.tags)
    scales = window_scales(hier.series, PBS_CUTOFFS, 12)
    warm_up(hier.series)

    table, base_metrics, seconds, negatives = pbs_baseline(hier, scales)
    say("baseline AutoETS: cross_validation without fitted values (timing only)")
    seconds["AutoETS (no fitted)"] = time_autoets(hier.series, fitted=False)

    result, ours_seconds = run_ours(sales.frame, freq=sales.freq, season_length=12,
                                    hierarchy=PBS_HIERARCHY, settings=ForecastSettings())
    cutoffs = sorted(pd.to_datetime(result.backtest["cutoff"].unique()))
    assert cutoffs == PBS_CUTOFFS, f"our backtest windows are {cutoffs}"

    say("baseline AutoETS: cross_validation (fitted=True), second timing")
    seconds["AutoETS (repeat)"] = time_autoets(hier.series, fitted=True)

    best = table.sort_values("mase").iloc[0]
    best_key = (best["model"], best["reconciliation"])
    check_same_pairs(result.metrics, base_metrics[best_key])
    ours = summary_row(result.summary, levels)
    return pbs_report(table, best, ours, result, ours_seconds, seconds, negatives, levels,
                      hier)


def pbs_report(table, best, ours, result, ours_seconds, seconds, negatives, levels, hier):
    """Markdown for RESULTS.md and the PASS/FAIL lines."""
    all_row = result.summary.set_index("level").loc["all"]
    cov80, cov95 = all_row["coverage_80"], all_row["coverage_95"]
    ets = min(seconds["AutoETS"], seconds["AutoETS (repeat)"])
    level_ratio = {lv: ours[lv] / best[lv] for lv in levels}
    worst = max(level_ratio, key=level_ratio.get)
    checks = [  # (target, met, numbers)
        ("mean MASE ≤ 0.95 × baseline", ours["mase"] <= 0.95 * best["mase"],
         f"{ours['mase']:.4f} / {best['mase']:.4f} = {ours['mase'] / best['mase']:.3f}"),
        ("median MASE ≤ baseline", ours["median"] <= best["median"],
         f"{ours['median']:.4f} / {best['median']:.4f} = {ours['median'] / best['median']:.3f}"),
        ("every level ≤ 1.02 × baseline", level_ratio[worst] <= 1.02,
         f"worst ratio {level_ratio[worst]:.3f} ({worst})"),
        ("80% coverage in [0.75, 0.85]", 0.75 <= cov80 <= 0.85, f"{cov80:.3f}"),
        ("95% coverage in [0.91, 0.98]", 0.91 <= cov95 <= 0.98, f"{cov95:.3f}"),
        ("wall time ≤ 3 × AutoETS", ours_seconds <= 3 * ets,
         f"{ours_seconds:.1f} s / {ets:.1f} s = {ours_seconds / ets:.2f}×"),
    ]
    lines = [f"- {'PASS' if ok else 'FAIL'} — {name}: {text}" for name, ok, text in checks]
    for line in lines:
        say(line)

    short = [lv.split("/")[-1] for lv in levels]
    head = ["model", "reconciliation", "mean MASE", "median", "RMSSE", "WAPE",
            *[f"MASE {s}" for s in short], "negative forecasts"]
    body = []
    for _, r in table.sort_values("mase").iterrows():
        mark = " **(baseline)**" if r["model"] == best["model"] and \
            r["reconciliation"] == best["reconciliation"] else ""
        body.append([r["model"], r["reconciliation"] + mark, *fmt(r, levels),
                     f"{negatives[(r['model'], r['reconciliation'])]:,}"])
    chosen = result.reconciliation
    final_method = chosen.loc[chosen["window"] == "final", "method"].iloc[0]
    body.append(["**ours** (default pipeline)", f"chosen per window: "
                 f"{', '.join(chosen.loc[chosen['window'] == 'backtest', 'method'])}",
                 *fmt(ours, levels), "0"])
    ratio_rows = [["all (mean)", f"{best['mase']:.4f}", f"{ours['mase']:.4f}",
                   f"{ours['mase'] / best['mase']:.3f}"],
                  ["all (median)", f"{best['median']:.4f}", f"{ours['median']:.4f}",
                   f"{ours['median'] / best['median']:.3f}"]]
    ratio_rows += [[lv, f"{best[lv]:.4f}", f"{ours[lv]:.4f}", f"{level_ratio[lv]:.3f}"]
                   for lv in levels]
    timing_rows = [[f"baseline {k} cross_validation" if "reconciliation" not in k else
                    f"baseline {k} (3 windows)", f"{v:.1f}"] for k, v in seconds.items()]
    timing_rows.append(["**ours: whole `forecast()`**", f"**{ours_seconds:.1f}**"])
    timing_rows += [[f"ours: {k}", f"{v:.1f}"] for k, v in result.timings.items()]
    backtest_part = sum(v for k, v in result.timings.items() if "backtest" in k)
    final_part = sum(v for k, v in result.timings.items()
                     if "backtest" not in k and k != "prepare")
    n_unscaled = ours["n_unscaled"]
    zero = sorted(result.metrics.loc[result.metrics["mase"].isna(), "unique_id"].unique())

    text = f"""
Default pipeline (`pharmalab.forecast.forecast`, `ForecastSettings()`) against Nixtla
baselines on PBS `Scripts`, the 5-level hierarchy Concession / Type / ATC1 / ATC2
({len(hier.node_ids)} series, {len(hier.bottom_ids)} at the bottom); rolling origin, 3
windows of 12 months with cutoffs {', '.join(f'{c:%Y-%m}' for c in PBS_CUTOFFS)} (ours
checked to coincide). Baselines: SeasonalNaive, AutoETS, AutoTheta (season 12)
`cross_validation(h=12, n_windows=3, step_size=12, fitted=True)`, `n_jobs=2`, each
unreconciled and reconciled per window by hierarchicalforecast (BottomUp, MinTrace `wls_var`,
MinTrace `mint_shrink`; `Y_df` = that window's `cross_validation_fitted_values()`); forecasts
used as they come (negatives kept; the last column counts forecasts below −0.5 scripts).
SeasonalNaive forecasts are already coherent (the seasonal lag of a sum is the sum of the
lags), so reconciliation leaves them unchanged. Baseline = the best of the 12 by mean MASE:
**{best['model']} + {best['reconciliation']}**. MASE per (series, window) with the seasonal
(m = 12) in-sample scale of the window's training data, scored for both sides by
`window_metrics`/`summarize_metrics`; {n_unscaled} (series, window) pairs have a zero scale and
are left out ({', '.join(zero)}: zero throughout). Per-level MASE = mean over the level's series.

Targets:

{chr(10).join(lines)}

All 12 baselines and ours (MASE, RMSSE: means over (series, window); median over the same
pairs; WAPE pooled):

{markdown(head, body, (0, 1))}

Our model/reconciliation choices: the final forecast uses {final_method}. Coverage of our
intervals over all series and windows: 80% → {cov80:.3f}, 95% → {cov95:.3f}
(scaled CRPS {all_row['scaled_crps']:.4f}).

Per level, ours / baseline ({best['model']} + {best['reconciliation']}):

{markdown(['level', 'baseline MASE', 'ours MASE', 'ratio'], ratio_rows)}

Wall time (seconds, same process, 2 cores shared with another user's work, so noisy). AutoETS
was timed before and after our pipeline; the ratio uses the faster ({ets:.1f} s; against the
first run it is {ours_seconds / seconds['AutoETS']:.2f}×). Ours, from `result.timings`:
backtest (every window's base models, combination, reconciliation, quantiles)
{backtest_part:.1f} s, final forecast (base models refit on all data, combination,
reconciliation, quantiles, paths) {final_part:.1f} s, preparation
{result.timings.get('prepare', 0):.1f} s.

{markdown(['step', 'seconds'], timing_rows)}
"""
    return text, lines


def fmt(row, levels) -> list[str]:
    return [f"{row['mase']:.4f}", f"{row['median']:.4f}", f"{row['rmsse']:.4f}",
            f"{row['wape']:.4f}", *[f"{row[lv]:.4f}" for lv in levels]]


def markdown(head: list[str], rows: list[list], text_columns=(0,)) -> str:
    """A Markdown table: ``text_columns`` left-aligned, the others right-aligned."""
    align = ["---" if i in text_columns else "---:" for i in range(len(head))]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Pharmacy (weekly, flat)
# --------------------------------------------------------------------------------------------

def pharmacy_models() -> dict:
    from statsforecast.models import MSTL, AutoETS, AutoTheta, SeasonalNaive

    return {"SeasonalNaive(52)": SeasonalNaive(season_length=52),
            "AutoETS(season_length=52)": AutoETS(season_length=52),
            "MSTL(52) + AutoETS trend": MSTL(season_length=52,
                                             trend_forecaster=AutoETS(model="ZZN")),
            "AutoTheta(52)": AutoTheta(season_length=52)}


def ets_forms(series: pd.DataFrame, cutoffs) -> dict:
    """The ETS form AutoETS(season_length=52) picks for each series in each window."""
    from statsforecast.models import AutoETS

    forms = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for uid, g in series.groupby("unique_id"):
            picked = [AutoETS(season_length=52).fit(
                g.loc[g["ds"] <= c, "y"].to_numpy()).model_["method"] for c in cutoffs]
            forms[uid] = ", ".join(picked)
    return forms


def pharmacy() -> tuple[str, list[str]]:
    folder = DATA / "pharmacy_serbia"
    say("reading the pharmacy's weekly sales")
    daily = read_wide_csv(folder / "salesdaily.csv", time_col="datum",
                          value_cols=PHARMACY_COLUMNS)
    data_end = daily.frame["ds"].max()
    weekly = read_wide_csv(folder / "salesweekly.csv", time_col="datum", data_end=data_end)
    series = weekly.frame[["unique_id", "ds", "y"]]
    lengths = series.groupby("unique_id").size()
    last = series["ds"].max()
    cutoffs = [last - pd.Timedelta(weeks=13 * k) for k in (4, 3, 2, 1)]
    say(f"  {len(lengths)} series of {lengths.min()}–{lengths.max()} weeks to {last:%Y-%m-%d}; "
        f"notes: {'; '.join(weekly.notes)}; test cutoffs "
        f"{', '.join(f'{c:%Y-%m-%d}' for c in cutoffs)}")
    scales = window_scales(series, cutoffs, 52)
    level_of = {uid: "Series" for uid in lengths.index}
    problems, rows, per_series, seconds = [], [], {}, {}

    for name, model in pharmacy_models().items():
        say(f"pharmacy baseline {name}")
        try:
            cv, _, seconds[name] = statsforecast_cv(series, model, freq=weekly.freq,
                                                    horizon=13, n_windows=4, step=13,
                                                    fitted=False)
        except Exception as exc:  # report, do not stop the benchmark
            problems.append(f"{name} failed: {exc!r}")
            continue
        column = [c for c in cv.columns if c not in ("unique_id", "ds", "cutoff", "y")][0]
        assert sorted(cv["cutoff"].unique()) == cutoffs
        m, summary = score(cv.assign(mean=cv[column]), scales, level_of)
        rows.append({"model": name, **summary_row(summary, []), "seconds": seconds[name]})
        per_series[name] = m.groupby("unique_id")["mase"].mean()

    settings = ForecastSettings(horizon=13, backtest_windows=4)
    try:
        result, ours_seconds = run_ours(weekly.frame, freq=weekly.freq, season_length=52,
                                        hierarchy=(), settings=settings)
    except Exception as exc:
        problems.append(f"our pipeline failed: {exc!r}")
        return pharmacy_report(rows, None, per_series, problems, weekly, lengths, cutoffs, {})
    got = sorted(pd.to_datetime(result.backtest["cutoff"].unique()))
    if got != cutoffs:
        problems.append(f"our backtest cutoffs {got} differ from {cutoffs}")
    ours = {"model": "**ours**", **summary_row(result.summary, []), "seconds": ours_seconds}
    per_series["ours"] = result.metrics.groupby("unique_id")["mase"].mean()
    say("pharmacy: ETS forms picked by AutoETS(season_length=52)")
    forms = ets_forms(series, cutoffs)
    return pharmacy_report(rows, (ours, result), per_series, problems, weekly, lengths,
                           cutoffs, forms)


def seasonal_fits(forms: dict) -> str:
    fits = [f for picked in forms.values() for f in picked.split(", ")]
    seasonal = sum(f.rstrip(")").endswith(("A", "M")) for f in fits)
    return (f"{seasonal} of {len(fits)} fits are seasonal (m = 52), the others have no "
            "seasonal component." if fits else "not computed.")


def pharmacy_report(rows, ours, per_series, problems, weekly, lengths, cutoffs, forms):
    table = pd.DataFrame(rows).sort_values("mase")
    best = table.iloc[0]
    head = ["model", "mean MASE", "median", "RMSSE", "WAPE", "80% cov.", "95% cov.", "seconds"]
    body = [[r["model"], f"{r['mase']:.4f}", f"{r['median']:.4f}", f"{r['rmsse']:.4f}",
             f"{r['wape']:.4f}", "", "", f"{r['seconds']:.1f}"] for _, r in table.iterrows()]
    lines = []
    if ours is not None:
        row, result = ours
        cov = result.summary.set_index("level").loc["all"]
        body.append([row["model"], f"{row['mase']:.4f}", f"{row['median']:.4f}",
                     f"{row['rmsse']:.4f}", f"{row['wape']:.4f}", f"{cov['coverage_80']:.3f}",
                     f"{cov['coverage_95']:.3f}", f"{row['seconds']:.1f}"])
        lines = [f"- ours / best baseline ({best['model']}): mean MASE "
                 f"{row['mase']:.4f} / {best['mase']:.4f} = {row['mase'] / best['mase']:.3f}; "
                 f"median {row['median']:.4f} / {best['median']:.4f} = "
                 f"{row['median'] / best['median']:.3f}; coverage 80% "
                 f"{cov['coverage_80']:.3f}, 95% {cov['coverage_95']:.3f}"]
        for line in lines:
            say(line)
    names = list(per_series)
    series_rows = [[uid, *[f"{per_series[n].get(uid, np.nan):.3f}" for n in names],
                    forms.get(uid, "")] for uid in lengths.index]
    text = f"""
### Pharmacy, weekly (`pharmacy_serbia/salesweekly.csv`)

{len(lengths)} weekly series ({weekly.freq}) of {lengths.min()} weeks ({weekly.notes[0] if
weekly.notes else 'no loader notes'}), no hierarchy, season 52; the last 52 weeks as test:
horizon 13, 4 windows of step 13 (cutoffs {', '.join(f'{c:%Y-%m-%d}' for c in cutoffs)}).
Ours: `ForecastSettings(horizon=13, backtest_windows=4)` (plus its warm-up window). MASE
scale: seasonal naive (m = 52) in-sample error of each window's training data.
{'Problems: ' + '; '.join(problems) if problems else 'Every model ran on every series and window.'}

{chr(10).join(lines)}

{markdown(head, body)}

Mean MASE per series over the 4 windows, and the ETS form `AutoETS(season_length=52)` picks in
each window's training data: {seasonal_fits(forms)}

{markdown(['series', *names, 'AutoETS(52) forms by window'], series_rows,
          (0, len(names) + 1))}
"""
    return text, lines


# --------------------------------------------------------------------------------------------

def code_version() -> str:
    """The commit of the code under test, and whether src/pharmalab/forecast differs from it
    (taken when the script starts, as the modules are imported then)."""
    def git(*words):
        return subprocess.run(["git", "-C", str(HERE.parent), *words], capture_output=True,
                              text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "-uno", "--", "src/pharmalab/forecast")
    return f"commit {commit}" + (" with uncommitted changes in src/pharmalab/forecast"
                                 if dirty else "")


def environment(code: str) -> str:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    versions = ", ".join(f"{p} {version(p)}" for p in (
        "statsforecast", "hierarchicalforecast", "mlforecast", "lightgbm", "pandas", "numpy"))
    cores = len(os.sched_getaffinity(0))
    return (f"Run on {dt.date.today():%Y-%m-%d} with `python benchmarks/forecast_pbs.py`; "
            f"{cores} cores ({platform.machine()}, Python {platform.python_version()}), "
            f"`OMP_WAIT_POLICY=PASSIVE`; code: {code}; {versions}. Peak RSS: {usage:,.0f} MB (this "
            f"process), {children:,.0f} MB (largest worker process).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-pharmacy", action="store_true",
                        help="run the PBS benchmark only")
    args = parser.parse_args()
    code = code_version()
    say(f"code under test: {code}")
    body, _ = pbs()
    if not args.skip_pharmacy:
        pharmacy_text, _ = pharmacy()
        body += "\n" + pharmacy_text
    update_section("Forecasting", environment(code) + "\n\n### PBS, monthly hierarchy\n\n"
                   + body.strip())
    say("wrote the Forecasting section of benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
