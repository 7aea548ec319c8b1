"""Validated sales series: :class:`SalesData` and :func:`check_series`, used by every loader.

A series set is a long frame ``unique_id, ds, y`` (Nixtla's convention: statsforecast,
mlforecast, hierarchicalforecast) plus optional columns such as the hierarchy levels. Every
loader (:func:`~pharmalab.sales.read_sales_csv`, :func:`~pharmalab.sales.read_wide_csv`,
:func:`~pharmalab.sales.cdm_dispensing_series`) ends with :func:`check_series`, so every
:class:`SalesData` satisfies the same rules: one row per series and period, periods on the
grid of ``freq``, no gaps, finite ``y`` ≥ 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from pharmalab.errors import SalesInputError

__all__ = ["SalesData", "check_series", "infer_freq", "period_bounds", "season_length"]

SERIES_COLUMNS = ("unique_id", "ds", "y")
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_MAX_LISTED = 10  # series named one by one in notes before "… and N more"


@dataclass(frozen=True, eq=False)
class SalesData:
    """Sales series in long form, checked by :func:`check_series`.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per series and period, sorted by ``unique_id, ds``:

        - ``unique_id`` (str): series name; for hierarchical data the bottom-level
          hierarchy values joined by ``/`` (e.g. ``Concessional/Co-payments/A/A01``).
        - ``ds`` (datetime64[ns]): the period's label on the grid of ``freq`` — month start
          for ``'MS'``; the quarter's first day (1 January, April, July, October) for
          ``'QS'``; for weekly ``'W-SUN'`` the week's last day (pandas' anchored-week
          convention, as ``resample('W-SUN')`` labels); the day for ``'D'``.
        - ``y`` (float64, ≥ 0, finite): the quantity in the source's unit (scripts, AUD,
          packs, drug exposures, days of supply).
        - then the hierarchy columns (str) top → bottom, then any other columns the loader
          documents (e.g. ``concept_id``, ``level`` for CDM dispensing).
    hierarchy : tuple of str
        Hierarchy column names, top → bottom (empty for flat series).
    freq : str
        pandas offset alias: ``'MS'``, ``'QS'``, ``'W-SUN'`` (or another weekday), ``'D'``.
    season_length : int
        Periods per season: 12 monthly, 4 quarterly, 52 weekly, 7 daily.
    short_series : tuple of str
        ``unique_id`` of the series with fewer than ``2 * season_length`` periods (too short
        to estimate a seasonal model; forecasting falls back to a naive model).
    notes : tuple of str
        What the loader did to the data, one sentence each (periods filled with 0, partial
        periods dropped, short series, series withheld for privacy). Show them in reports.
    source : str
        Where the data came from (file path, ``cdm:…``).
    """

    frame: pd.DataFrame
    hierarchy: tuple[str, ...]
    freq: str
    season_length: int
    short_series: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    source: str = ""


def season_length(freq: str) -> int:
    """Periods per year-long season for ``freq``: 12 (``'MS'``), 4 (``'QS'``), 52
    (``'W-…'``), 7 (``'D'``, the weekly cycle of daily sales).

    Raises
    ------
    SalesInputError
        For any other frequency.
    """
    kind = _kind(freq)
    return {"month": 12, "quarter": 4, "week": 52, "day": 7}[kind]


def infer_freq(dates: pd.Series | pd.DatetimeIndex, *, name: str = "sales") -> str:
    """Infer the frequency of period labels.

    Rules, in order, on the distinct dates (all must be at midnight):

    1. every date is the 1st of a month → ``'MS'``, or ``'QS'`` when they are all
       1 January, April, July or October and some consecutive dates are three months apart
       with none closer;
    2. every date is the same weekday and consecutive dates are a multiple of 7 days apart
       → ``'W-XXX'`` (``'W-SUN'`` for Sundays);
    3. the smallest step between consecutive dates is one day → ``'D'``.

    Parameters
    ----------
    dates
        Period labels (datetime64).
    name
        File or dataset name for error messages.

    Returns
    -------
    str
        pandas offset alias.

    Raises
    ------
    SalesInputError
        Fewer than two distinct dates, dates with a time of day, or none of the rules holds
        (e.g. month-end dates): pass ``freq`` explicitly.
    """
    unique = pd.DatetimeIndex(pd.unique(pd.Series(dates).dropna())).sort_values()
    if len(unique) < 2:
        raise SalesInputError(
            f"{name}: cannot infer the frequency from {len(unique)} distinct date(s); "
            "pass freq ('MS', 'QS', 'W-SUN' or 'D')"
        )
    timed = unique[unique != unique.normalize()]
    if len(timed):
        raise SalesInputError(
            f"{name}: expected dates without a time of day, found {timed[0]}; "
            "aggregate hourly data to days first"
        )
    if (unique.day == 1).all():
        starts = np.isin(unique.month, [1, 4, 7, 10])
        if len(unique) >= 8 and not starts.all() and starts.mean() >= 0.9:
            # One stray month in quarterly data would make the file monthly, every other
            # month a "gap", and --fill-missing a forecast padded with zeros.
            stray = unique[~starts]
            raise SalesInputError(
                f"{name}: the dates look quarterly ({int(starts.sum())} of {len(unique)} are "
                "1 January, April, July or October) but "
                f"{', '.join(d.strftime('%Y-%m-%d') for d in stray[:3])}"
                f"{' …' if len(stray) > 3 else ''} {'is' if len(stray) == 1 else 'are'} not; "
                "date each quarter on its first day")
        months = unique.year * 12 + unique.month
        quarterly = (np.isin(unique.month, [1, 4, 7, 10]).all()
                     and (np.diff(months) % 3 == 0).all() and (np.diff(months) == 3).any())
        return "QS" if quarterly else "MS"
    steps = np.diff(unique.asi8) // (86_400 * 10**9)
    if len(set(unique.dayofweek)) == 1 and (steps % 7 == 0).all():
        return f"W-{_WEEKDAYS[unique[0].dayofweek]}"
    if steps.min() == 1:
        return "D"
    raise SalesInputError(
        f"{name}: cannot infer the frequency: the dates are not all month starts, not all "
        f"the same weekday, and not consecutive days (smallest step {int(steps.min())} days, "
        f"first dates {', '.join(d.strftime('%Y-%m-%d') for d in unique[:3])}); "
        "monthly data must be dated on the first of the month; weekly data on one weekday; "
        "or pass freq ('MS', 'QS', 'W-SUN' or 'D') to the Python API"
    )


def period_bounds(label: pd.Timestamp, freq: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last day covered by the period labelled ``label``.

    ``'MS'``: the calendar month starting at ``label``; ``'QS'``: the calendar quarter
    starting at ``label``. ``'W-XXX'``: the seven days ending
    on ``label`` (pandas' anchored weeks: ``'W-SUN'`` is Monday–Sunday, labelled Sunday).
    ``'D'``: the day itself.
    """
    kind = _kind(freq)
    if kind == "month":
        return label, label + pd.offsets.MonthEnd(0)
    if kind == "quarter":
        return label, label + pd.offsets.QuarterEnd(0)
    if kind == "week":
        return label - pd.Timedelta(days=6), label
    return label, label


