"""The same CDM load, checks and cohorts on Spark (a standalone cluster of two workers,
conftest.spark_cluster) give DuckDB's numbers."""

from __future__ import annotations

import shutil

import pytest

from conftest import DATA, GIBLEED_ROWS

pytestmark = pytest.mark.spark

COHORTGENERATOR = DATA / "cohorts" / "cohortgenerator"


def test_gibleed_loads_on_spark_with_the_same_row_counts(spark_gibleed, gibleed_csv_db):
    rows = spark_gibleed[1].rows()
    for table, expected in GIBLEED_ROWS.items():
        assert rows[table] == expected, table
    assert rows == gibleed_csv_db[1].rows()


def test_spark_tables_have_the_specification_types(spark_gibleed):
    db = spark_gibleed[0]
    schema = db.table("drug_exposure").schema()
    assert str(schema["drug_exposure_start_date"]) == "date"
    assert str(schema["days_supply"]) == "int64"
    assert str(schema["quantity"]) == "float64"
    assert str(db.table("measurement").schema()["value_as_number"]) == "float64"


def test_checks_on_spark_equal_duckdb(spark_gibleed, gibleed_csv_db):
    from pharmalab import cdm
    from pharmalab.engine import database

    on_spark = cdm.check(spark_gibleed[0]).findings
    duck = database(f"duckdb://{gibleed_csv_db[0]}")
    on_duckdb = cdm.check(duck).findings
    duck.con.disconnect()
    key = ["check", "table", "column"]
    assert on_spark.sort_values(key).reset_index(drop=True).equals(
        on_duckdb.sort_values(key).reset_index(drop=True))


def test_cohorts_on_spark_equal_duckdb_row_for_row(spark_gibleed, gibleed_cohorts):
    from pharmalab import cohorts

    db = spark_gibleed[0]
    result = cohorts.generate_cohorts(db, cohorts.read_cohort_set(COHORTGENERATOR))
    assert [r.status for r in result.runs] == ["COMPLETE"] * 4, [r.error for r in result.runs]
    assert result.counts["cohort_subjects"].tolist() == [1800, 569, 266, 1750]
    duck = gibleed_cohorts
    columns = ["cohort_definition_id", "subject_id", "cohort_start_date", "cohort_end_date"]
    for cohort_id in (1, 2, 3, 4):
        spark_rows = _rows(db, cohort_id, columns)
        duck_rows = _rows(duck, cohort_id, columns)
        assert len(spark_rows) == len(duck_rows) > 0
        assert spark_rows.equals(duck_rows), cohort_id
    for table in ("cohort_inc_result", "cohort_inc_stats", "cohort_summary_stats",
                  "cohort_censor_stats"):
        spark_stats = _stats(db, table)
        assert spark_stats.equals(_stats(duck, table)), table
    # the second run finds the checksums in cohort_generation
    again = cohorts.generate_cohorts(db, cohorts.read_cohort_set(COHORTGENERATOR))
    assert [r.status for r in again.runs] == ["SKIPPED"] * 4


def _rows(db, cohort_id, columns):
    t = db.table("cohort", "results")
    frame = t.filter(t.cohort_definition_id == cohort_id).select(columns).execute()
    return frame.sort_values(columns, ignore_index=True)


def _stats(db, table):
    t = db.table(table, "results")
    frame = t.filter(t.cohort_definition_id.isin([1, 2, 3, 4])).execute()
    columns = sorted(frame.columns)
    return frame[columns].sort_values(columns, ignore_index=True).astype("int64")


