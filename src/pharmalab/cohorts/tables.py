"""The results tables of cohort generation, and replacing one cohort's rows atomically.

Table names and columns follow OHDSI CohortGenerator (``getCohortTableNames`` and its results
data model): ``cohort``, ``cohort_inclusion``, ``cohort_inc_result``, ``cohort_inc_stats``,
``cohort_summary_stats``, ``cohort_censor_stats``, ``cohort_count``, ``cohort_generation``.

On DuckDB (and PostgreSQL) a cohort's rows are replaced inside one transaction. Plain Spark
has neither transactions nor ``DELETE`` on Parquet tables, so there every results table is
partitioned by its cohort id and a cohort's partition is replaced with
``INSERT OVERWRITE … PARTITION``.
"""

from __future__ import annotations

import re

import ibis

from pharmalab.engine import Database, bigquery

COHORT_TABLES: dict[str, dict[str, str]] = {
    "cohort": {"cohort_definition_id": "int64", "subject_id": "int64",
               "cohort_start_date": "date", "cohort_end_date": "date"},
    "cohort_inclusion": {"cohort_definition_id": "int64", "rule_sequence": "int32",
                         "name": "string", "description": "string"},
    "cohort_inc_result": {"cohort_definition_id": "int64", "inclusion_rule_mask": "int64",
                          "person_count": "int64", "mode_id": "int32"},
    "cohort_inc_stats": {"cohort_definition_id": "int64", "rule_sequence": "int32",
                         "person_count": "int64", "gain_count": "int64",
                         "person_total": "int64", "mode_id": "int32"},
    "cohort_summary_stats": {"cohort_definition_id": "int64", "base_count": "int64",
                             "final_count": "int64", "mode_id": "int32"},
    "cohort_censor_stats": {"cohort_definition_id": "int64", "lost_count": "int64"},
    "cohort_count": {"cohort_id": "int64", "cohort_entries": "int64",
                     "cohort_subjects": "int64"},
    "cohort_generation": {"cohort_id": "int64", "cohort_name": "string", "checksum": "string",
                          "generation_status": "string", "start_time": "timestamp",
                          "end_time": "timestamp", "error": "string"},
}
# The statistics tables circe's SQL writes, as CohortGenerator's names for them.
CIRCE_STATS_TABLES = {
    "cohort_inclusion_result": "cohort_inc_result",
    "cohort_inclusion_stats": "cohort_inc_stats",
    "cohort_summary_stats": "cohort_summary_stats",
    "cohort_censor_stats": "cohort_censor_stats",
}

_SPARK_TYPES = {"int64": "BIGINT", "int32": "INT", "string": "STRING", "date": "DATE",
                "timestamp": "TIMESTAMP"}
