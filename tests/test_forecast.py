"""Forecasting: fpp3 h02, coherence of means and paths, intermittent demand, metrics,
fallbacks, settings and the CLI contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pharmalab.cli import app
from pharmalab.errors import PharmalabInputError
from pharmalab.forecast import (
    ForecastSettings,
    build_hierarchy,
    classify_demand,
    forecast,
    seasonal_scales,
    window_metrics,
)
from pharmalab.sales import read_sales_csv

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sales"
FAST_MODELS = ("SeasonalNaive", "AutoETS", "AutoTheta", "LightGBM")


def _h02() -> pd.DataFrame:
    d = pd.read_csv(DATA / "h02_fpp2.csv")
    return pd.DataFrame({"unique_id": "H02", "ds": pd.to_datetime(d["Month"]),
                         "y": d["Cost_millions_AUD"].astype("float64")})


@pytest.fixture(scope="module")
def pbs_small():
    """PBS Scripts, Concession/Type/ATC1 for ATC1 A, C and N: 12 bottom series, 19 in all."""
    data = read_sales_csv(DATA / "pbs.csv", time_col="Month", value_col="Scripts",
                          hierarchy=["Concession", "Type", "ATC1", "ATC2"])
    frame = data.frame[data.frame["ATC1"].isin(["A", "C", "N"])]
    frame = frame.groupby(["Concession", "Type", "ATC1", "ds"], as_index=False)["y"].sum()
    frame["unique_id"] = frame[["Concession", "Type", "ATC1"]].agg("/".join, axis=1)
    settings = ForecastSettings(models=FAST_MODELS, n_paths=50)
    result = forecast(frame, freq="MS", season_length=12,
                      hierarchy=["Concession", "Type", "ATC1"], settings=settings)
    return frame, result


def test_fpp3_h02_pipeline_beats_autoarima_and_ets():
    """fpp3 §9.9 split: train July 1991 – June 2006, test the 24 months to June 2008.

    fable's ARIMA(3,0,1)(0,1,2) on logs has test RMSE 0.0621; statsforecast's AutoARIMA on
    logs 0.0648 (bias-adjusted mean), AutoETS 0.0677. The issue asks ≤ 0.0631.
    """
    h02 = _h02()
    train = h02[h02["ds"] <= "2006-06-01"]
    test = h02[h02["ds"] > "2006-06-01"]
    result = forecast(train, freq="MS", season_length=12,
                      settings=ForecastSettings(horizon=24, step=12, n_paths=0))
    assert "AutoARIMA" in result.model_choice.columns.str.removeprefix("weight_").tolist()
    joined = result.forecast.merge(test, on=["unique_id", "ds"], suffixes=("", "_actual"))
    assert len(joined) == 24
    rmse = float(np.sqrt(((joined["mean"] - joined["y"]) ** 2).mean()))
    assert rmse <= 0.0631, rmse
    # The intervals are ordered and hold the mean.
    assert (joined["lo-95"] <= joined["lo-80"]).all()
    assert (joined["lo-80"] <= joined["mean"]).all() and (joined["mean"] <= joined["hi-80"]).all()


def test_reconciled_means_and_every_path_add_up(pbs_small):
    frame, result = pbs_small
    hier = result.hierarchy
    s = hier.S()
    bottom = hier.bottom_ids
    assert len(bottom) == 12 and len(hier.node_ids) == 19
    wide = result.forecast.pivot(index="unique_id", columns="ds", values="mean")
    np.testing.assert_allclose(wide.loc[hier.node_ids].to_numpy(),
                               s @ wide.loc[bottom].to_numpy(), rtol=0, atol=1e-6)
    assert (result.forecast["mean"] >= 0).all()
    paths = result.paths
    assert paths["path"].nunique() == 50
    for _, one in paths.groupby("path"):
        w = one.pivot(index="unique_id", columns="ds", values="y")
        np.testing.assert_allclose(w.loc[hier.node_ids].to_numpy(),
                                   s @ w.loc[bottom].to_numpy(), rtol=0, atol=1e-6)
    # Backtest forecasts are reconciled too, window by window.
    for _, window in result.backtest.groupby("cutoff"):
        w = window.pivot(index="unique_id", columns="ds", values="mean")
        np.testing.assert_allclose(w.loc[hier.node_ids].to_numpy(),
                                   s @ w.loc[bottom].to_numpy(), rtol=0, atol=1e-6)
    # The aggregates are the sums of the data.
    total = frame.groupby("ds")["y"].sum()
    series = hier.series.set_index(["unique_id", "ds"])["y"]
    np.testing.assert_allclose(series.loc["Total"].to_numpy(), total.to_numpy())


def test_backtest_windows_and_outputs(pbs_small):
    _, result = pbs_small
    cutoffs = sorted(result.backtest["cutoff"].unique())
    assert [pd.Timestamp(c).strftime("%Y-%m") for c in cutoffs] == ["2005-06", "2006-06",
                                                                     "2007-06"]
    assert result.reconciliation["window"].tolist() == ["warm-up", "backtest", "backtest",
                                                         "backtest", "final"]
    q = result.forecast[[f"q{p:.2f}" for p in np.arange(0.05, 0.96, 0.05)]].to_numpy()
    assert (np.diff(q, axis=1) >= -1e-9).all()  # quantiles never cross
    summary = result.summary.set_index("level")
    assert summary.loc["all", "series"] == 19 and summary.loc["all", "windows"] == 3
    assert 0 < summary.loc["all", "mase"] < 3
    weights = result.model_choice.filter(like="weight_").sum(axis=1)
    np.testing.assert_allclose(weights, 1.0)


def test_j06_is_intermittent_and_gets_intermittent_models():
    j06 = pd.read_csv(DATA / "j06_from_pbs.csv")
    frame = pd.DataFrame({"unique_id": "J06", "ds": pd.to_datetime(j06["Month"]),
                          "y": j06["Scripts"].astype("float64")})
    cls = classify_demand(frame).iloc[0]
    assert cls["intermittent"] and cls["demand_class"] in ("intermittent", "lumpy")
    assert cls["adi"] >= 1.32
    result = forecast(frame, freq="MS", season_length=12,
                      settings=ForecastSettings(models=("SeasonalNaive", "AutoETS",
                                                        "CrostonSBA", "ADIDA", "TSB"),
                                                n_paths=0))
    choice = result.model_choice.iloc[0]
    assert choice["demand_class"] in ("intermittent", "lumpy")
    # Intermittent models are candidates; those far behind the best in the earlier windows
    # (CrostonSBA and TSB on J06, over 1.3× ADIDA's MASE) are left out, and said so.
    weights = choice[["weight_CrostonSBA", "weight_ADIDA", "weight_TSB"]].astype(float)
    assert weights["weight_ADIDA"] > 0
    if (weights == 0).any():
        assert "left out" in choice["combination"]
        left_out = [m for m in ("CrostonSBA", "TSB") if choice[f"weight_{m}"] == 0]
        best = min(choice[f"mase_{m}"] for m in ("SeasonalNaive", "AutoETS", "CrostonSBA",
                                                  "ADIDA", "TSB"))
        assert all(choice[f"mase_{m}"] > 1.3 * best for m in left_out)


def test_smooth_series_do_not_get_intermittent_models(pbs_small):
    _, result = pbs_small
    total = result.model_choice.set_index("unique_id").loc["Total"]
    assert total["demand_class"] in ("smooth", "erratic")
    assert "weight_CrostonSBA" not in result.model_choice or total["weight_CrostonSBA"] == 0


def test_metrics_equal_utilsforecast():
    from utilsforecast.losses import mase, rmsse, scaled_crps, wape

    h02 = _h02()
    train = h02[h02["ds"] <= "2006-06-01"]
    test = h02[h02["ds"] > "2006-06-01"].copy()
    test["mean"] = train["y"].tail(12).tolist() * 2       # seasonal naive
    test["cutoff"] = pd.Timestamp("2006-06-01")
    for i, q in enumerate((0.1, 0.5, 0.9)):
        test[f"q{q:.2f}"] = test["mean"] * (0.9 + 0.1 * i)
    ours = window_metrics(test, seasonal_scales(train, 12), quantiles=(0.1, 0.5, 0.9)).iloc[0]
    frame = test.rename(columns={"mean": "m"})
    assert ours["mase"] == pytest.approx(mase(frame, ["m"], 12, train)["m"].iloc[0], rel=1e-9)
    assert ours["rmsse"] == pytest.approx(rmsse(frame, ["m"], 12, train)["m"].iloc[0],
                                          rel=1e-9)
    assert ours["wape"] == pytest.approx(wape(frame, ["m"])["m"].iloc[0], rel=1e-9)
    qframe = test.rename(columns={"q0.10": "m-q-10", "q0.50": "m-q-50", "q0.90": "m-q-90"})
    crps = scaled_crps(qframe, {"m": ["m-q-10", "m-q-50", "m-q-90"]},
                       np.array([0.1, 0.5, 0.9]))["m"].iloc[0]
    assert ours["scaled_crps"] == pytest.approx(crps, rel=1e-9)


def test_short_series_fall_back_to_naive_and_say_so():
    h02 = _h02()
    short = h02.tail(20).assign(unique_id="SHORT")  # fewer than two seasons
    frame = pd.concat([h02.assign(unique_id="LONG"), short], ignore_index=True)
    result = forecast(frame, freq="MS", season_length=12,
                      settings=ForecastSettings(models=("SeasonalNaive", "AutoETS"),
                                                n_paths=0))
    choice = result.model_choice.set_index("unique_id")
    assert choice.loc["SHORT", "fallback"] == (
        "shorter than two seasons: a seasonal model cannot be fitted; seasonal naive (one "
        "season of history)")
    assert choice.loc["LONG", "fallback"] != choice.loc["LONG", "fallback"] or \
        choice.loc["LONG", "fallback"] == ""
    assert any("SHORT" in note for note in result.notes)
    # Seasonal naive: the forecast repeats the last 12 months.
    fc = result.forecast[result.forecast["unique_id"] == "SHORT"]["mean"].to_numpy()
    np.testing.assert_allclose(fc, h02["y"].tail(12).to_numpy())


@pytest.mark.parametrize("kwargs, message", [
    ({"horizon": 0}, "horizon must be at least 1"),
    ({"backtest_windows": 0}, "backtest_windows must be at least 1"),
    ({"quantiles": (0.5, 1.0)}, "strictly between 0 and 1"),
    ({"models": ("AutoETS", "Prophet")}, "unknown model(s) 'Prophet'"),
    ({"combination": "mean"}, "combination must be"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(PharmalabInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ForecastSettings(**kwargs)


def test_series_ending_at_different_periods_are_refused():
    h02 = _h02()
    frame = pd.concat([h02.assign(unique_id="A"), h02.iloc[:-3].assign(unique_id="B")])
    with pytest.raises(PharmalabInputError, match="every series must end at the same period"):
        forecast(frame, freq="MS", season_length=12)


def test_too_short_for_the_windows_is_forecast_without_a_backtest():
    frame = _h02().tail(40)
    result = forecast(frame, freq="MS", season_length=12,
                      settings=ForecastSettings(horizon=12, backtest_windows=3, n_paths=0))
    assert any("too short for 4 rolling-origin windows" in n and "nothing is backtested" in n
               for n in result.notes)
    assert result.backtest.empty and len(result.forecast) == 12
    assert result.model_choice["best_model"].iloc[0] == "AutoETS with season 12 (40 periods)"
    # h02 is strongly seasonal: the forecast is not flat
    assert result.forecast["mean"].max() / result.forecast["mean"].min() > 1.3


def test_hierarchy_column_with_a_slash_is_refused():
    frame = _h02().assign(Brand="A/B")
    with pytest.raises(PharmalabInputError, match="without '/'"):
        build_hierarchy(frame, ["Brand"])


def test_cli_forecast_writes_the_contracted_files(tmp_path):
    wide = pd.read_csv(DATA / "pharmacy_serbia" / "salesweekly.csv")
    path = tmp_path / "weekly.csv"
    wide[["datum", "M01AB", "N02BE"]].to_csv(path, index=False)
    out = tmp_path / "fc"
    result = CliRunner().invoke(app, [
        "forecast", "--sales", str(path), "--time-col", "datum", "--data-end", "2019-10-08",
        "--horizon", "13", "--backtest-windows", "2", "--models", "SeasonalNaive,AutoETS",
        "--n-paths", "20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "dropped the last week 2019-10-13" in result.output
    fc = pd.read_parquet(out / "forecast.parquet")
    assert list(fc.columns[:3]) == ["unique_id", "ds", "mean"]
    assert {"q0.05", "q0.50", "q0.95", "lo-80", "hi-80", "lo-95", "hi-95"} <= set(fc.columns)
    assert len(fc) == 2 * 13 and fc["ds"].min() == pd.Timestamp("2019-10-13")
    paths = pd.read_parquet(out / "paths.parquet")
    assert list(paths.columns) == ["unique_id", "ds", "path", "y"] and len(paths) == 2 * 13 * 20
    metrics = pd.read_csv(out / "backtest_metrics.csv")
    assert {"unique_id", "level", "cutoff", "mase", "rmsse", "wape", "scaled_crps",
            "coverage_80", "coverage_95"} <= set(metrics.columns)
    choice = pd.read_csv(out / "model_choice.csv")
    assert set(choice["unique_id"]) == {"M01AB", "N02BE"}
    history = pd.read_parquet(out / "history.parquet")
    assert len(history) == 2 * 301 and history["ds"].max() == pd.Timestamp("2019-10-06")
    manifest = json.loads((out / "forecast_manifest.json").read_text())
    assert manifest["settings"]["horizon"] == 13


def test_cli_bad_hierarchy_column_is_one_line(tmp_path):
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "pharmalab"), "forecast", "--sales",
         str(DATA / "pbs.csv"), "--time-col", "Month", "--value-col", "Scripts",
         "--hierarchy", "Concession,Brand", "--out", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: pbs.csv: column 'Brand' is missing")
    assert not (tmp_path / "x").exists()


def test_backtest_fallback_never_brings_intermittent_models_to_a_smooth_series():
    """60 months, 3 windows of 12 + warm-up: the backtest scores only the naive fallback, and
    the final forecast must still use only the models allowed for a smooth series."""
    frame = _h02().tail(60)
    result = forecast(frame, freq="MS", season_length=12,
                      settings=ForecastSettings(models=("SeasonalNaive", "AutoETS",
                                                        "CrostonSBA"), n_paths=0))
    choice = result.model_choice.iloc[0]
    assert choice["fallback"] == "too short for every backtest window"
    assert choice["demand_class"] == "smooth"
    assert choice["weight_CrostonSBA"] == 0
    assert choice["combination"] == "median of 2 models"
    assert choice["weight_SeasonalNaive"] == choice["weight_AutoETS"] == 0.5


def test_grouped_structure_is_coherent():
    """Concession and ATC1 crossed (a grouped structure, not a tree): 1 + 2 + 3 + 6 series."""
    data = read_sales_csv(DATA / "pbs.csv", time_col="Month", value_col="Scripts",
                          hierarchy=["Concession", "Type", "ATC1", "ATC2"])
    frame = data.frame[data.frame["ATC1"].isin(["A", "C", "N"])]
    frame = frame.groupby(["Concession", "ATC1", "ds"], as_index=False)["y"].sum()
    frame["unique_id"] = frame["Concession"] + "/" + frame["ATC1"]
    result = forecast(frame, freq="MS", season_length=12, hierarchy=["Concession", "ATC1"],
                      grouped_levels=[["Concession"], ["ATC1"]],
                      settings=ForecastSettings(models=("SeasonalNaive", "AutoETS"),
                                                n_paths=10))
    hier = result.hierarchy
    assert not hier.is_strict
    assert [len(v) for v in hier.tags.values()] == [1, 2, 3, 6]
    assert "TopDown_forecast_proportions" not in set(result.reconciliation["method"])
    wide = result.forecast.pivot(index="unique_id", columns="ds", values="mean")
    np.testing.assert_allclose(wide.loc[hier.node_ids].to_numpy(),
                               hier.S() @ wide.loc[hier.bottom_ids].to_numpy(), atol=1e-6)
    atc = wide.loc[["Total/A", "Total/C", "Total/N"]].sum()
    np.testing.assert_allclose(atc.to_numpy(), wide.loc["Total"].to_numpy(), rtol=1e-9)


@pytest.mark.parametrize("method", ["MinTrace_mint_shrink", "MinTrace_wls_var"])
def test_any_set_of_reconcilers_runs_and_says_where_it_fell_back(method):
    """Issue 15 item 5: MinTrace alone ended in 'No objects to concatenate' — it cannot run
    in the first window (no earlier errors for its covariance) and BottomUp was not asked
    for. The base forecasts stand in there, said in reconciliation.csv."""
    data = read_sales_csv(DATA / "pbs.csv", time_col="Month", value_col="Scripts",
                          hierarchy=["Concession", "Type", "ATC1", "ATC2"])
    frame = data.frame[data.frame["ATC1"].isin(["A", "C"])]
    frame = frame.groupby(["Concession", "ATC1", "ds"], as_index=False)["y"].sum()
    frame["unique_id"] = frame[["Concession", "ATC1"]].agg("/".join, axis=1)
    settings = ForecastSettings(models=("SeasonalNaive", "AutoETS"), n_paths=0,
                                reconcilers=(method,))
    result = forecast(frame, freq="MS", season_length=12, hierarchy=["Concession", "ATC1"],
                      settings=settings)
    rec = result.reconciliation.set_index("window")
    warm_up = rec.loc["warm-up"]
    assert warm_up["method"] == "unreconciled"
    assert "no other requested method could" in warm_up["reason"]
    assert set(rec["method"]) <= {method, "unreconciled"}
    assert rec.loc["final", "method"] in {method, "unreconciled"}
    assert len(result.forecast) == 7 * 12 and (result.forecast["mean"] >= 0).all()
    assert result.forecast["mean"].notna().all()


def _monthly(n: int, uid: str = "a", start: str = "2018-01-01", level: float = 100.0):
    ds = pd.date_range(start, periods=n, freq="MS")
    season = 10 * np.sin(2 * np.pi * np.arange(n) / 12)
    return pd.DataFrame({"unique_id": uid, "ds": ds, "y": level + season + np.arange(n)})


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.drop(index=20), "missing between"),
    (lambda f: pd.concat([f, f.iloc[[30]]]), "duplicate"),
    (lambda f: f.assign(y=f.y.where(f.index != 5, -3.0)), "cannot be negative"),
])
@pytest.mark.parametrize("models", [("SeasonalNaive",), ("SeasonalNaive", "LightGBM")])
def test_forecast_checks_its_frame_as_the_cli_does(change, message, models):
    """Issue 15 item 2: the Python API trusted its input (gaps lagged the forecast by row
    position, duplicates were used, negatives accepted, mlforecast's ValueError escaped)."""
    from pharmalab.errors import SalesInputError

    frame = change(_monthly(48))
    with pytest.raises(SalesInputError, match=message):
        forecast(frame, freq="MS", season_length=12,
                 settings=ForecastSettings(models=models, horizon=6, n_paths=0))


def test_a_gap_filled_on_request_is_forecast_on_the_calendar():
    frame = _monthly(48).drop(index=20)
    settings = ForecastSettings(models=("SeasonalNaive",), horizon=6, n_paths=0)
    result = forecast(frame, freq="MS", season_length=12, settings=settings,
                      fill_missing=True)
    # seasonal naive: the same months a year before the forecast origin (2021-12)
    expected = _monthly(48).set_index("ds")["y"].iloc[-12:-6].to_numpy()
    np.testing.assert_allclose(result.forecast.sort_values("ds")["mean"], expected)
    assert any("filled 1 missing month" in n for n in result.notes)


def test_a_series_that_stops_early_is_zero_after_its_last_report_on_request():
    """Issue 15 item 12: a discontinued drug's series ending three years before the others."""
    frame = pd.concat([_monthly(72, "a"), _monthly(36, "b")]).assign(
        group=lambda f: f.unique_id)
    settings = ForecastSettings(models=("SeasonalNaive",), horizon=6, n_paths=0)
    with pytest.raises(PharmalabInputError, match="--fill-missing"):
        forecast(frame, freq="MS", season_length=12, settings=settings)
    result = forecast(frame, freq="MS", season_length=12, settings=settings,
                      fill_missing=True)
    b = result.forecast[result.forecast.unique_id == "b"]
    assert len(b) == 6 and (b["mean"] == 0).all()
    assert any("1 series stop before the last month" in n and "36 months" in n
               for n in result.notes)


@pytest.mark.parametrize(("n", "freq", "season"), [(4, "MS", 12), (39, "W-SUN", 52)])
def test_a_launch_shorter_than_a_season_is_not_a_flat_line(n, freq, season, tmp_path):
    """Issue 15 item 1: monthly 1, 2, 3, 4 (season 12) was forecast as 4 for every month,
    weekly 1…39 (season 52) as 39; a set whose longest series is short was refused."""
    frame = pd.DataFrame({"unique_id": "launch",
                          "ds": pd.date_range("2024-01-01", periods=n, freq=freq),
                          "y": np.arange(1.0, n + 1)})
    settings = ForecastSettings(models=("SeasonalNaive", "AutoETS"), horizon=12, n_paths=20)
    result = forecast(frame, freq=freq, season_length=season, settings=settings)
    fc = result.forecast.sort_values("ds")
    mean = fc["mean"].to_numpy()
    # Theta without season: the trend of the history carried on (≈ +1 per period)
    assert mean[0] == pytest.approx(n + 1, abs=0.05)
    np.testing.assert_allclose(np.diff(mean), 1.0, atol=0.02)
    # intervals say how little is known: they widen with the horizon and are not empty
    width = (fc["hi-80"] - fc["lo-80"]).to_numpy()
    assert width[0] > 2 and (np.diff(width) > 0).all()
    choice = result.model_choice.iloc[0]
    assert f"Theta without season ({n} periods)" in choice["fallback"]
    assert any("nothing is backtested" in note for note in result.notes)
    assert result.paths["path"].nunique() == 20
    from pharmalab.forecast.outputs import write_forecast

    written = write_forecast(result, tmp_path / "fc", settings)
    assert (tmp_path / "fc" / "forecast.parquet") in written


def test_a_launch_inside_a_long_set_gets_a_trend_and_says_why():
    long = _monthly(72, "old")
    launch = pd.DataFrame({"unique_id": "new", "ds": pd.date_range("2023-09-01", periods=4,
                                                                    freq="MS"),
                           "y": [10.0, 20.0, 30.0, 40.0]})
    settings = ForecastSettings(models=("SeasonalNaive", "AutoETS"), horizon=6, n_paths=0)
    result = forecast(pd.concat([long, launch]), freq="MS", season_length=12,
                      settings=settings, fill_missing=True)
    new = result.forecast[result.forecast.unique_id == "new"].sort_values("ds")["mean"]
    assert new.iloc[0] == pytest.approx(50, abs=1) and new.iloc[-1] > 90
    why = result.model_choice.set_index("unique_id").loc["new", "fallback"]
    assert "shorter than two seasons" in why and "Theta without season (4 periods)" in why


def test_sample_paths_cut_at_zero_keep_the_forecast_mean():
    """Issue 15 item 3: paths clipped at zero raised the mean of intermittent series."""
    from pharmalab.forecast.intervals import sample_paths

    ds = pd.date_range("2024-01-01", periods=10, freq="D")
    bottom = pd.DataFrame([np.full(10, 1.0)], index=pd.Index(["sku"], name="unique_id"),
                          columns=ds)
    # scaled errors of an intermittent series: −1 nine days in ten, +9 on the tenth
    e = np.tile(np.r_[np.full(9, -1.0), 9.0], 20)
    errors = pd.DataFrame({"unique_id": "sku", "cutoff": np.repeat(np.arange(20), 10),
                           "h": np.tile(np.arange(1, 11), 20), "e": e})
    paths = sample_paths(bottom, pd.Series({"sku": 1.0}), errors, np.ones((1, 1)), ["sku"],
                         ["sku"], n_paths=2000, seed=1)
    assert (paths["y"] >= 0).all()
    per_day = paths.groupby("ds")["y"].mean().to_numpy()
    np.testing.assert_allclose(per_day, 1.0, rtol=1e-9)
