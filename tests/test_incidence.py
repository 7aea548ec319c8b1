"""Incidence rates: CohortIncidence's own conformance scenarios, GiBleed against an independent
person-by-person computation, Spark against DuckDB, and small-cell suppression."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import ibis
import pandas as pd
import pytest

from conftest import DATA, need
from pharmalab.characterize import (
    Strata,
    TimeAtRisk,
    incidence_rates,
    read_design,
    simple_design,
)
from pharmalab.characterize.incidence import poisson_exact_limits
from pharmalab.engine import database
from pharmalab.errors import PharmalabInputError

CASES = DATA / "cases" / "cohortincidence"
SCENARIOS = sorted(p.name[: -len("Test.json")] for p in CASES.glob("*Test.json"))

_TYPES = {"person_id": "int64", "gender_concept_id": "int64", "year_of_birth": "int64",
          "race_concept_id": "int64", "ethnicity_concept_id": "int64",
          "observation_period_id": "int64", "period_type_concept_id": "int64",
          "observation_period_start_date": "date", "observation_period_end_date": "date",
          "cohort_definition_id": "int64", "subject_id": "int64",
          "cohort_start_date": "date", "cohort_end_date": "date"}


def load_prep(prep: Path):
    """A fresh in-memory DuckDB holding a scenario's input rows; returns the Database."""
    tables = json.loads(prep.read_text())
    results = next(k.split(".")[0] for k in tables if k.endswith(".cohort"))
    db = database(f"duckdb://?cdm_schema=cdm&results_schema={results}")
    db.ensure_schema("cdm")
    db.ensure_schema("results")
    for key, rows in tables.items():
        schema, name = key.split(".")
        frame = pd.DataFrame(rows)
        types = {c: _TYPES[c] for c in frame.columns}
        for column, kind in types.items():
            if kind == "date":
                frame[column] = pd.to_datetime(frame[column]).dt.date
        db.con.create_table(name, ibis.memtable(frame, schema=ibis.schema(types)),
                            database=schema)
    return db


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_cohortincidence_conformance(scenario):
    design = read_design(need(CASES / f"{scenario}Test.json"))
    db = load_prep(CASES / f"{scenario}_PREP.json")
    expected_rows = next(iter(json.loads((CASES / f"{scenario}_VERIFY.json").read_text())
                              .values()))
    got = incidence_rates(db, design, min_cell_count=1).summary
    keys = ["target_cohort_definition_id", "tar_id", "subgroup_id", "outcome_id",
            "age_group_id", "gender_id", "start_year"]
    assert len(got) == len(expected_rows), got[keys]
    for expected in expected_rows:
        match = got
        for key in keys:
            value = expected.get(key)
            match = match[match[key].isna()] if value is None else match[match[key] == value]
        assert len(match) == 1, (scenario, expected)
        row = match.iloc[0]
        for field, value in expected.items():
            if field == "ref_id":
                continue
            if value is None:
                assert pd.isna(row[field]), (scenario, field, row[field])
            elif isinstance(value, float) or field.startswith("incidence_"):
                # to 4 decimals (CohortIncidence rounds half up: 1141.40625 → 1141.4063)
                assert float(row[field]) == pytest.approx(value, abs=0.5e-4 + 1e-9), (
                    scenario, field)
            else:
                assert row[field] == value, (scenario, field, row[field], value)


def test_the_conformance_folder_has_every_scenario():
    # a parametrized test over the folder: guard against an empty or renamed folder
    assert len(SCENARIOS) == 10


def test_garwood_limits_match_published_values():
    # Ulm (1990), Table 1: exact 95% limits for 0, 1, 5 and 10 observed events
    lower, upper = poisson_exact_limits([0, 1, 5, 10])
    assert lower == pytest.approx([0.0, 0.0253, 1.6235, 4.7954], abs=1e-4)
    assert upper == pytest.approx([3.6889, 5.5716, 11.6683, 18.3904], abs=1e-4)


# --- GiBleed: against an independent computation, person by person ----------------------


