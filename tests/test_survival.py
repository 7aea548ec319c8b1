"""Kaplan–Meier survival and the log-rank test: against lifelines, published values, hand-built
censoring cases, GiBleed, and Spark."""

from __future__ import annotations

import datetime as dt

import ibis
import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test

from pharmalab.characterize.survival import (
    aggregate_events,
    event_table,
    kaplan_meier,
    log_rank,
    median_survival,
    survival,
    survival_at,
    survival_figure,
    time_to_event,
)
from pharmalab.characterize.time_at_risk import TimeAtRisk
from pharmalab.engine import database
from pharmalab.errors import PharmalabInputError

# Freireich et al. (1963) remission times in weeks, as in Kleinbaum & Klein, "Survival
# Analysis", ch. 2, and Cox (1972). (time, event): event 0 is censored.
SIX_MP = [(6, 1), (6, 1), (6, 1), (6, 0), (7, 1), (9, 0), (10, 1), (10, 0), (11, 0), (13, 1),
          (16, 1), (17, 0), (19, 0), (20, 0), (22, 1), (23, 1), (25, 0), (32, 0), (32, 0),
          (34, 0), (35, 0)]
PLACEBO = [(t, 1) for t in (1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22,
                            23)]

GI_HEMORRHAGE = 192671
FRACTURE_OF_FOREARM = 4278672  # a negative-control outcome cohort (negativeControlOutcomes.csv)


def aggregate(rows) -> pd.DataFrame:
    """Per-person (time, event) pairs → the event_table shape, in pandas (tests only)."""
    frame = pd.DataFrame(rows, columns=["time", "event"])
    grouped = frame.groupby("time").event.agg(n_events="sum", n=("size"))
    return pd.DataFrame({"time": grouped.index.astype("int64"),
                         "n_events": grouped.n_events.astype("int64"),
                         "n_censored": (grouped.n - grouped.n_events).astype("int64")}
                        ).reset_index(drop=True)


def lifelines_fit(times, events) -> KaplanMeierFitter:
    return KaplanMeierFitter().fit(np.asarray(times), np.asarray(events))


def assert_equals_lifelines(table: pd.DataFrame, kmf: KaplanMeierFitter, tol: float) -> None:
    assert table.time.tolist() == kmf.timeline.tolist()
    assert table.n_at_risk.tolist() == kmf.event_table.at_risk.tolist()
    assert table.n_events.tolist() == kmf.event_table.observed.tolist()
    assert table.n_censored.tolist() == kmf.event_table.censored.tolist()
    np.testing.assert_allclose(table.survival, kmf.survival_function_.iloc[:, 0], atol=tol)
    np.testing.assert_allclose(table.lower_95, kmf.confidence_interval_.iloc[:, 0], atol=tol)
    np.testing.assert_allclose(table.upper_95, kmf.confidence_interval_.iloc[:, 1], atol=tol)


# --- the product-limit estimator on the aggregate ------------------------------------------


def test_six_mp_equals_lifelines_and_the_published_estimates():
    table = kaplan_meier(aggregate(SIX_MP))
    times, events = zip(*SIX_MP, strict=True)
    kmf = lifelines_fit(times, events)
    assert_equals_lifelines(table, kmf, tol=1e-12)

    # Kleinbaum & Klein table 2.x / Freireich: S(t) at the event times, and the median 23.
    published = {6: 0.857, 7: 0.807, 10: 0.753, 13: 0.690, 16: 0.627, 22: 0.538, 23: 0.448}
    for t, value in published.items():
        assert survival_at(table, t) == pytest.approx(value, abs=5e-4), t
    assert survival_at(table, 8) == survival_at(table, 7)  # a step function between events
    assert survival_at(table, -1) == 1.0 and survival_at(table, 0) == 1.0
    assert survival_at(table, 100) == survival_at(table, 35)
    assert median_survival(table) == 23 == kmf.median_survival_time_
    # Everyone is at risk at time 0 (lifelines' timeline starts there), S(0) = 1, CI [1, 1].
    first = table.iloc[0]
    assert (first.time, first.n_at_risk, first.survival) == (0, 21, 1.0)
    assert (first.lower_95, first.upper_95) == (1.0, 1.0)
    assert table.dtypes.to_dict() == {
        "time": "int64", "n_at_risk": "int64", "n_events": "int64", "n_censored": "int64",
        "survival": "float64", "lower_95": "float64", "upper_95": "float64"}


