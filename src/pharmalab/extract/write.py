"""Streaming extracted tables from the engine to Parquet, and reading back their counts.

DuckDB runs ``COPY (query) TO 'file.parquet' (FORMAT parquet)`` (Ibis ``to_parquet``): rows go
from the query to the file in row groups, within DuckDB's buffer manager. Spark's DataFrame
writer writes one file per partition from its executors. Other engines stream Arrow record
batches into a ``pyarrow.parquet.ParquetWriter``. No table is ever held whole in Python.

Each table is a folder of Parquet files (``person/part-0.parquet`` on DuckDB,
``person/part-00000-….parquet`` on Spark), readable as one dataset by pyarrow, pandas,
DuckDB, Spark and R's arrow.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import ibis.expr.types as ir
import pyarrow.parquet as pq

from pharmalab.engine import Database

_SPARK_TIMESTAMPS = "spark.sql.parquet.outputTimestampType"


def write_table(db: Database, expr: ir.Table, folder: Path) -> None:
    """Run ``expr`` in the engine and stream its rows into Parquet files in ``folder``.

    ``folder`` must not exist; it is created. Spark's bookkeeping files (``_SUCCESS``,
    ``.*.crc``) are removed.
    """
    folder = Path(folder)
    if db.url.kind == "duckdb":
        folder.mkdir(parents=True)
        db.con.to_parquet(expr, folder / "part-0.parquet")
    elif db.url.kind == "pyspark":
        # Spark writes timestamps as deprecated INT96 unless told otherwise (a session
        # setting, not a writer option): microseconds like DuckDB, restored afterwards.
        conf = db.con._session.conf
        previous = conf.get(_SPARK_TIMESTAMPS, None)
        conf.set(_SPARK_TIMESTAMPS, "TIMESTAMP_MICROS")
        try:
            db.con.to_parquet(expr, folder)
        finally:
            if previous is None:
                conf.unset(_SPARK_TIMESTAMPS)
            else:
                conf.set(_SPARK_TIMESTAMPS, previous)
        (folder / "_SUCCESS").unlink(missing_ok=True)
        for checksum in folder.glob(".*.crc"):
            checksum.unlink()
    else:
        folder.mkdir(parents=True)
        reader = db.con.to_pyarrow_batches(expr, chunk_size=100_000)
        with pq.ParquetWriter(folder / "part-0.parquet", reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)


def parquet_files(folder: Path) -> list[Path]:
    """The data files of a table folder, in name order."""
    return sorted(p for p in Path(folder).glob("*.parquet") if not p.name.startswith((".", "_")))


def table_counts(folder: Path) -> tuple[int, int]:
    """(rows, distinct ``person_id``) of a written table, read by DuckDB from its files."""
    files = [str(p) for p in parquet_files(folder)]
    con = duckdb.connect()
    try:
        rows, persons = con.execute(
            "select count(*), count(distinct person_id) from read_parquet($files)",
            {"files": files}).fetchone()
    finally:
        con.close()
    return int(rows), int(persons)


def arrow_types(folder: Path) -> dict[str, str]:
    """Column → Arrow type name (``int64``, ``date32[day]``, ``string``) as written."""
    schema = pq.read_schema(parquet_files(folder)[0])
    return {field.name: str(field.type) for field in schema}


