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


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "database URL is empty"),
        ("mysql://host/db", "unknown scheme 'mysql'"),
        ("notaurl", "has no scheme"),
        ("bigquery://only-project", r"expected bigquery://PROJECT/DATASET"),
        ("duckdb:///tmp/x.duckdb?schema=cdm", "unknown parameter 'schema'"),
    ],
)
def test_bad_urls_name_what_was_expected(url, message):
    with pytest.raises(EngineURLError, match=message):
        parse_url(url)


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