def test_curve_that_reaches_zero_and_events_at_time_zero_equal_lifelines():
    # Placebo group: every patient relapses, so S reaches 0 at the last time.
    table = kaplan_meier(aggregate(PLACEBO))
    kmf = lifelines_fit(*zip(*PLACEBO, strict=True))
    assert_equals_lifelines(table, kmf, tol=1e-12)
    assert table.survival.iloc[-1] == 0.0
    assert (table.lower_95.iloc[-1], table.upper_95.iloc[-1]) == (0.0, 0.0)
    assert median_survival(table) == 8 == kmf.median_survival_time_

    # Outcomes on the start day (time 0) are counted at time 0 (no extra row).
    rows = [(0, 1), (0, 0), (1, 1), (3, 0), (4, 1)]
    table = kaplan_meier(aggregate(rows))
    assert_equals_lifelines(table, lifelines_fit(*zip(*rows, strict=True)), tol=1e-12)
    assert table.time.tolist() == [0, 1, 3, 4]
    assert table.survival.iloc[0] == pytest.approx(0.8)


def test_median_not_reached_is_none():
    table = kaplan_meier(pd.DataFrame({"time": [3, 9], "n_events": [1, 0],
                                       "n_censored": [0, 4]}))
    assert median_survival(table) is None
    assert survival_at(table, 5) == pytest.approx(0.8)


def test_kaplan_meier_rejects_bad_input():
    with pytest.raises(PharmalabInputError, match="'n_censored' is missing"):
        kaplan_meier(pd.DataFrame({"time": [1], "n_events": [1]}))
    with pytest.raises(PharmalabInputError, match="times must be ≥ 0"):
        kaplan_meier(pd.DataFrame({"time": [-1], "n_events": [1], "n_censored": [0]}))
    with pytest.raises(PharmalabInputError, match="n_events must be ≥ 0"):
        kaplan_meier(pd.DataFrame({"time": [1], "n_events": [-1], "n_censored": [0]}))
    with pytest.raises(PharmalabInputError, match="no entries"):
        kaplan_meier(pd.DataFrame({"time": [], "n_events": [], "n_censored": []}))
    with pytest.raises(PharmalabInputError, match="n_total is 30 but the event table counts 21"):
        kaplan_meier(aggregate(SIX_MP), n_total=30)
    assert kaplan_meier(aggregate(SIX_MP), n_total=21).n_at_risk.iloc[0] == 21


def test_log_rank_equals_lifelines_and_the_published_six_mp_test():
    result = log_rank(aggregate(SIX_MP), aggregate(PLACEBO))
    six_mp, placebo = (list(zip(*group, strict=True)) for group in (SIX_MP, PLACEBO))
    expected = logrank_test(six_mp[0], placebo[0], six_mp[1], placebo[1])
    assert result.chi2 == pytest.approx(expected.test_statistic, abs=1e-10)
    assert result.p_value == pytest.approx(expected.p_value, abs=1e-12)
    assert result.df == 1
    # The textbook value (Kleinbaum & Klein, ch. 2): log-rank χ² = 16.79, p < 0.0001.
    assert result.chi2 == pytest.approx(16.79, abs=0.005)
    assert result.p_value < 1e-4
    # symmetric in the groups
    assert log_rank(aggregate(PLACEBO), aggregate(SIX_MP)).chi2 == pytest.approx(result.chi2)


