"""A simulated CDM with a known patient flow: starters growing at a known rate, a known monthly
discontinuation hazard, monthly fills of a known days' supply — and the demand of the months
after the data end, which a forecast made from the CDM must cover.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: The simulated drug: an ingredient concept (celecoxib's id, so ids read familiar).
DRUG_CONCEPT_ID = 1118084
#: A clinical drug below it in ``concept_ancestor``, which the fills are recorded with.
CLINICAL_DRUG_ID = 1118085


@dataclass(frozen=True)
class SimulatedFlow:
    """The truth behind a simulated CDM.

    Attributes
    ----------
    future
        ``ds`` (month start), ``dispensed`` (days of supply dispensed in the month by every
        person, float64), ``fills`` (int64): the months after the data end.
    history
        The same for the months in the CDM.
    data_end
        First day not in the CDM (``as_of`` of a flow made from it).
    """

    future: pd.DataFrame
    history: pd.DataFrame
    data_end: dt.date


def simulate_cdm(con, *, months: int = 60, horizon: int = 12, starters: float = 40.0,
                 growth: float = 0.2, hazard: float = 0.08, leave: float = 0.01,
                 days_supply: int = 30, prevalent: int = 100, seed: int = 0,
                 start: dt.date = dt.date(2015, 1, 1)) -> SimulatedFlow:
    """Write a small OMOP CDM (``person``, ``observation_period``, ``drug_exposure``,
    ``concept``, ``concept_ancestor``) with a known patient flow into DuckDB connection ``con``.

    Parameters
    ----------
    con
        A ``duckdb`` connection (the tables are created in its current schema, replaced).
    months, horizon
        Months in the CDM, and months simulated after it (the truth a forecast is scored on).
    starters, growth
        Expected new starters in the first month (Poisson) and their growth per year
        (0.2: +20 % a year, compounded monthly).
    hazard
        Monthly probability that a patient on treatment stops (no refill after that month).
    leave
        Monthly probability that a person leaves the database (observation ends).
    days_supply
        Days supplied by each monthly fill.
    prevalent
        Persons already on the drug when the data begin (their first fill is inside the data
        but less than a year after their observation starts: not new starters).
    seed
        Random seed.

    Returns
    -------
    SimulatedFlow
    """
    rng = np.random.default_rng(seed)
    total = months + horizon
    month_starts = pd.date_range(start, periods=total + 1, freq="MS")
    expected = starters * (1 + growth) ** (np.arange(total) / 12)
    counts = rng.poisson(expected)
    start_month = np.repeat(np.arange(total), counts)
    start_month = np.concatenate([start_month, np.zeros(prevalent, dtype=int)])
    n = len(start_month)
    is_prevalent = np.arange(n) >= n - prevalent
    # months on treatment (≥ 1) and months until the person leaves the database (≥ 1)
    on = rng.geometric(hazard, n)
    stay = rng.geometric(leave, n)
    day = rng.integers(0, 28, n)

    rows = []
    for offset in range(int(on.max())):
        alive = (offset < on) & (offset < stay) & (start_month + offset < total)
        m = start_month[alive] + offset
        rows.append(pd.DataFrame({"person_id": np.flatnonzero(alive) + 1, "m": m,
                                  "day": day[alive]}))
    fills = pd.concat(rows, ignore_index=True)
    fills["date"] = month_starts[fills["m"]] + pd.to_timedelta(fills["day"], unit="D")

    first_fill = month_starts[start_month] + pd.to_timedelta(day, unit="D")
    prior = np.where(is_prevalent, 100, 400 + rng.integers(0, 2000, n))
    op_start = first_fill - pd.to_timedelta(prior, unit="D")
    leaves = month_starts[np.minimum(start_month + stay, total)] - pd.Timedelta(days=1)
    data_end = month_starts[months]
    op_end = leaves.where(leaves < data_end, data_end - pd.Timedelta(days=1))

    seen = fills[fills["date"] < data_end]
    persons = np.arange(1, n + 1)
    kept = start_month < months
    _write(con, persons[kept], op_start[kept], op_end[kept], seen, days_supply)
    per_month = fills.groupby("m").size().reindex(range(total), fill_value=0)
    truth = pd.DataFrame({"ds": month_starts[:total], "fills": per_month.to_numpy("int64"),
                          "dispensed": per_month.to_numpy("float64") * days_supply})
    return SimulatedFlow(future=truth.iloc[months:].reset_index(drop=True),
                         history=truth.iloc[:months].reset_index(drop=True),
                         data_end=data_end.date())


def _write(con, persons, op_start, op_end, fills, days_supply) -> None:
    person = pd.DataFrame({"person_id": persons, "gender_concept_id": 8507,
                           "year_of_birth": 1960, "race_concept_id": 0,
                           "ethnicity_concept_id": 0})
    observation = pd.DataFrame({"observation_period_id": persons, "person_id": persons,
                                "observation_period_start_date": pd.DatetimeIndex(op_start).date,
                                "observation_period_end_date": pd.DatetimeIndex(op_end).date,
                                "period_type_concept_id": 44814724})
    exposure = pd.DataFrame({
        "drug_exposure_id": np.arange(1, len(fills) + 1), "person_id": fills["person_id"],
        "drug_concept_id": CLINICAL_DRUG_ID,
        "drug_exposure_start_date": fills["date"].dt.date,
        "drug_exposure_end_date": (fills["date"] + pd.Timedelta(days=days_supply - 1)).dt.date,
        "drug_type_concept_id": 38000177, "days_supply": days_supply, "quantity": 30.0})
    concept = pd.DataFrame({
        "concept_id": [DRUG_CONCEPT_ID, CLINICAL_DRUG_ID],
        "concept_name": ["simulated drug", "simulated drug 200 MG Oral Capsule"],
        "domain_id": "Drug", "vocabulary_id": "RxNorm",
        "concept_class_id": ["Ingredient", "Clinical Drug"], "standard_concept": "S",
        "concept_code": ["1", "2"]})
    ancestor = pd.DataFrame({"ancestor_concept_id": [DRUG_CONCEPT_ID] * 2,
                             "descendant_concept_id": [DRUG_CONCEPT_ID, CLINICAL_DRUG_ID],
                             "min_levels_of_separation": [0, 1],
                             "max_levels_of_separation": [0, 1]})
    for name, frame in (("person", person), ("observation_period", observation),
                        ("drug_exposure", exposure), ("concept", concept),
                        ("concept_ancestor", ancestor)):
        con.register("_frame", frame)
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _frame")
        con.unregister("_frame")


__all__ = ["CLINICAL_DRUG_ID", "DRUG_CONCEPT_ID", "SimulatedFlow", "simulate_cdm"]
