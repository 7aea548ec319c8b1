"""Issue 18: the forecast suite's smallest set against the models a forecaster tries first,
and the short-history condition that crashed LightGBM."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pharmalab.forecast import ForecastSettings, forecast
from pharmalab.forecast.models import lightgbm_lags

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def suite():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import forecast_suite
    finally:
        sys.path.remove(str(BENCHMARKS))
    return forecast_suite


def test_visnights_no_worse_than_the_best_baseline(suite):
    """fpp2 visnights (quarterly, State / Zone, 27 series), 3 windows of 4 quarters: the
    default pipeline's mean MASE is at most the best of SeasonalNaive, AutoETS and AutoTheta,
    each unreconciled or reconciled by BottomUp / MinTrace wls_var / mint_shrink (AutoTheta +
    MinTrace mint_shrink, 1.061), and its 80% intervals cover 75–85%."""
    out = suite.run_set(suite.visnights())
    assert out["series"] == 27 and out["periods"] == 76
    assert out["baseline"] == "AutoTheta + MinTrace_mint_shrink"
    assert out["baseline_mase"] == pytest.approx(1.0614, abs=2e-3)
    assert out["ratio"] <= 1.00, out["ratio"]
    assert 0.75 <= out["coverage_80"] <= 0.85


def test_prison_leaves_the_weak_models_out(suite):
    """fpp2 prison (57 series, 48 quarters): SeasonalNaive is far behind AutoETS and
    AutoTheta in the earlier windows (bottom-level backtest MASE 1.74 against 1.33 and 1.31);
    the trimmed pool (without it) did better there, so every level uses it (the median of
    AutoETS, AutoTheta and LightGBM): 1.051× the best baseline with SeasonalNaive in the
    median, 1.026× without (issue 18's target of 1.00 is not met by the default)."""
    out = suite.run_set(suite.prison())
    assert out["choices"] == {"median of 3 models (trimmed)": 57}, out["choices"]
    choice = out["model_choice"]
    assert (choice["weight_SeasonalNaive"] == 0).all()
    assert choice["combination"].str.contains(
        "pool 'trimmed': without the models over 1.3× the level's best backtest MASE; "
        "left out: SeasonalNaive").all()
    assert out["ratio"] <= 1.03, out["ratio"]


def test_prison_with_the_three_best_models_first(suite):
    """The same set with the level's 3 best models as a candidate pool and as the first
    reported window's pool (before any window has scored the pools): 1.006× the best
    baseline; a level keeps the pool that did best in the earlier windows (33 series the 3
    best, 24 the trimmed pool)."""
    out = suite.run_set(suite.prison(), pools=("all", "trimmed", "best 3"),
                        default_pool="best 3")
    assert out["choices"] == {"median of 3 models (best 3)": 33,
                              "median of 3 models (trimmed)": 24}, out["choices"]
    assert out["ratio"] <= 1.01, out["ratio"]


def test_scum_models_on_request(suite):
    """AutoCES and DynamicOptimizedTheta (with AutoETS and AutoTheta, SCUM's members but
    ARIMA) on fpp2 visnights: 0.957× the best baseline (0.980× with the default models); the
    median takes them in and model_choice.csv weighs and scores them."""
    models = ("SeasonalNaive", "AutoETS", "AutoTheta", "AutoCES", "DynamicOptimizedTheta",
              "CrostonSBA", "ADIDA", "TSB", "LightGBM")
    out = suite.run_set(suite.visnights(), models=models)
    assert out["ratio"] <= 0.965, out["ratio"]
    choice = out["model_choice"]
    for model in ("AutoCES", "DynamicOptimizedTheta"):
        assert choice[f"mase_{model}"].notna().all()
        assert (choice[f"weight_{model}"] > 0).mean() > 0.5


def test_the_one_model_that_finds_the_pattern_forecasts_alone():
    """A synthetic case where one model is clearly best: 12 monthly series whose yearly
    pattern flips sign every other year (y = 200 ± 30·s(month) + N(0, 2)). A 12-month season
    sees last year's pattern, which is this year's mirror image (SeasonalNaive's backtest MASE
    ≈ 1, the other local models 0.16–0.58); LightGBM's 24-month lag sees it exactly (≈ 0.07).
    The pipeline must choose it, not drown it in a median: every series is forecast by
    LightGBM alone, and model_choice.csv says why."""
    rng = np.random.default_rng(1)
    months = pd.date_range("2010-01-01", periods=132, freq="MS")
    t = np.arange(132)
    frames, truth = [], []
    for i in range(12):
        shape = rng.normal(0, 1, 12)
        shape -= shape.mean()
        signal = 200 + 30 * shape[t % 12] * np.where((t // 12) % 2 == 0, 1, -1)
        y = signal + rng.normal(0, 2, 132)
        frames.append(pd.DataFrame({"unique_id": f"s{i:02d}", "ds": months[:120],
                                    "y": y[:120]}))
        truth.append(pd.DataFrame({"unique_id": f"s{i:02d}", "ds": months[120:],
                                   "signal": signal[120:]}))
    result = forecast(pd.concat(frames, ignore_index=True), freq="MS", season_length=12,
                      settings=ForecastSettings(horizon=12, n_paths=0))
    choice = result.model_choice.set_index("unique_id")
    assert choice["combination"].str.startswith("LightGBM alone (backtest MASE").all()
    assert (choice["weight_LightGBM"] == 1.0).all()
    mase = choice.filter(like="mase_").mean()
    others = mase.drop(["mase_LightGBM", "mase_CrostonSBA", "mase_ADIDA", "mase_TSB",
                        "mase_Short-history fallback"])
    assert mase["mase_LightGBM"] < 0.5 * others.min()
    # The backtest reports LightGBM's accuracy (no median blurred it) …
    reported = result.summary.set_index("level").loc["all", "mase"]
    assert reported < 0.15, reported
    # … and the final year is this year's pattern, not last year's mirror image.
    joined = result.forecast.merge(pd.concat(truth), on=["unique_id", "ds"])
    assert len(joined) == 144
    assert (joined["mean"] - joined["signal"]).abs().mean() < 5.0


def test_lightgbm_lags_fit_a_short_history():
    """84 months, 3 windows of 12 plus the warm-up: the earliest window trains on 36 months,
    which after the 12-month difference leaves no row for a 24-month lag (mlforecast raised
    "Input data must be 2 dimensional and non empty"); the lag is dropped, in the backtest and
    in the final model alike."""
    assert lightgbm_lags(12, 36) == [1, 2, 3, 12]
    assert lightgbm_lags(12, 60) == [1, 2, 3, 12, 24]
    assert lightgbm_lags(4, 20) == [1, 2, 3, 4, 8]
    rng = np.random.default_rng(0)
    ds = pd.date_range("2015-01-01", periods=84, freq="MS")
    frame = pd.concat([pd.DataFrame({
        "unique_id": f"s{i}", "ds": ds,
        "y": 100 + 10 * np.sin(2 * np.pi * np.arange(84) / 12) + rng.normal(0, 2, 84)})
        for i in range(3)], ignore_index=True)
    result = forecast(frame, freq="MS", season_length=12, settings=ForecastSettings(
        models=("SeasonalNaive", "LightGBM"), n_paths=0))
    choice = result.model_choice.set_index("unique_id")
    assert choice["mase_LightGBM"].notna().all()
    assert (choice["weight_LightGBM"] > 0).all()
    assert result.forecast["mean"].notna().all() and len(result.forecast) == 36
