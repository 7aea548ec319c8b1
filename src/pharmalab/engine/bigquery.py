"""BigQuery overrides: what pharmalab does differently on BigQuery, each with its reason.

Small frames (a cohort's generation record, its inclusion rules, a design's list of
negative controls: tens to thousands of rows) go in as DML ``INSERT … VALUES`` rather than as
BigQuery load jobs: cohorts' results tables always (:func:`insert_values_sql`), Ibis's
in-memory tables on an emulator (:func:`apply_emulator_overrides`). BigQuery emulators
refuse load jobs (``bqemulator`` 1.4: "multipart upload's second part has unsupported
Content-Type"; ../shared/KNOWN.md); on BigQuery itself load jobs are a quota of their own
(1,500 a table a day) and take seconds to schedule.
"""

from __future__ import annotations

import datetime as _dt
import math

import ibis.expr.datatypes as dt
import pandas as pd

ROWS_PER_STATEMENT = 500  # BigQuery's query text limit is 1 MB; GiBleed's widest row is ~1 kB


def insert_values_sql(target: str, frame: pd.DataFrame, types: dict) -> str:
    """``INSERT INTO target (columns) VALUES (…), …`` holding ``frame``'s rows.

    ``target`` is ``dataset.table``; ``types`` maps each column of ``frame`` to its Ibis type
    (a name such as ``"int64"``, ``"string"``, ``"date"``, ``"timestamp"``, or an Ibis
    dtype). Missing values become typed NULLs; timestamps are written in UTC. Meant for a
    few hundred rows (:data:`ROWS_PER_STATEMENT`).

    Raises
    ------
    TypeError
        A column type other than integer, floating, boolean, string, date or timestamp.
    """
    columns = list(types)
    kinds = {c: dt.dtype(t) for c, t in types.items()}
    rows = [
        "(" + ", ".join(_literal(v, kinds[c]) for c, v in zip(columns, row, strict=True)) + ")"
        for row in frame[columns].itertuples(index=False, name=None)
    ]
    return f"INSERT INTO {target} ({', '.join(columns)}) VALUES {', '.join(rows)}"


def apply_emulator_overrides(con) -> None:
    """Adapt the Ibis BigQuery backend ``con`` to an emulator (``bqemulator`` 1.4).

    * In-memory tables (``ibis.memtable``) are created with ``CREATE TABLE`` and ``INSERT …
      VALUES`` in a dataset of our own, not by a load job in the dataset of an anonymous
      query's results (the emulator refuses load jobs and does not let queries name that
      dataset).
    * Cached tables (``Table.cache()``) are written ``CREATE TABLE t AS SELECT …``: Ibis adds
      the column list (``CREATE TABLE t (a INT64, …) AS SELECT``), valid BigQuery that the
      emulator's translation to DuckDB turns into a syntax error.
    """

    from google.cloud import bigquery as bq

    # Ibis keeps in-memory tables in the dataset of an anonymous query's results, which
    # bqemulator 1.4 does not let queries name; a dataset of our own instead (its tables are
    # dropped when their memtables are collected, as Ibis does).
    session = bq.DatasetReference(con.billing_project, "_pharmalab_memtables")
    con.client.create_dataset(session, exists_ok=True, retry=None, timeout=30)
    con._Backend__session_dataset = session

    def register(op) -> None:
        dataset = session
        target = f"`{dataset.project}`.`{dataset.dataset_id}`.`{op.name}`"
        schema = op.schema
        columns = ", ".join(f"`{c}` {_bigquery_type(t)}" for c, t in schema.items())
        con.raw_sql(f"CREATE TABLE {target} ({columns})")
        frame = op.data.to_frame()
        for start in range(0, len(frame), ROWS_PER_STATEMENT):
            con.raw_sql(insert_values_sql(target, frame.iloc[start:start + ROWS_PER_STATEMENT],
                                          dict(schema.items())))

    def finalizer(name: str):
        def drop() -> None:
            # one quick try: Ibis calls this when the memtable is collected, also at exit,
            # when the emulator may be gone (the client's default retries last 600 s)
            try:
                con.client.delete_table(bq.TableReference(session, name), not_found_ok=True,
                                        retry=None, timeout=5)
            except Exception:  # a table left in a scratch dataset of an emulator
                pass
        return drop

    con._register_in_memory_table = register
    con._make_memtable_finalizer = finalizer
    con._create_cached_table = lambda name, expr: con.create_table(name, expr, temp=True)


def _bigquery_type(kind: dt.DataType) -> str:
    if kind.is_integer():
        return "INT64"
    if kind.is_floating():
        return "FLOAT64"
    if kind.is_boolean():
        return "BOOL"
    if kind.is_string():
        return "STRING"
    if kind.is_date():
        return "DATE"
    if kind.is_timestamp():
        return "TIMESTAMP"
    raise TypeError(f"no BigQuery literal for {kind} here")


def _literal(value, kind: dt.DataType) -> str:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return f"CAST(NULL AS {_bigquery_type(kind)})"
    if kind.is_integer():
        return str(int(value))
    if kind.is_floating():
        return f"CAST('{float(value)!r}' AS FLOAT64)"  # also 'inf' and 'nan'
    if kind.is_boolean():
        return "TRUE" if value else "FALSE"
    if kind.is_date():
        return f"DATE '{pd.Timestamp(value).date().isoformat()}'"
    if kind.is_timestamp():
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize(_dt.UTC) if stamp.tzinfo is None else stamp.tz_convert(_dt.UTC)
        return f"TIMESTAMP '{stamp.strftime('%Y-%m-%d %H:%M:%S.%f')}+00'"
    if kind.is_string():
        text = str(value).replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
        return f"'{text}'"
    raise TypeError(f"no BigQuery literal for {kind} here")
