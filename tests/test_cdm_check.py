"""cdm check on GiBleed: its published quirks are findings with exact numbers, not crashes."""

from __future__ import annotations

import pandas as pd
import pytest

from pharmalab import cdm
from pharmalab.engine import database
from pharmalab.errors import CdmNotFoundError


@pytest.fixture(scope="module")
def gibleed_check(gibleed_csv_db):
    db = database(f"duckdb://{gibleed_csv_db[0]}")
    yield cdm.check(db)
    db.con.disconnect()


def _finding(result, check, table, column):
    rows = result.findings[(result.findings["check"] == check)
                           & (result.findings["table"] == table)
                           & (result.findings["column"] == column)]
    assert len(rows) == 1, (check, table, column)
    return rows.iloc[0]


def test_gibleed_quirks_have_the_published_numbers(gibleed_check):
    pk = _finding(gibleed_check, "non_unique_primary_key", "drug_exposure", "drug_exposure_id")
    assert pk["detail"] == "63,323 distinct of 67,707"
    assert (pk["rows_affected"], pk["rows_total"]) == (67707 - 63323, 67707)
    orphans = _finding(gibleed_check, "orphan_person_id", "observation_period", "person_id")
    assert orphans["rows_affected"] == 2649
    end = _finding(gibleed_check, "end_date_missing", "condition_occurrence", "condition_end_date")
    assert end["rows_affected"] == 8652 and end["severity"] == "info"
    # measurement_id and observation_id are not unique either (../shared/data/README.md)
    assert _finding(gibleed_check, "non_unique_primary_key", "measurement",
                    "measurement_id")["severity"] == "warning"


def test_small_counts_are_suppressed(gibleed_check):
    # GiBleed has observations dated outside every observation period, fewer than 5
    row = _finding(gibleed_check, "outside_observation_period", "observation", "observation_date")
    assert bool(row["rows_affected_suppressed"]) is True
    assert pd.isna(row["rows_affected"])


def test_summary(gibleed_check):
    s = gibleed_check.summary
    assert s["persons"] == 2694
    assert s["cdm_version"] == "5.3" and s["source_cdm_version"] == "v5.3.1"
    assert s["vocabulary_version"] == "v5.0 18-JAN-19"
    assert (s["observation_period_start"], s["observation_period_end"]) == (
        "1908-09-22", "2019-07-03")
    assert s["required_tables_missing"] == []
    rows = dict(zip(gibleed_check.tables["table"], gibleed_check.tables["rows"], strict=True))
    assert rows["drug_exposure"] == 67707 and rows["concept_ancestor"] == 65690


def test_missing_tables_columns_and_wrong_types_are_findings():
    db = database("duckdb://")
    db.con.raw_sql("create table person (person_id varchar, year_of_birth bigint)")
    db.con.raw_sql("insert into person values ('1', 1950), ('1', 1960)")
    result = cdm.check(db, cdm_version="5.4")
    assert not result.ok
    f = result.findings
    assert ((f["check"] == "missing_table") & (f["table"] == "observation_period")).any()
    row = f[(f["check"] == "wrong_type") & (f["column"] == "person_id")].iloc[0]
    assert row["detail"] == "expected BIGINT (integer), found string"
    missing = f[(f["check"] == "missing_column") & (f["table"] == "person")]
    assert "gender_concept_id" in set(missing["column"])
    assert set(missing[missing["column"] == "gender_concept_id"]["severity"]) == {"error"}


def test_empty_database_is_a_clear_error():
    with pytest.raises(CdmNotFoundError, match="no OMOP CDM table found"):
        cdm.check(database("duckdb://"))