# --- censoring, on a hand-built CDM ----------------------------------------------------------


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def hand_built_db(with_death: bool = True):
    """A tiny CDM in an in-memory DuckDB: target cohort 1, outcome cohort 100.

    Everyone enters on 2020-01-01 (a leap year: Jan 31 + Feb 29 = 60 days to 2020-03-01).
    """
    db = database("duckdb://")
    people = range(1, 11)
    db.con.create_table("person", pd.DataFrame({
        "person_id": list(people), "gender_concept_id": 8507, "year_of_birth": 1950}))
    op_end = {3: "2020-03-31"}  # person 3's observation ends before the cohort entry does
    db.con.create_table("observation_period", ibis.memtable(pd.DataFrame({
        "observation_period_id": list(people), "person_id": list(people),
        "observation_period_start_date": [day("2019-01-01")] * 10,
        "observation_period_end_date": [day(op_end.get(p, "2022-12-31")) for p in people],
    })))
    entries = [  # subject, start, end
        (1, "2020-01-01", "2020-12-31"),  # outcome before start (ignored), then on day 60
        (2, "2020-01-01", "2020-06-30"),  # outcome after the window: censored at its end, 181
        (3, "2020-01-01", "2021-06-30"),  # observation ends 2020-03-31: censored at 90
        (4, "2020-01-01", "2020-12-31"),  # dies 2020-02-15 (day 45), outcome later: censored
        (5, "2020-01-01", "2020-12-31"),  # dies on the start day: time 0, censored
        (6, "2020-01-01", "2020-12-31"),  # outcome on the start day: time 0, event
        (7, "2020-01-01", "2020-12-31"),  # died before the entry: never at risk
        (8, "2020-01-01", "2020-01-31"),  # outcome on the window's last day: event at 30
        (9, "2020-01-01", "2020-01-31"),  # second entry below; outcome within the second only
        (9, "2021-01-01", "2021-03-31"),
        (10, "2020-01-01", "2020-12-31"),  # dies on the outcome day: the outcome counts
    ]
    outcomes = [(1, "2019-06-01"), (1, "2020-03-01"), (1, "2020-04-01"), (2, "2020-08-01"),
                (3, "2020-05-01"), (4, "2020-04-01"), (6, "2020-01-01"), (8, "2020-01-31"),
                (9, "2021-02-01"), (10, "2020-07-01")]
    cohort = pd.DataFrame(
        [(1, s, day(a), day(b)) for s, a, b in entries]
        + [(100, s, day(d), day(d)) for s, d in outcomes],
        columns=["cohort_definition_id", "subject_id", "cohort_start_date", "cohort_end_date"])
    db.con.create_table("cohort", ibis.memtable(cohort))
    if with_death:
        db.con.create_table("death", ibis.memtable(pd.DataFrame({
            "person_id": [4, 5, 7, 10],
            "death_date": [day("2020-02-15"), day("2020-01-01"), day("2019-12-01"),
                           day("2020-07-01")],
            "death_type_concept_id": 32817})))
    return db


def rows_of(table) -> dict:
    frame = table.to_pandas().sort_values(["subject_id", "cohort_start_date"])
    return {(int(r.subject_id), str(r.cohort_start_date)[:10]): (int(r.time), int(r.event))
            for r in frame.itertuples()}


def test_censoring_rules_on_a_hand_built_cdm():
    db = hand_built_db()
    rows = rows_of(time_to_event(db, 1, 100))
    assert rows == {
        (1, "2020-01-01"): (60, 1),
        (2, "2020-01-01"): (181, 0),
        (3, "2020-01-01"): (90, 0),
        (4, "2020-01-01"): (45, 0),
        (5, "2020-01-01"): (0, 0),
        (6, "2020-01-01"): (0, 1),
        (8, "2020-01-01"): (30, 1),
        (9, "2020-01-01"): (30, 0),
        (10, "2020-01-01"): (182, 1),
    }
    schema = time_to_event(db, 1, 100).schema()
    assert (str(schema["subject_id"]), str(schema["time"]), str(schema["event"])) == (
        "int64", "int64", "int8")

    # every entry: person 9's second entry has its outcome 31 days in
    every = rows_of(time_to_event(db, 1, 100, first_entry_only=False))
    assert every[(9, "2021-01-01")] == (31, 1)
    assert len(every) == len(rows) + 1

    # the aggregate counts those rows per day
    events = event_table(db, 1, 100)
    assert events.to_dict("list") == {
        "time": [0, 30, 45, 60, 90, 181, 182],
        "n_events": [1, 1, 0, 1, 0, 0, 1],
        "n_censored": [1, 1, 1, 0, 1, 1, 0],
    }
    assert events.dtypes.tolist() == [np.dtype("int64")] * 3


