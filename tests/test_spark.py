"""The same CDM load and checks on a local Spark session give the same numbers as DuckDB."""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import GIBLEED_ROWS, GIBLEED_TAR, need

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark_db(tmp_path_factory):
    pytest.importorskip("pyspark", reason="pyspark is not installed (pharmalab[spark])")
    if shutil.which("java") is None:
        pytest.skip("no Java runtime: Spark needs Java 17 (openjdk-17-jre-headless)")
    from pharmalab.engine import database

    # the local session keeps its warehouse in ./.pharmalab of the working folder
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("spark"))
    try:
        db = database("pyspark?cdm_schema=gibleed")
        yield db
        db.con._session.stop()
    finally:
        os.chdir(previous)


@pytest.fixture(scope="module")
def spark_load(spark_db):
    from pharmalab import cdm

    return cdm.load(need(GIBLEED_TAR), spark_db)


def test_gibleed_loads_on_spark_with_the_same_row_counts(spark_load, gibleed_csv_db):
    rows = spark_load.rows()
    for table, expected in GIBLEED_ROWS.items():
        assert rows[table] == expected, table
    assert rows == gibleed_csv_db[1].rows()


def test_spark_tables_have_the_specification_types(spark_db, spark_load):
    schema = spark_db.table("drug_exposure").schema()
    assert str(schema["drug_exposure_start_date"]) == "date"
    assert str(schema["days_supply"]) == "int64"
    assert str(schema["quantity"]) == "float64"
    assert str(spark_db.table("measurement").schema()["value_as_number"]) == "float64"


def test_checks_on_spark_equal_duckdb(spark_db, spark_load, gibleed_csv_db):
    from pharmalab import cdm
    from pharmalab.engine import database

    on_spark = cdm.check(spark_db).findings
    duck = database(f"duckdb://{gibleed_csv_db[0]}")
    on_duckdb = cdm.check(duck).findings
    duck.con.disconnect()
    key = ["check", "table", "column"]
    assert on_spark.sort_values(key).reset_index(drop=True).equals(
        on_duckdb.sort_values(key).reset_index(drop=True))
