"""The patient-flow demand forecast, its rolling-origin backtest against the CDM's own
dispensing beside the sales-series forecast, and their combination.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from pharmalab.demand.flow import DemandInputError, FlowSettings, PatientFlow, patient_flow
from pharmalab.demand.project import Scenario, bootstrap_rates, lever_notes, project
from pharmalab.engine import Database
from pharmalab.forecast import ForecastSettings, forecast, seasonal_scales, window_metrics
from pharmalab.forecast.metrics import quantile_column

STARTERS_ID, REST_ID = "new starters", "other patients"
#: Models for the starter and other-patient series: a Nixtla user's first three.
DEFAULT_MODELS = ("SeasonalNaive", "AutoETS", "AutoTheta")
METHODS = ("patient_flow", "sales_series", "combined")


@dataclass(frozen=True)
class PatientDemand:
    """A patient-flow demand forecast of one drug.

    Attributes
    ----------
    flow
        The :class:`PatientFlow` it was made from (as of the origin).
    forecast
        ``unique_id`` (the drug), ``ds``, ``mean``, ``q0.05`` … ``q0.95``, ``lo-80``,
        ``hi-80``, ``lo-95``, ``hi-95`` (float64, the flow's measure: days of supply or
        fills), as ``pharmalab forecast`` writes them.
    paths
        ``unique_id, ds, path, y``: sample paths.
    starters
        The new-starter forecast (``unique_id, ds, mean``, quantiles, intervals; persons) and
        ``rest`` the forecast of the other patients' dispensing, summarized from the
        pipeline's sample paths the demand was built from.
    scenario
        The levers applied.
    """

    flow: PatientFlow
    forecast: pd.DataFrame
    paths: pd.DataFrame
    starters: pd.DataFrame
    rest: pd.DataFrame
    scenario: Scenario
    notes: list[str] = field(default_factory=list)


def forecast_patient_demand(flow: PatientFlow, *, settings: ForecastSettings | None = None,
                            scenario: Scenario | None = None,
                            lookback: int | None = None) -> PatientDemand:
    """Forecast a drug's demand from its patient flow.

    New starters and the other patients' dispensing are forecast by the forecasting pipeline
    (:func:`pharmalab.forecast.forecast`, its models, intervals and sample paths); the rates
    by months since the start (share on treatment, units per patient, share still observed)
    are drawn by a bootstrap over start cohorts, one draw per path; each path's demand is
    :func:`pharmalab.demand.project.project` of its starters, rates and rest.

    Parameters
    ----------
    flow
        From :func:`pharmalab.demand.patient_flow` (as of the forecast origin).
    settings
        Horizon, models, paths (:class:`pharmalab.forecast.ForecastSettings`; default 12
        months, SeasonalNaive + AutoETS + AutoTheta, 200 paths; the pipeline's one backtest
        window here only calibrates its intervals — the comparison with the sales series is
        :func:`backtest_patient_demand`).
    scenario
        :class:`Scenario` levers (default: none).
    lookback
        Estimate the rates from the cohorts of the last ``lookback`` months only (None: all).

    Returns
    -------
    PatientDemand

    Raises
    ------
    PharmalabInputError
        From the pipeline, e.g. a history too short for one window.

    References
    ----------
    Cook AG (2016), *Forecasting for the Pharmaceutical Industry*, ch. 4; Efron & Tibshirani
    (1993) for the bootstrap.
    """
    settings = settings or ForecastSettings(
        horizon=12, backtest_windows=1, models=DEFAULT_MODELS)
    scenario = scenario or Scenario()
    n_paths = max(settings.n_paths, 50)
    settings = replace(settings, n_paths=n_paths)
    months = flow.months
    frame = pd.concat([
        pd.DataFrame({"unique_id": STARTERS_ID, "ds": months["ds"],
                      "y": months["starters"].astype("float64")}),
        pd.DataFrame({"unique_id": REST_ID, "ds": months["ds"],
                      "y": (months["dispensed"] - months["units"]).clip(lower=0.0)})])
    result = forecast(frame, freq="MS", season_length=12, settings=settings)
    starters = _wide(result.paths, STARTERS_ID, n_paths, settings.horizon)
    rest = _wide(result.paths, REST_ID, n_paths, settings.horizon)
    rates = bootstrap_rates(flow, n_paths, seed=settings.seed, lookback=lookback)
    demand = project(flow, starters, rest, rates, scenario, seed=settings.seed)
    notes = lever_notes(flow, scenario, bootstrap_rates(flow, 0, lookback=lookback),
                        settings.horizon) + list(result.notes)
    ds = pd.date_range(flow.last_month + pd.offsets.MonthBegin(1), periods=settings.horizon,
                       freq="MS")
    paths = pd.DataFrame({"unique_id": flow.unique_id,
                          "ds": np.tile(ds, n_paths),
                          "path": np.repeat(np.arange(n_paths), settings.horizon),
                          "y": demand.reshape(-1)})
    table = summarize_paths(demand, flow.unique_id, ds, settings)
    # the starters' and the rest's forecasts as the demand used them: from their paths
    return PatientDemand(flow, table, paths,
                         summarize_paths(starters, STARTERS_ID, ds, settings),
                         summarize_paths(rest, REST_ID, ds, settings), scenario, notes)


def summarize_paths(paths: np.ndarray, unique_id: str, ds: pd.DatetimeIndex,
                    settings: ForecastSettings) -> pd.DataFrame:
    """``unique_id, ds, mean``, the quantile and interval columns of ``pharmalab forecast``
    from (paths, horizon) sample paths."""
    table = pd.DataFrame({"unique_id": unique_id, "ds": ds, "mean": paths.mean(axis=0)})
    for q in settings.quantiles:
        table[quantile_column(q)] = np.quantile(paths, q, axis=0)
    for level in settings.levels:
        low = (100 - level) / 200
        table[f"lo-{level}"] = np.quantile(paths, low, axis=0)
        table[f"hi-{level}"] = np.quantile(paths, 1 - low, axis=0)
    return table


def _wide(paths: pd.DataFrame, unique_id: str, n_paths: int, horizon: int) -> np.ndarray:
    rows = paths[paths["unique_id"] == unique_id].sort_values(["path", "ds"])
    return rows["y"].to_numpy(dtype="float64").reshape(n_paths, horizon)


# --------------------------------------------------------------------------------------------
# Backtest and combination
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemandBacktest:
    """Rolling-origin backtest of the patient-flow forecast on the CDM's dispensing.

    Attributes
    ----------
    forecasts
        Per method (``patient_flow``, ``sales_series``, ``combined``), window and month:
        ``method, unique_id, cutoff, ds, y`` (actual dispensing) ``, mean`` and the quantile
        and interval columns.
    metrics
        Per method and window: :func:`pharmalab.forecast.window_metrics` columns (``mase``,
        ``scaled_crps``, ``coverage_80``, …) plus ``method`` and ``weight_patient_flow``
        (the patient-flow forecast's weight in that window's combination).
    summary
        Per method: mean ``mase``, ``scaled_crps``, ``coverage_80``, ``coverage_95`` over
        the windows, and ``wins`` (windows where it had the lowest MASE).
    weight
        The patient-flow forecast's weight for the final combination (inverse mean MASE over
        every window, Kolassa 2011).
    paths
        The patient-flow forecast's sample paths at each origin: ``unique_id, ds, path, y,
        cutoff`` (for policy backtests).
    sales_forecast
        The sales-series forecast of the dispensing from the last month (``unique_id, ds,
        mean``, quantiles, intervals), for comparison with the patient-flow forecast.
    history
        ``unique_id, ds, y``: the CDM's monthly dispensing (every person, the flow's measure).
    """

    forecasts: pd.DataFrame
    metrics: pd.DataFrame
    summary: pd.DataFrame
    weight: float
    paths: pd.DataFrame
    sales_forecast: pd.DataFrame
    history: pd.DataFrame


def backtest_patient_demand(db: Database, concept_id: int, *, flow_settings: FlowSettings,
                            settings: ForecastSettings, name: str | None = None,
                            lookback: int | None = None, progress=None) -> DemandBacktest:
    """Patient flow vs the sales-series forecast vs their combination, rolling origin.

    Origins are the pipeline's reported windows (``settings.backtest_windows`` of
    ``settings.horizon`` months, ending at the last month); at each origin the patient flow
    is recomputed in the engine with the data cut there (``as_of``), so nothing after the
    origin is seen, and forecast; the sales-series forecast is the forecasting pipeline's own
    backtest of the CDM's monthly dispensing (same unit). The combination is the linear pool
    of the two forecasts (:func:`linear_pool`) with the patient-flow weight ``w =
    (1/MASE_flow) / (1/MASE_flow + 1/MASE_sales)`` from the windows before (½ in the first
    window).

    Returns
    -------
    DemandBacktest

    Raises
    ------
    DemandInputError, PharmalabInputError
        As :func:`patient_flow` and :func:`pharmalab.forecast.forecast`.

    References
    ----------
    Tashman (2000) rolling origin; Kolassa (2011), Stock & Watson (2004) combination weights
    ∝ 1 / past error; Hyndman & Koehler (2006) MASE.
    """
    say = progress or (lambda stage: None)
    full = patient_flow(db, concept_id, settings=flow_settings, name=name)
    actual = pd.DataFrame({"unique_id": full.unique_id, "ds": full.months["ds"],
                           "y": full.months["dispensed"]})
    say("sales-series forecast of the dispensing")
    sales = forecast(actual, freq="MS", season_length=12, settings=settings)
    cutoffs = sorted(sales.backtest["cutoff"].unique())
    h = settings.horizon
    if not cutoffs:
        raise DemandInputError(
            f"{full.unique_id}: {len(actual)} months of dispensing are too few for "
            f"{settings.backtest_windows} rolling-origin windows of {h} months (and one "
            "warm-up window before them); use fewer windows or a shorter horizon")
    rows, metrics, flow_rows = [], [], []
    past = {"patient_flow": [], "sales_series": []}
    for cutoff in cutoffs:
        say(f"patient flow as of {pd.Timestamp(cutoff):%Y-%m}")
        origin = pd.Timestamp(cutoff) + pd.offsets.MonthBegin(1)
        flow = patient_flow(db, concept_id, settings=flow_settings, as_of=origin.date(),
                            name=full.unique_id)
        made = forecast_patient_demand(flow, settings=replace(settings, backtest_windows=1),
                                       lookback=lookback)
        flow_paths = made.paths.pivot(index="path", columns="ds", values="y").to_numpy()
        flow_rows.append(made.paths.assign(cutoff=pd.Timestamp(cutoff)))
        sales_paths = sales.backtest_paths[sales.backtest_paths["cutoff"] == cutoff] \
            .pivot(index="path", columns="ds", values="y").to_numpy()
        w = _weight(past)
        n = min(len(flow_paths), len(sales_paths))
        combined = linear_pool(flow_paths[:n], sales_paths[:n], w, seed=settings.seed)
        ds = pd.date_range(origin, periods=h, freq="MS")
        truth = actual.set_index("ds")["y"].reindex(ds).to_numpy()
        train = actual[actual["ds"] <= cutoff]
        scales = seasonal_scales(train, 12)
        window = {}
        for method, paths in (("patient_flow", flow_paths), ("sales_series", sales_paths),
                              ("combined", combined)):
            table = summarize_paths(paths, full.unique_id, ds, settings)
            table = table.assign(cutoff=pd.Timestamp(cutoff), y=truth, method=method)
            rows.append(table)
            scored = window_metrics(table, scales, settings.quantiles, settings.levels)
            window[method] = scored.assign(method=method, weight_patient_flow=w)
        for method in ("patient_flow", "sales_series"):
            past[method].append(float(window[method]["mase"].iloc[0]))
        metrics += list(window.values())
    metrics = pd.concat(metrics, ignore_index=True)
    summary = _summary(metrics)
    return DemandBacktest(pd.concat(rows, ignore_index=True), metrics, summary, _weight(past),
                          pd.concat(flow_rows, ignore_index=True), sales.forecast, actual)


def linear_pool(first: np.ndarray, second: np.ndarray, weight: float,
                seed: int = 0) -> np.ndarray:
    """Sample paths of the mixture ``weight × first + (1 − weight) × second`` of two predictive
    distributions (the linear pool): each path is one of ``first``'s with probability
    ``weight``, else ``second``'s (paths of the same index). Averaging the paths instead would
    shrink the spread of two independent forecasts and make the intervals too narrow.

    References
    ----------
    Stone (1961); Gneiting & Ranjan (2013), Combining predictive distributions.
    """
    pick = np.random.default_rng(seed).random(len(first)) < weight
    return np.where(pick[:, None], first, second)


def _weight(past: dict[str, list[float]]) -> float:
    """Patient-flow weight ∝ 1 / mean past MASE (½ without a past window)."""
    if not past["patient_flow"]:
        return 0.5
    flow, sales = (np.nanmean(past[m]) for m in ("patient_flow", "sales_series"))
    if not np.isfinite(flow) or not np.isfinite(sales) or flow <= 0 or sales <= 0:
        return 0.5
    return float((1 / flow) / (1 / flow + 1 / sales))


def _summary(metrics: pd.DataFrame) -> pd.DataFrame:
    best = metrics.loc[metrics.groupby("cutoff")["mase"].idxmin(), "method"]
    columns = [c for c in ("mase", "scaled_crps", "coverage_80", "coverage_95")
               if c in metrics]
    out = metrics.groupby("method", sort=False)[columns].mean().reset_index()
    out["wins"] = out["method"].map(best.value_counts()).fillna(0).astype("int64")
    out.insert(1, "windows", metrics["cutoff"].nunique())
    return out


__all__ = ["METHODS", "DemandBacktest", "PatientDemand", "backtest_patient_demand",
           "forecast_patient_demand", "summarize_paths"]