def check_series(
    frame: pd.DataFrame,
    *,
    freq: str,
    season_length: int,
    fill_missing: bool = False,
    name: str = "sales",
    hierarchy: Sequence[str] = (),
) -> SalesData:
    """Check long series ``unique_id, ds, y`` and return them as :class:`SalesData`.

    Parameters
    ----------
    frame
        ``unique_id``, ``ds`` (datetimes or strings pandas can parse), ``y`` (numbers), the
        ``hierarchy`` columns, and any other columns; columns other than these three and the
        hierarchy must be constant within a series when gaps are filled.
    freq
        pandas offset alias of the period grid: ``'MS'``, ``'W-SUN'`` (any weekday) or
        ``'D'``.
    season_length
        Periods per season (12, 52, 7); series with fewer than ``2 * season_length`` periods
        are listed in ``short_series``.
    fill_missing
        False (default): a period missing inside a series (between its first and last
        period) is an error. True: it is added with ``y = 0`` (no sales recorded means none
        sold) and counted in ``notes``.
    name
        File or dataset name used in messages and as ``SalesData.source``.
    hierarchy
        Hierarchy columns, top → bottom; cast to str and placed after ``y``.

    Returns
    -------
    SalesData
        Sorted by ``unique_id, ds``; ``ds`` datetime64[ns], ``y`` float64, ``unique_id`` and
        the hierarchy columns str. ``notes`` records filled periods, series that are zero
        throughout, and short series ("… has 18 periods (months), fewer than two seasons
        (24): a naive model will be used").

    Raises
    ------
    SalesInputError
        Naming ``name``, the column or series, the first offending value and what was
        expected: a missing column; an unparseable or missing ``ds``; a ``y`` that is not a
        finite number, or is negative; rows sharing ``(unique_id, ds)`` (with the first
        duplicate and the count); a ``ds`` off the ``freq`` grid (e.g. 2020-03-15 in monthly
        data); a period missing inside a series when ``fill_missing`` is False; an unknown
        ``freq``; no rows.
    """
    kind = _kind(freq)
    if season_length < 1:
        raise SalesInputError(f"{name}: season_length must be ≥ 1, got {season_length}")
    hierarchy = tuple(hierarchy)
    missing = [c for c in (*SERIES_COLUMNS, *hierarchy) if c not in frame.columns]
    if missing:
        raise SalesInputError(
            f"{name}: column {missing[0]!r} is missing (columns: "
            f"{', '.join(map(str, frame.columns))})"
        )
    if frame.empty:
        raise SalesInputError(f"{name}: no rows; expected at least one period of one series")
    out = frame.copy()
    for column in ("unique_id", *hierarchy):
        _check_text(out, column, name)
        out[column] = out[column].astype(str)
    out["ds"] = _as_dates(out, name)
    out["y"] = _as_values(out, name)
    _check_duplicates(out, name)
    _check_grid(out, freq, kind, name)
    out, filled = _fill_gaps(out, freq, kind, name, fill_missing)
    extra = [c for c in out.columns if c not in (*SERIES_COLUMNS, *hierarchy)]
    out = out.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    out = out[[*SERIES_COLUMNS, *hierarchy, *extra]]

    notes = list(filled)
    sizes = out.groupby("unique_id", sort=True).size()
    zero = out.groupby("unique_id", sort=True)["y"].max() == 0
    if zero.any():
        notes.append(f"{_count(int(zero.sum()), 'series', 'series')} zero throughout: "
                     + _listed(zero.index[zero.to_numpy()]))
    short = sizes[sizes < 2 * season_length]
    for uid, n in list(short.items())[:_MAX_LISTED]:
        notes.append(f"series {uid!r} has {n} periods ({kind}s), fewer than two seasons "
                     f"({2 * season_length}): a naive model will be used")
    if len(short) > _MAX_LISTED:
        notes.append(f"… and {len(short) - _MAX_LISTED} more series with fewer than "
                     f"{2 * season_length} periods")
    return SalesData(
        frame=out,
        hierarchy=hierarchy,
        freq=to_offset(freq).freqstr,
        season_length=int(season_length),
        short_series=tuple(short.index.astype(str)),
        notes=tuple(notes),
        source=name,
    )


