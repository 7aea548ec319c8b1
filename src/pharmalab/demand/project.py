"""Demand paths from a patient flow: starter paths convolved with the share on treatment and
units per patient, plus the patients already on treatment, plus the rest of the dispensing;
and the scenario levers a planner asks for.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pharmalab.demand.flow import PatientFlow
from pharmalab.demand.rates import Rates, cohort_matrix, estimate_rates, month_number


class Scenario(BaseModel):
    """Scenario levers (all optional; none given: the base case).

    Months are ``YYYY-MM``; a lever acts from its month on (default: the first forecast
    month).

    Attributes
    ----------
    name
        Shown in outputs.
    starter_growth
        Change of the starter trend per year, compounded monthly over the horizon (0.1: new
        starters 10 % a year above the forecast; −0.2: 20 % below): market growth or decline.
    competitor_launch, competitor_share
        From ``competitor_launch`` on, a competitor takes ``competitor_share`` (0–1) of the new
        starters.
    discontinuation_reduction, support_from
        A support programme: from ``support_from`` on, this share (0–1) of the month-to-month
        discontinuations of patients on treatment does not happen (the monthly hazard × (1 −
        reduction)), for patients already on treatment and new ones alike. A planner takes it
        from the journey module's support list: the share of patients reached × the
        programme's effect.
    dose_factor, dose_from
        From ``dose_from`` on, units per patient-month × ``dose_factor`` (1.2: a 20 % higher
        dose or pack size), for every patient: new starters, those on treatment and the
        other patients.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "base"
    starter_growth: float = Field(0.0, gt=-1.0)
    competitor_launch: str | None = None
    competitor_share: float = Field(0.0, ge=0.0, le=1.0)
    discontinuation_reduction: float = Field(0.0, ge=0.0, le=1.0)
    support_from: str | None = None
    dose_factor: float = Field(1.0, gt=0.0)
    dose_from: str | None = None

    @field_validator("competitor_launch", "support_from", "dose_from")
    @classmethod
    def _month(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
            raise ValueError(f"expected a month YYYY-MM (e.g. 2020-01), got {value!r}")
        return value

    @model_validator(mode="after")
    def _pairs(self):
        for month, lever, neutral in (("competitor_launch", "competitor_share", 0.0),
                                      ("support_from", "discontinuation_reduction", 0.0),
                                      ("dose_from", "dose_factor", 1.0)):
            if getattr(self, month) is not None and getattr(self, lever) == neutral:
                raise ValueError(f"{month} is given without {lever}: it would change nothing")
        return self


def lever_notes(flow: PatientFlow, scenario: Scenario, rates: Rates, horizon: int) -> list[str]:
    """What a reader should know about levers that change little or nothing here."""
    notes = []
    first = int(month_number([flow.last_month])[0]) + 1
    for month, what in ((scenario.competitor_launch, "competitor_launch"),
                        (scenario.support_from, "support_from"),
                        (scenario.dose_from, "dose_from")):
        if month is not None and _month_of(month, first) >= first + horizon:
            notes.append(f"{flow.unique_id}: {what} {month} is after the horizon: it changes "
                         "nothing in this forecast")
    later = rates.units[0][1:]
    if scenario.discontinuation_reduction > 0 and later.size and np.allclose(later, 0):
        notes.append(f"{flow.unique_id}: starters on treatment after their first month take "
                     "no units in this data (no refills), so keeping them on treatment "
                     "(discontinuation_reduction) changes nothing")
    return notes


def _month_of(text: str | None, default: int) -> int:
    if text is None:
        return default
    return int(month_number([pd.Timestamp(text + "-01")])[0])


def bootstrap_rates(flow: PatientFlow, n_paths: int, seed: int = 0,
                    lookback: int | None = None) -> Rates:
    """Rates drawn by a bootstrap over start cohorts (one draw per path), plus the point
    estimate as draw 0 when ``n_paths`` is 0.

    ``lookback``: only cohorts that started in the last ``lookback`` months (None: all).
    """
    matrix = cohort_matrix(flow)
    if lookback is not None:
        keep = matrix.start > matrix.last - lookback
        matrix = type(matrix)(matrix.start[keep], matrix.observed[keep], matrix.active[keep],
                              matrix.units[keep], matrix.seeable[keep], matrix.last)
    if n_paths == 0:
        return estimate_rates(matrix)
    rng = np.random.default_rng(seed)
    cohorts = len(matrix.start)
    weights = rng.multinomial(cohorts, np.full(cohorts, 1 / cohorts), size=n_paths)
    return estimate_rates(matrix, weights.astype(float))


def _hazard_adjusted(a: np.ndarray, reduction: float) -> np.ndarray:
    """Month-to-month factors ``a'(k) / a'(k − 1) ÷ a(k) / a(k − 1)`` of a discontinuation
    hazard × (1 − reduction); 1 where the share does not fall."""
    prev = np.roll(a, 1, axis=-1)
    ratio = np.divide(a, prev, out=np.ones_like(a), where=prev > 0)
    ratio[..., 0] = 1.0
    falls = ratio < 1
    changed = 1 - (1 - ratio) * (1 - reduction)
    return np.where(falls, np.divide(changed, ratio, out=np.ones_like(a), where=ratio > 0), 1.0)


def project(flow: PatientFlow, starter_paths: np.ndarray, rest_paths: np.ndarray,
            rates: Rates, scenario: Scenario | None = None, *, noise: bool = True,
            seed: int = 0) -> np.ndarray:
    """Monthly demand paths after ``flow``'s last month.

    Demand in month ``t`` = Σ over start cohorts ``s`` of persons on treatment × units:

    - cohorts already started (``s ≤ T``, the last month of data): the starters still
      observed at ``T``, ``observed(s, T − s)``, kept by the database with probability
      ``r(t − s) / r(T − s)``, on treatment with ``a(t − s)``, taking ``u(t − s)``;
    - future cohorts: each path's starters ``S(s)`` × ``r(t − s) a(t − s) u(t − s)``;
    - plus ``rest_paths``: the dispensing of persons who are not new starters.

    Parameters
    ----------
    flow
        The history (as of the forecast origin).
    starter_paths, rest_paths
        (paths, horizon) sample paths of new starters (persons) and of the rest (units).
    rates
        One draw per path (:func:`bootstrap_rates`), or a single draw used by every path.
    scenario
        Levers applied to starters, the share on treatment and units.
    noise
        Draw the month's fills as Poisson around the expected fills (units ÷ mean units per
        fill), the chance in who refills when; False: expected values.

    Returns
    -------
    ndarray (paths, horizon)
        Units (the flow's measure) per month, ≥ 0.

    References
    ----------
    Cook AG (2016), *Forecasting for the Pharmaceutical Industry*, ch. 4.
    """
    scenario = scenario or Scenario()
    paths, horizon = starter_paths.shape
    matrix = cohort_matrix(flow)
    last = matrix.last
    months = last + 1 + np.arange(horizon)                       # forecast month numbers
    old = flow.cohorts.assign(s=month_number(flow.cohorts["start"]))
    old = old[old["s"] + old["k"] == last][["s", "k", "observed"]]
    span = int(horizon + (last - old["s"].min() if len(old) else 0) + 1)
    r = rates.extended(span)
    a, u, keep = (np.broadcast_to(x, (paths, span)) for x in
                  (r.on_treatment, r.units, r.retention))

    first = last + 1
    support = _month_of(scenario.support_from, first)
    dose = _month_of(scenario.dose_from, first)
    factor = (_hazard_adjusted(a, scenario.discontinuation_reduction)
              if scenario.discontinuation_reduction > 0 else None)

    def cohort_demand(start: np.ndarray, k0: np.ndarray | None, persons: np.ndarray):
        """(paths, horizon) units from cohorts starting in months ``start`` with ``persons``
        (paths, cohorts) observed at offset ``k0`` (None: at their start)."""
        k = months[None, :] - start[:, None]                     # (cohorts, horizon)
        valid = k >= 0
        kk = np.clip(k, 0, span - 1)
        base_k = np.zeros_like(start) if k0 is None else k0
        kept = keep[:, kk] / np.maximum(keep[:, base_k][:, :, None], 1e-12)
        share = a[:, kk]
        if factor is not None:
            # cumulative hazard change from the support month (or the cohort's k0) to k
            from_k = np.maximum(support - start, base_k + (0 if k0 is None else 1))
            logf = np.cumsum(np.log(factor), axis=1)             # (paths, span)
            upto = logf[:, kk]
            before = np.where(from_k[None, :] > 0,
                              logf[:, np.clip(from_k - 1, 0, span - 1)], 0.0)
            share = share * np.exp(np.where(k[None] >= from_k[None, :, None],
                                            upto - before[:, :, None], 0.0))
            share = np.minimum(share, 1.0)
        units = u[:, kk] * np.where(months[None, :] >= dose, scenario.dose_factor, 1.0)
        per_person = np.where(valid[None], kept * share * units, 0.0)
        return (persons[:, :, None] * per_person).sum(axis=1)

    expected = np.zeros((paths, horizon))
    if len(old):
        start = old["s"].to_numpy(dtype="int64")
        k0 = old["k"].to_numpy(dtype="int64")
        persons = np.broadcast_to(old["observed"].to_numpy(dtype="float64"),
                                  (paths, len(start)))
        expected += cohort_demand(start, k0, persons)
    starters = starter_paths * _starter_levers(scenario, months, first)[None, :]
    expected += cohort_demand(months.copy(), None, starters)

    if noise:
        per_fill = _units_per_fill(flow)
        rng = np.random.default_rng(seed)
        expected = rng.poisson(np.maximum(expected, 0) / per_fill) * per_fill
    # a dose or pack-size change applies to every patient, the other patients' too
    rest = rest_paths * np.where(months >= dose, scenario.dose_factor, 1.0)[None, :]
    return np.maximum(expected + rest, 0.0)


def _starter_levers(scenario: Scenario, months: np.ndarray, first: int) -> np.ndarray:
    factor = (1 + scenario.starter_growth) ** ((months - first + 1) / 12)
    launch = _month_of(scenario.competitor_launch, first)
    return factor * np.where(months >= launch, 1 - scenario.competitor_share, 1.0)


def _units_per_fill(flow: PatientFlow, months: int = 36) -> float:
    recent = flow.months.tail(months)
    fills, units = recent["fills"].sum(), recent["dispensed"].sum()
    return float(units / fills) if fills and units > 0 else 1.0


__all__ = ["Scenario", "bootstrap_rates", "project"]
