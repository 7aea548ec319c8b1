"""Read sales files into :class:`~pharmalab.sales.SalesData`: long files with hierarchy
columns (PBS-style) and wide files with one column per category (pharmacy-style)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pharmalab.errors import SalesInputError
from pharmalab.sales.data import (
    SalesData,
    _kind,
    check_series,
    infer_freq,
    period_bounds,
    season_length,
)

__all__ = ["read_sales_csv", "read_wide_csv"]


def read_sales_csv(
    path: str | Path,
    *,
    time_col: str,
    value_col: str,
    hierarchy: Sequence[str] = (),
    freq: str | None = None,
    fill_missing: bool = False,
) -> SalesData:
    """Read a long sales CSV (one row per period and bottom-level category).

    The layout of the Australian PBS file (tsibbledata ``PBS``, ``../shared/data/sales/
    pbs.csv``): ``Month,Concession,Type,ATC1,ATC1_desc,ATC2,ATC2_desc,Scripts,Cost``, read
    with ``time_col="Month", value_col="Scripts", hierarchy=["Concession", "Type", "ATC1",
    "ATC2"]`` gives 336 monthly series of 60–204 months (July 1991 – June 2008).

    Parameters
    ----------
    path
        CSV file with a header row.
    time_col
        Period column: anything ``pandas.to_datetime`` reads (``1991-07``, ``1991 Jul``,
        ``2019-10-13``). Monthly labels must be on the 1st of the month (``1991-07`` is).
    value_col
        Quantity column (numbers ≥ 0, e.g. ``Scripts`` or ``Cost`` in AUD).
    hierarchy
        Category columns, top → bottom, that identify a bottom-level series. Other columns
        (descriptions such as ``ATC2_desc``) are dropped.
    freq
        pandas offset alias (``'MS'``, ``'W-SUN'``, ``'D'``); None infers it
        (:func:`~pharmalab.sales.infer_freq`).
    fill_missing
        Fill periods missing inside a series with 0 (and say so in ``notes``) instead of
        raising.

    Returns
    -------
    SalesData
        ``frame`` columns: ``unique_id`` (str: the hierarchy values joined by ``/``, or the
        file stem without hierarchy), ``ds`` (datetime64[ns], period label — month start for
        monthly), ``y`` (float64, the unit of ``value_col``), then the hierarchy columns
        (str) in the given order. ``source`` is the file path.

    Raises
    ------
    SalesInputError
        Missing file or column; an empty hierarchy value or one containing ``/``; a period
        that is not a date; a value that is not a number or is negative (naming the file,
        column, value and data row); rows sharing the hierarchy values and period
        ("duplicate", naming the file, the first duplicate key and how many rows repeat
        one); and everything :func:`~pharmalab.sales.check_series` raises (dates off the
        grid, gaps).
    """
    path = Path(path)
    hierarchy = tuple(hierarchy)
    raw = _read_csv(path, (time_col, value_col, *hierarchy))
    for column in hierarchy:
        values = raw[column].str.strip()
        _first_bad(path, column, raw[column], values == "", "a non-empty category")
        _first_bad(path, column, raw[column], values.str.contains("/", regex=False),
                   "a category without '/' (it joins the levels of unique_id)")
    ds = _parse_dates(path, time_col, raw[time_col])
    y = _parse_values(path, value_col, raw[value_col])
    frame = pd.DataFrame({
        "unique_id": (raw[list(hierarchy)].agg("/".join, axis=1) if hierarchy
                      else pd.Series(path.stem, index=raw.index)),
        "ds": ds,
        "y": y,
    })
    for column in hierarchy:
        frame[column] = raw[column].to_numpy()
    _no_duplicates(path, frame, (*hierarchy, time_col) if hierarchy else (time_col,))
    freq = freq or infer_freq(frame["ds"], name=path.name)
    data = check_series(frame, freq=freq, season_length=season_length(freq),
                        fill_missing=fill_missing, name=path.name, hierarchy=hierarchy)
    return dataclasses.replace(data, source=str(path))


def read_wide_csv(
    path: str | Path,
    *,
    time_col: str,
    value_cols: Sequence[str] | None = None,
    freq: str | None = None,
    fill_missing: bool = False,
    drop_partial_last: bool = True,
    data_end: str | dt.date | None = None,
) -> SalesData:
    """Read a wide sales CSV (one row per period, one column per category) as long series.

    The layout of the Kaggle pharmacy data (``../shared/data/sales/pharmacy_serbia/
    sales{daily,weekly}.csv``: ``datum,M01AB,M01AE,N02BA,…``).

    **Partial last period.** A file of period totals may end with a period the data only
    partly cover: the pharmacy's weekly file sums the daily file by week (weeks Monday–
    Sunday, labelled by the Sunday), and its last row, 2019-10-13, holds only Monday
    2019-10-07 and Tuesday 2019-10-08 (the daily file's last day), so it looks like a
    collapse in demand. A weekly or monthly file cannot show this by itself, and guessing
    from a low last value would drop genuine dips, so the rule is explicit: pass
    ``data_end``, the last day the data cover (for the pharmacy, the daily file's last date,
    ``read_wide_csv(daily, …).frame["ds"].max()``). The last period is partial when it ends
    after ``data_end`` (:func:`~pharmalab.sales.period_bounds`: a month ends on its last
    day, a ``'W-SUN'`` week on its Sunday label, a day on itself); with
    ``drop_partial_last`` it is dropped and ``notes`` says so ("dropped the last week
    2019-10-13: partial (data end 2019-10-08)"). Without ``data_end`` nothing is dropped and,
    for weekly and monthly data, ``notes`` says the last period was not checked.

    Parameters
    ----------
    path
        CSV file with a header row.
    time_col
        Period column (e.g. ``datum``): dates pandas reads; weekly labels are the week's
        last day.
    value_cols
        Category columns to read; None takes every column except ``time_col`` (pass it for
        files with other columns, such as the daily file's ``Year, Month, Hour,
        Weekday Name``).
    freq
        pandas offset alias; None infers it (:func:`~pharmalab.sales.infer_freq`):
        ``'D'`` for the daily, ``'W-SUN'`` for the weekly pharmacy file.
    fill_missing
        Fill missing periods inside a series with 0 instead of raising.
    drop_partial_last
        Drop a partial last period (needs ``data_end``); False keeps it (and notes it).
    data_end
        Last day covered by the data (date or ISO string).

    Returns
    -------
    SalesData
        ``frame`` columns ``unique_id`` (str: the category column's name), ``ds``
        (datetime64[ns]: the day; the week's last day for weekly; month start for monthly),
        ``y`` (float64, the file's unit — packs sold for the pharmacy); no hierarchy.

    Raises
    ------
    SalesInputError
        Missing file or column; a non-date period, or a period repeated (naming the file
        and the date); a missing, non-numeric or negative value (naming the file, column,
        value and data row; a text column such as ``Weekday Name`` asks for
        ``value_cols``); a ``data_end`` that is not a date or is before the last period
        starts; and everything :func:`~pharmalab.sales.check_series` raises.
    """
    path = Path(path)
    head = _read_csv(path, (time_col,))
    columns = list(value_cols) if value_cols is not None else [
        c for c in head.columns if c != time_col]
    if not columns:
        raise SalesInputError(f"{path.name}: no value columns besides {time_col!r}")
    _require(path, head, columns)
    ds = _parse_dates(path, time_col, head[time_col])
    repeated = ds.duplicated(keep=False)
    if repeated.any():
        row = int(np.flatnonzero(repeated.to_numpy())[0])
        raise SalesInputError(
            f"{path.name}, column {time_col}: duplicate period {head[time_col].iloc[row]!r} "
            f"at data row {row + 1} ({int(ds.duplicated().sum())} repeated row(s)); "
            "expected one row per period"
        )
    values = {c: _parse_values(path, c, head[c], hint=_text_hint(head[c], value_cols))
              for c in columns}
    frame = pd.concat(
        [pd.DataFrame({"unique_id": c, "ds": ds, "y": v}) for c, v in values.items()],
        ignore_index=True,
    )
    freq = freq or infer_freq(frame["ds"], name=path.name)
    frame, notes = _partial_last(frame, freq, data_end, drop_partial_last, path.name)
    data = check_series(frame, freq=freq, season_length=season_length(freq),
                        fill_missing=fill_missing, name=path.name)
    return dataclasses.replace(data, notes=tuple(notes) + data.notes, source=str(path))


def _partial_last(
    frame: pd.DataFrame, freq: str, data_end, drop: bool, name: str
) -> tuple[pd.DataFrame, list[str]]:
    """Drop (or note) a last period that ends after ``data_end`` (see read_wide_csv)."""
    last = frame["ds"].max()
    first_day, last_day = period_bounds(last, freq)
    unit = _kind(freq)
    label = last.strftime("%Y-%m-%d")
    if data_end is None:
        if unit == "day":
            return frame, []
        return frame, [f"the last {unit} {label} was not checked for completeness "
                       "(pass --data-end, data_end in Python: the last day the data cover)"]
    try:
        end = pd.Timestamp(data_end).normalize()
    except (ValueError, TypeError):
        raise SalesInputError(f"{name}: data_end {data_end!r} is not a date") from None
    if pd.isna(end):
        raise SalesInputError(f"{name}: data_end {data_end!r} is not a date")
    if first_day > end:
        raise SalesInputError(
            f"{name}: data_end {end:%Y-%m-%d} is before the last {unit} {label} starts "
            f"({first_day:%Y-%m-%d}); expected the last day the data cover"
        )
    if last_day <= end:
        return frame, []
    what = f"{unit} {label}: partial (data end {end:%Y-%m-%d})"
    if not drop:
        return frame, [f"kept the last {what}"]
    return frame[frame["ds"] != last].reset_index(drop=True), [f"dropped the last {what}"]


def _read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    if not path.exists():
        raise SalesInputError(f"sales file {str(path)!r} does not exist")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise SalesInputError(f"{path.name}: cannot be read as CSV: {exc}") from None
    _require(path, raw, required)
    if raw.empty:
        raise SalesInputError(f"{path.name}: has a header but no data rows")
    return raw


def _require(path: Path, raw: pd.DataFrame, columns: Sequence[str]) -> None:
    for column in columns:
        if column not in raw.columns:
            raise SalesInputError(
                f"{path.name}: column {column!r} is missing (columns: {', '.join(raw.columns)})"
            )


def _parse_dates(path: Path, column: str, raw: pd.Series) -> pd.Series:
    ds = pd.to_datetime(raw, errors="coerce", format="mixed")
    _first_bad(path, column, raw, ds.isna(), "a date (e.g. 1991-07, 1991 Jul or 2019-10-13)")
    return ds.astype("datetime64[ns]")


def _parse_values(path: Path, column: str, raw: pd.Series, hint: str = "") -> pd.Series:
    y = pd.to_numeric(raw, errors="coerce").astype("float64")
    _first_bad(path, column, raw, ~np.isfinite(y), "a number" + hint)
    _first_bad(path, column, raw, y < 0, "a value ≥ 0")
    return y


def _text_hint(raw: pd.Series, value_cols) -> str:
    """A hint to pass value_cols when a column chosen by default holds no number at all."""
    if value_cols is None and pd.to_numeric(raw, errors="coerce").isna().all():
        return " (pass value_cols= to choose the category columns)"
    return ""


def _no_duplicates(path: Path, frame: pd.DataFrame, key_columns: Sequence[str]) -> None:
    dup = frame.duplicated(["unique_id", "ds"], keep=False)
    if not dup.any():
        return
    rows = np.flatnonzero(dup.to_numpy())
    first = frame.iloc[rows[0]]
    same = np.flatnonzero(((frame["unique_id"] == first["unique_id"])
                           & (frame["ds"] == first["ds"])).to_numpy())
    repeats = int(frame.duplicated(["unique_id", "ds"]).sum())
    raise SalesInputError(
        f"{path.name}: duplicate rows for ({', '.join(key_columns)}): "
        f"{first['unique_id']} at {first['ds']:%Y-%m-%d} is on data rows "
        f"{', '.join(str(r + 1) for r in same[:5])}; {repeats} row(s) repeat a key; "
        "expected one row per category and period (sum them first if they are parts)"
    )


def _first_bad(path: Path, column: str, raw: pd.Series, bad: pd.Series, expected: str) -> None:
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise SalesInputError(
            f"{path.name}, column {column}: expected {expected}, found {raw.iloc[row]!r} at "
            f"data row {row + 1}" + (f" and {int(bad.sum()) - 1} more row(s)"
                                     if bad.sum() > 1 else "")
        )