def _kind(freq: str) -> str:
    """'month', 'quarter', 'week' or 'day' for a supported pandas alias."""
    try:
        offset = to_offset(freq)
    except (ValueError, TypeError):
        offset = None
    if isinstance(offset, pd.offsets.MonthBegin) and offset.n == 1:
        return "month"
    if (isinstance(offset, pd.offsets.QuarterBegin) and offset.n == 1
            and offset.startingMonth == 1):
        return "quarter"
    if isinstance(offset, pd.offsets.Week) and offset.n == 1 and offset.weekday is not None:
        return "week"
    if isinstance(offset, pd.offsets.Day) and offset.n == 1:
        return "day"
    raise SalesInputError(
        f"frequency {freq!r} is not supported; expected 'MS' (monthly, month start), "
        "'QS' (quarterly, quarters from January), 'W-SUN' (weekly, any weekday) or 'D' "
        "(daily)"
    )


def _check_text(frame: pd.DataFrame, column: str, name: str) -> None:
    values = frame[column]
    bad = values.isna() | (values.astype(str).str.strip() == "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise SalesInputError(
            f"{name}, column {column}: expected a non-empty name, found an empty value at "
            f"row {row + 1}" + _more(int(bad.sum()))
        )


def _as_dates(frame: pd.DataFrame, name: str) -> pd.Series:
    ds = frame["ds"]
    if not pd.api.types.is_datetime64_any_dtype(ds):
        ds = pd.to_datetime(ds, errors="coerce", format="mixed")
    elif getattr(ds.dt, "tz", None) is not None:
        ds = ds.dt.tz_localize(None)
    bad = ds.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise SalesInputError(
            f"{name}, column ds: expected a date, found {frame['ds'].iloc[row]!r} in series "
            f"{frame['unique_id'].iloc[row]!r}" + _more(int(bad.sum()))
        )
    return ds.astype("datetime64[ns]")