def test_pseudonyms_and_date_offsets_equal_the_python_reference(spark_gibleed):
    from pharmalab.extract import pseudonyms
    from pharmalab.extract.keys import PseudonymKey

    db = spark_gibleed[0]
    key = PseudonymKey(b"a key for the spark test", "test")
    with pseudonyms.key_table(db, key) as keys:
        rel = db.table("person").select("person_id").cross_join(keys)
        digest = pseudonyms.hmac_hex("pyspark", rel, rel.person_id)
        got = rel.select("person_id", pseudonym=pseudonyms.digest_pseudonym("pyspark", digest),
                         offset=pseudonyms.digest_offset("pyspark", digest, 180)).execute()
    assert len(got) == GIBLEED_ROWS["person"]
    for row in got.itertuples():
        assert row.pseudonym == pseudonyms.pseudonym(key, row.person_id)
        assert row.offset == pseudonyms.date_offset(key, row.person_id, 180)


_LOSE_THE_DRIVER = """
import os, signal, sys
from pharmalab import cdm, cohorts
from pharmalab.engine import database
from pharmalab.errors import EngineConnectionError

url, archive, folder, phase = sys.argv[1:5]
db = database(url)
cohort_set = cohorts.read_cohort_set(folder)
if phase == "first":
    cdm.load(archive, db)

    def lose_the_driver(definition, status):  # the JVM that holds the Spark session dies
        if definition.cohort_id == 1:
            os.kill(db.con._session.sparkContext._gateway.proc.pid, signal.SIGKILL)

    try:
        cohorts.generate_cohorts(db, cohort_set, progress=lose_the_driver)
    except EngineConnectionError as exc:
        print("LOST", exc)
else:
    result = cohorts.generate_cohorts(db, cohort_set)
    print("RERUN", [r.status for r in result.runs], result.counts["cohort_subjects"].tolist())
"""


def test_a_lost_driver_stops_the_set_and_a_rerun_completes(tmp_path):
    """The Spark driver (the JVM of pharmalab's session) dies after cohort 1 of 2: one
    error naming the engine, the cohort and the table; a new process skips cohort 1, whose
    rows were kept, and generates cohort 2 (CohortGenerator's counts).

    On a cluster of its own (one worker): the session's application holds every core of the
    suite's cluster, and a standalone master gives a second application none.
    """
    import subprocess
    import sys

    from conftest import GIBLEED_TAR, need
    from servers import ServerUnavailable, SparkStandalone

    folder = tmp_path / "cohorts"
    folder.mkdir()
    for cohort_id in (1, 2):
        shutil.copy(need(COHORTGENERATOR / "cohorts" / f"{cohort_id}.json"), folder)
    # only the tables the two cohorts read: loading all of GiBleed on Spark costs a minute
    full = tmp_path / "gibleed"
    shutil.unpack_archive(need(GIBLEED_TAR), full)
    cdm_folder = tmp_path / "cdm"
    cdm_folder.mkdir()
    for table in ("person", "observation_period", "drug_exposure", "drug_era", "concept",
                  "concept_ancestor", "cdm_source"):
        shutil.copy(full / "csv" / f"{table}.csv", cdm_folder)
    work = tmp_path / "work"  # the driver's warehouse and metastore, shared by both runs
    work.mkdir()
    printed = {}
    try:
        cluster = SparkStandalone.start(workers=1)
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        url = cluster.url(cdm_schema="lost_driver", results_schema="lost_driver_results")
        for phase in ("first", "again"):
            done = subprocess.run(
                [sys.executable, "-c", _LOSE_THE_DRIVER, url, str(cdm_folder),
                 str(folder), phase], cwd=work, capture_output=True, text=True, timeout=600)
            lines = [line for line in done.stdout.splitlines()
                     if line.startswith(("LOST", "RERUN"))]
            assert lines, done.stderr[-3000:]
            printed[phase] = lines[-1]
    finally:
        cluster.stop()
    assert printed["first"].startswith("LOST lost the connection to pyspark (pyspark://spark://")
    assert "while generating cohort 2 (" in printed["first"]
    assert "into lost_driver_results.cohort" in printed["first"]
    assert "cohort 1 generated in this run is complete and kept" in printed["first"]
    assert printed["again"] == "RERUN ['SKIPPED', 'COMPLETE'] [1800, 569]"
