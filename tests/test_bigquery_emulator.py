"""The CDM side on a BigQuery emulator gives DuckDB's numbers.

``bqemulator`` (PyPI; BigQuery's REST API over DuckDB, its SQL translated by sqlglot) runs from
its own virtual environment: ``make test-bigquery`` builds it, installs ``pharmalab[bigquery]``
and runs this suite (marker ``bigquery_emulator``); without them these tests skip (``make
test`` and CI run DuckDB, Spark and PostgreSQL). pharmalab connects through Ibis's BigQuery
backend and Google's client library with ``bigquery://PROJECT/DATASET?emulator=HOST:PORT``.

What runs here, on GiBleed, compared with DuckDB: ``cdm check``; the CohortGenerator cohorts
with inclusion, summary and censor statistics, and the negative-control outcomes, row for row,
with the published counts; incidence with age, gender and year strata; pseudonyms and date
offsets against Python's ``hmac``; the demo study's CDM steps (cohorts, Table 1, incidence,
Kaplan–Meier, extraction, PDC and persistence, pathways, patient flow) file for file.

What does not: ``cdm load`` (refused on BigQuery by design; the emulator is seeded with its own
seed format instead, tests/servers.py); anything BigQuery itself would do differently from the
emulator's DuckDB (the emulator translates BigQuery SQL to DuckDB's, so this shows pharmalab's
SQL is accepted and means the same under that translation, not BigQuery's speed, quotas or
every corner of its semantics). Overrides the emulator needs are in
:mod:`pharmalab.engine.bigquery`.
"""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import DATA, GIBLEED_ROWS, cdm_side_of_the_demo, need

pytestmark = pytest.mark.bigquery_emulator

PROJECT = "pharmalab"


@pytest.fixture(scope="module")
def emulator(gibleed_csv_db):
    """An emulator seeded with GiBleed twice: datasets ``gibleed`` and ``demo_cdm``."""
    pytest.importorskip("google.cloud.bigquery",
                        reason="the BigQuery client is not installed (pharmalab[bigquery])")
    from pharmalab.engine import database
    from servers import BigQueryEmulator, ServerUnavailable

    try:
        BigQueryEmulator.program()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    duck = database(f"duckdb://{gibleed_csv_db[0]}")
    tables = [(name, duck.table(name)) for name in duck.list_tables()]
    server = BigQueryEmulator.seeded(PROJECT, {"gibleed": tables, "demo_cdm": tables})
    duck.con.disconnect()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def bigquery_gibleed(emulator):
    """GiBleed on the emulator with CohortGenerator's cohorts 1–4 and the negative-control
    outcomes generated into dataset ``gibleed_results``."""
    from pharmalab import cohorts
    from pharmalab.engine import database

    db = database(emulator.url(PROJECT, "gibleed", results_schema="gibleed_results"))
    folder = need(DATA / "cohorts" / "cohortgenerator")
    cohorts.generate_cohorts(db, cohorts.read_cohort_set(folder))
    controls = cohorts.read_negative_controls(
        folder / "negativecontrols" / "negativeControlOutcomes.csv")
    cohorts.generate_negative_control_cohorts(db, controls)
    return db


def test_the_seeded_cdm_has_the_published_row_counts(bigquery_gibleed):
    db = bigquery_gibleed
    for table in ("person", "drug_exposure", "condition_occurrence", "concept_ancestor"):
        assert db.table(table).count().execute() == GIBLEED_ROWS[table], table


def test_checks_equal_duckdb(bigquery_gibleed, gibleed_csv_db):
    from pharmalab import cdm
    from pharmalab.engine import database

    on_bigquery = cdm.check(bigquery_gibleed).findings
    duck = database(f"duckdb://{gibleed_csv_db[0]}")
    on_duckdb = cdm.check(duck).findings
    duck.con.disconnect()
    key = ["check", "table", "column"]
    pd.testing.assert_frame_equal(on_bigquery.sort_values(key, ignore_index=True),
                                  on_duckdb.sort_values(key, ignore_index=True))


def test_cohorts_and_statistics_equal_duckdb_row_for_row(bigquery_gibleed, gibleed_cohorts):
    from pharmalab import cohorts

    db = bigquery_gibleed
    columns = ["cohort_definition_id", "subject_id", "cohort_start_date", "cohort_end_date"]
    expected = _rows(gibleed_cohorts, columns)
    assert expected.cohort_definition_id.nunique() > 4  # the four and the negative controls
    pd.testing.assert_frame_equal(_rows(db, columns), expected)
    counts = expected.query("cohort_definition_id <= 4").groupby(
        "cohort_definition_id").subject_id.nunique()
    assert counts.tolist() == [1800, 569, 266, 1750]  # CohortGenerator's published counts
    for table in ("cohort_inc_result", "cohort_inc_stats", "cohort_summary_stats",
                  "cohort_censor_stats"):
        pd.testing.assert_frame_equal(_stats(db, table), _stats(gibleed_cohorts, table),
                                      obj=table)
    again = cohorts.generate_cohorts(
        db, cohorts.read_cohort_set(DATA / "cohorts" / "cohortgenerator"))
    assert [r.status for r in again.runs] == ["SKIPPED"] * 4