def _as_values(frame: pd.DataFrame, name: str) -> pd.Series:
    raw = frame["y"]
    if pd.api.types.is_bool_dtype(raw):
        y = pd.Series(np.nan, index=raw.index)
    else:
        y = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = ~np.isfinite(y.to_numpy())
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        found = "a missing value" if pd.isna(raw.iloc[row]) else _shown(raw.iloc[row])
        raise SalesInputError(
            f"{name}, column y: expected a finite number, found {found} in series "
            f"{frame['unique_id'].iloc[row]!r} at {_day(frame['ds'].iloc[row])}"
            + _more(int(bad.sum()))
        )
    negative = (y < 0).to_numpy()
    if negative.any():
        row = int(np.flatnonzero(negative)[0])
        raise SalesInputError(
            f"{name}, column y: expected a value ≥ 0 (sales cannot be negative), found "
            f"{_shown(raw.iloc[row])} in series {frame['unique_id'].iloc[row]!r} at "
            f"{_day(frame['ds'].iloc[row])}" + _more(int(negative.sum()))
        )
    return y


def _check_duplicates(frame: pd.DataFrame, name: str) -> None:
    dup = frame.duplicated(["unique_id", "ds"], keep=False)
    if dup.any():
        first = frame[dup].iloc[0]
        extra = int(frame.duplicated(["unique_id", "ds"]).sum())
        raise SalesInputError(
            f"{name}: duplicate (unique_id, ds): series {first['unique_id']!r} has more than "
            f"one row at {_day(first['ds'])}; {extra} row(s) repeat a (unique_id, ds) pair; "
            "expected one row per series and period"
        )


def _check_grid(frame: pd.DataFrame, freq: str, kind: str, name: str) -> None:
    offset = to_offset(freq)
    dates = pd.DatetimeIndex(pd.unique(frame["ds"]))
    on_grid = np.array([offset.is_on_offset(d) for d in dates]) & (dates == dates.normalize())
    if on_grid.all():
        return
    off = set(dates[~on_grid])
    bad = frame["ds"].isin(off).to_numpy()
    row = int(np.flatnonzero(bad)[0])
    raise SalesInputError(
        f"{name}: irregular date {_stamp(frame['ds'].iloc[row])} in series "
        f"{frame['unique_id'].iloc[row]!r}: expected {_grid_words(freq, kind)} "
        f"(freq {offset.freqstr!r})" + _more(int(bad.sum()))
    )