_DUCKDB_TYPES = {"int64": "BIGINT", "int32": "INTEGER", "string": "VARCHAR", "date": "DATE",
                 "timestamp": "TIMESTAMP"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def key_column(table: str) -> str:
    """The cohort id column of a results table."""
    return "cohort_id" if table in ("cohort_count", "cohort_generation") else \
        "cohort_definition_id"


def qualified(db: Database, name: str) -> str:
    """``schema.name`` in the results schema (identifiers are checked, never quoted text)."""
    schema = results_schema(db)
    for part in (schema, name):
        if not _IDENTIFIER.match(part):
            raise ValueError(f"not a plain SQL identifier: {part!r}")
    return f"{schema}.{name}"


def results_schema(db: Database) -> str:
    """The results schema's name, or the connection's current schema when none is set."""
    return db.schema("results") or db.con.current_database


def ensure_tables(db: Database, names=tuple(COHORT_TABLES)) -> None:
    """Create the results schema and any missing results table (empty, typed)."""
    db.ensure_schema("results")
    schema = results_schema(db)
    present = set(db.list_tables("results"))
    for name in names:
        if name in present:
            continue
        columns = COHORT_TABLES[name]
        if db.url.kind == "pyspark":
            # Partitioned by the cohort id (the partition column comes last in Spark).
            key = key_column(name)
            ordered = [c for c in columns if c != key] + [key]
            body = ", ".join(f"{c} {_SPARK_TYPES[columns[c]]}" for c in ordered)
            db.con.raw_sql(f"CREATE TABLE IF NOT EXISTS {schema}.{name} ({body}) "
                           f"USING PARQUET PARTITIONED BY ({key})")
        else:
            db.con.create_table(name, schema=ibis.schema(columns), database=schema)


def drop_leftover_stages(db: Database) -> None:
    """Drop staging tables (``_pl_…``) that a killed run left in the results schema.

    Only one process can write a DuckDB file at a time, and a run drops its own staging
    tables when it ends, so any found when a run starts are a killed run's.
    """
    if db.url.kind != "duckdb":
        return
    for name in db.list_tables("results"):
        if name.startswith("_pl_"):
            drop_quietly(db, name)


def create_stage(db: Database, name: str, like: str) -> None:
    """An empty, unpartitioned staging table with the columns of results table ``like``."""
    if db.url.kind == "duckdb":  # plain DDL: ibis's create_table costs ~7 ms of Python a call
        columns = ", ".join(f"{c} {_DUCKDB_TYPES[t]}" for c, t in COHORT_TABLES[like].items())
        db.con.raw_sql(f"CREATE OR REPLACE TABLE {qualified(db, name)} ({columns})")
        return
    db.con.create_table(name, schema=ibis.schema(COHORT_TABLES[like]),
                        database=results_schema(db), overwrite=True)


def drop_quietly(db: Database, name: str) -> None:
    """Drop table ``name`` of the results schema if it exists; never raises (cleanup)."""
    try:
        if db.url.kind == "duckdb":
            db.con.raw_sql(f"DROP TABLE IF EXISTS {qualified(db, name)}")
        else:
            db.con.drop_table(name, database=results_schema(db), force=True)
    except Exception:  # cleaning up after a failure must not hide the failure
        pass


def replace_rows(db: Database, table: str, cohort_ids: list[int], source: str) -> None:
    """Replace the rows of ``cohort_ids`` in results table ``table`` by those of ``source``.

    ``source`` is a table of the results schema with the same columns. All or nothing: a
    transaction on DuckDB/PostgreSQL, a partition overwrite per cohort on Spark.
    """
    replace_many(db, [(table, cohort_ids, source)])


def replace_many(db: Database, replacements: list[tuple[str, list[int], str]]) -> None:
    """:func:`replace_rows` for several ``(table, cohort_ids, source)`` at once.

    On DuckDB/PostgreSQL all of them are one transaction (a cohort's rows and statistics
    change together or not at all); on Spark each cohort's partition of each table is
    overwritten in turn.
    """
    statements = []
    for table, cohort_ids, source in replacements:
        key = key_column(table)
        target, stage = qualified(db, table), qualified(db, source)
        columns = list(COHORT_TABLES[table])
        if db.url.kind == "pyspark":
            others = ", ".join(c for c in columns if c != key)
            for cohort_id in cohort_ids:
                db.con.raw_sql(
                    f"INSERT OVERWRITE TABLE {target} PARTITION ({key} = {int(cohort_id)}) "
                    f"SELECT {others} FROM {stage} WHERE {key} = {int(cohort_id)}")
            continue
        ids = ", ".join(str(int(i)) for i in cohort_ids)
        select = ", ".join(columns)
        statements += [
            f"DELETE FROM {target} WHERE {key} IN ({ids})",
            f"INSERT INTO {target} ({select}) SELECT {select} FROM {stage} "
            f"WHERE {key} IN ({ids})",
        ]
    if statements:
        _transaction(db, statements)


def insert_frame(db: Database, table: str, frame, cohort_ids: list[int]) -> None:
    """Replace the rows of ``cohort_ids`` in ``table`` by ``frame``'s rows (pandas; may be
    empty, which clears those cohorts)."""
    stage = f"_pl_stage_{table}"
    create_stage(db, stage, table)
    try:
        append_frame(db, stage, table, frame)
        replace_rows(db, table, sorted(int(i) for i in cohort_ids), stage)
    finally:
        drop_quietly(db, stage)


def append_frame(db: Database, target: str, table: str, frame) -> None:
    """Append ``frame``'s rows (pandas, the columns of results table ``table``) to table
    ``target`` of the results schema (``table`` itself or a staging copy of it)."""
    frame = frame[list(COHORT_TABLES[table])]
    if frame.empty:
        return
    if db.url.kind == "duckdb":  # a registered frame: no ibis memtable round trip
        view = f"_pl_frame_{target}"
        columns = ", ".join(f"CAST({c} AS {_DUCKDB_TYPES[t]})"
                            for c, t in COHORT_TABLES[table].items())
        db.con.con.register(view, frame)
        try:
            db.con.raw_sql(f"INSERT INTO {qualified(db, target)} SELECT {columns} FROM {view}")
        finally:
            db.con.con.unregister(view)
        return
    if db.url.kind == "bigquery":  # DML, not a load job (engine/bigquery.py says why)
        db.con.raw_sql(bigquery.insert_values_sql(qualified(db, target), frame,
                                                  COHORT_TABLES[table]))
        return
    data = ibis.memtable(frame, schema=ibis.schema(COHORT_TABLES[table]))
    db.con.insert(target, data, database=results_schema(db))


def _transaction(db: Database, statements: list[str]) -> None:
    db.con.raw_sql("BEGIN TRANSACTION")
    try:
        for statement in statements:
            db.con.raw_sql(statement)
    except BaseException:
        db.con.raw_sql("ROLLBACK")
        raise
    db.con.raw_sql("COMMIT")
