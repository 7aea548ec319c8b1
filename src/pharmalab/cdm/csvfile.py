"""CSV files of a CDM: the header line, and what is wrong with a file DuckDB cannot read.

The loader reads a CSV's header here, in Python (one line, cheap), so that an empty file, a
file that is not UTF-8, or a header naming a column twice is refused by name before any
engine reads it. When DuckDB's one-pass read of a file fails, :func:`structure_problem`
re-reads it strictly as RFC 4180 (the dialect of OHDSI's ETL tools and of ``readr`` /
``DatabaseConnector`` exports) to say which line breaks the file's structure, before the
loader looks for a bad value.
"""

from __future__ import annotations

import codecs
import csv
import re
from dataclasses import dataclass
from pathlib import Path

from pharmalab.errors import CdmInputError

# DuckDB's sniffer candidates; the one that splits the header most is the delimiter
DELIMITERS = (",", "\t", ";", "|")


@dataclass(frozen=True)
class CsvHeader:
    """A CSV file's delimiter and column names (stripped, lower-cased, in file order)."""

    delimiter: str
    columns: list[str]


def read_header(path: Path, table: str) -> CsvHeader:
    """The header of the CSV file at ``path`` (the CDM table ``table``).

    Raises
    ------
    CdmInputError
        The file is empty or its first line is blank (no header); the first line is not
        UTF-8 text; the header names a column twice (case-insensitive), which would leave
        one of the two columns' values unloaded. The message names the file and table.
    """
    where = f"{path.name} (table {table})"
    with open(path, "rb") as fh:
        raw = fh.readline()
    if not raw:
        raise CdmInputError(f"{where}: the file is empty; expected a header line naming the "
                            "columns, then one line per row")
    try:
        line = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CdmInputError(
            f"{where}: line 1 is not UTF-8 text (byte 0x{raw[exc.start]:02x} at position "
            f"{exc.start + 1}); save the file as UTF-8") from None
    # readline splits at \n only: a file with old-Mac \r line ends is one "line" here
    line = re.split(r"\r\n|\r|\n", line, maxsplit=1)[0]
    if not line.strip():
        raise CdmInputError(f"{where}: line 1 is empty; expected a header line naming the "
                            "columns")
    delimiter = max(DELIMITERS, key=line.count)
    try:
        columns = [n.strip().lower() for n in next(csv.reader([line], delimiter=delimiter))]
    except csv.Error as exc:
        raise CdmInputError(f"{where}: line 1 cannot be read as a CSV header ({exc})") from None
    for position, name in enumerate(columns[:-1], start=1):
        if not name:  # a trailing delimiter (an empty last name) is a common export quirk
            raise CdmInputError(f"{where}: column {position} of the header has no name; "
                                "name it or remove it")
    seen: dict[str, int] = {}
    for position, name in enumerate(columns, start=1):
        if name and name in seen:
            raise CdmInputError(
                f"{where}: column {name!r} appears twice in the header (columns "
                f"{seen[name]} and {position}); each column must appear once")
        seen[name] = position
    return CsvHeader(delimiter, columns)


def structure_problem(con, path: Path, header: CsvHeader) -> str | None:
    """What breaks the structure of the CSV file at ``path``, or None when it has none.

    ``con`` is a DuckDB connection (an Ibis DuckDB backend). The file is read strictly:
    the header's delimiter, ``"`` as quote and escape, every line with as many fields as the
    header, UTF-8. The answer names the first offending line (1 = the header line) and,
    for a line with the wrong number of fields, the counts and the line's start.
    """
    not_utf8 = first_line_not_utf8(path)
    if not_utf8 is not None:  # checked first: DuckDB's strict reader can fail internally on it
        return f"line {not_utf8} is not UTF-8 text; save the file as UTF-8"
    names = [n or f"column{i}" for i, n in enumerate(header.columns)]
    columns = ", ".join(f"{_sql_text(n)}: 'VARCHAR'" for n in names)
    sql = (f"SELECT count(*) FROM read_csv({_sql_text(str(path))}, header = true, "
           f"auto_detect = false, delim = {_sql_text(header.delimiter)}, quote = '\"', "
           f"escape = '\"', strict_mode = true, columns = {{{columns}}})")
    try:
        con.raw_sql(sql).fetchall()
    except Exception as exc:  # DuckDB's reader errors, translated below
        return _describe(str(exc), header)
    return None


def first_line_not_utf8(path: Path, chunk_bytes: int = 1 << 20) -> int | None:
    """The number of the first line of ``path`` that is not UTF-8 text, or None.

    Streams the file in ``chunk_bytes`` pieces through an incremental decoder (memory flat
    in the file's size; about 1 s per GB).
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = 0
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(chunk_bytes)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                return newlines + chunk.count(b"\n", 0, max(exc.start, 0)) + 1
            if not chunk:
                return None
            newlines += chunk.count(b"\n")


def _describe(error: str, header: CsvHeader) -> str:
    line = re.search(r"CSV Error on Line: (\d+)", error)
    where = f"line {line.group(1)}" if line else "a line"
    original = re.search(r"Original Line: ?\r?\n?(.*)", error)  # (CRLF files: a newline first)
    shown = ""
    if original:
        text = original.group(1)
        shown = f" ({text[:60]!r}{'…' if len(text) > 60 else ''})"
    if "not utf-8" in error.lower() or "invalid unicode" in error.lower():
        return f"{where} is not UTF-8 text; save the file as UTF-8"
    counts = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", error)
    if counts:
        found = int(counts.group(2))
        return (f"{where} has {found} field{'s' if found != 1 else ''} where the header has "
                f"{counts.group(1)} (delimiter {header.delimiter!r}){shown}")
    if "unterminated quote" in error.lower():
        return f"{where} opens a quoted value that is never closed{shown}"
    first = error.strip().splitlines()[0] if error.strip() else "unreadable"
    return f"{where}: {first}"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
