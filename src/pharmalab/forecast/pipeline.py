"""The forecasting loop: base models → per-series combination → reconciliation →
conformal quantiles and sample paths, honestly backtested by rolling origin.

Every choice for a backtest window (combination weights, reconciliation method, interval
widths) uses only the windows before it, so the reported accuracy is out of sample. One extra
window before the reported ones (the *warm-up* window) gives the first reported window a
history to choose from. The final forecast uses every window.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from pharmalab.errors import PharmalabInputError
from pharmalab.forecast import combine, intervals, models, reconcile, renewal
from pharmalab.forecast.demand import classify_demand
from pharmalab.forecast.hierarchy import Hierarchy, build_hierarchy
from pharmalab.forecast.metrics import (
    quantile_column,
    seasonal_scales,
    summarize_metrics,
    window_metrics,
)
from pharmalab.sales import check_series

DEFAULT_QUANTILES = tuple(round(0.05 * i, 2) for i in range(1, 20))




@dataclass(frozen=True)
class ForecastSettings:
    """What to forecast and how (validated on creation).

    Attributes
    ----------
    horizon
        Periods ahead (e.g. 12 months).
    backtest_windows
        Rolling-origin windows reported (k); one more warm-up window is run before them.
    step
        Periods between window origins (default ``horizon``).
    models
        Base models (:data:`pharmalab.forecast.models.KNOWN_MODELS`); None: SeasonalNaive,
        AutoETS, AutoTheta, CrostonSBA, ADIDA, TSB and LightGBM, plus AutoARIMA for at most
        10 series (:func:`pharmalab.forecast.models.default_models`). Intermittent-demand
        models are used only for series classified intermittent or lumpy.
    reconcilers
        Reconciliation methods to choose from by backtest.
    quantiles, levels
        Forecast quantiles (0 < q < 1) and central interval levels in percent.
    n_paths
        Sample paths per series (0: none).
    combination, top_k
        How a series' base forecasts are combined: ``median`` (the median of the models
        used, robust to one model gone astray) or ``inverse_mase`` (weights ∝ 1 / backtest
        MASE of earlier windows); ``top_k`` keeps only the k models with the lowest backtest
        MASE per series (None: all). Either way, a model whose MASE in every earlier window
        is no worse than the combination's and on average at most
        :data:`~pharmalab.forecast.combine.DOMINANCE_RATIO` (½) of it forecasts its series alone.
    trim_ratio, pools, default_pool
        Each hierarchy level combines one pool of models
        (:func:`~pharmalab.forecast.combine.pools`): ``all`` allowed models, ``trimmed``
        (without the models whose mean MASE over the level's series in the earlier windows
        exceeds ``trim_ratio`` × the level's best model's; None: no such pool), ``best 3``,
        ``best 2`` (the level's best models in the earlier windows) or ``best`` (its best
        model alone); the level takes the pool with
        the lowest MASE in the earlier windows, ``default_pool`` before any window has
        scored them (defaults: ``all`` and ``trimmed``, ``all`` first:
        :data:`~pharmalab.forecast.combine.DEFAULT_POOLS` says why).
    tolerance
        A reconciliation method is rejected when it makes a hierarchy level's MASE worse
        than the unreconciled forecast by more than this fraction in earlier windows.
    n_jobs, seed
        Processes for statsforecast; seed of LightGBM and of the paths.
    """

    horizon: int = 12
    backtest_windows: int = 3
    step: int | None = None
    models: tuple[str, ...] | None = None
    reconcilers: tuple[str, ...] = reconcile.DEFAULT_RECONCILERS
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    levels: tuple[int, ...] = (80, 95)
    n_paths: int = 200
    tolerance: float = 0.02
    combination: str = "median"
    top_k: int | None = None
    trim_ratio: float | None = combine.TRIM_RATIO
    pools: tuple[str, ...] = combine.DEFAULT_POOLS
    default_pool: str = combine.DEFAULT_POOL
    n_jobs: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise PharmalabInputError(f"horizon must be at least 1 period, got {self.horizon}")
        if self.backtest_windows < 1:
            raise PharmalabInputError(
                f"backtest_windows must be at least 1, got {self.backtest_windows}")
        if self.step is not None and self.step < 1:
            raise PharmalabInputError(f"step must be at least 1 period, got {self.step}")
        bad = [q for q in self.quantiles if not 0 < q < 1]
        if bad:
            raise PharmalabInputError(f"quantiles must be strictly between 0 and 1, got {bad}")
        bad = [lv for lv in self.levels if not 0 < lv < 100]
        if bad:
            raise PharmalabInputError(f"interval levels must be between 0 and 100, got {bad}")
        if self.n_paths < 0:
            raise PharmalabInputError(f"n_paths must be ≥ 0, got {self.n_paths}")
        if self.combination not in ("median", "inverse_mase"):
            raise PharmalabInputError(
                f"combination must be 'median' or 'inverse_mase', got {self.combination!r}")
        if self.trim_ratio is not None and not self.trim_ratio >= 1:
            raise PharmalabInputError(
                f"trim_ratio must be at least 1 (or None), got {self.trim_ratio}")
        bad = [p for p in (*self.pools, self.default_pool) if p not in combine.KNOWN_POOLS]
        if bad or "all" not in self.pools or self.default_pool not in self.pools:
            raise PharmalabInputError(
                f"pools must be some of {', '.join(combine.KNOWN_POOLS)} including 'all', and "
                f"default_pool one of them; got pools={self.pools}, "
                f"default_pool={self.default_pool!r}")
        if self.top_k is not None and self.top_k < 1:
            raise PharmalabInputError(f"top_k must be at least 1, got {self.top_k}")
        if self.models is not None:
            object.__setattr__(self, "models", models.check_models(self.models))
        object.__setattr__(self, "reconcilers", reconcile.check_reconcilers(self.reconcilers))

    @property
    def window_step(self) -> int:
        return self.step or self.horizon


@dataclass
class ForecastResult:
    """Everything the loop produced.

    Attributes
    ----------
    forecast
        ``unique_id``, ``ds``, ``mean`` (reconciled, ≥ 0), quantile columns ``q0.05`` …
        ``q0.95`` and interval columns ``lo-80, hi-80, lo-95, hi-95`` (float64, unit of y).
    paths
        ``unique_id, ds, path, y``: coherent sample paths (empty when ``n_paths`` is 0).
    backtest
        The reported windows' forecasts, as ``forecast`` plus ``cutoff`` and ``y`` (actual).
    backtest_paths
        Sample paths of each reported window as of its origin: ``unique_id, ds, path, y,
        cutoff`` (for policy backtests).
    metrics
        Per series and window: :func:`~pharmalab.forecast.metrics.window_metrics` columns
        plus ``level``.
    summary
        :func:`~pharmalab.forecast.metrics.summarize_metrics` of ``metrics``.
    model_choice
        Per series: ``level``, ``demand_class``, ``adi``, ``cv2``, ``fallback`` (reason or
        empty), ``combination`` (e.g. ``median of 4 models``), ``best_model`` (lowest backtest
        MASE among the models used), ``weight_<model>`` (the weight of each model in the final
        forecast, summing to 1: 1/k for each of the k models of a median) and
        ``mase_<model>`` (mean backtest MASE of each base model).
    reconciliation
        Per window (and ``final``): ``cutoff``, ``method``, ``reason``, and the mean MASE of
        every method in that window.
    hierarchy
        Summing matrix and tags.
    notes, timings
        What the loop did that a reader should know; seconds per stage.
    """

    forecast: pd.DataFrame
    paths: pd.DataFrame
    backtest: pd.DataFrame
    backtest_paths: pd.DataFrame
    metrics: pd.DataFrame
    summary: pd.DataFrame
    model_choice: pd.DataFrame
    reconciliation: pd.DataFrame
    hierarchy: Hierarchy
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def forecast(frame: pd.DataFrame, *, freq: str, season_length: int,
             hierarchy: Sequence[str] = (), grouped_levels: Sequence[Sequence[str]] = (),
             settings: ForecastSettings | None = None, progress=None,
             fill_missing: bool = False) -> ForecastResult:
    """Backtest and forecast sales series with the default pipeline.

    Parameters
    ----------
    frame
        Bottom-level sales: ``unique_id`` (str), ``ds`` (datetime64), ``y`` (float64 ≥ 0),
        plus the ``hierarchy`` columns (str), as :class:`pharmalab.sales.SalesData.frame`.
        Every series must end at the same period.
    freq, season_length
        pandas frequency (``'MS'``, ``'W-SUN'``, ``'D'``) and periods per season.
    hierarchy, grouped_levels
        Bottom-level category columns (top to bottom for a tree) and, for a grouped
        structure, its aggregation levels; see
        :func:`~pharmalab.forecast.hierarchy.build_hierarchy`.
    settings
        :class:`ForecastSettings` (defaults: 12 periods, 3 windows, every default model).
    progress
        Optional callable ``progress(stage: str)`` called as stages start.
    fill_missing
        Periods missing inside a series, and after the last report of a series that stops
        before the others, are sales of 0 (else an error), as
        :func:`pharmalab.sales.check_series`.

    Returns
    -------
    ForecastResult

    Raises
    ------
    SalesInputError
        The frame fails the checks every loader applies (:func:`pharmalab.sales.check_series`,
        the same messages as the CLI): a missing column, unparseable dates, negative or
        missing sales, a repeated ``(unique_id, ds)``, a date off the ``freq`` grid, a gap.
    PharmalabInputError
        Series ending at different periods, or too short for one window of the horizon.

    References
    ----------
    Rolling origin: Tashman (2000). Combination weights ∝ 1 / backtest MASE: Stock & Watson
    (2004), Kolassa (2011). Reconciliation: Wickramasuriya, Athanasopoulos & Hyndman (2019)
    MinT; Gross & Sohl (1990) top-down by forecast proportions (Athanasopoulos et al. 2009).
    Intermittent demand: Syntetos & Boylan (2005) SBA; Nikolopoulos et al. (2011) ADIDA;
    Teunter, Syntetos & Babai (2011) TSB.
    """
    settings = settings or ForecastSettings()
    say = progress or (lambda stage: None)
    timings: dict[str, float] = {}
    notes: list[str] = []
    clock = time.perf_counter()

    # The checks every loader applies, in one place: a frame from Python gets the CLI's.
    checked = check_series(frame, freq=freq, season_length=season_length,
                           fill_missing=fill_missing, name="forecast(frame)",
                           hierarchy=hierarchy)
    frame = checked.frame
    notes.extend(n for n in checked.notes if "fewer than two seasons" not in n)

    say("aggregating the hierarchy")
    hier = build_hierarchy(frame, hierarchy, grouped_levels)
    series = hier.series
    _check_ends(series)
    h, step, n_total = settings.horizon, settings.window_step, settings.backtest_windows + 1
    lengths = series.groupby("unique_id").size()
    min_cv = (n_total - 1) * step + h + 2 * season_length
    cv_ids = lengths.index[lengths >= min_cv]
    final_ids = lengths.index[lengths >= 2 * season_length]
    if lengths.max() < h + (n_total - 1) * step + 1:
        # A set of new launches: no window can be backtested. Forecast from what the history
        # allows and say so, rather than refusing the set.
        notes.append(
            f"the longest series has {lengths.max()} periods: too short for {n_total} "
            f"rolling-origin windows of {h} periods, so nothing is backtested; each series is "
            "forecast by the short-history method its length allows (model_choice.csv) with "
            "random-walk intervals from its period-to-period changes (wide: little is known)")
        return _forecast_without_backtest(hier, settings, freq, season_length, notes, timings)
    last = series["ds"].max()
    offset = pd.tseries.frequencies.to_offset(freq)
    cutoffs = [last - offset * (h + (n_total - 1 - i) * step) for i in range(n_total)]
    timings["prepare"] = time.perf_counter() - clock

    if settings.models is None:
        chosen_models = models.default_models(lengths.size, season_length)
        settings = replace(settings, models=chosen_models)
    # 1. Base models over every window (warm-up + reported).
    say("base models: rolling origin")
    clock = time.perf_counter()
    local_names = [m for m in settings.models if m not in models.GLOBAL_MODELS]
    cv_series = series[series["unique_id"].isin(cv_ids)]
    base_cv = models.local_cross_validation(
        cv_series, local_names, freq=freq, season_length=season_length, horizon=h,
        n_windows=n_total, step=step, n_jobs=settings.n_jobs)
    timings["local models (backtest)"] = time.perf_counter() - clock
    if "LightGBM" in settings.models and len(cv_ids):
        clock = time.perf_counter()
        gcv = models.global_cross_validation(cv_series, freq=freq, season_length=season_length,
                                             horizon=h, n_windows=n_total, step=step,
                                             seed=settings.seed)
        base_cv = base_cv.merge(gcv.drop(columns="y"), on=["unique_id", "ds", "cutoff"],
                                how="left") if len(base_cv) else gcv
        timings["LightGBM (backtest)"] = time.perf_counter() - clock
    base_cv = _with_fallback_cv(base_cv, series, cv_ids, cutoffs, h, offset, season_length)
    # Every model keeps its column even where it could run on no series in the backtest (all
    # too short): the final forecast may still use it.
    model_cols = [*settings.models, models.FALLBACK]
    base_cv = base_cv.reindex(columns=["unique_id", "ds", "cutoff", "y", *model_cols])
    short = sorted(set(lengths.index) - set(cv_ids))
    if short:
        notes.append(
            f"{len(short)} series have fewer than {min_cv} periods (two seasons before the "
            f"first of {n_total} windows): the naive fallback forecasts them in the backtest"
            + (f"; {len(set(lengths.index) - set(final_ids))} of them also in the final "
               "forecast" if len(set(lengths.index) - set(final_ids)) else "")
            + f" ({', '.join(short[:5])}{' …' if len(short) > 5 else ''})")

    say("base models: final fit")
    clock = time.perf_counter()
    final_series = series[series["unique_id"].isin(final_ids)]
    base_final = models.local_forecast(final_series, local_names, freq=freq,
                                       season_length=season_length, horizon=h,
                                       n_jobs=settings.n_jobs)
    if "LightGBM" in settings.models and len(final_ids):
        gfc = models.global_forecast(
            final_series, freq=freq, season_length=season_length, horizon=h,
            seed=settings.seed,
            shortest=(models.shortest_training(cv_series, h, n_total, step)
                      if len(cv_ids) else None))
        base_final = (base_final.merge(gfc, on=["unique_id", "ds"], how="left")
                      if len(base_final) else gfc)
    short_methods: dict[str, str] = {}
    base_final = _with_fallback_final(base_final, series, final_ids, last, h, offset,
                                      season_length, short_methods)
    timings["base models (final fit)"] = time.perf_counter() - clock
    run = _BaseRun(hier=hier, season_length=season_length, cutoffs=cutoffs, base_cv=base_cv,
                   base_final=base_final, cv_ids=cv_ids, final_ids=final_ids, lengths=lengths,
                   model_cols=model_cols, notes=notes, timings=timings,
                   short_methods=short_methods)
    return _assemble(run, settings, say)


@dataclass
class _BaseRun:
    """Base-model forecasts of every window and of the final fit (the costly part)."""

    hier: Hierarchy
    season_length: int
    cutoffs: list
    base_cv: pd.DataFrame
    base_final: pd.DataFrame
    cv_ids: pd.Index
    final_ids: pd.Index
    lengths: pd.Series
    model_cols: list[str]
    notes: list[str]
    timings: dict[str, float]
    short_methods: dict[str, str] = field(default_factory=dict)


def _assemble(run: _BaseRun, settings: ForecastSettings, say) -> ForecastResult:
    """Combination, reconciliation, quantiles and paths from the base forecasts."""
    hier, season_length, cutoffs = run.hier, run.season_length, run.cutoffs
    base_cv, model_cols, lengths = run.base_cv, run.model_cols, run.lengths
    cv_ids, final_ids, notes = run.cv_ids, run.final_ids, list(run.notes)
    timings = dict(run.timings)
    series, level_of, h = hier.series, hier.level_of, settings.horizon
    last = series["ds"].max()
    # 2. Per-window combination, reconciliation and conformal quantiles.
    say("combining, reconciling, calibrating")
    clock = time.perf_counter()
    scales = {c: seasonal_scales(series[series["ds"] <= c], season_length) for c in cutoffs}
    classes = {c: classify_demand(series[series["ds"] <= c]).set_index("unique_id")
               for c in cutoffs}
    model_mase = combine.model_mase(base_cv, model_cols, scales)
    probs = intervals.interval_probs(settings.quantiles, settings.levels)
    rec_history, chosen_rows, decisions = [], [], []
    default = ("TopDown_forecast_proportions" if hier.is_strict
               and "TopDown_forecast_proportions" in settings.reconcilers else "BottomUp")
    if len(hier.tags) < 2:
        default = "none"
    combination_mase: list[pd.DataFrame] = []  # the full combination's MASE per window
    pool_mase: dict[str, list[pd.DataFrame]] = {}  # each pool's MASE per window
    for k, cutoff in enumerate(cutoffs):
        rows = base_cv[base_cv["cutoff"] == cutoff]
        allowed = combine.allowed_models(rows["unique_id"].unique(), model_cols, classes[cutoff])
        earlier_mase = model_mase[model_mase["cutoff"] < cutoff]
        pick = combine.choose_pools(pool_mase, level_of, allowed.index, settings.default_pool)
        pooled_by = {}
        for name, pool in combine.pools(earlier_mase, allowed, level_of, settings.trim_ratio,
                                        settings.pools).items():
            pooled_by[name], _ = combine.combine(
                rows, combine.weights(earlier_mase, pool, settings.top_k), pool, model_cols,
                settings.combination)
            pool_mase.setdefault(name, []).append(
                combine.mase_of(pooled_by[name], rows, scales[cutoff], cutoff))
        pooled = combine.pick_pools(pooled_by, pick)
        # a model alone must beat the median of every model (not a pool chosen by the same
        # earlier windows) to be trusted alone
        combination_mase.append(pool_mase["all"][-1])
        dominant = combine.dominant_models(earlier_mase, pd.concat(combination_mase[:-1])
                                           if k else None, allowed)
        combined = combine.alone(pooled, rows, dominant)
        wide = combined.pivot(index="unique_id", columns="ds", values="mean")
        earlier = (pd.concat(chosen_rows) if chosen_rows else None)
        candidates = reconcile.reconcile(wide, hier, settings.reconcilers, errors=earlier)
        history = pd.concat(rec_history) if rec_history else pd.DataFrame(
            columns=["unique_id", "cutoff", "method", "mase"])
        method, reason = reconcile.choose_reconciler(history, level_of, default,
                                                     settings.tolerance)
        method, reason = _runnable(method, reason, candidates, default)
        actual = rows[["unique_id", "ds", "y"]].drop_duplicates(["unique_id", "ds"])
        window_scores = {}
        for name, rec in [("unreconciled", wide.clip(lower=0)), *candidates.items()]:
            long = _long(rec).merge(actual, on=["unique_id", "ds"]).assign(cutoff=cutoff)
            m = window_metrics(long, scales[cutoff])[["unique_id", "cutoff", "mase"]]
            rec_history.append(m.assign(method=name))
            window_scores[name] = m["mase"].mean()
            if name == method:
                chosen_rows.append(long)
        decisions.append({"cutoff": cutoff, "window": "warm-up" if k == 0 else "backtest",
                          "method": method, "reason": reason,
                          **{f"mase_{n}": s for n, s in window_scores.items()}})
    timings["combine and reconcile (backtest)"] = time.perf_counter() - clock

    # Conformal quantiles of each reported window from the windows before it.
    clock = time.perf_counter()
    chosen = pd.concat(chosen_rows, ignore_index=True)
    scale_frame = pd.concat(scales, names=["cutoff"]).swaplevel().sort_index()
    scale_series = scale_frame["mae_scale"]
    backtest_parts, backtest_path_parts = [], []
    for cutoff in cutoffs[1:]:
        earlier = chosen[chosen["cutoff"] < cutoff]
        errs = intervals.scaled_errors(earlier, scale_series)
        q_table = intervals.error_quantiles(errs, probs, h)
        this = chosen[chosen["cutoff"] == cutoff]
        with_q = intervals.add_quantiles(this[["unique_id", "ds", "mean"]],
                                         scales[cutoff]["mae_scale"], q_table, probs,
                                         settings.levels)
        backtest_parts.append(with_q.merge(this[["unique_id", "ds", "y", "cutoff"]],
                                           on=["unique_id", "ds"]))
        if settings.n_paths:  # for policy backtests (supply): paths as of this origin
            wide_mean = this.pivot(index="unique_id", columns="ds", values="mean")
            window_paths = intervals.sample_paths(
                wide_mean.loc[hier.bottom_ids], scales[cutoff]["mae_scale"], errs, hier.S(),
                hier.node_ids, hier.bottom_ids, settings.n_paths, settings.seed,
                renewal=_intermittent_patterns(series[series["ds"] <= cutoff],
                                               classes[cutoff], hier.bottom_ids))
            backtest_path_parts.append(window_paths.assign(cutoff=cutoff))
    backtest = pd.concat(backtest_parts, ignore_index=True)
    backtest_paths = (pd.concat(backtest_path_parts, ignore_index=True) if backtest_path_parts
                      else pd.DataFrame(columns=["unique_id", "ds", "path", "y", "cutoff"]))
    metrics = window_metrics(backtest, scale_frame, settings.quantiles, settings.levels)
    metrics.insert(1, "level", metrics["unique_id"].map(level_of))
    summary = summarize_metrics(metrics, level_of)
    timings["quantiles and metrics (backtest)"] = time.perf_counter() - clock

    # 3. Final forecast from the end of the data, with choices made on every window.
    say("final forecast")
    clock = time.perf_counter()
    base = run.base_final
    final_classes = classify_demand(series).set_index("unique_id")
    allowed = combine.allowed_models(base["unique_id"].unique(), model_cols, final_classes)
    pick = combine.choose_pools(pool_mase, level_of, allowed.index, settings.default_pool)
    pooled_by, used_by = {}, {}
    for name, pool in combine.pools(model_mase, allowed, level_of, settings.trim_ratio,
                                    settings.pools).items():
        pooled_by[name], used_by[name] = combine.combine(
            base, combine.weights(model_mase, pool, settings.top_k), pool, model_cols,
            settings.combination)
    pick = pick.where(pick.isin(list(pooled_by)), "all")
    pooled = combine.pick_pools(pooled_by, pick)
    used = used_by["all"].copy()
    for name, frame in used_by.items():
        ids = [u for u in used.index if pick.get(u) == name]
        used.loc[ids] = frame.reindex(ids).to_numpy()
    dominant = combine.dominant_models(model_mase, pd.concat(combination_mase), allowed)
    combined = combine.alone(pooled, base, dominant)
    used = combine.used_alone(used, dominant)
    wide = combined.pivot(index="unique_id", columns="ds", values="mean")
    candidates = reconcile.reconcile(wide, hier, settings.reconcilers, errors=chosen)
    reported = pd.concat(rec_history)
    method, reason = reconcile.choose_reconciler(
        reported[reported["cutoff"] > cutoffs[0]], level_of, default, settings.tolerance)
    method, reason = _runnable(method, reason, candidates, default)
    decisions.append({"cutoff": last, "window": "final", "method": method, "reason": reason})
    final_mean = candidates.get(method, wide.clip(lower=0))
    # The final forecast is made the way the reported windows' forecasts were (choices from
    # the windows before them); the warm-up's were made without any history (an equal-weight
    # combination, the default reconciler), so its errors describe another forecaster.
    all_errors = intervals.scaled_errors(
        chosen[chosen["cutoff"] > cutoffs[0]] if len(cutoffs) > 1 else chosen, scale_series)
    final_scales = seasonal_scales(series, season_length)["mae_scale"]
    q_table = intervals.error_quantiles(all_errors, probs, h)
    result_forecast = intervals.add_quantiles(_long(final_mean), final_scales, q_table, probs,
                                              settings.levels)
    timings["final forecast"] = time.perf_counter() - clock
    clock = time.perf_counter()
    paths = pd.DataFrame(columns=["unique_id", "ds", "path", "y"])
    if settings.n_paths:
        paths = intervals.sample_paths(
            final_mean.loc[hier.bottom_ids], final_scales, all_errors, hier.S(),
            hier.node_ids, hier.bottom_ids, settings.n_paths, settings.seed,
            renewal=_intermittent_patterns(series, final_classes, hier.bottom_ids))
    timings["sample paths"] = time.perf_counter() - clock

    choice = _model_choice(used, settings.combination, model_mase, final_classes, level_of,
                           cv_ids, final_ids, lengths, model_cols, run.short_methods,
                           dominant, pick, settings.trim_ratio)
    return ForecastResult(
        forecast=result_forecast, paths=paths, backtest=backtest,
        backtest_paths=backtest_paths, metrics=metrics,
        summary=summary, model_choice=choice, reconciliation=pd.DataFrame(decisions),
        hierarchy=hier, notes=notes, timings=timings)




def _forecast_without_backtest(hier: Hierarchy, settings: ForecastSettings, freq: str,
                               season_length: int, notes: list[str],
                               timings: dict[str, float]) -> ForecastResult:
    """Every series by :func:`models.short_history_forecast` (AutoETS with the season when
    two seasons are there), reconciled bottom-up, with
    random-walk-with-drift intervals ``σ̂ √(h (1 + h / T))`` (Hyndman & Athanasopoulos,
    *FPP3* §5.5) where ``σ̂`` is the root mean square of the series' period-to-period
    changes (its level when it has one period), and coherent paths of the same spread."""
    from scipy import stats

    clock = time.perf_counter()
    series, h = hier.series, settings.horizon
    last = series["ds"].max()
    offset = pd.tseries.frequencies.to_offset(freq)
    dates = [last + offset * (i + 1) for i in range(h)]
    means, sigmas, methods = {}, {}, {}
    steps = np.arange(1, h + 1)
    lengths = series.groupby("unique_id").size()
    seasonal_ids = lengths.index[lengths >= 2 * season_length] if season_length > 1 else []
    seasonal = pd.DataFrame()
    if len(seasonal_ids):  # two seasons seen: a seasonal AutoETS, unweighted (nothing to weigh)
        seasonal = models.local_forecast(series[series["unique_id"].isin(seasonal_ids)],
                                         ["AutoETS"], freq=freq, season_length=season_length,
                                         horizon=h, n_jobs=settings.n_jobs)
        seasonal = seasonal.set_index("unique_id")
    for uid, hist in series.groupby("unique_id"):
        if uid in seasonal.index:
            values = np.maximum(seasonal.loc[[uid], "AutoETS"].to_numpy(dtype="float64"), 0)
            method = f"AutoETS with season {season_length} ({len(hist)} periods)"
        else:
            values, method = models.short_history_forecast(hist, last, dates, season_length)
        y = hist["y"].to_numpy(dtype="float64")
        spread = float(np.sqrt(np.mean(np.diff(y) ** 2))) if len(y) > 1 else float(abs(y[-1]))
        means[uid], methods[uid] = values, method
        sigmas[uid] = spread * np.sqrt(steps * (1 + steps / max(len(y), 1)))
    wide = pd.DataFrame(means, index=pd.DatetimeIndex(dates, name="ds")).T
    wide.index.name = "unique_id"
    if len(hier.tags) >= 2:
        reconciled = reconcile.reconcile(wide, hier, ["BottomUp"])["BottomUp"]
        method, reason = "BottomUp", "no backtest window: bottom-up"
    else:
        reconciled, method, reason = wide.clip(lower=0), "none", "a single level"
    forecast_rows = _long(reconciled)
    sigma = np.concatenate([sigmas[u] for u in forecast_rows["unique_id"].unique()])
    probs = intervals.interval_probs(settings.quantiles, settings.levels)
    columns = {quantile_column(p): np.maximum(forecast_rows["mean"].to_numpy()
                                              + stats.norm.ppf(p) * sigma, 0) for p in probs}
    for level in settings.levels:
        lo, hi = (100 - level) / 200, 1 - (100 - level) / 200
        columns[f"lo-{level}"] = columns[quantile_column(lo)]
        columns[f"hi-{level}"] = columns[quantile_column(hi)]
    result_forecast = pd.concat([forecast_rows, pd.DataFrame(columns)], axis=1)

    paths = pd.DataFrame(columns=["unique_id", "ds", "path", "y"])
    if settings.n_paths:
        rng = np.random.default_rng(settings.seed)
        bottom = hier.bottom_ids
        base = reconciled.loc[bottom].to_numpy()
        # random-walk errors: each path's shocks accumulate, as the interval widths do
        shocks = rng.standard_normal((settings.n_paths, len(bottom), h)).cumsum(axis=2)
        scale = np.array([sigmas[u][0] for u in bottom])[None, :, None]
        draws = np.maximum(base[None] + scale * shocks, 0)
        s_matrix = hier.S()
        frames = []
        for k in range(settings.n_paths):
            full = s_matrix @ draws[k]
            frames.append(pd.DataFrame({
                "unique_id": np.repeat(hier.node_ids, h), "ds": np.tile(dates, len(hier.node_ids)),
                "path": k, "y": full.reshape(-1)}))
        paths = pd.concat(frames, ignore_index=True)

    choice = pd.DataFrame(index=pd.Index(hier.node_ids, name="unique_id"))
    choice["level"] = choice.index.map(hier.level_of)
    choice["periods"] = lengths.reindex(choice.index).astype("int64")
    choice["fallback"] = [
        "too short for any backtest window: " + methods[u] for u in choice.index]
    choice["combination"] = "one model"
    choice["best_model"] = [methods[u] for u in choice.index]
    choice[f"weight_{models.FALLBACK}"] = 1.0
    timings["short-history forecast"] = time.perf_counter() - clock
    empty_backtest = result_forecast.iloc[0:0].assign(cutoff=pd.Series(dtype="datetime64[ns]"),
                                                      y=pd.Series(dtype="float64"))
    return ForecastResult(
        forecast=result_forecast, paths=paths, backtest=empty_backtest,
        backtest_paths=pd.DataFrame(columns=["unique_id", "ds", "path", "y", "cutoff"]),
        metrics=pd.DataFrame(columns=["unique_id", "level", "cutoff", "mase"]),
        summary=pd.DataFrame(columns=["level", "series", "windows", "mase_mean"]),
        model_choice=choice.reset_index(),
        reconciliation=pd.DataFrame([{"cutoff": last, "window": "final", "method": method,
                                      "reason": reason}]),
        hierarchy=hier, notes=notes, timings=timings)


def _runnable(method: str, reason: str, candidates: dict, default: str) -> tuple[str, str]:
    """The chosen reconciliation if it ran in this window, else the default, else the base
    forecasts (unreconciled, cut at 0) — e.g. MinTrace alone in the first window, which has
    no earlier errors for its covariance."""
    if method in candidates or method == "unreconciled":
        return method, reason
    if default in candidates:
        return default, f"{method} could not run here: {default} (the default)"
    return "unreconciled", (f"{method} could not run here and no other requested method "
                            "could: the base forecasts, not reconciled")


def _check_ends(series: pd.DataFrame) -> None:
    ends = series.groupby("unique_id")["ds"].max()
    if ends.nunique() > 1:
        early = ends[ends < ends.max()]
        raise PharmalabInputError(
            f"every series must end at the same period ({ends.max():%Y-%m-%d}); "
            f"{len(early)} end earlier, e.g. {early.index[0]!r} at {early.iloc[0]:%Y-%m-%d}; "
            "if they stopped selling, --fill-missing (fill_missing=True, fill_missing = true "
            "in study.toml) fills the periods after their last report with 0")


def _with_fallback_cv(base_cv, series, cv_ids, cutoffs, h, offset, season_length):
    short = sorted(set(series["unique_id"]) - set(cv_ids))
    if not short:
        return base_cv
    rows = []
    for uid, hist in series[series["unique_id"].isin(short)].groupby("unique_id"):
        actual = hist.set_index("ds")["y"]
        for cutoff in cutoffs:
            dates = [cutoff + offset * (i + 1) for i in range(h)]
            values = models.naive_fallback(hist, cutoff, dates, season_length)
            rows.append(pd.DataFrame({"unique_id": uid, "ds": dates, "cutoff": cutoff,
                                      "y": actual.reindex(dates).fillna(0).to_numpy(),
                                      models.FALLBACK: values}))
    return pd.concat([f for f in (base_cv, *rows) if len(f)], ignore_index=True)


def _with_fallback_final(base, series, final_ids, last, h, offset, season_length,
                         methods: dict[str, str] | None = None):
    """Add the short-history forecast of each series too short for the models; the method
    each got is recorded in ``methods`` (for ``model_choice.csv``)."""
    short = sorted(set(series["unique_id"]) - set(final_ids))
    if not short:
        return base
    dates = [last + offset * (i + 1) for i in range(h)]
    rows = []
    for uid, hist in series[series["unique_id"].isin(short)].groupby("unique_id"):
        values, method = models.short_history_forecast(hist, last, dates, season_length)
        rows.append(pd.DataFrame({"unique_id": uid, "ds": dates, models.FALLBACK: values}))
        if methods is not None:
            methods[uid] = method
    return pd.concat([f for f in (base, *rows) if len(f)], ignore_index=True)


def _intermittent_patterns(history: pd.DataFrame, classes: pd.DataFrame, bottom_ids
                           ) -> dict[str, renewal.RenewalHistory]:
    """Intervals and sizes of the bottom series classified intermittent or lumpy as of the
    end of ``history``: their sample paths follow their own pattern."""
    ids = [u for u in bottom_ids if bool(classes["intermittent"].get(u, False))]
    return renewal.renewal_histories(history, ids) if ids else {}


def _long(wide: pd.DataFrame) -> pd.DataFrame:
    out = wide.rename_axis(index="unique_id", columns="ds").stack().rename("mean").reset_index()
    return out.sort_values(["unique_id", "ds"]).reset_index(drop=True)


def _model_choice(used, combination, model_mase, classes, level_of, cv_ids, final_ids,
                  lengths, model_cols, short_methods=None, dominant=None, pools=None,
                  trim_ratio=None) -> pd.DataFrame:
    out = pd.DataFrame(index=used.index.rename("unique_id"))
    out["level"] = out.index.map(level_of)
    cls = classes.reindex(out.index)
    out["demand_class"] = cls["demand_class"]
    out["adi"] = cls["adi"]
    out["cv2"] = cls["cv2"]
    out["periods"] = lengths.reindex(out.index).astype("int64")
    out["fallback"] = ""
    out.loc[~out.index.isin(cv_ids), "fallback"] = "too short for every backtest window"
    too_short = ~out.index.isin(final_ids)
    out.loc[too_short, "fallback"] = [
        "shorter than two seasons: a seasonal model cannot be fitted; "
        + (short_methods or {}).get(uid, "short-history fallback")
        for uid in out.index[too_short]]
    n_used = (used > 0).sum(axis=1)
    out["combination"] = [
        (f"median of {n}" if combination == "median" else f"inverse-MASE mean of {n}")
        + f" model{'s' if n != 1 else ''}" for n in n_used]
    for uid, pool in (pools if pools is not None else pd.Series(dtype=object)).items():
        if pool and pool != "all" and uid in out.index:
            kept = used.columns[used.loc[uid] > 0]
            intermittent = bool(classes["intermittent"].get(uid, False))
            left = [m for m in model_cols if m not in kept and m != models.FALLBACK
                    and (intermittent or m not in models.INTERMITTENT_MODELS)
                    and np.isfinite(model_mase.loc[model_mase["unique_id"] == uid, m].mean())]
            head = (f"{kept[0]} alone" if len(kept) == 1
                    else out.loc[uid, "combination"])
            what = (f"without the models over {trim_ratio:g}× the level's best backtest MASE"
                    if pool == "trimmed" else "the level's best model in backtest"
                    if pool == "best" else f"the level's {pool.split()[1]} best models in "
                    "backtest")
            out.loc[uid, "combination"] = (
                f"{head} (pool '{pool}': {what}; left out: {', '.join(left) or 'none'}; "
                "the level did best with this pool in earlier windows)")
    mean_mase = model_mase.groupby("unique_id")[model_cols].mean().reindex(out.index)
    for uid, model in (dominant if dominant is not None else pd.Series(dtype=object)).items():
        if model and uid in out.index:
            out.loc[uid, "combination"] = (
                f"{model} alone (backtest MASE {mean_mase.loc[uid, model]:.2f}: at most "
                f"{combine.DOMINANCE_RATIO:g}× the combination's in every earlier window)")
    scored = mean_mase.where(used > 0)
    out["best_model"] = scored.fillna(np.inf).idxmin(axis=1).where(
        scored.notna().any(axis=1), used.idxmax(axis=1))
    for m in model_cols:
        out[f"weight_{m}"] = used[m]
    for m in model_cols:
        out[f"mase_{m}"] = mean_mase[m]
    return out.reset_index()
