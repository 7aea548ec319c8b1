"""Rates of a patient flow by months since the start: share on treatment, units per active
patient-month, share still observed — estimated from the start cohorts, with a bootstrap over
them for their uncertainty; and the flow identity that checks them against the history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pharmalab.demand.flow import PatientFlow

#: Months at the end of the estimated range whose mean rates carry on beyond it.
TAIL_MONTHS = 12


def month_number(ds) -> np.ndarray:
    """Months since year 0 of month-start dates (int64), so months subtract."""
    ds = pd.DatetimeIndex(ds)
    return (ds.year.to_numpy(dtype="int64") * 12 + ds.month.to_numpy(dtype="int64") - 1)


@dataclass(frozen=True)
class Rates:
    """Rates by months since the start ``k`` = 0, 1, …, one row per draw.

    Attributes
    ----------
    on_treatment : ndarray (draws, months)
        Share of the starters still observed at ``k`` who are on treatment in month ``k``
        (1 at ``k = 0``).
    units : ndarray (draws, months)
        Units dispensed per starter on treatment in month ``k`` (unit of the flow's measure).
    retention : ndarray (draws, months)
        Share of starters still observed at ``k`` (the database keeps them; 1 at ``k = 0``):
        a Kaplan–Meier product of month-to-month ratios over the cohorts that could be seen
        at ``k`` before the data end.
    """

    on_treatment: np.ndarray
    units: np.ndarray
    retention: np.ndarray

    def extended(self, months: int) -> Rates:
        """The rates for ``k`` up to ``months − 1``: beyond the estimated range, the mean of
        the last :data:`TAIL_MONTHS` months' shares and units, and retention falling at the
        mean of their month-to-month ratio."""
        have = self.on_treatment.shape[1]
        if months <= have:
            return Rates(self.on_treatment[:, :months], self.units[:, :months],
                         self.retention[:, :months])
        extra = months - have
        tail = slice(max(have - TAIL_MONTHS, 1), have)
        a = np.repeat(self.on_treatment[:, tail].mean(axis=1, keepdims=True), extra, axis=1)
        u = np.repeat(self.units[:, tail].mean(axis=1, keepdims=True), extra, axis=1)
        r = self.retention
        ratio = np.divide(r[:, tail], r[:, slice(tail.start - 1, tail.stop - 1)],
                          out=np.ones_like(r[:, tail]), where=r[:, slice(tail.start - 1,
                                                                       tail.stop - 1)] > 0)
        step = np.clip(ratio.mean(axis=1, keepdims=True), 0.0, 1.0)
        more = r[:, -1:] * np.cumprod(np.repeat(step, extra, axis=1), axis=1)
        return Rates(np.hstack([self.on_treatment, a]), np.hstack([self.units, u]),
                     np.hstack([r, more]))


@dataclass(frozen=True)
class CohortMatrix:
    """The flow's cohort table as dense matrices (cohorts × months since the start)."""

    start: np.ndarray      # (cohorts,) month numbers
    observed: np.ndarray   # (cohorts, K + 1)
    active: np.ndarray
    units: np.ndarray
    seeable: np.ndarray    # (cohorts, K + 1) bool: start + k ≤ last month of data
    last: int              # month number of the last month of data


def cohort_matrix(flow: PatientFlow) -> CohortMatrix:
    """Dense (cohort × k) matrices for ``k ≤ max_months`` of ``flow.cohorts``."""
    size = flow.settings.max_months + 1
    table = flow.cohorts[flow.cohorts["k"] < size]
    starts = np.unique(month_number(table["start"]))
    row = np.searchsorted(starts, month_number(table["start"]))
    col = table["k"].to_numpy(dtype="int64")
    out = {}
    for name in ("observed", "active", "units"):
        dense = np.zeros((len(starts), size))
        dense[row, col] = table[name].to_numpy(dtype="float64")
        out[name] = dense
    last = int(month_number([flow.last_month])[0])
    seeable = starts[:, None] + np.arange(size)[None, :] <= last
    return CohortMatrix(starts, out["observed"], out["active"], out["units"], seeable, last)


def estimate_rates(matrix: CohortMatrix, weights: np.ndarray | None = None) -> Rates:
    """Pooled rates over the start cohorts, one draw per row of ``weights``.

    Parameters
    ----------
    matrix
        From :func:`cohort_matrix`.
    weights
        (draws, cohorts) cohort weights: ones for the point estimate (default), multinomial
        counts for a bootstrap over start cohorts (Efron & Tibshirani 1993, resampling the
        independent units: here the monthly start cohorts, which keeps each cohort's
        correlation over ``k``).

    Returns
    -------
    Rates
        Where no cohort informs a month (no one observed there), the last informed value
        carries on.
    """
    w = np.ones((1, len(matrix.start))) if weights is None else np.asarray(weights, float)
    observed, active = w @ matrix.observed, w @ matrix.active
    a = _carry(np.divide(active, observed, out=np.full_like(active, np.nan),
                         where=observed > 0))
    units = w @ matrix.units
    pooled = units.sum(axis=1, keepdims=True) / np.maximum(active.sum(axis=1, keepdims=True), 1)
    u = np.divide(units, active, out=np.full_like(units, np.nan), where=active > 0)
    u = np.where(np.isnan(u), pooled, u)
    seen_now = w @ (matrix.observed * matrix.seeable)
    seen_before = w @ (np.roll(matrix.observed, 1, axis=1) * matrix.seeable)
    ratio = np.divide(seen_now, seen_before, out=np.full_like(seen_now, np.nan),
                      where=seen_before > 0)
    ratio[:, 0] = 1.0
    ratio = np.clip(_carry(ratio), 0.0, 1.0)
    a[:, 0] = np.where(np.isnan(a[:, 0]), 1.0, a[:, 0])
    return Rates(np.nan_to_num(a, nan=0.0), u, np.cumprod(ratio, axis=1))


def _carry(values: np.ndarray) -> np.ndarray:
    """Forward-fill NaN along each row."""
    return pd.DataFrame(values).ffill(axis=1).to_numpy()


def flow_check(flow: PatientFlow) -> pd.DataFrame:
    """The flow identity on the history, month by month.

    Each start cohort ``s`` still observed at month ``t`` contributes
    ``observed(s, t) × a(t − s)`` patients on treatment and ``× u(t − s)`` units, with the
    pooled rates of :func:`estimate_rates` (rates beyond ``max_months`` carried on as
    :meth:`Rates.extended`). The sums must reproduce the counts made in the engine: the gap
    shows whether starters, persistence and units per patient are consistent pieces of the
    dispensing — and how much a pooled persistence curve misses of cohorts that differ.

    Returns
    -------
    pandas.DataFrame
        One row per month: ``ds`` (datetime64), ``starters``, ``active`` (engine count,
        persons), ``active_flow`` (float64, persons), ``units``, ``units_flow`` (float64,
        the measure's unit), ``gap_units`` (``units_flow − units``), ``gap_units_pct``
        (percent of ``units``; NaN where ``units`` is 0), ``dispensed`` (every person's
        units), ``starters_share`` (share of ``dispensed`` from the new starters' fills).

    References
    ----------
    Cook AG (2016), *Forecasting for the Pharmaceutical Industry*, ch. 4: patients on
    therapy as the convolution of new patients with persistence.
    """
    matrix = cohort_matrix(flow)
    table = flow.cohorts
    k = table["k"].to_numpy(dtype="int64")
    rates = estimate_rates(matrix).extended(int(k.max()) + 1 if len(k) else 1)
    a, u = rates.on_treatment[0][k], rates.units[0][k]
    observed = table["observed"].to_numpy(dtype="float64")
    month = month_number(table["start"]) + k
    by_month = pd.DataFrame({"m": month, "active_flow": observed * a,
                             "units_flow": observed * a * u}).groupby("m").sum()
    out = flow.months[["ds", "starters", "active", "units", "dispensed"]].copy()
    found = by_month.reindex(month_number(out["ds"])).fillna(0.0)
    out.insert(3, "active_flow", found["active_flow"].to_numpy())
    out.insert(5, "units_flow", found["units_flow"].to_numpy())
    out["gap_units"] = out["units_flow"] - out["units"]
    out["gap_units_pct"] = 100 * out["gap_units"] / out["units"].where(out["units"] > 0)
    out["starters_share"] = out["units"] / out["dispensed"].where(out["dispensed"] > 0)
    return out


__all__ = ["CohortMatrix", "Rates", "cohort_matrix", "estimate_rates", "flow_check",
           "month_number"]
