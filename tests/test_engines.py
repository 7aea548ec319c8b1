"""One scenario suite, every engine: GiBleed with CohortGenerator's cohort set on DuckDB, Spark
(a standalone cluster of two workers), PostgreSQL (a throwaway server) and a BigQuery emulator,
and the same assertions on each (conftest.EngineCDM; markers select the engines).

The reference values are published ones where they exist (Eunomia's row counts,
CohortGenerator's cohort counts, Python's ``hmac`` for pseudonyms) and DuckDB's results
otherwise. Capability tests that compare an engine with DuckDB in more depth (Table 1, KM event
tables, PDC, persistence episodes, drug eras, extraction, patient flow) live beside their
capability and take the same ``other_engine`` fixture. Engine-specific faults (a lost driver or
connection, bad input on a server) are in test_spark.py, test_postgres.py and
test_bigquery_emulator.py.
"""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import (
    DATA,
    ENGINE_TYPES,
    GIBLEED_ROWS,
    cdm_side_of_the_demo,
    compare_with_the_demo,
)

COHORT_COLUMNS = ["cohort_definition_id", "subject_id", "cohort_start_date", "cohort_end_date"]
STATISTICS = ("cohort_inc_result", "cohort_inc_stats", "cohort_summary_stats",
              "cohort_censor_stats")


def test_gibleed_has_the_published_row_counts_and_specification_types(engine_gibleed):
    db = engine_gibleed.db
    for table, expected in GIBLEED_ROWS.items():
        assert db.table(table).count().execute() == expected, table
    schema = db.table("drug_exposure").schema()
    assert str(schema["drug_exposure_start_date"]) == "date"
    assert str(schema["days_supply"]) == "int64"
    assert str(schema["quantity"]) == "float64"
    assert str(db.table("measurement").schema()["value_as_number"]) == "float64"
    # the OHDSI DDL's quoted reserved word is the plain column name
    assert "offset" in db.table("note_nlp").columns


def test_checks_equal_duckdb(other_engine, gibleed_csv_db):
    from pharmalab import cdm
    from pharmalab.engine import database

    got = cdm.check(other_engine.db).findings
    duck = database(f"duckdb://{gibleed_csv_db[0]}")
    expected = cdm.check(duck).findings
    duck.con.disconnect()
    key = ["check", "table", "column"]
    assert len(expected) > 0
    pd.testing.assert_frame_equal(got.sort_values(key, ignore_index=True),
                                  expected.sort_values(key, ignore_index=True))


def test_cohorts_and_statistics_have_cohortgenerators_counts(engine_gibleed, gibleed_cohorts):
    """CohortGenerator's published counts, DuckDB's rows for the four cohorts and the
    negative-control outcomes, the inclusion/summary/censor statistics, and a rerun that finds
    the checksums and skips."""
    from pharmalab import cohorts

    db = engine_gibleed.db
    got = _cohort_rows(db)
    counts = got.query("cohort_definition_id <= 4").groupby(
        "cohort_definition_id").subject_id.nunique()
    assert counts.tolist() == [1800, 569, 266, 1750]
    assert got.cohort_definition_id.nunique() > 4  # the four and the negative controls
    if db is not gibleed_cohorts:
        pd.testing.assert_frame_equal(got, _cohort_rows(gibleed_cohorts))
        for table in STATISTICS:
            pd.testing.assert_frame_equal(_statistics(db, table),
                                          _statistics(gibleed_cohorts, table), obj=table)
    again = cohorts.generate_cohorts(
        db, cohorts.read_cohort_set(DATA / "cohorts" / "cohortgenerator"))
    assert [r.status for r in again.runs] == ["SKIPPED"] * 4