def test_outcome_rows_as_an_ibis_table_and_windows_with_offsets():
    db = hand_built_db()
    cohort = db.table("cohort")
    outcome = cohort.filter(cohort.cohort_definition_id == 100).select(
        "subject_id", "cohort_start_date")
    assert rows_of(time_to_event(db, 1, outcome)) == rows_of(time_to_event(db, 1, 100))
    # an in-memory table of outcome days works too
    memtable = ibis.memtable({"subject_id": [2], "cohort_start_date": [day("2020-01-11")]})
    assert rows_of(time_to_event(db, 1, memtable))[(2, "2020-01-01")] == (10, 1)

    # start+30 → start+60: person 1's outcome on day 60 is on the window's last day (30 in)
    window = TimeAtRisk.parse("start+30:start+60")
    rows = rows_of(time_to_event(db, 1, 100, window))
    assert rows[(1, "2020-01-01")] == (30, 1)
    assert rows[(2, "2020-01-01")] == (30, 0)
    # person 4 died on day 45: censored 15 days into the window; person 5 is gone
    assert rows[(4, "2020-01-01")] == (15, 0)
    assert (5, "2020-01-01") not in rows


def test_without_a_death_table_nobody_is_censored_by_death():
    db = hand_built_db(with_death=False)
    rows = rows_of(time_to_event(db, 1, 100))
    assert rows[(4, "2020-01-01")] == (91, 1)  # the outcome on 2020-04-01 now counts
    assert rows[(5, "2020-01-01")] == (365, 0)
    assert rows[(7, "2020-01-01")] == (365, 0)


def test_bad_arguments_are_clear_errors():
    db = hand_built_db()
    with pytest.raises(PharmalabInputError, match="no column 'cohort_start_date'"):
        time_to_event(db, 1, ibis.memtable({"subject_id": [1], "day": [day("2020-01-01")]}))
    with pytest.raises(PharmalabInputError, match="outcome must be a cohort id"):
        time_to_event(db, 1, "100")
    with pytest.raises(PharmalabInputError, match="target_cohort_id must be a cohort id"):
        time_to_event(db, True, 100)
    with pytest.raises(PharmalabInputError, match="one or two distinct cohort ids"):
        survival(db, [1, 1], 100)
    with pytest.raises(PharmalabInputError, match="one or two distinct cohort ids"):
        survival(db, [1, 2, 3], 100)
    with pytest.raises(PharmalabInputError, match="target cohort 42: no entry with time at risk"):
        survival(db, [42], 100)


# --- GiBleed ----------------------------------------------------------------------------------


def gi_bleeds(db):
    """GI hemorrhage condition records as outcome rows (GiBleed's outcome of interest)."""
    condition = db.table("condition_occurrence")
    rows = condition.filter(condition.condition_concept_id == GI_HEMORRHAGE)
    return rows.select(subject_id=rows.person_id, cohort_start_date=rows.condition_start_date)


def test_gibleed_celecoxib_km_equals_lifelines_on_the_person_rows(gibleed_cohorts):
    db = gibleed_cohorts
    events = event_table(db, 1, gi_bleeds(db))
    table = kaplan_meier(events)
    persons = time_to_event(db, 1, gi_bleeds(db)).to_pandas()  # per person: in the test only
    kmf = lifelines_fit(persons.time, persons.event)

    assert_equals_lifelines(table, kmf, tol=1e-9)
    # GiBleed simulates its bleeds 5–89 days after the exposure starts: look inside that too
    for t in (30, 60, 365):
        assert survival_at(table, t) == pytest.approx(
            kmf.survival_function_at_times(t).iloc[0], abs=1e-9), t
    assert 0.75 < survival_at(table, 365) < 0.85
    cohort = db.table("cohort", "results")
    n_persons = cohort.filter(cohort.cohort_definition_id == 1).subject_id.nunique().execute()
    assert table.n_at_risk.iloc[0] == n_persons == len(persons) == 1800
    assert int(events.n_events.sum()) == int(persons.event.sum()) > 100


