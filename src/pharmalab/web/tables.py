"""Reading results files for the browser: small tables whole (cached by modification time),
large Parquet files by the rows of one series only (row-group statistics and a pushed-down
filter, so opening one of 403 series does not read the other 402)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq


@dataclass
class Table:
    """A table as the page shows it: ``file`` is the results file it comes from (relative to the
    study folder, for the CSV download), ``rows`` are display strings."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    file: str | None = None
    note: str = ""
    filterable: bool = False
    numeric: list[bool] = field(default_factory=list)


def csv(path: Path) -> pd.DataFrame:
    """A results CSV (a copy: callers may change it)."""
    return _csv(path, path.stat().st_mtime_ns).copy()


@functools.lru_cache(maxsize=256)
def _csv(path: Path, mtime: int) -> pd.DataFrame:
    return pd.read_csv(path, low_memory=False)


def series_rows(path: Path, unique_id: str | list[str],
                columns: list[str] | None = None) -> pd.DataFrame:
    """The rows of one series (or several) of a Parquet file with a ``unique_id`` column.

    The file is read once per server (and again when it changes) into Arrow with an index of
    each series' rows; a request takes only its rows (PBS's paths.parquet: 967,200 rows, one
    series' 2,400 in about a millisecond, where a filtered scan decodes the whole file each
    time because the writer interleaves series).
    """
    table, index = _indexed(path, path.stat().st_mtime_ns)
    ids = [unique_id] if isinstance(unique_id, str) else list(unique_id)
    rows = [index[u] for u in ids if u in index]
    if columns is not None:
        table = table.select([c for c in columns if c in table.schema.names])
    if not rows:
        return table.slice(0, 0).to_pandas()
    return table.take(pa.array(np.concatenate(rows))).to_pandas()


def warm(paths: list[Path]) -> None:
    """Read and index these Parquet files ahead of the first request (best effort)."""
    for path in paths[:_INDEXED_FILES]:
        try:
            _indexed(path, path.stat().st_mtime_ns)
        except (OSError, KeyError, pa.ArrowException):
            continue


_INDEXED_FILES = 8


@functools.lru_cache(maxsize=_INDEXED_FILES)
def _indexed(path: Path, mtime: int) -> tuple[pa.Table, dict[str, np.ndarray]]:
    table = pq.read_table(path).combine_chunks()  # one chunk: take() without concatenating
    ids = table.column("unique_id").to_pandas().astype(str)
    return table, {str(k): v for k, v in ids.groupby(ids, sort=False).indices.items()}


def parquet_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    """Some columns of a Parquet file (e.g. the series ids of a forecast)."""
    return pads.dataset(path, format="parquet").to_table(columns=columns).to_pandas()


def to_table(frame: pd.DataFrame, title: str, *, file: str | None = None, note: str = "",
             filterable: bool = False, max_rows: int = 2000) -> Table:
    """A frame as display strings: suppressed counts as '—', numbers rounded for reading,
    the ``*_suppressed`` flag columns left out (the '—' says it)."""
    frame = frame.head(max_rows)
    flags = {c for c in frame.columns if str(c).endswith("_suppressed")}
    shown = [c for c in frame.columns if c not in flags]
    rows = []
    for record in frame.itertuples(index=False):
        values = dict(zip(frame.columns, record, strict=True))
        rows.append([_fmt(values[c], bool(values.get(f"{c}_suppressed") is True)) for c in shown])
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in shown]
    return Table(title, [str(c) for c in shown], rows, file, note, filterable, numeric)


def _fmt(value, suppressed: bool) -> str:
    if suppressed:
        return "—"
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))
        if abs(value) >= 1000:
            return f"{value:,.1f}"
        return f"{value:.4g}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    return str(value)
