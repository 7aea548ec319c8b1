"""What a brand team reads off a fitted MMM: contributions, ROI, response curves, carry-over,
latent demand under shortages and fit accuracy — each a summary of posterior draws with a
90% credible interval (``lo``/``hi``: the 5th and 95th percentiles).

Definitions follow Google's Meridian (Jin et al. 2017; Meridian's "ROI", "mROI" and response
curves): a channel's incremental units are the expected units with its spend minus those
without it, over the fitted periods (carry-over inside the periods counted); ROI =
incremental units × unit value / spend; mROI = the same ratio for a 1% increase of the
channel's spend; a response curve scales the channel's historical spend by 0 … 2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pharmalab.marketing.model import MMMFit, roi_draws
from pharmalab.marketing.panel import Panel

__all__ = ["adstock", "contributions", "fit_metrics", "latent_demand", "response_curves",
           "roi", "TOTAL", "LO", "HI"]

TOTAL = "Total"  # the sum over regions in frames by geo
LO, HI = 0.05, 0.95  # 90% credible intervals
MAX_DRAWS = 1000  # draws behind per-row intervals (means use every draw)


def _interval(draws: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = np.quantile(draws, [LO, HI], axis=axis)
    return draws.mean(axis=axis), lo, hi


def _thinned(fit: MMMFit):
    """The posterior on at most :data:`MAX_DRAWS` draws (evenly spaced, so every chain
    keeps its share)."""
    post = fit.posterior
    if post.draws <= MAX_DRAWS:
        return post
    return post.subset(np.linspace(0, post.draws - 1, MAX_DRAWS).round().astype(int))


def roi(fit: MMMFit) -> pd.DataFrame:
    """Return on investment per channel over the fitted periods.

    Returns
    -------
    pandas.DataFrame
        One row per channel: ``channel`` (str), ``spend`` (EUR, fitted periods),
        ``incremental_units``, ``incremental_units_lo``, ``incremental_units_hi`` (units),
        ``roi``, ``roi_lo``, ``roi_hi`` (incremental units × unit value / spend; 1 = the spend
        paid for itself), ``mroi`` (marginal ROI of a 1% increase, posterior mean), then
        ``r_hat``, ``ess_bulk`` of the channel's ROI and ``converged`` (the whole fit's).
    """
    train = fit.train
    media = train.media
    total = train.spend.sum(axis=(0, 1))
    units = fit.posterior.media_totals(media)  # (draw, channel)
    rows = []
    diag = fit.diagnostics.set_index("quantity")
    ratio = roi_draws(fit.posterior, train, fit.unit_value)
    for k, channel in enumerate(train.channels):
        more = fit.posterior.media_totals(media[..., [k]] * 1.01, channels=[k])
        extra = more[:, 0] - units[:, k]
        u_mean, u_lo, u_hi = _interval(units[:, k])
        r_mean, r_lo, r_hi = _interval(ratio[:, k])
        key = f"roi[{channel}]"
        rows.append({
            "channel": channel, "spend": float(total[k]),
            "incremental_units": float(u_mean), "incremental_units_lo": float(u_lo),
            "incremental_units_hi": float(u_hi),
            "roi": float(r_mean), "roi_lo": float(r_lo), "roi_hi": float(r_hi),
            "mroi": float(extra.mean() * fit.unit_value / (0.01 * total[k])),
            "r_hat": float(diag.loc[key, "r_hat"]) if key in diag.index else np.nan,
            "ess_bulk": float(diag.loc[key, "ess_bulk"]) if key in diag.index else np.nan,
            "converged": fit.convergence.converged,
        })
    return pd.DataFrame(rows)


def _controls(panel: Panel) -> np.ndarray:
    return panel.grid(list(panel.controls)) if panel.controls else np.zeros(
        (len(panel.dates), len(panel.geos), 0))


def contributions(fit: MMMFit) -> pd.DataFrame:
    """Expected units per period from each part of the model, by region and in total.

    Returns
    -------
    pandas.DataFrame
        ``geo`` (str; ``Total`` = all regions), ``ds`` (datetime64), ``component`` (str:
        ``baseline`` — intercept, trend and seasonality —, each control, each channel),
        ``mean``, ``lo``, ``hi`` (units per period), ``sample`` (``train`` or ``holdout``:
        hold-out periods are forecasts from the fitted model with the actual spend).
    """
    post = _thinned(fit)
    panel = fit.panel
    parts = post.components(panel.dates, panel.media, _controls(panel))
    frames = []
    geos = list(panel.geos)
    n, g = len(panel.dates), len(geos)
    sample = np.where(np.arange(n) < fit.train_periods, "train", "holdout")
    for component, draws in parts.items():
        mean, lo, hi = _interval(draws)
        frames.append(pd.DataFrame({
            "geo": np.tile(geos, n), "ds": np.repeat(panel.dates, g),
            "component": component, "mean": mean.reshape(-1), "lo": lo.reshape(-1),
            "hi": hi.reshape(-1), "sample": np.repeat(sample, g)}))
        if g > 1:
            t_mean, t_lo, t_hi = _interval(draws.sum(axis=2))
            frames.append(pd.DataFrame({
                "geo": TOTAL, "ds": panel.dates, "component": component, "mean": t_mean,
                "lo": t_lo, "hi": t_hi, "sample": sample}))
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["geo", "component", "ds"], kind="stable").reset_index(drop=True)


def response_curves(fit: MMMFit, multipliers=None) -> pd.DataFrame:
    """Incremental units of each channel when its spend over the fitted periods is scaled by
    each multiplier (0 … 2 by default), the other channels unchanged.

    Returns
    -------
    pandas.DataFrame
        ``channel`` (str), ``spend`` (EUR, total over the fitted periods),
        ``incremental_units``, ``lo``, ``hi`` (units), ``multiplier`` (of the historical
        spend; 1 = as spent).
    """
    multipliers = np.round(np.linspace(0, 2, 21), 10) if multipliers is None else multipliers
    post = _thinned(fit)
    spend, media = fit.train.spend, fit.train.media
    rows = []
    for k, channel in enumerate(fit.train.channels):
        for m in multipliers:
            units = post.media_totals(media[..., [k]] * m, channels=[k])[:, 0]
            mean, lo, hi = _interval(units)
            rows.append({"channel": channel, "spend": float(spend[..., k].sum() * m),
                         "incremental_units": float(mean), "lo": float(lo), "hi": float(hi),
                         "multiplier": float(m)})
    return pd.DataFrame(rows)


def adstock(fit: MMMFit) -> pd.DataFrame:
    """Carry-over per channel: the geometric decay per period (``geo = 'all'``: shared by
    the regions, or their average per draw when each region has its own) and, when regions
    have their own, per region.

    Returns
    -------
    pandas.DataFrame
        ``channel, geo, decay, decay_lo, decay_hi`` (share of an effect carried to the next
        period), ``half_life`` (periods for the effect to halve, from the mean decay),
        ``l_max`` (longest lag modelled, periods).
    """
    post = fit.posterior
    rows = []
    for k, channel in enumerate(post.channels):
        groups = [("all", post.alpha[:, :, k].mean(axis=1))]
        if len(post.geos) > 1 and not post.shared("alpha"):
            groups += [(geo, post.alpha[:, g, k]) for g, geo in enumerate(post.geos)]
        for geo, draws in groups:
            mean, lo, hi = _interval(draws)
            half = float(np.log(0.5) / np.log(mean)) if 0 < mean < 1 else np.nan
            rows.append({"channel": channel, "geo": geo, "decay": float(mean),
                         "decay_lo": float(lo), "decay_hi": float(hi), "half_life": half,
                         "l_max": post.l_max})
    return pd.DataFrame(rows)


def latent_demand(fit: MMMFit, seed: int = 0) -> pd.DataFrame:
    """Demand behind the observed scripts, and the scripts lost to shortage.

    On a supply-constrained row the observed scripts are a lower bound: demand given the
    model is its Normal(μ, σ) truncated below at the observed value, drawn once per
    posterior draw. On other rows demand is what was observed.

    Returns
    -------
    pandas.DataFrame
        ``geo, ds, observed, demand_mean, demand_lo, demand_hi, lost_units`` (units;
        ``lost_units = demand_mean − observed``), ``censored`` (bool), ``sample``
        (``train`` or ``holdout``).
    """
    from scipy.stats import truncnorm

    post = _thinned(fit)
    panel = fit.panel
    observed = panel.target
    censored = panel.censored
    n, g = observed.shape
    mean = observed.astype(float).copy()
    lo = mean.copy()
    hi = mean.copy()
    if censored.any():
        mu = post.mu(panel.dates, panel.media, _controls(panel))  # (draw, period, geo)
        sigma = np.broadcast_to(post.sigma_units[:, None, :], mu.shape)
        t_idx, g_idx = np.nonzero(censored)
        m = mu[:, t_idx, g_idx]
        s = sigma[:, t_idx, g_idx]
        a = (observed[t_idx, g_idx][None, :] - m) / s
        u = np.random.default_rng(seed).uniform(size=m.shape)
        draws = m + s * truncnorm.ppf(u, a, np.inf)
        # far in the tail the ppf can return inf: demand is then the bound itself
        draws = np.where(np.isfinite(draws), draws, observed[t_idx, g_idx][None, :])
        d_mean, d_lo, d_hi = _interval(draws)
        mean[t_idx, g_idx], lo[t_idx, g_idx], hi[t_idx, g_idx] = d_mean, d_lo, d_hi
    sample = np.where(np.arange(n) < fit.train_periods, "train", "holdout")
    return pd.DataFrame({
        "geo": np.tile(panel.geos, n), "ds": np.repeat(panel.dates, g),
        "observed": observed.reshape(-1), "demand_mean": mean.reshape(-1),
        "demand_lo": lo.reshape(-1), "demand_hi": hi.reshape(-1),
        "lost_units": (mean - observed).reshape(-1), "censored": censored.reshape(-1),
        "sample": np.repeat(sample, g)})


def fit_metrics(fit: MMMFit) -> pd.DataFrame:
    """Accuracy of the posterior-mean expected demand, in sample and on the hold-out.

    Rows capped by supply are left out (their scripts are not demand).

    Returns
    -------
    pandas.DataFrame
        ``sample`` (``in_sample`` or ``holdout``), ``level`` (``geo``: each region-period;
        ``total``: the sum over regions per period), ``periods``, ``rows``, ``mape``,
        ``wape`` (shares), ``censored_rows_excluded``.
    """
    post = _thinned(fit)
    panel = fit.panel
    expected = post.mu(panel.dates, panel.media, _controls(panel)).mean(axis=0)
    observed = panel.target
    censored = panel.censored
    rows = []
    for sample, periods in (("in_sample", slice(0, fit.train_periods)),
                            ("holdout", slice(fit.train_periods, None))):
        y, yhat, cens = observed[periods], expected[periods], censored[periods]
        if len(y) == 0:
            continue
        keep = ~cens
        levels = [("geo", y[keep], yhat[keep])]
        if len(panel.geos) > 1:
            whole = ~cens.any(axis=1)  # periods with no capped region
            levels.append(("total", y[whole].sum(axis=1), yhat[whole].sum(axis=1)))
        for level, actual, predicted in levels:
            positive = actual > 0
            err = np.abs(actual - predicted)
            rows.append({
                "sample": sample, "level": level, "periods": int(len(y)),
                "rows": int(actual.size),
                "mape": float((err[positive] / actual[positive]).mean()) if positive.any()
                else np.nan,
                "wape": float(err.sum() / actual.sum()) if actual.sum() > 0 else np.nan,
                "censored_rows_excluded": int(cens.sum())})
    return pd.DataFrame(rows)