def test_gibleed_log_rank_cohort_1_vs_4_equals_lifelines(gibleed_cohorts):
    db = gibleed_cohorts
    result = survival(db, [1, 4], FRACTURE_OF_FOREARM)
    a = time_to_event(db, 1, FRACTURE_OF_FOREARM).to_pandas()
    b = time_to_event(db, 4, FRACTURE_OF_FOREARM).to_pandas()
    expected = logrank_test(a.time, b.time, a.event, b.event)
    assert result.log_rank.chi2 == pytest.approx(expected.test_statistic, abs=1e-8)
    assert result.log_rank.p_value == pytest.approx(expected.p_value, abs=1e-8)
    assert result.log_rank.chi2 > 1  # the two cohorts are followed for different lengths
    assert result.cohort_ids == [1, 4]

    # per cohort: the unsuppressed curve is lifelines' on that cohort's rows, medians too
    for cohort_id, rows in ((1, a), (4, b)):
        curve = result.unsuppressed_table.query(f"cohort_definition_id == {cohort_id}")
        kmf = lifelines_fit(rows.time, rows.event)
        assert_equals_lifelines(curve.reset_index(drop=True), kmf, tol=1e-9)
        median = kmf.median_survival_time_
        assert result.medians[cohort_id] == (None if np.isinf(median) else median)


def test_small_counts_are_suppressed_with_a_flag(gibleed_cohorts):
    # Cohort 3 (celecoxib, male, ≥ 40; 266 persons): its tail has fewer than 5 at risk.
    result = survival(gibleed_cohorts, [3], gi_bleeds(gibleed_cohorts), min_cell_count=5)
    raw, shown = result.unsuppressed_table, result.table
    assert raw.n_at_risk.iloc[0] == 266 and shown.n_at_risk.iloc[0] == 266
    for column in ("n_at_risk", "n_events", "n_censored"):
        small = raw[column].between(1, 4)
        assert small.any(), column
        assert shown[column][small].isna().all(), column
        assert shown[f"{column}_suppressed"].tolist() == small.tolist(), column
        assert shown[column][~small].astype("int64").tolist() == raw[column][~small].tolist()
    # the curve itself is kept
    assert shown.survival.tolist() == raw.survival.tolist()
    assert "n_at_risk_suppressed" in repr(shown.columns) and "unsuppressed" not in repr(result)

    # min_cell_count=1 shows every count
    plain = survival(gibleed_cohorts, [3], gi_bleeds(gibleed_cohorts), min_cell_count=1)
    assert not plain.table.n_at_risk_suppressed.any()


def test_survival_figure_has_a_step_line_and_a_band_per_cohort(gibleed_cohorts):
    result = survival(gibleed_cohorts, [1, 4], gi_bleeds(gibleed_cohorts))
    figure = survival_figure(result)
    lines = [trace for trace in figure.data if trace.showlegend is not False]
    assert [trace.name for trace in lines] == ["cohort 1", "cohort 4"]
    assert all(trace.line.shape == "hv" for trace in figure.data)
    bands = [trace for trace in figure.data if trace.fill == "tonexty"]
    assert len(bands) == 2
    first = result.table.query("cohort_definition_id == 1")
    assert list(lines[0].y) == first.survival.tolist()
    assert list(bands[0].y) == first.lower_95.tolist()


# --- Spark ------------------------------------------------------------------------------------


def test_every_engine_gives_duckdbs_event_table(other_engine, gibleed_cohorts):
    db = other_engine.db
    for outcome in (FRACTURE_OF_FOREARM, "gi bleeds"):
        got = event_table(db, 1, gi_bleeds(db) if outcome == "gi bleeds" else outcome)
        on_duckdb = event_table(
            gibleed_cohorts, 1, gi_bleeds(gibleed_cohorts) if outcome == "gi bleeds" else outcome)
        assert len(on_duckdb) > 100
        pd.testing.assert_frame_equal(got, on_duckdb)


