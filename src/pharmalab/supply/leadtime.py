"""Protection-period demand per series from a probabilistic forecast.

A periodic-review order placed at the start of period ``t`` must cover the demand of periods
``t … t + L + R − 1`` (lead time ``L`` plus review period ``R``, in periods of the series).
Its distribution comes, per series, from

* **sample paths** when the forecast has them (``paths.parquet``): the sum of each path over
  those periods gives one sample, so the correlation of the forecast errors across periods is
  kept; the demand is the empirical distribution of the sums (:class:`EmpiricalDemand`,
  ``demand_model = "paths"``);
* otherwise the **per-period quantiles** (``forecast.parquet``): each period's mean ``μ_t``
  and variance ``σ_t²`` are those of the distribution its quantiles describe
  (:func:`quantile_moments`: the quantile function interpolated linearly in ``Φ⁻¹(τ)``, cut
  at 0), and the periods are taken as **independent**: normal with mean ``Σ μ_t`` and
  variance ``Σ σ_t²`` (``"normal (independent periods)"``). Forecast errors of consecutive
  periods are usually positively correlated, so this understates the spread of
  multi-period demand; prefer paths.

Sample paths are used as they are, at any volume (their empirical distribution keeps the
shape of intermittent demand). Without paths, low-volume count series — demand in whole units
(scripts, packs; ``counts``) and a protection-period mean below ``discrete_below`` units — get
integer-valued demand fitted to the same mean and variance
(:func:`pharmalab.supply.from_moments`: Poisson when the variance is at most the mean, else
negative binomial), stated as ``"poisson (independent periods)"`` or ``"negative binomial
(independent periods)"`` — unless the variance is over 1,000 times the mean (a negative
binomial that dispersed has no usable exact sums; the normal is kept). A series whose mean
over the period is 0 gets ``"zero forecast"`` and no distribution (stock level 0).

References
----------
Snyder & Shen, *Fundamentals of Supply Chain Theory*, 2nd ed. (Wiley 2019), §4.3–4.4 (demand
over the lead time and review period); Chopra & Meindl, *Supply Chain Management*, 6th ed.
(Pearson 2016), ch. 12 (demand during lead time plus review interval, independent periods).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

from pharmalab.errors import SupplyInputError
from pharmalab.supply import _checks
from pharmalab.supply.demand import (
    Demand,
    EmpiricalDemand,
    NormalDemand,
    PoissonDemand,
    from_moments,
)

__all__ = ["ProtectionDemand", "SeriesForecast", "protection_demand", "quantile_columns",
           "quantile_moments", "series_forecasts"]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_ZERO = 1e-9  # protection-period mean (units) treated as no demand
# Above this variance-to-mean ratio a negative binomial is too dispersed for exact sums (its
# support would run to ~70 × the ratio points): such low-volume series keep the empirical
# paths or the normal.
_MAX_DISPERSION = 1000.0
_QUANTILE = re.compile(r"^q(0?\.\d+)$")
_INTERVAL = re.compile(r"^(lo|hi)-(\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class ProtectionDemand:
    """Demand of one series over a protection period.

    Attributes
    ----------
    unique_id : str
    start : pandas.Timestamp
        First period (``ds``) covered.
    periods : int
        Periods covered (``L + R`` for a policy).
    demand : Demand or None
        Its distribution (units of the series); None for a zero forecast.
    model : str
        ``"paths"``, ``"normal (independent periods)"``, ``"poisson (independent
        periods)"``, ``"negative binomial (independent periods)"``, ``"zero forecast"``, …
    mean, std : float
        Mean and standard deviation of the demand (units).
    """

    unique_id: str
    start: pd.Timestamp
    periods: int
    demand: Demand | None
    model: str
    mean: float
    std: float


@dataclass(frozen=True, eq=False)
class SeriesForecast:
    """The forecast of one series from one origin, as arrays over the horizon.

    Attributes
    ----------
    unique_id : str
    ds : numpy.ndarray
        Period labels (datetime64[ns]), shape ``(H,)``.
    mean : numpy.ndarray
        Point forecast per period (units), shape ``(H,)``.
    levels : numpy.ndarray or None
        Quantile levels, increasing, shape ``(K,)``.
    quantiles : numpy.ndarray or None
        Quantiles per period (units), shape ``(H, K)``.
    paths : numpy.ndarray or None
        Sample paths (units, ≥ 0), shape ``(n_paths, H)``.
    counts : bool, default True
        Demand comes in whole units (scripts, packs): low volumes may then be Poisson or
        negative binomial. False for continuous measures (AUD).

    Raises
    ------
    SupplyInputError
        With neither paths nor quantiles.
    """

    unique_id: str
    ds: np.ndarray
    mean: np.ndarray
    levels: np.ndarray | None = None
    quantiles: np.ndarray | None = None
    paths: np.ndarray | None = None
    counts: bool = True

    def __post_init__(self) -> None:
        if self.paths is None and self.quantiles is None:
            raise SupplyInputError(
                f"series {self.unique_id!r}: the forecast has neither sample paths nor "
                "quantiles; a policy needs the forecast's distribution, not only its mean")

    @property
    def horizon(self) -> int:
        """Periods forecast."""
        return len(self.ds)

    @cached_property
    def _quantile_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance per period of the distribution the quantiles describe."""
        return quantile_moments(self.levels, self.quantiles)

    def period_means(self) -> np.ndarray:
        """Expected demand per period (units): the mean of the paths, else of the
        distribution the quantiles describe (both cut at 0, so they can exceed the point
        forecast ``mean`` of a low-volume series)."""
        if self.paths is not None:
            return self.paths.mean(axis=0)
        return self._quantile_moments[0]

    def demand(self, start: int, periods: int, discrete_below: float = 20.0
               ) -> ProtectionDemand:
        """Demand over periods ``start … start + periods − 1`` (0-based) of the horizon.

        Parameters
        ----------
        start : int
            First period, 0-based (0 = the first forecast period).
        periods : int
            Number of periods (≥ 1), e.g. ``L + R``.
        discrete_below : float, default 20
            Mean (units) below which demand of a count series is Poisson or negative
            binomial.

        Returns
        -------
        ProtectionDemand

        Raises
        ------
        SupplyInputError
            If the periods run past the forecast horizon.
        """
        periods = _checks.positive_int("periods", periods)
        if start < 0 or start + periods > self.horizon:
            raise SupplyInputError(
                f"series {self.unique_id!r}: periods {start + 1}–{start + periods} are not all "
                f"inside the forecast horizon of {self.horizon} periods (lead time + review "
                "period must not exceed the horizon)")
        first = pd.Timestamp(self.ds[start])
        window = slice(start, start + periods)
        if self.paths is not None:
            sums = self.paths[:, window].sum(axis=1)
            mean, var, source = float(sums.mean()), float(sums.var()), "paths' moments"
        else:
            means, variances = self._quantile_moments
            mean, var = float(means[window].sum()), float(variances[window].sum())
            source, sums = "independent periods", None
        if mean <= _ZERO:
            return ProtectionDemand(self.unique_id, first, periods, None, "zero forecast",
                                    0.0, 0.0)
        if sums is not None:
            # The paths' own distribution, whatever the volume: a negative binomial fitted to
            # their two moments discarded their shape (10 units every 10 days is 10, not a
            # spread around 10).
            dist = EmpiricalDemand(sums)
            return ProtectionDemand(self.unique_id, first, periods, dist, "paths",
                                    dist.mean, dist.std)
        if self.counts and mean < discrete_below and var <= _MAX_DISPERSION * mean:
            dist = from_moments(mean, var, discrete_below)
            name = "poisson" if isinstance(dist, PoissonDemand) else "negative binomial"
            return ProtectionDemand(self.unique_id, first, periods, dist,
                                    f"{name} ({source})", dist.mean, dist.std)
        if var <= 0.0:
            dist = EmpiricalDemand(np.array([mean]))
            return ProtectionDemand(self.unique_id, first, periods, dist,
                                    "constant (zero forecast variance)", mean, 0.0)
        dist = NormalDemand(mean, math.sqrt(var))
        return ProtectionDemand(self.unique_id, first, periods, dist,
                                "normal (independent periods)", dist.mean, dist.std)