def _merge(periods):
    """Merge overlapping [start, end] date intervals (inclusive)."""
    merged = []
    for start, end in sorted(periods):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def slow_incidence(cohort: pd.DataFrame, op: pd.DataFrame, person: pd.DataFrame,
                   target: int, outcome: int, clean_window: int):
    """Incidence by the CohortIncidence method documentation, one person at a time, with
    plain Python dates: TAR = cohort start → cohort end cut at observation end; after each
    outcome, days start+1 … end+clean_window are not at risk and outcomes there do not
    count. Returns totals and per-gender totals."""
    births = dict(zip(person.person_id, person.gender_concept_id, strict=True))
    outcomes = {}
    for row in cohort[cohort.cohort_definition_id == outcome].itertuples():
        outcomes.setdefault(row.subject_id, []).append((row.cohort_start_date,
                                                        row.cohort_end_date))
    periods = {}
    for row in op.itertuples():
        periods.setdefault(row.person_id, []).append((row.observation_period_start_date,
                                                      row.observation_period_end_date))
    totals = {}
    for row in cohort[cohort.cohort_definition_id == target].itertuples():
        if row.subject_id not in births:
            continue
        inside = [p for p in periods.get(row.subject_id, [])
                  if p[0] <= row.cohort_start_date <= p[1]]
        if not inside:
            continue
        start, end = row.cohort_start_date, min(row.cohort_end_date, inside[0][1])
        if start > end:
            continue
        excluded = _merge([(o_start + timedelta(days=1), o_end + timedelta(days=clean_window))
                           for o_start, o_end in outcomes.get(row.subject_id, [])
                           if o_end + timedelta(days=clean_window) >= o_start
                           + timedelta(days=1)])
        lost = sum(max(0, (min(e, end) - max(s, start)).days + 1) for s, e in excluded)
        cases_pe = [o for o, _ in outcomes.get(row.subject_id, []) if start <= o <= end]
        cases = [o for o in cases_pe if not any(s <= o <= e for s, e in excluded)]
        days = (end - start).days + 1 - lost
        for key in ("all", births[row.subject_id]):
            t = totals.setdefault(key, dict(persons_at_risk_pe=0, persons_at_risk=0,
                                            person_days_pe=0, person_days=0,
                                            person_outcomes_pe=0, person_outcomes=0,
                                            outcomes_pe=0, outcomes=0))
            t["persons_at_risk_pe"] += 1
            t["persons_at_risk"] += days > 0
            t["person_days_pe"] += (end - start).days + 1
            t["person_days"] += days
            t["person_outcomes_pe"] += bool(cases_pe)
            t["person_outcomes"] += bool(cases)
            t["outcomes_pe"] += len(cases_pe)
            t["outcomes"] += len(cases)
    return totals


@pytest.mark.parametrize("clean_window", [0, 30, 9999])
def test_gibleed_gi_bleed_in_celecoxib_users_equals_a_person_by_person_count(
        gibleed_demo_cohorts, clean_window):
    db = gibleed_demo_cohorts
    # celecoxib users (CohortGenerator cohort 1: one entry per person, so no era merging)
    design = simple_design([1], [5], [TimeAtRisk(1, "start", 0, "end", 0)],
                           clean_window=clean_window, strata=Strata(by_gender=True))
    got = incidence_rates(db, design, min_cell_count=1).summary

    cohort = db.table("cohort", "results").to_pandas()
    op = db.table("observation_period").to_pandas()
    person = db.table("person").select("person_id", "gender_concept_id").to_pandas()
    expected = slow_incidence(cohort, op, person, target=1, outcome=5,
                              clean_window=clean_window)
    for key, totals in expected.items():
        row = (got[got.gender_id.isna()] if key == "all" else got[got.gender_id == key]).iloc[0]
        for field, value in totals.items():
            assert row[field] == value, (key, field)
        years = totals["person_days"] / 365.25
        assert row.incidence_rate_p1000py == pytest.approx(1000 * totals["outcomes"] / years)
    overall = expected["all"]
    assert overall["persons_at_risk_pe"] == 1800
    assert overall["outcomes_pe"] > 0


