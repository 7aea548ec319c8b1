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