def quantile_moments(levels: np.ndarray, quantiles: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the per-period distributions given by their quantiles.

    The quantile function is linear in ``z = Φ⁻¹(τ)`` between the given levels, continued
    beyond the outermost levels with the slope between the outermost level and the one
    nearest the median on that side, and cut at 0 (demand). Its mean and variance are
    integrated in closed form over each piece (moments of the standard normal on an
    interval), so quantiles written from a normal give back that normal's mean and variance
    exactly (when its mass below 0 is negligible) — no grid, no bias towards less stock.

    Parameters
    ----------
    levels : numpy.ndarray
        Quantile levels, increasing, in (0, 1), shape ``(K,)``.
    quantiles : numpy.ndarray
        Shape ``(H, K)`` (units); made non-decreasing along ``K``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Mean (units) and variance (units², ≥ 0) per period, shape ``(H,)``.
    """
    z_levels = special.ndtri(np.asarray(levels, dtype=float))
    q = np.maximum.accumulate(np.asarray(quantiles, dtype=float), axis=1)
    k = z_levels.size
    if k == 1:
        mean = np.maximum(q[:, 0], 0.0)
        return mean, np.zeros_like(mean)
    # Pieces: (-inf, z_1], [z_1, z_2], …, [z_K, inf); on each Q(z) = alpha + beta·z.
    mid = int(np.argmin(np.abs(z_levels)))
    lo_ref = mid if mid > 0 else 1
    hi_ref = mid if mid < k - 1 else k - 2
    inner_beta = np.diff(q, axis=1) / np.diff(z_levels)
    lo_beta = (q[:, lo_ref] - q[:, 0]) / (z_levels[lo_ref] - z_levels[0])
    hi_beta = (q[:, -1] - q[:, hi_ref]) / (z_levels[-1] - z_levels[hi_ref])
    beta = np.column_stack([lo_beta, inner_beta, hi_beta])
    anchors_z = np.r_[z_levels[0], z_levels[:-1], z_levels[-1]]
    anchors_q = np.column_stack([q[:, 0], q[:, :-1], q[:, -1]])
    alpha = anchors_q - beta * anchors_z
    a = np.broadcast_to(np.r_[-np.inf, z_levels], beta.shape)
    b = np.broadcast_to(np.r_[z_levels, np.inf], beta.shape)
    # Demand is max(Q, 0): keep the part of each piece where Q > 0 (beta ≥ 0 throughout).
    with np.errstate(divide="ignore", invalid="ignore"):
        zero = np.where(beta > 0, -alpha / beta, np.where(alpha > 0, -np.inf, np.inf))
    a = np.maximum(a, zero)
    b = np.maximum(b, a)
    m0, m1, m2 = _normal_interval_moments(a, b)
    first = (alpha * m0 + beta * m1).sum(axis=1)
    second = (alpha**2 * m0 + 2 * alpha * beta * m1 + beta**2 * m2).sum(axis=1)
    return first, np.maximum(second - first**2, 0.0)


def _normal_interval_moments(a: np.ndarray, b: np.ndarray
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """∫ z^j φ(z) dz over [a, b] for j = 0, 1, 2 (a ≤ b, either may be infinite)."""
    def pdf(x):
        return np.where(np.isfinite(x), np.exp(-0.5 * np.square(np.where(
            np.isfinite(x), x, 0.0))) * _INV_SQRT_2PI, 0.0)

    def x_pdf(x):
        return np.where(np.isfinite(x), np.where(np.isfinite(x), x, 0.0) * pdf(x), 0.0)

    # Φ(b) − Φ(a) from the side with more precision (both tails are used).
    m0 = np.where(a > 0, special.ndtr(-a) - special.ndtr(-b), special.ndtr(b) - special.ndtr(a))
    m1 = pdf(a) - pdf(b)
    m2 = m0 + x_pdf(a) - x_pdf(b)
    return m0, m1, m2


def quantile_columns(columns: Iterable[str]) -> dict[float, str]:
    """Quantile level → column, from ``q0.05``-style and ``lo-80``/``hi-80``-style columns
    (``lo-80`` is the 0.10 quantile, ``hi-80`` the 0.90); ``q`` columns win ties."""
    found: dict[float, str] = {}
    for column in columns:
        match = _INTERVAL.match(str(column))
        if match:
            width = float(match.group(2)) / 100.0
            if 0 < width < 1:
                tau = (1 - width) / 2 if match.group(1) == "lo" else (1 + width) / 2
                found.setdefault(round(tau, 6), column)
    for column in columns:
        match = _QUANTILE.match(str(column))
        if match and 0 < float(match.group(1)) < 1:
            found[round(float(match.group(1)), 6)] = column
    return dict(sorted(found.items()))


def series_forecasts(forecast: pd.DataFrame, paths: pd.DataFrame | None = None, *,
                     by: str | None = None, name: str = "forecast",
                     counts: Collection[str] | None = None) -> dict[object, SeriesForecast]:
    """One :class:`SeriesForecast` per series (and per ``by`` value, e.g. ``cutoff``).

    Parameters
    ----------
    forecast : pandas.DataFrame
        ``unique_id, ds, mean`` and quantile columns ``q0.05 … q0.95`` and/or
        ``lo-80, hi-80, …`` (units of the series), one row per series and period
        (``forecast.parquet``; ``backtest_forecasts.parquet`` with ``by="cutoff"``).
    paths : pandas.DataFrame, optional
        ``unique_id, ds, path, y`` (``paths.parquet``; plus ``cutoff`` for
        ``backtest_paths.parquet``); values clipped at 0. Series without paths use the
        quantiles.
    by : str, optional
        A further key column (``"cutoff"``): the result is then keyed by
        ``(unique_id, value)``.
    name : str
        What the frames are, for messages.
    counts : collection of str, optional
        The series whose demand comes in whole units (see :class:`SeriesForecast`); None:
        every series.

    Returns
    -------
    dict
        ``unique_id`` (or ``(unique_id, by value)``) → :class:`SeriesForecast`.

    Raises
    ------
    SupplyInputError
        A required column is missing; neither quantiles nor paths; a series whose paths do
        not cover every period of its forecast.
    """
    keys = ["unique_id"] + ([by] if by else [])
    missing = [c for c in [*keys, "ds", "mean"] if c not in forecast.columns]
    if missing:
        raise SupplyInputError(f"{name}: column {missing[0]!r} is missing (expected "
                               f"{', '.join([*keys, 'ds', 'mean'])} and quantile columns)")
    levels = quantile_columns(forecast.columns)
    has_paths = paths is not None and len(paths) > 0
    if not levels and not has_paths:
        raise SupplyInputError(
            f"{name}: no quantile columns (q0.05 … q0.95, lo-80/hi-80) and no sample paths; "
            "a policy needs the forecast's distribution, not only its mean")
    frame = forecast.sort_values([*keys, "ds"]).reset_index(drop=True)
    tau = np.array(list(levels)) if levels else None
    q_all = frame[list(levels.values())].to_numpy(dtype=float) if levels else None
    path_arrays = _path_arrays(paths, keys, name) if has_paths else {}
    out: dict[object, SeriesForecast] = {}
    ds_all = frame["ds"].to_numpy()
    mean_all = frame["mean"].to_numpy(dtype=float)
    for key, index in frame.groupby(keys, sort=False).indices.items():
        key = key if by else (key[0] if isinstance(key, tuple) else key)
        uid = key[0] if by else key
        ds = ds_all[index]
        arr = path_arrays.get(key)
        if arr is not None:
            path_ds, values = arr
            if len(path_ds) != len(ds) or not np.array_equal(path_ds, ds):
                raise SupplyInputError(
                    f"{name}: the sample paths of series {uid!r} do not cover the periods of "
                    "its forecast")
        elif q_all is None:
            raise SupplyInputError(
                f"{name}: series {uid!r} has no sample paths and the forecast has no "
                "quantile columns")
        out[key] = SeriesForecast(str(uid), ds, mean_all[index], tau,
                                  None if q_all is None else q_all[index],
                                  None if arr is None else arr[1],
                                  counts is None or str(uid) in counts)
    return out


def _path_arrays(paths: pd.DataFrame, keys: list[str], name: str) -> dict:
    """``key → (ds, values (n_paths × H))`` from long paths (sorted with numpy, not pandas:
    backtest paths of a large hierarchy hold millions of rows)."""
    missing = [c for c in [*keys, "ds", "path", "y"] if c not in paths.columns]
    if missing:
        raise SupplyInputError(f"the sample paths that go with {name} (paths.parquet or "
                               f"backtest_paths.parquet): column {missing[0]!r} is missing "
                               f"(expected {', '.join([*keys, 'ds', 'path', 'y'])})")
    factors = [pd.factorize(paths[k]) for k in keys]
    ds_all = paths["ds"].to_numpy()
    path_all = paths["path"].to_numpy()
    order = np.lexsort((ds_all, path_all, *[codes for codes, _ in reversed(factors)]))
    group = np.zeros(len(paths), dtype=np.int64)
    for codes, uniques in factors:
        group = group * len(uniques) + codes
    group = group[order]
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(group)) + 1, [len(order)]))
    values_all = np.maximum(paths["y"].to_numpy(dtype=float), 0.0)
    out = {}
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
        index = order[lo:hi]
        parts = [uniques[codes[index[0]]] for codes, uniques in factors]
        key = tuple(parts) if len(keys) > 1 else parts[0]
        n_paths = len(np.unique(path_all[index]))
        if len(index) % n_paths:
            raise SupplyInputError(f"{name} paths: series {key!r} has paths of unequal length")
        horizon = len(index) // n_paths
        out[key] = (ds_all[index[:horizon]], values_all[index].reshape(n_paths, horizon))
    return out


def protection_demand(forecast: pd.DataFrame | str | os.PathLike,
                      paths: pd.DataFrame | None = None, *, lead_time: int,
                      review_period: int = 1, start: int = 0,
                      discrete_below: float = 20.0) -> pd.DataFrame:
    """Demand over the protection period ``L + R`` per series, from a forecast.

    Parameters
    ----------
    forecast : pandas.DataFrame or path
        A forecast folder (``forecast.parquet``, and ``paths.parquet`` when present; the
        actuals of ``backtest_forecasts.parquet`` tell which series are counted in whole
        units), or the ``forecast.parquet`` frame (``unique_id, ds, mean`` and quantile
        columns; every series then counts as whole units).
    paths : pandas.DataFrame, optional
        With a frame: ``paths.parquet`` (``unique_id, ds, path, y``).
    lead_time : int
        ``L``, periods of the series (≥ 0).
    review_period : int, default 1
        ``R``, periods (≥ 1).
    start : int, default 0
        First period of the protection period, 0-based within the horizon.
    discrete_below : float, default 20
        Mean (units) below which demand is Poisson or negative binomial.

    Returns
    -------
    pandas.DataFrame
        One row per series: ``unique_id`` (str), ``start`` (datetime64, first period
        covered), ``periods`` (int, ``L + R``), ``demand_model`` (str, see the module
        docstring), ``mean`` and ``std`` (float, units), ``demand`` (object: the
        :class:`Demand`, None for a zero forecast).

    Raises
    ------
    SupplyInputError
        A negative or fractional lead time, a review period below 1, ``L + R`` beyond the
        horizon, a forecast without quantiles or paths, a missing file or column.
    """
    from pharmalab.supply.settings import PolicySettings

    checked = PolicySettings(lead_time=lead_time, review_period=review_period,
                             discrete_below=discrete_below)
    if isinstance(forecast, (str, os.PathLike)):
        from pharmalab.supply.inputs import read_forecast_folder

        folder = read_forecast_folder(Path(forecast), series_level="all",
                                      backtest_paths=False)
        series = folder.forecasts()
    else:
        series = series_forecasts(forecast, paths)
    rows = []
    for uid, fc in series.items():
        pd_ = fc.demand(start, checked.protection_periods, checked.discrete_below)
        rows.append({"unique_id": uid, "start": pd_.start, "periods": pd_.periods,
                     "demand_model": pd_.model, "mean": pd_.mean, "std": pd_.std,
                     "demand": pd_.demand})
    return pd.DataFrame(rows, columns=["unique_id", "start", "periods", "demand_model",
                                       "mean", "std", "demand"])