def _fill_gaps(
    frame: pd.DataFrame, freq: str, kind: str, name: str, fill_missing: bool
) -> tuple[pd.DataFrame, list[str]]:
    """Positions of each date on one global grid; missing positions inside a series are
    filled with 0 (or raise). With ``fill_missing``, a series that stops reporting before
    the last period of the data (a discontinued product) is filled with 0 up to it too."""
    grid = pd.date_range(frame["ds"].min(), frame["ds"].max(), freq=freq)
    position = grid.get_indexer(frame["ds"])
    by_series = pd.DataFrame({"unique_id": frame["unique_id"].to_numpy(), "pos": position})
    span = by_series.groupby("unique_id", sort=True)["pos"].agg(["min", "max", "size"])
    span["missing"] = span["max"] - span["min"] + 1 - span["size"]
    span["stop"] = len(grid) - 1 if fill_missing else span["max"]
    span["after"] = span["stop"] - span["max"]
    gappy = span[(span["missing"] > 0) | (span["after"] > 0)]
    if gappy.empty:
        return frame, []
    total = int(gappy["missing"].sum())
    if not fill_missing:
        uid = gappy.index[0]
        have = set(position[frame["unique_id"].to_numpy() == uid])
        first_gap = next(p for p in range(gappy.loc[uid, "min"], gappy.loc[uid, "max"])
                         if p not in have)
        raise SalesInputError(
            f"{name}: series {uid!r} has {_count(int(gappy.iloc[0]['missing']), kind)} "
            f"missing between {_day(grid[gappy.loc[uid, 'min']])} and "
            f"{_day(grid[gappy.loc[uid, 'max']])} (first missing: {_day(grid[first_gap])}); "
            f"expected one row per {kind} ({len(gappy)} series with gaps, "
            f"{_count(total, 'missing ' + kind)} in all); fill them with 0 with --fill-missing "
            "(fill_missing=True, "
            "fill_missing = true in study.toml) if no sale is what they mean"
        )
    starts, stops = gappy["min"].to_numpy(), gappy["stop"].to_numpy() + 1
    lengths = stops - starts
    full = pd.DataFrame({
        "unique_id": np.repeat(gappy.index.to_numpy(), lengths),
        "ds": grid[np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)])],
    })
    rows = frame[frame["unique_id"].isin(gappy.index)]
    new = full.merge(rows[["unique_id", "ds"]], how="left", indicator=True)
    new = new[new["_merge"] == "left_only"].drop(columns="_merge")
    constant = rows.drop(columns=["ds", "y"]).drop_duplicates("unique_id")
    new = new.merge(constant, on="unique_id", how="left")
    new["y"] = 0.0
    out = pd.concat([frame, new[frame.columns]], ignore_index=True)
    notes = []
    inside = gappy[gappy["missing"] > 0]
    if len(inside):
        notes.append(f"filled {_count(total, f'missing {kind}')} with 0 in "
                     f"{_count(len(inside), 'series', 'series')}")
    ended = gappy[gappy["after"] > 0]
    if len(ended):
        notes.append(
            f"{_count(len(ended), 'series', 'series')} stop before the last {kind} of the data "
            f"({_day(grid[-1])}): {_count(int(ended['after'].sum()), kind)} after their last "
            f"report filled with 0 (" + _listed(ended.index) + ")")
    return out, notes


def _grid_words(freq: str, kind: str) -> str:
    if kind == "month":
        return "the 1st of a month at 00:00 (monthly data)"
    if kind == "quarter":
        return "1 January, April, July or October at 00:00 (quarterly data)"
    if kind == "week":
        return f"a {to_offset(freq).freqstr[2:].title()} at 00:00 (weekly data)"
    return "a date without a time of day (daily data)"


def _shown(value) -> str:
    """repr of a cell, numpy scalars as plain Python values (``-2.0``, not ``np.float64``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _stamp(value) -> str:
    """The date, with the time of day only when there is one."""
    value = pd.Timestamp(value)
    return _day(value) if value == value.normalize() else str(value)


def _day(value) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _more(n: int) -> str:
    return f" and {n - 1} more" if n > 1 else ""


def _listed(values) -> str:
    values = [str(v) for v in values]
    text = ", ".join(values[:_MAX_LISTED])
    return text + (f" and {len(values) - _MAX_LISTED} more" if len(values) > _MAX_LISTED else "")