def _small_cdm():
    """Two persons; the tables a user's CDM folder had: no measurement, observation or
    concept_ancestor; observation periods shifted into the 22nd century; OMOP's open end."""
    import datetime as dt

    d = dt.date.fromisoformat
    db = database("duckdb://")
    db.con.create_table("person", pd.DataFrame({
        "person_id": [1, 2], "gender_concept_id": [8507, 8532], "year_of_birth": [1980, 1990],
        "month_of_birth": [None, 6], "day_of_birth": [None, 15],
        "birth_datetime": [None, None], "race_concept_id": 0, "ethnicity_concept_id": 0,
    }).astype({"month_of_birth": "Int64", "day_of_birth": "Int64",
               "birth_datetime": "datetime64[s]"}))
    db.con.create_table("observation_period", pd.DataFrame({
        "observation_period_id": [1, 2], "person_id": [1, 2],
        "observation_period_start_date": [d("1979-01-01"), d("2101-01-01")],
        "observation_period_end_date": [d("9999-12-31"), d("2130-12-31")],
        "period_type_concept_id": 32817}))
    db.con.create_table("condition_occurrence", pd.DataFrame({
        "condition_occurrence_id": [1, 2, 3, 4, 5], "person_id": [1, 1, 2, 2, 2],
        "condition_concept_id": 201826, "condition_type_concept_id": 32817,
        "condition_start_date": [d("1979-12-31"),   # before 1980, the only known birth part
                                 d("1980-01-01"),   # 1 January of the birth year: fine
                                 d("1990-06-14"),   # the day before a full birth date
                                 d("1990-06-15"),   # on the birth date: fine
                                 d("2101-02-01")]}))
    db.con.create_table("death", pd.DataFrame({
        "person_id": [1], "death_date": [d("1979-12-30")], "death_type_concept_id": 32817}))
    db.con.create_table("concept", pd.DataFrame({
        "concept_id": [201826], "concept_name": ["Type 2 diabetes mellitus"],
        "domain_id": "Condition", "vocabulary_id": "SNOMED", "concept_class_id": "Clinical Finding",
        "concept_code": "44054006", "valid_start_date": d("1970-01-01"),
        "valid_end_date": d("2099-12-31")}))
    return db


def test_absent_tables_impossible_dates_birth_and_death_are_findings():
    """Issue 15 items 4, 9, 13."""
    result = cdm.check(_small_cdm(), cdm_version="5.4", min_cell_count=1)
    findings = result.findings
    keys = set(zip(findings["check"], findings["table"], strict=True))

    def value(check: str, table: str, column: str):
        rows = findings[(findings["check"] == check) & (findings["table"] == table)]
        assert len(rows) == 1, (check, table)
        return rows.iloc[0][column]

    assert value("missing_table", "concept_ancestor", "severity") == "error"
    assert value("missing_table", "concept_relationship", "severity") == "error"
    for table in ("measurement", "observation", "drug_exposure"):
        assert value("missing_table", table, "severity") == "warning"
    assert value("missing_table", "note", "severity") == "info"
    assert ("missing_table", "cohort") not in keys  # written by analyses, not shipped
    assert not result.ok
    assert {"concept_ancestor", "measurement", "observation"} <= set(
        result.summary["analysis_tables_missing"])
    # the 22nd century and 9999-12-31 (both ends of person 2, the open end of person 1)
    after = result.findings.query("check == 'date_after_today'").set_index("column")
    assert after.loc["observation_period_end_date", "rows_affected"] == 2
    assert after.loc["observation_period_start_date", "rows_affected"] == 1
    assert after.loc["condition_start_date", "rows_affected"] == 1
    assert "valid_end_date" not in set(after.index)  # the vocabulary's 2099 is a convention
    assert ("date_before_1900", "observation_period") not in keys
    # before birth: 1979-12-31 (year known only) and 1990-06-14 (full date); not on the day
    assert value("event_before_birth", "condition_occurrence", "rows_affected") == 2
    # after death (1979-12-30): every condition of person 1
    assert value("event_after_death", "condition_occurrence", "rows_affected") == 2


def test_cdm_check_out_writes_the_summary_json(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "cdm.duckdb"
    db = database(f"duckdb://{path}")
    small = _small_cdm()
    for name in small.list_tables():
        db.con.create_table(name, small.table(name).to_pyarrow())
    db.con.disconnect()
    proc = subprocess.run([sys.executable, "-m", "pharmalab.cli", "cdm", "check", "--cdm",
                           f"duckdb://{path}", "--out", tmp_path / "out"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    import json

    summary = json.loads((tmp_path / "out" / "cdm_summary.json").read_text())
    assert summary["persons"] == 2 and "concept_ancestor" in summary["analysis_tables_missing"]
    assert (tmp_path / "out" / "cdm_tables.csv").is_file()