def test_demo_exposure_cohorts_incidence(gibleed_demo_cohorts):
    # GI bleed during celecoxib (7) and diclofenac (6) exposure eras, and the rate's exact limits
    design = simple_design([7, 6], [5], [TimeAtRisk(1, "start", 0, "end", 0)])
    got = incidence_rates(gibleed_demo_cohorts, design).summary.set_index(
        "target_cohort_definition_id")
    assert got.loc[7, "persons_at_risk"] == 1800
    assert got.loc[6, "persons_at_risk"] == 830
    for target in (6, 7):
        row = got.loc[target]
        assert row.incidence_rate_p1000py_lower_95 < row.incidence_rate_p1000py \
            < row.incidence_rate_p1000py_upper_95


# --- suppression, errors, Spark ---------------------------------------------------------


def test_a_stratum_of_three_persons_is_suppressed_with_its_flag():
    db = load_prep(CASES / "strataByGender_PREP.json")
    design = read_design(CASES / "strataByGenderTest.json")
    # three persons of gender 8507: add two more to the scenario's one
    extra = pd.DataFrame({"person_id": [3, 4], "gender_concept_id": [8507, 8507],
                          "year_of_birth": [1970, 1971], "race_concept_id": [0, 0],
                          "ethnicity_concept_id": [0, 0]})
    db.con.insert("person", extra, database="cdm")
    db.con.insert("observation_period", pd.DataFrame({
        "observation_period_id": [3, 4], "person_id": [3, 4],
        "observation_period_start_date": [date(2000, 1, 1)] * 2,
        "observation_period_end_date": [date(2010, 1, 1)] * 2,
        "period_type_concept_id": [0, 0]}), database="cdm")
    db.con.insert("cohort", pd.DataFrame({
        "cohort_definition_id": [100, 100], "subject_id": [3, 4],
        "cohort_start_date": [date(2004, 1, 1)] * 2,
        "cohort_end_date": [date(2004, 1, 1)] * 2}), database=db.results_schema)
    summary = incidence_rates(db, design, min_cell_count=5).summary
    male = summary[summary.gender_id == 8507].iloc[0]
    assert pd.isna(male.persons_at_risk) and male.persons_at_risk_suppressed
    assert pd.isna(male.incidence_rate_p100py) and pd.isna(male.incidence_proportion_p100p)
    overall = summary[summary.gender_id.isna()].iloc[0]
    assert pd.isna(overall.persons_at_risk) and overall.persons_at_risk_suppressed  # 4 persons
    # person-time of a hidden count is hidden too (a fixed 91-day window would give it back)
    assert pd.isna(male.person_days) and pd.isna(male.person_days_pe)
    assert pd.isna(male.person_years)
    shown = incidence_rates(db, design, min_cell_count=1).summary
    assert shown[shown.gender_id == 8507].iloc[0].persons_at_risk == 3
    assert shown[shown.gender_id == 8532].iloc[0].person_days == 150


def test_bad_designs_are_named():
    with pytest.raises(PharmalabInputError, match="analysisList entry 1 names outcomes"):
        read_design({"targetDefs": [{"id": 1}], "outcomeDefs": [{"id": 1, "cohortId": 2}],
                     "timeAtRiskDefs": [{"id": 1, "start": {"dateField": "start"},
                                         "end": {"dateField": "end"}}],
                     "analysisList": [{"targets": [1], "outcomes": [9], "tars": [1]}]})
    with pytest.raises(PharmalabInputError, match="dateField must be 'start' or 'end'"):
        read_design({"targetDefs": [{"id": 1}], "outcomeDefs": [{"id": 1, "cohortId": 2}],
                     "timeAtRiskDefs": [{"id": 1, "start": {"dateField": "index"},
                                         "end": {"dateField": "end"}}],
                     "analysisList": [{"targets": [1], "outcomes": [1], "tars": [1]}]})
    with pytest.raises(PharmalabInputError, match="cleanWindow"):
        read_design({"targetDefs": [{"id": 1}],
                     "outcomeDefs": [{"id": 1, "cohortId": 2, "cleanWindow": "30"}],
                     "timeAtRiskDefs": [{"id": 1, "start": {}, "end": {}}],
                     "analysisList": [{"targets": [1], "outcomes": [1], "tars": [1]}]})
    with pytest.raises(PharmalabInputError, match="expected START:END"):
        TimeAtRisk.parse("index:end")


