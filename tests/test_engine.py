import pytest

from pharmalab.engine import Database, connect, database, parse_url
from pharmalab.errors import CdmNotFoundError, EngineURLError


@pytest.mark.parametrize(
    ("url", "kind", "target"),
    [
        ("duckdb:///tmp/cdm.duckdb", "duckdb", "/tmp/cdm.duckdb"),
        ("duckdb:////tmp/cdm.duckdb", "duckdb", "/tmp/cdm.duckdb"),
        ("duckdb://rel/cdm.duckdb", "duckdb", "rel/cdm.duckdb"),
        ("duckdb://", "duckdb", ""),
        ("cdm.duckdb", "duckdb", "cdm.duckdb"),
        ("pyspark", "pyspark", "local[2]"),
        ("pyspark://local[4]", "pyspark", "local[4]"),
        ("spark://10.0.0.5:7077", "pyspark", "spark://10.0.0.5:7077"),
        ("pyspark://spark://10.0.0.5:7077", "pyspark", "spark://10.0.0.5:7077"),
        ("pyspark?master=spark://10.0.0.5:7077", "pyspark", "spark://10.0.0.5:7077"),
        ("spark://local[4]", "pyspark", "local[4]"),
        ("bigquery://my-project/my_cdm", "bigquery", "my-project/my_cdm"),
        ("postgres://me:pw@db.example:5432/ohdsi", "postgres", "me:pw@db.example:5432/ohdsi"),
    ],
)
def test_parse_url(url, kind, target):
    parsed = parse_url(url)
    assert (parsed.kind, parsed.target) == (kind, target)


def test_schema_parameters_and_redaction():
    parsed = parse_url("postgres://me:secret@host/db?cdm_schema=cdm&results_schema=res")
    assert (parsed.cdm_schema, parsed.vocab_schema, parsed.results_schema) == ("cdm", None, "res")
    assert "secret" not in parsed.redacted() and "***" in parsed.redacted()
    assert parse_url("bigquery://p/d").cdm_schema == "d"
    emulated = parse_url("bigquery://p/d?emulator=127.0.0.1:9050&results_schema=r")
    assert (emulated.options, emulated.results_schema) == ({"emulator": "127.0.0.1:9050"}, "r")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "database URL is empty"),
        ("mysql://host/db", "unknown scheme 'mysql'"),
        ("notaurl", "has no scheme"),
        ("bigquery://only-project", r"expected bigquery://PROJECT/DATASET"),
        ("duckdb:///tmp/x.duckdb?schema=cdm", "unknown parameter 'schema'"),
        ("bigquery://p/d?emulator=http://localhost", "emulator 'http://localhost' should be "
                                                      "HOST:PORT"),
        ("bigquery://p/d?emulator=", "emulator is empty; expected HOST:PORT"),
        ("bigquery://p/d?emualtor=h:1", r"unknown parameter 'emualtor'.*emulator \(BigQuery\)"),
        ("duckdb:///x.duckdb?memory_limit=lots", "memory_limit 'lots' should be an amount"),
        ("postgres://u@h/d?memory_limit=6GB", "memory_limit '6GB' is a DuckDB setting"),
    ],
)
def test_bad_urls_name_what_was_expected(url, message):
    with pytest.raises(EngineURLError, match=message):
        parse_url(url)


def test_duckdb_memory_limit_reaches_duckdb(tmp_path):
    """``?memory_limit=`` is DuckDB's own setting, on the file pharmalab opens and on the one
    ``cdm load`` builds under a temporary name."""
    from pharmalab import cdm

    url = f"duckdb://{tmp_path}/cdm.duckdb?memory_limit=512MB"
    assert parse_url(url).options == {"memory_limit": "512MB"}
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "person.csv").write_text("person_id,gender_concept_id,year_of_birth,"
                                       "race_concept_id,ethnicity_concept_id\n1,8507,1970,0,0\n")
    cdm.load(folder, url)
    con = connect(url)
    assert con.raw_sql("select current_setting('memory_limit')").fetchone()[0] == "488.2 MiB"
    con.disconnect()


def test_duckdb_file_in_missing_folder(tmp_path):
    with pytest.raises(EngineURLError, match="does not exist"):
        connect(f"duckdb://{tmp_path}/nope/cdm.duckdb")
    assert not (tmp_path / "nope").exists()


def test_database_schemas_and_missing_table():
    db = database("duckdb://?cdm_schema=cdm&results_schema=results")
    assert isinstance(db, Database)
    assert (db.schema("cdm"), db.schema("vocab"), db.schema("results")) == ("cdm", "cdm", "results")
    db.ensure_schema("cdm")
    db.con.create_table("person", schema={"person_id": "int64"}, database="cdm")
    assert db.has_table("person") and db.list_tables("cdm") == ["person"]
    assert db.table("person").count().execute() == 0
    with pytest.raises(CdmNotFoundError, match="table 'concept' not found in schema 'cdm'"):
        db.table("concept", "vocab")


def test_bigquery_insert_values_round_trip():
    """The DML that puts small frames into BigQuery (engine/bigquery.py) keeps every value:
    quotes, backslashes and newlines in text, NULLs of every type, UTC timestamps. Checked by
    running it, transpiled from BigQuery's SQL by sqlglot (as BigQuery emulators do), in
    DuckDB."""
    import ibis
    import pandas as pd
    import sqlglot

    from pharmalab.engine.bigquery import insert_values_sql

    frame = pd.DataFrame({
        "cohort_id": [1, 2, None], "name": ["it's", "back\\slash\nnew line", None],
        "ratio": [0.1, float("nan"), 1e-300],
        "start_date": pd.to_datetime(["2020-02-29", None, "1900-01-01"]),
        "start_time": pd.to_datetime(["2026-12-05 12:00:01.25", "1999-12-31 23:59:59.00", None]),
    })
    types = {"cohort_id": "int64", "name": "string", "ratio": "float64", "start_date": "date",
             "start_time": "timestamp"}
    con = ibis.duckdb.connect()
    con.raw_sql("CREATE TABLE t (cohort_id BIGINT, name VARCHAR, ratio DOUBLE, "
                "start_date DATE, start_time TIMESTAMPTZ)")
    con.raw_sql("SET TimeZone = 'UTC'")
    sql = insert_values_sql("t", frame, types)
    con.raw_sql(sqlglot.transpile(sql, read="bigquery", write="duckdb")[0])
    got = con.table("t").execute()
    assert got.cohort_id.tolist()[:2] == [1, 2] and pd.isna(got.cohort_id[2])
    assert got.name.tolist()[:2] == ["it's", "back\\slash\nnew line"] and got.name[2] is None
    assert got.ratio[0] == 0.1 and pd.isna(got.ratio[1]) and got.ratio[2] == 1e-300
    assert [str(d)[:10] for d in got.start_date[[0, 2]]] == ["2020-02-29", "1900-01-01"]
    assert pd.isna(got.start_date[1])
    assert got.start_time[0] == pd.Timestamp("2026-12-05 12:00:01.25", tz="UTC")
    assert pd.isna(got.start_time[2])