def test_incidence_equals_duckdb(other_engine, gibleed_cohorts):
    """Celecoxib cohorts 1 and 4, a negative-control outcome, two windows, a clean window and
    age, gender and year strata (CohortIncidence semantics)."""
    from pharmalab.characterize import Strata, TimeAtRisk, incidence_rates, simple_design

    outcome = int(gibleed_cohorts.table("cohort", "results")
                  .filter(lambda t: t.cohort_definition_id > 1000)
                  .cohort_definition_id.min().to_pandas())
    design = simple_design([1, 4], [outcome],
                           [TimeAtRisk(1, "start", 0, "end", 0),
                            TimeAtRisk(2, "start", 1, "start", 365)],
                           clean_window=30,
                           strata=Strata(by_age=True, by_gender=True, by_year=True))
    expected = incidence_rates(gibleed_cohorts, design, min_cell_count=1).summary
    got = incidence_rates(other_engine.db, design, min_cell_count=1).summary
    assert len(expected) > 20
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_pseudonyms_and_date_offsets_equal_the_python_reference(engine_gibleed):
    """The engine's HMAC-SHA256 of every person gives the pseudonym and date offset that
    Python's ``hmac`` gives for the same key."""
    from pharmalab.extract import pseudonyms
    from pharmalab.extract.keys import PseudonymKey

    db = engine_gibleed.db
    kind = db.url.kind
    key = PseudonymKey(b"a key for the engine suite", "test")
    with pseudonyms.key_table(db, key) as keys:
        rel = db.table("person").select("person_id").cross_join(keys)
        digest = pseudonyms.hmac_hex(kind, rel, rel.person_id)
        got = rel.select("person_id", pseudonym=pseudonyms.digest_pseudonym(kind, digest),
                         offset=pseudonyms.digest_offset(kind, digest, 180)).execute()
    assert len(got) == GIBLEED_ROWS["person"]
    for row in got.itertuples():
        assert row.pseudonym == pseudonyms.pseudonym(key, row.person_id)
        assert row.offset == pseudonyms.date_offset(key, row.person_id, 180)


def test_a_missing_schema_names_the_engine_and_the_table(engine_gibleed):
    import dataclasses

    from pharmalab.errors import CdmNotFoundError

    db = dataclasses.replace(engine_gibleed.db, cdm_schema="no_such_schema",
                             vocab_schema="no_such_schema")
    scheme = db.url.redacted().split(":")[0]
    with pytest.raises(CdmNotFoundError, match=rf"'person'.*no_such_schema.*{scheme}:"):
        db.table("person")


@pytest.mark.whole_study
def test_the_demo_studys_cdm_side_gives_duckdbs_files(other_engine, demo_results, tmp_path):
    """The demo study's CDM steps (load where the engine loads, checks, cohorts with
    statistics, Table 1, incidence, KM, extraction, PDC and persistence, pathways, patient
    flow and its forecast) write the files the demo writes on DuckDB. Pseudonyms and shifted
    dates come from a random key in each run, so those columns are left out (their values are
    checked against Python's hmac above); run times, schema names and key fingerprints differ
    by nature."""
    from pharmalab.study import run

    text = cdm_side_of_the_demo(other_engine.demo_url)
    if not other_engine.loads_cdm:  # seeded beforehand (conftest.bigquery_emulator)
        text = text.replace('source = "eunomia:GiBleed"\n', "")
    (tmp_path / "study.toml").write_text(text)
    result = run(tmp_path / "study.toml", tmp_path / "out")
    assert all(s.status == "ok" for s in result.steps), result.steps
    assert len(result.steps) == (10 if other_engine.loads_cdm else 9)
    engine_types = ENGINE_TYPES.get(other_engine.name)
    assert compare_with_the_demo(tmp_path / "out", demo_results.out, engine_types) >= 40


def _cohort_rows(db) -> pd.DataFrame:
    return db.table("cohort", "results").select(COHORT_COLUMNS).execute().sort_values(
        COHORT_COLUMNS, ignore_index=True)


def _statistics(db, table) -> pd.DataFrame:
    t = db.table(table, "results")
    frame = t.filter(t.cohort_definition_id.isin([1, 2, 3, 4])).execute()
    columns = sorted(frame.columns)
    return frame[columns].sort_values(columns, ignore_index=True).astype("int64")
