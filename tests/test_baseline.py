"""Baseline characteristics and Table 1 on GiBleed's CohortGenerator cohorts, checked against
hand-written SQL on the same DuckDB file, and on Spark against DuckDB."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from pharmalab.characterize.baseline import (
    DEFAULT_WINDOWS,
    Window,
    baseline_characteristics,
    table_one,
    table_one_summary,
)
from pharmalab.errors import PharmalabInputError

CELECOXIB = 1118084
SINUSITIS = 4283893  # ancestor of ACUTE_BACTERIAL_SINUSITIS (and of chronic, viral sinusitis)
ACUTE_BACTERIAL_SINUSITIS = 4294548


def _scalar(db, sql: str):
    return db.con.raw_sql(sql).fetchone()[0]


def _cohort(db) -> str:
    return f"{db.results_schema}.cohort"


@pytest.fixture(scope="module")
def celecoxib(gibleed_cohorts) -> pd.DataFrame:
    """Cohort 1 with every count shown (checked against SQL)."""
    return baseline_characteristics(gibleed_cohorts, 1, min_cell_count=1)


def _row(frame: pd.DataFrame, covariate_id: int) -> pd.Series:
    rows = frame[frame["covariate_id"] == covariate_id]
    assert len(rows) == 1, covariate_id
    return rows.iloc[0]


def test_output_columns_and_types(celecoxib):
    assert list(celecoxib.columns) == [
        "cohort_definition_id", "covariate_id", "covariate_name", "analysis_id",
        "analysis_name", "concept_id", "window", "count", "count_suppressed", "proportion",
        "mean", "sd", "n", "n_suppressed"]
    dtypes = celecoxib.dtypes.astype(str).to_dict()
    for column in ("cohort_definition_id", "covariate_id", "analysis_id", "concept_id"):
        assert dtypes[column] == "int64", column
    assert dtypes["count"] == dtypes["n"] == "Int64"
    assert dtypes["proportion"] == dtypes["mean"] == dtypes["sd"] == "float64"
    assert not celecoxib["covariate_id"].duplicated().any()
    assert (celecoxib["covariate_id"]
            == celecoxib["covariate_id"] // 1000 * 1000 + celecoxib["analysis_id"]).all()
    assert set(celecoxib["analysis_id"]) == {
        1, 2, 3, 4, 5, 6, 8, 209, 210, 211, 212, 409, 410, 411, 412, 920, 921, 922}
    windows = celecoxib.groupby("analysis_id")["window"].first()
    assert windows[1] == "" and windows[209] == "any time prior"
    assert (windows[210], windows[411], windows[922]) == ("-365..0", "-180..0", "-30..0")
    assert _row(celecoxib, 8003)["covariate_name"] == "age group: 40 - 44"


def test_celecoxib_demographics_equal_hand_sql(gibleed_cohorts, celecoxib):
    db = gibleed_cohorts
    entries = f"{_cohort(db)} c join person p on p.person_id = c.subject_id " \
              "where c.cohort_definition_id = 1"
    age = "year(c.cohort_start_date) - p.year_of_birth"
    assert (celecoxib["n"] == 1800).all()
    assert _scalar(db, f"select count(*) from {entries}") == 1800
    row = _row(celecoxib, 1002)  # DemographicsAge
    assert row["covariate_name"] == "age in years" and row["count"] == 1800
    assert row["mean"] == pytest.approx(_scalar(db, f"select avg({age}) from {entries}"),
                                        abs=1e-12)
    assert row["sd"] == pytest.approx(_scalar(db, f"select stddev_samp({age}) from {entries}"),
                                      abs=1e-12)
    for gender, name in ((8507, "gender = MALE"), (8532, "gender = FEMALE")):
        count = _scalar(db, f"select count(*) from {entries} and p.gender_concept_id = {gender}")
        row = _row(celecoxib, gender * 1000 + 1)
        assert (row["covariate_name"], row["count"]) == (name, count)
        assert row["proportion"] == count / 1800
    assert _row(celecoxib, 8507001)["count"] + _row(celecoxib, 8532001)["count"] == 1800
    prior_days = _scalar(db, f"""
        select avg(c.cohort_start_date - op.observation_period_start_date)
        from {_cohort(db)} c join observation_period op on op.person_id = c.subject_id
         and c.cohort_start_date between op.observation_period_start_date
                                     and op.observation_period_end_date
        where c.cohort_definition_id = 1""")
    assert _row(celecoxib, 1008)["mean"] == pytest.approx(prior_days, abs=1e-9)
    # age groups partition the cohort
    assert celecoxib.loc[celecoxib["analysis_id"] == 3, "count"].sum() == 1800


def _condition_group_sql(db, ancestor: int, table: str, start_day: int) -> int:
    """Entries of cohort 1 with an event rolled up to ``ancestor`` in start_day..0."""
    if table == "condition_era":
        starts, ends = "e.condition_era_start_date", "e.condition_era_end_date"
    else:
        starts = ends = "e.condition_start_date"
    return _scalar(db, f"""
        select count(*) from (
          select distinct c.subject_id, c.cohort_start_date
          from {_cohort(db)} c
          join {table} e on e.person_id = c.subject_id
          join concept_ancestor ca on ca.descendant_concept_id = e.condition_concept_id
          where c.cohort_definition_id = 1 and ca.ancestor_concept_id = {ancestor}
            and {starts} <= c.cohort_start_date
            and {ends} >= c.cohort_start_date + interval ({start_day}) day)""")


def test_condition_group_counts_equal_hand_sql(gibleed_cohorts, celecoxib):
    db = gibleed_cohorts
    ancestor = _row(celecoxib, SINUSITIS * 1000 + 210)  # ConditionGroupEraLongTerm
    descendant = _row(celecoxib, ACUTE_BACTERIAL_SINUSITIS * 1000 + 210)
    assert ancestor["window"] == "-365..0"
    assert ancestor["covariate_name"].endswith("relative to index: Sinusitis")
    assert ancestor["count"] == _condition_group_sql(db, SINUSITIS, "condition_era", -365) == 219
    assert descendant["count"] == _condition_group_sql(
        db, ACUTE_BACTERIAL_SINUSITIS, "condition_era", -365)
    assert ancestor["count"] > descendant["count"] > 0
    # narrower windows never count more
    counts = [_row(celecoxib, SINUSITIS * 1000 + a)["count"] for a in (209, 210, 211, 212)]
    assert counts == sorted(counts, reverse=True)


def test_condition_occurrence_counts_start_in_window(gibleed_cohorts):
    db = gibleed_cohorts
    frame = baseline_characteristics(db, 1, condition_table="condition_occurrence",
                                     min_cell_count=1)
    row = _row(frame, SINUSITIS * 1000 + 110)
    assert row["analysis_name"] == "ConditionGroupOccurrenceLongTerm"
    assert row["count"] == _condition_group_sql(db, SINUSITIS, "condition_occurrence", -365)
    assert not frame["analysis_id"].between(209, 212).any()


def test_celecoxib_drug_group_any_time_prior_equals_hand_sql(gibleed_cohorts, celecoxib):
    db = gibleed_cohorts
    row = _row(celecoxib, CELECOXIB * 1000 + 409)  # DrugGroupEraAnyTimePrior
    expected = _scalar(db, f"""
        select count(*) from (
          select distinct c.subject_id, c.cohort_start_date
          from {_cohort(db)} c join drug_era d on d.person_id = c.subject_id
          join concept_ancestor ca on ca.descendant_concept_id = d.drug_concept_id
          where c.cohort_definition_id = 1 and ca.ancestor_concept_id = {CELECOXIB}
            and d.drug_era_start_date <= c.cohort_start_date)""")
    assert row["count"] == expected == 1800  # new users of celecoxib: indexed on the era
    assert row["covariate_name"].endswith(": celecoxib")
    assert row["proportion"] == 1.0


def test_visit_counts_equal_hand_sql(gibleed_cohorts, celecoxib):
    db = gibleed_cohorts
    per_entry = f"""
        select c.subject_id, c.cohort_start_date, count(v.visit_occurrence_id) as visits
        from {_cohort(db)} c left join visit_occurrence v on v.person_id = c.subject_id
         and v.visit_start_date <= c.cohort_start_date
         and v.visit_end_date >= c.cohort_start_date - interval 365 day
         and v.visit_concept_id != 0
        where c.cohort_definition_id = 1 group by all"""
    mean, sd, with_visit = db.con.raw_sql(
        f"select avg(visits), stddev_samp(visits), count_if(visits > 0) from ({per_entry})"
    ).fetchone()
    row = _row(celecoxib, 1920)  # VisitCountLongTerm
    assert row["count"] == with_visit
    assert row["mean"] == pytest.approx(mean, abs=1e-12)
    assert row["sd"] == pytest.approx(sd, abs=1e-12)


def test_table_one_smd_of_age_and_gender(gibleed_cohorts):
    table = table_one(gibleed_cohorts, 2, 1)
    age = _row(table, 1002)
    assert (age["target_count"], age["comparator_count"]) == (569, 1800)
    m1, s1, m2, s2 = age[["target_mean", "target_sd", "comparator_mean", "comparator_sd"]]
    assert m1 > m2  # cohort 2 is the 40-and-over part of cohort 1
    assert age["smd"] == pytest.approx((m1 - m2) / math.sqrt((s1**2 + s2**2) / 2), rel=1e-12)
    female = _row(table, 8532001)
    p1, p2 = female["target_proportion"], female["comparator_proportion"]
    assert p1 == female["target_count"] / 569 and p2 == female["comparator_count"] / 1800
    assert female["smd"] == pytest.approx(
        (p1 - p2) / math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2), rel=1e-12)
    # target has nobody under 40: those age groups are 0 there, and absent from its own table
    young = table[(table["analysis_id"] == 3) & (table["covariate_id"] < 8003)]
    assert len(young) > 0
    assert (young["target_count"] == 0).all() and (young["target_proportion"] == 0).all()
    own = baseline_characteristics(gibleed_cohorts, 2)
    assert own.loc[own["analysis_id"] == 3, "covariate_id"].min() == 8003
    assert (table["target_n"] == 569).all() and (table["comparator_n"] == 1800).all()


def test_table_one_summary_keeps_the_classic_rows(gibleed_cohorts):
    table = table_one(gibleed_cohorts, 2, 1)
    summary = table_one_summary(table, top_n=3)
    analyses = summary["analysis_id"].tolist()
    assert analyses[0] == 2  # age first
    assert analyses.count(210) == 3 and analyses.count(410) == 3
    demographics = [a for a in dict.fromkeys(analyses) if a < 10]
    assert demographics == [2, 3, 1, 4, 5, 8]  # index years only in the full table
    conditions = summary[summary["analysis_id"] == 210]
    top = conditions[["target_proportion", "comparator_proportion"]].max(axis=1).tolist()
    assert top == sorted(top, reverse=True)
    everything = table[table["analysis_id"] == 210]
    best = everything[["target_proportion", "comparator_proportion"]].max(axis=1).max()
    assert top[0] == best


def test_small_counts_are_suppressed(gibleed_cohorts):
    shown = baseline_characteristics(gibleed_cohorts, 3, min_cell_count=1)
    assert (shown["n"] == 266).all() and not shown["count_suppressed"].any()
    small = shown[shown["count"].between(1, 4)]
    assert len(small) > 0
    hidden = baseline_characteristics(gibleed_cohorts, 3).set_index("covariate_id")
    rows = hidden.loc[small["covariate_id"]]
    assert rows["count"].isna().all() and rows["count_suppressed"].all()
    assert rows["proportion"].isna().all() and rows["mean"].isna().all()
    others = hidden.drop(index=small["covariate_id"])
    assert not others["count_suppressed"].any() and others["count"].notna().all()
    # Table 1: the suppressed side's count and proportion, and the SMD, are blank
    table = table_one(gibleed_cohorts, 3, 1).set_index("covariate_id")
    rows = table.loc[small["covariate_id"]]
    assert rows["target_count"].isna().all() and rows["target_count_suppressed"].all()
    assert rows["target_proportion"].isna().all() and rows["smd"].isna().all()
    shown_table = table_one(gibleed_cohorts, 3, 1, min_cell_count=1).set_index("covariate_id")
    assert shown_table.loc[small["covariate_id"], "smd"].notna().any()


def test_unknown_cohort_raises_naming_it(gibleed_cohorts):
    with pytest.raises(PharmalabInputError, match=r"cohort 999 has no rows.*present: 1, 2"):
        baseline_characteristics(gibleed_cohorts, 999)
    with pytest.raises(PharmalabInputError, match="cohort 777"):
        table_one(gibleed_cohorts, 1, 777)
    with pytest.raises(PharmalabInputError, match="cohort id '1'"):
        baseline_characteristics(gibleed_cohorts, "1")


def test_bad_options_raise(gibleed_cohorts):
    with pytest.raises(PharmalabInputError, match="condition_table 'drug_era'"):
        baseline_characteristics(gibleed_cohorts, 1, condition_table="drug_era")
    with pytest.raises(PharmalabInputError, match="'long term' is given twice"):
        baseline_characteristics(gibleed_cohorts, 1,
                                 windows=[*DEFAULT_WINDOWS, Window("long term", -730, 0)])
    with pytest.raises(PharmalabInputError, match="start_day -30 is after end_day -40"):
        Window("short term", -30, -40)
    with pytest.raises(PharmalabInputError, match="min_cell_count"):
        baseline_characteristics(gibleed_cohorts, 1, min_cell_count=0)


def test_every_engine_equals_duckdb(other_engine, celecoxib):
    got = baseline_characteristics(other_engine.db, 1, min_cell_count=1)
    key = ["cohort_definition_id", "covariate_id"]
    got = got.sort_values(key, ignore_index=True)
    on_duckdb = celecoxib.sort_values(key, ignore_index=True)
    exact = [c for c in on_duckdb.columns if c not in ("proportion", "mean", "sd")]
    pd.testing.assert_frame_equal(got[exact], on_duckdb[exact])
    for column in ("proportion", "mean", "sd"):
        pd.testing.assert_series_equal(got[column], on_duckdb[column],
                                       check_exact=False, rtol=0, atol=1e-9)


def test_demographics_are_named_without_the_concepts_and_smd_is_never_inf_or_minus_zero(
        gibleed_cohorts, celecoxib):
    """Issue 15 item 11: GiBleed's vocabulary lacks the race concepts ("Unknown concept
    (8515)"), and SMDs showed as inf, -inf, -0."""
    import pandas as pd

    from pharmalab.characterize.baseline import _smd_note, _standardized_difference
    from pharmalab.characterize.outputs import table_one_display

    names = set(celecoxib.loc[celecoxib["analysis_id"] == 4, "covariate_name"])
    assert names and not any("Unknown concept" in n for n in names)
    assert names <= {"race = White", "race = Black or African American", "race = Asian",
                     "race = No matching concept",
                     "race = Native Hawaiian or Other Pacific Islander",
                     "race = American Indian or Alaska Native"}
    # 100% against 0%: no spread on either side → blank with a note; 30% against 0%: finite
    # (FeatureExtraction's formula with the absent side at 0); equal tiny values: 0, not -0
    table = pd.DataFrame({
        "is_binary": [True, True, False],
        "target_proportion": [1.0, 0.3, float("nan")],
        "comparator_proportion": [0.0, 0.0, float("nan")],
        "target_mean": [float("nan")] * 2 + [5.0], "comparator_mean": [float("nan")] * 2 + [5.0],
        "target_sd": [float("nan")] * 2 + [1.0], "comparator_sd": [float("nan")] * 2 + [1.0]})
    table["smd"] = _standardized_difference(table)
    assert math.isnan(table["smd"][0])
    assert table["smd"][1] == pytest.approx(0.3 / math.sqrt(0.21 / 2))
    assert table["smd"][2] == 0 and math.copysign(1, table["smd"][2]) == 1
    assert "SMD undefined" in _smd_note(table)[0] and _smd_note(table)[1] == ""
    shown = table_one_display(table_one(gibleed_cohorts, 2, 1))
    assert not (shown["smd"].abs() == float("inf")).any()
    assert not [v for v in shown["smd"] if v == 0 and math.copysign(1, v) < 0]