# --- delayed entry (left truncation) and minimum days at risk (issue 15, item 8) ------------


def test_delayed_entry_counts_a_subject_only_after_it_enters():
    # (entry, exit, event): A (0, 2, yes), B (0, 4, no), C (3, 5, yes), D (1, 3, yes).
    # At risk at t: entry < t ≤ exit (R's Surv(start, stop]); ignoring entry gives 0.75, 0.5.
    rows = ibis.memtable(pd.DataFrame({"entry": [0, 0, 3, 1], "time": [2, 4, 5, 3],
                                       "event": [1, 0, 1, 1]}))
    events = aggregate_events(rows)
    assert events.to_dict("list") == {"time": [0, 1, 2, 3, 4, 5], "n_events": [0, 0, 1, 1, 0, 1],
                                      "n_censored": [0, 0, 0, 0, 1, 0],
                                      "n_entered": [2, 1, 0, 1, 0, 0]}
    table = kaplan_meier(events)
    assert survival_at(table, 2) == pytest.approx(2 / 3)
    assert survival_at(table, 3) == pytest.approx(1 / 3)
    assert survival_at(table, 5) == 0.0
    assert table.set_index("time").n_at_risk.to_dict() == {0: 0, 1: 2, 2: 3, 3: 2, 4: 2, 5: 1}
    assert survival_at(kaplan_meier(events.drop(columns="n_entered")), 3) == pytest.approx(0.5)


def test_delayed_entry_equals_lifelines_entry_on_random_subjects():
    rng = np.random.default_rng(15)
    n = 300
    entry = rng.integers(0, 40, n)
    exit_ = entry + 1 + rng.integers(0, 60, n)
    event = rng.integers(0, 2, n)
    rows = ibis.memtable(pd.DataFrame({"entry": entry, "time": exit_, "event": event}))
    table = kaplan_meier(aggregate_events(rows))
    kmf = KaplanMeierFitter().fit(exit_, event, entry=entry)
    for t in (5, 20, 41, 60, 99):
        assert survival_at(table, t) == pytest.approx(
            kmf.survival_function_at_times(t).iloc[0], abs=1e-12), t


def test_delayed_entry_rejects_an_exit_before_entry_and_log_rank_refuses_it():
    bad = pd.DataFrame({"time": [0, 2], "n_events": [1, 0], "n_censored": [0, 1],
                        "n_entered": [0, 2]})
    with pytest.raises(PharmalabInputError, match="entry < exit"):
        kaplan_meier(bad)
    good = pd.DataFrame({"time": [0, 2], "n_events": [0, 1], "n_censored": [0, 0],
                         "n_entered": [1, 0]})
    with pytest.raises(PharmalabInputError, match="delayed entry"):
        log_rank(good, good)


def test_min_days_at_risk_leaves_out_short_windows_as_cohortmethod():
    db = hand_built_db()
    # windows (cut at observation end, both ends included): persons 8 and 9 have 31 days,
    # person 3 has 91, everyone else 366 (2020 is a leap year); person 7 died before entry.
    every = rows_of(time_to_event(db, 1, 100))
    kept = rows_of(time_to_event(db, 1, 100, min_days_at_risk=31))
    assert kept == every
    kept = rows_of(time_to_event(db, 1, 100, min_days_at_risk=32))
    assert set(every) - set(kept) == {(8, "2020-01-01"), (9, "2020-01-01")}
    kept = rows_of(time_to_event(db, 1, 100, min_days_at_risk=92))
    assert set(every) - set(kept) == {(3, "2020-01-01"), (8, "2020-01-01"), (9, "2020-01-01")}
    result = survival(db, [1], 100, min_days_at_risk=92)
    assert result.unsuppressed_table.n_at_risk.iloc[0] == 6
    with pytest.raises(PharmalabInputError, match="min_days_at_risk"):
        time_to_event(db, 1, 100, min_days_at_risk=0)