def test_a_target_cohort_without_rows_is_an_error(gibleed_demo_cohorts):
    design = simple_design([424242], [5], [TimeAtRisk()])
    with pytest.raises(PharmalabInputError, match=r"target cohorts \[424242\] have no rows"):
        incidence_rates(gibleed_demo_cohorts, design)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["outcomeDefs"][0].update(cleanwindow=30), "unknown field 'cleanwindow'"),
    (lambda d: d["timeAtRiskDefs"][0]["start"].update(ofset=1), "unknown field 'ofset'"),
    (lambda d: d.update(studywindow={}), "unknown field 'studywindow'"),
    (lambda d: d.update(studyWindow={"startDate": "2010-01-01", "endDate": "2000-01-01"}),
     "studyWindow starts"),
    (lambda d: d["timeAtRiskDefs"][0]["end"].update(offset=10**12), "beyond ±1,000,000 days"),
    (lambda d: d["targetDefs"][0].update(id=10**20), r"outside 0 … 2\^63"),
])
def test_design_typos_and_impossible_values_are_refused(change, message):
    # a typo must not silently change the numbers (CohortIncidence's own reader ignores them)
    design = json.loads((CASES / "cleanWindowTest.json").read_text())
    change(design)
    if design["targetDefs"][0]["id"] != 100:
        design["analysisList"][0]["targets"] = [design["targetDefs"][0]["id"]]
    with pytest.raises(PharmalabInputError, match=message):
        read_design(design)


def test_windows_that_are_always_empty_are_refused():
    with pytest.raises(PharmalabInputError, match="ends before it starts"):
        TimeAtRisk.parse("start+1:start-5")
    assert TimeAtRisk.parse("end-10:start").start_with == "end"  # may be empty for some only
    with pytest.raises(PharmalabInputError, match="increasing whole ages"):
        Strata(by_age=True, age_breaks=(45, 35))


def test_min_days_at_risk_drops_short_periods_as_cohortmethod():
    """Issue 15 item 8: CohortMethod's minDaysAtRisk as an incidence option."""
    import dataclasses

    db = load_prep(CASES / "strataByGender_PREP.json")
    design = read_design(CASES / "strataByGenderTest.json")  # start+0 → start+90
    # person 3's observation ends 9 days after the entry: a 10-day window
    db.con.insert("person", pd.DataFrame({
        "person_id": [3], "gender_concept_id": [8507], "year_of_birth": [1970],
        "race_concept_id": [0], "ethnicity_concept_id": [0]}), database="cdm")
    db.con.insert("observation_period", pd.DataFrame({
        "observation_period_id": [3], "person_id": [3],
        "observation_period_start_date": [date(2000, 1, 1)],
        "observation_period_end_date": [date(2004, 1, 10)], "period_type_concept_id": [0]}),
        database="cdm")
    db.con.insert("cohort", pd.DataFrame({
        "cohort_definition_id": [100], "subject_id": [3], "cohort_start_date": [date(2004, 1, 1)],
        "cohort_end_date": [date(2004, 1, 1)]}), database=db.results_schema)

    def overall(min_days: int):
        summary = incidence_rates(db, dataclasses.replace(design, min_days_at_risk=min_days),
                                  min_cell_count=1).summary
        row = summary[summary.gender_id.isna()].iloc[0]
        return int(row.persons_at_risk), int(row.person_days)

    assert overall(1) == (3, 247 + 10)
    assert overall(10) == (3, 247 + 10)
    assert overall(11) == (2, 247)