def test_incidence_equals_duckdb(bigquery_gibleed, gibleed_cohorts):
    from pharmalab.characterize import Strata, TimeAtRisk, incidence_rates, simple_design

    outcome = int(gibleed_cohorts.table("cohort", "results")
                  .filter(lambda t: t.cohort_definition_id > 1000)
                  .cohort_definition_id.min().to_pandas())
    design = simple_design([1, 4], [outcome],
                           [TimeAtRisk(1, "start", 0, "end", 0),
                            TimeAtRisk(2, "start", 1, "start", 365)],
                           clean_window=30,
                           strata=Strata(by_age=True, by_gender=True, by_year=True))
    on_duckdb = incidence_rates(gibleed_cohorts, design, min_cell_count=1).summary
    on_bigquery = incidence_rates(bigquery_gibleed, design, min_cell_count=1).summary
    assert len(on_duckdb) > 20
    pd.testing.assert_frame_equal(on_bigquery, on_duckdb, check_dtype=False)


def test_pseudonyms_and_date_offsets_equal_the_python_reference(bigquery_gibleed):
    from pharmalab.extract import pseudonyms
    from pharmalab.extract.keys import PseudonymKey

    db = bigquery_gibleed
    key = PseudonymKey(b"a key for the bigquery test", "test")
    with pseudonyms.key_table(db, key) as keys:
        rel = db.table("person").select("person_id").cross_join(keys)
        digest = pseudonyms.hmac_hex("bigquery", rel, rel.person_id)
        got = rel.select("person_id", pseudonym=pseudonyms.digest_pseudonym("bigquery", digest),
                         offset=pseudonyms.digest_offset("bigquery", digest, 180)).execute()
    assert len(got) == GIBLEED_ROWS["person"]
    for row in got.itertuples():
        assert row.pseudonym == pseudonyms.pseudonym(key, row.person_id)
        assert row.offset == pseudonyms.date_offset(key, row.person_id, 180)


def test_a_missing_dataset_names_the_engine_and_the_table(emulator):
    from pharmalab.engine import database
    from pharmalab.errors import CdmNotFoundError

    db = database(emulator.url(PROJECT, "no_such_dataset"))
    with pytest.raises(CdmNotFoundError, match=r"'person'.*no_such_dataset.*bigquery://"):
        db.table("person")


def test_an_emulator_that_is_not_running_is_named_at_once():
    """Nothing listening on the port: an error within seconds (the client alone retries a
    refused connection for 600 s)."""
    import socket
    import time

    pytest.importorskip("google.cloud.bigquery")
    from pharmalab.engine import database
    from pharmalab.errors import EngineURLError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(EngineURLError, match=rf"BigQuery emulator at 127.0.0.1:{port} is not "
                                             "reachable"):
        database(f"bigquery://p/d?emulator=127.0.0.1:{port}")
    assert time.monotonic() - started < 30


def test_the_demo_studys_cdm_side_gives_duckdbs_files(emulator, demo_results, tmp_path):
    """The demo study's CDM steps, its CDM already in dataset ``demo_cdm`` (no load step),
    write the files the demo writes on DuckDB (the comparison of tests/test_postgres.py)."""
    from conftest import compare_with_the_demo
    from pharmalab.study import run

    url = emulator.url(PROJECT, "demo_cdm", results_schema="demo_results")
    text = cdm_side_of_the_demo(url).replace('source = "eunomia:GiBleed"\n', "")
    (tmp_path / "study.toml").write_text(text)
    result = run(tmp_path / "study.toml", tmp_path / "out")
    assert [s.status for s in result.steps] == ["ok"] * 9, result.steps
    assert compare_with_the_demo(tmp_path / "out", demo_results.out, _bigquery_types) >= 40


def _bigquery_types(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """BigQuery's types as DuckDB's: a TIMESTAMP is an instant in UTC (DuckDB's TIMESTAMP has
    no zone), and INT64 is BigQuery's only integer (DuckDB writes some columns as INT32)."""
    frame = frame.copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
    if name == "data_dictionary.csv" and "type" in frame.columns:
        frame["type"] = (frame["type"].str.replace(", tz=UTC]", "]", regex=False)
                         .replace({"int32": "int64"}))
    return frame


def _rows(db, columns):
    return db.table("cohort", "results").select(columns).execute().sort_values(
        columns, ignore_index=True)


def _stats(db, table):
    t = db.table(table, "results")
    frame = t.filter(t.cohort_definition_id.isin([1, 2, 3, 4])).execute()
    columns = sorted(frame.columns)
    return frame[columns].sort_values(columns, ignore_index=True).astype("int64")
