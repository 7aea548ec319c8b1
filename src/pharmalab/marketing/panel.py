"""The input of a marketing-mix model: a long panel, one row per (geo, period).

Read from CSV or Parquet, checked once here, and handed to the model as a :class:`Panel`:
every error is one line naming the file, the column, the row or the channel, and what was
expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pharmalab.errors import MarketingInputError, SalesInputError

__all__ = ["Panel", "check_panel", "read_panel", "MEDIA", "MIN_PERIODS", "NATIONAL"]

# The shortest history a yearly-seasonal MMM can be fitted on: one year of data plus
# (in weeks) the carry-over that is only partly seen at the start.
MIN_PERIODS = {"week": 52, "month": 24}
# The one region of a panel without a geo column.
NATIONAL = "national"
# Prefix of the frame column holding a channel's activity (its media input) when given.
MEDIA = "media:"


@dataclass(frozen=True)
class Panel:
    """A checked marketing panel.

    Attributes
    ----------
    frame : pandas.DataFrame
        Sorted by ``ds`` then ``geo``: ``geo`` (str; :data:`NATIONAL` without a geo column),
        ``ds`` (datetime64[ns], period label), ``y`` (float64, units), one column per channel
        named as the channel (float64, EUR spent in the period), ``media:<channel>`` for a
        channel measured by an activity (calls, impressions), the control columns (float64)
        and, with a constraint column, ``censored`` (bool: demand was above what could be
        supplied, so ``y`` is a lower bound on demand).
    channels : tuple of str
        Channel names (the spend columns without their suffix).
    controls : tuple of str
    freq : str
        ``'W-…'`` (weekly) or ``'MS'`` (monthly).
    source : str
        The file read.
    columns : dict
        The user's column names: ``date``, ``target``, ``geo`` (or None), ``constraint`` (or
        None), ``spend`` (channel → column).
    constraint_kind : str or None
        ``'flag'`` (0/1) or ``'supply'`` (units available per row).
    """

    frame: pd.DataFrame
    channels: tuple[str, ...]
    controls: tuple[str, ...]
    freq: str
    source: str
    columns: dict
    constraint_kind: str | None = None

    @property
    def geos(self) -> list[str]:
        return list(pd.unique(self.frame["geo"]))

    @property
    def dates(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(pd.unique(self.frame["ds"]))

    @property
    def has_geo(self) -> bool:
        return self.columns.get("geo") is not None

    @property
    def kind(self) -> str:
        return "month" if self.freq == "MS" else "week"

    def grid(self, column: str | list[str]) -> np.ndarray:
        """A column as an array ``(period, geo)`` (or ``(period, geo, k)`` for a list)."""
        n, g = len(self.dates), len(self.geos)
        if isinstance(column, list):
            values = self.frame[column].to_numpy(dtype=float)
            return values.reshape(n, g, len(column))
        return self.frame[column].to_numpy().reshape(n, g)

    @property
    def spend(self) -> np.ndarray:
        """Spend ``(period, geo, channel)``, EUR."""
        return self.grid(list(self.channels))

    @property
    def media(self) -> np.ndarray:
        """The model's media input ``(period, geo, channel)``: a channel's activity (calls,
        impressions) where the panel has one, else its spend (EUR)."""
        return self.grid([f"{MEDIA}{c}" if f"{MEDIA}{c}" in self.frame else c
                          for c in self.channels])

    @property
    def cost_per_unit(self) -> np.ndarray:
        """EUR per unit of media input ``(geo, channel)``: spend / activity over the panel
        (1 where the media input is the spend; the national ratio for a region without
        activity)."""
        spend, media = self.spend.sum(axis=0), self.media.sum(axis=0)
        national = self.spend.sum(axis=(0, 1)) / np.maximum(self.media.sum(axis=(0, 1)), 1e-12)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(media > 0, spend / media, national[None, :])
        return ratio

    @property
    def target(self) -> np.ndarray:
        """Observed units ``(period, geo)``."""
        return self.grid("y").astype(float)

    @property
    def censored(self) -> np.ndarray:
        """``(period, geo)`` bool: rows whose demand exceeded supply."""
        if "censored" not in self.frame:
            return np.zeros((len(self.dates), len(self.geos)), dtype=bool)
        return self.grid("censored").astype(bool)

    def head(self, periods: int) -> Panel:
        """The first ``periods`` periods (a training window)."""
        keep = self.frame["ds"].isin(self.dates[:periods])
        return _replace_frame(self, self.frame[keep].reset_index(drop=True))

    def tail(self, periods: int) -> Panel:
        """The last ``periods`` periods (a hold-out window)."""
        keep = self.frame["ds"].isin(self.dates[len(self.dates) - periods:])
        return _replace_frame(self, self.frame[keep].reset_index(drop=True))


def _replace_frame(panel: Panel, frame: pd.DataFrame) -> Panel:
    return Panel(frame, panel.channels, panel.controls, panel.freq, panel.source,
                 panel.columns, panel.constraint_kind)


def read_panel(path: str | Path, *, date_col: str, target_col: str, channels: list[str],
               spend_suffix: str = "_spend", geo_col: str | None = None,
               controls: list[str] | None = None,
               constraint_col: str | None = None,
               activity: dict[str, str] | None = None) -> Panel:
    """Read and check a marketing panel file (CSV, or Parquet by its ``.parquet`` suffix).

    Parameters
    ----------
    path : str or pathlib.Path
    date_col : str
        Period column: weekly (every date the same weekday, 7 days apart) or monthly (the 1st
        of each month).
    target_col : str
        Scripts or units per row (≥ 0).
    channels : list of str
        Channel names; each has a spend column ``<channel><spend_suffix>`` (EUR, ≥ 0).
    spend_suffix : str, default '_spend'
    geo_col : str, optional
        Region column; without it the panel is one national series.
    controls : list of str, optional
        Numeric columns the model adjusts for (competitor entry, price, …).
    constraint_col : str, optional
        Supply constraint: a 0/1 flag (1 = scripts were capped by supply), or the units
        available per row (a row whose scripts reach it is capped; empty = no limit).
    activity : dict, optional
        Channel → activity column (calls, impressions, samples dropped; ≥ 0): the model's
        media input for that channel, as Meridian uses impressions; ROI stays per EUR of
        spend, and a budget is turned into activity at the channel's cost per unit.

    Returns
    -------
    Panel

    Raises
    ------
    MarketingInputError
        See :func:`check_panel`; also a missing or unreadable file.
    """
    path = Path(path)
    if path.is_dir():
        raise MarketingInputError(f"panel file {str(path)!r} is a folder; expected a CSV or "
                                  "Parquet file with one row per (geo, period)")
    if not path.is_file():
        raise MarketingInputError(f"panel file {str(path)!r} does not exist")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            # region codes are names: "01" stays "01", and never becomes the number 1
            frame = pd.read_csv(path, dtype={geo_col: str} if geo_col else None)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise MarketingInputError(f"{path.name}: cannot be read ({exc})") from None
    if len(frame.columns) == 1 and ";" in str(frame.columns[0]):
        raise MarketingInputError(f"{path.name}: one column {str(frame.columns[0])[:40]!r}…: "
                                  "the file seems separated by ';'; expected a comma-separated "
                                  "CSV")
    return check_panel(frame, date_col=date_col, target_col=target_col, channels=channels,
                       spend_suffix=spend_suffix, geo_col=geo_col, controls=controls,
                       constraint_col=constraint_col, activity=activity, name=path.name,
                       source=str(path))


def check_panel(frame: pd.DataFrame, *, date_col: str, target_col: str, channels: list[str],
                spend_suffix: str = "_spend", geo_col: str | None = None,
                controls: list[str] | None = None, constraint_col: str | None = None,
                activity: dict[str, str] | None = None, name: str = "panel",
                source: str = "") -> Panel:
    """Check a panel frame and return it as a :class:`Panel` (arguments as
    :func:`read_panel`; ``name`` is used in messages).

    Raises
    ------
    MarketingInputError
        One line naming ``name`` and the column, row, geo or channel: a missing column; no
        rows; a date that cannot be read, or dates that are neither weekly nor monthly; a
        (geo, date) given twice; a geo missing a period the others have; a gap (a period
        missing from the whole panel); a missing, non-numeric or negative spend or target;
        a channel that never spends (or is never active); fewer than 52 weekly or 24
        monthly periods; a constant spend, activity, control or target column; a constraint
        column that is neither 0/1 nor units ≥ 0; an activity for an unknown channel.
    """
    controls = list(controls or [])
    channels = [c.strip() for c in channels]
    if not channels or any(not c for c in channels):
        raise MarketingInputError(f"{name}: empty channel name in {channels}; give channel "
                                  "names separated by commas (e.g. detailing,samples)")
    if len(set(channels)) != len(channels):
        raise MarketingInputError(f"{name}: channel named twice in {channels}")
    spend_cols = {c: f"{c}{spend_suffix}" for c in channels}
    activity = dict(activity or {})
    unknown = [c for c in activity if c not in channels]
    if unknown:
        raise MarketingInputError(f"{name}: activity given for {unknown[0]!r}, which is not "
                                  f"among the channels ({', '.join(channels)})")
    wanted = [date_col, target_col, *spend_cols.values(), *activity.values(), *controls]
    wanted += [c for c in (geo_col, constraint_col) if c]
    missing = [c for c in dict.fromkeys(wanted) if c not in frame.columns]
    if missing:
        hint = ""
        if missing[0] in spend_cols.values():
            hint = f" (spend columns are <channel>{spend_suffix}; --spend-suffix sets it)"
        raise MarketingInputError(f"{name}: column {missing[0]!r} is missing{hint}; columns: "
                                  f"{', '.join(map(str, frame.columns))}")
    clash = set(channels) & ({"geo", "ds", "y", "censored"} | set(controls))
    if clash:
        raise MarketingInputError(f"{name}: channel name {sorted(clash)[0]!r} clashes with a "
                                  "column name the model uses; rename the channel")
    if frame.empty:
        raise MarketingInputError(f"{name}: no rows; expected one row per (geo, period)")

    out = pd.DataFrame(index=frame.index)
    if geo_col:
        geo = frame[geo_col]
        empty = geo.isna() | (geo.astype(str).str.strip() == "")
        if empty.any():
            raise MarketingInputError(f"{name}: {geo_col} is empty at row "
                                      f"{_row(empty)}; every row needs its region")
        out["geo"] = geo.astype(str).str.strip()
    else:
        out["geo"] = NATIONAL
    out["ds"], freq = _dates_and_freq(frame[date_col], date_col, name)
    out["y"] = _numbers(frame[target_col], target_col, name, "scripts or units")
    for channel, column in spend_cols.items():
        out[channel] = _numbers(frame[column], column, name, "spend in EUR")
    for channel, column in activity.items():
        out[f"{MEDIA}{channel}"] = _numbers(frame[column], column, name,
                                           "an activity count (calls, impressions)")
    for column in controls:
        out[column] = _numbers(frame[column], column, name, "a number", negative_ok=True)

    out = _check_grid(out, freq, geo_col, date_col, name)
    kind = "month" if freq == "MS" else "week"
    periods = out["ds"].nunique()
    if periods < MIN_PERIODS[kind]:
        raise MarketingInputError(
            f"{name}: {periods} {kind}ly periods; an MMM with yearly seasonality needs at "
            f"least {MIN_PERIODS[kind]} {kind}ly periods")
    for channel, column in spend_cols.items():
        if (out[channel] == 0).all():
            raise MarketingInputError(f"{name}: channel {channel!r} never spends ({column} is "
                                      "0 in every row); drop it from --channels")
    for channel, column in activity.items():
        if (out[f"{MEDIA}{channel}"] == 0).all():
            raise MarketingInputError(f"{name}: channel {channel!r} is never active ({column} "
                                      "is 0 in every row)")
    for column, label in ([("y", target_col)] + [(c, spend_cols[c]) for c in channels]
                          + [(f"{MEDIA}{c}", a) for c, a in activity.items()]
                          + [(c, c) for c in controls]):
        if out[column].nunique() == 1:
            raise MarketingInputError(
                f"{name}: column {label!r} is constant ({_num(out[column].iloc[0])} in every "
                "row); a constant column carries no information the model can use")

    kind_of_constraint = None
    if constraint_col:
        out["censored"], kind_of_constraint = _constraint(frame[constraint_col], out["y"],
                                                          constraint_col, name)
    # regions keep the order in which the file first lists them (not "1, 10, 2")
    order = {g: i for i, g in enumerate(pd.unique(out["geo"]))}
    out = (out.assign(_order=out["geo"].map(order))
           .sort_values(["ds", "_order"], kind="stable").drop(columns="_order")
           .reset_index(drop=True))
    unused = [str(c) for c in frame.columns if str(c).endswith(spend_suffix)
              and str(c) not in spend_cols.values()] if spend_suffix else []
    columns = {"date": date_col, "target": target_col, "geo": geo_col,
               "constraint": constraint_col, "spend": spend_cols, "activity": activity,
               "unused_spend": unused}
    return Panel(out, tuple(channels), tuple(controls), freq, source or name, columns,
                 kind_of_constraint)


def _row(mask: pd.Series) -> int:
    """1-based data row (after the header) of the first True."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 1


def _num(value) -> str:
    value = float(value)
    return f"{value:g}"


def _dates(values: pd.Series, column: str, name: str, dayfirst: bool = False) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        ds = values.dt.tz_localize(None) if getattr(values.dt, "tz", None) else values
    else:
        ds = pd.to_datetime(values, errors="coerce", format="mixed", dayfirst=dayfirst)
    bad = ds.isna()
    if bad.any():
        raise MarketingInputError(f"{name}: {column} at row {_row(bad)} is "
                                  f"{_shown(values[bad].iloc[0])}, not a date (expected "
                                  "YYYY-MM-DD)")
    return ds.astype("datetime64[ns]")


def _dates_and_freq(values: pd.Series, column: str, name: str) -> tuple[pd.Series, str]:
    """Dates and their frequency. Slashed dates are read month first (pandas' default);
    when only day first gives a weekly or monthly grid (European 13/01/2024), day first."""
    ds = _dates(values, column, name)
    try:
        return ds, _freq(ds, column, name)
    except MarketingInputError:
        if values.dtype != object or not values.astype(str).str.contains("/").any():
            raise
        try:
            again = _dates(values, column, name, dayfirst=True)
            return again, _freq(again, column, name)
        except MarketingInputError:
            pass
        raise


def _shown(value) -> str:
    """A cell for a message: plain Python values (``-5``, not ``np.int64(-5)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _freq(ds: pd.Series, column: str, name: str) -> str:
    from pharmalab.sales import infer_freq

    try:
        freq = infer_freq(ds, name=f"{name}, column {column}")
    except SalesInputError as exc:
        raise MarketingInputError(str(exc).split("; or pass freq")[0]) from None
    if freq == "MS" or freq.startswith("W-"):
        return freq
    raise MarketingInputError(
        f"{name}: {column} holds daily dates; expected weekly (one date per week, all the "
        "same weekday) or monthly (the 1st of each month) periods; aggregate daily data first")


def _numbers(values: pd.Series, column: str, name: str, what: str,
             negative_ok: bool = False) -> pd.Series:
    numbers = (pd.Series(np.nan, index=values.index) if pd.api.types.is_bool_dtype(values)
               else pd.to_numeric(values, errors="coerce").astype(float))
    bad = ~np.isfinite(numbers)
    if bad.any():
        found = values[bad].iloc[0]
        shown = "an empty cell" if pd.isna(found) else _shown(found)
        raise MarketingInputError(f"{name}: {column} at row {_row(bad)} is {shown}; expected "
                                  f"{what} (a finite number)")
    if not negative_ok and (numbers < 0).any():
        neg = numbers < 0
        raise MarketingInputError(f"{name}: {column} at row {_row(neg)} is "
                                  f"{_num(numbers[neg].iloc[0])}; expected {what} ≥ 0")
    return numbers


def _check_grid(out: pd.DataFrame, freq: str, geo_col: str | None, date_col: str,
                name: str) -> pd.DataFrame:
    """One row per (geo, period), every geo on every period of one unbroken grid."""
    dup = out.duplicated(["geo", "ds"], keep=False)
    if dup.any():
        first = out[dup].iloc[0]
        where = f"geo {first['geo']!r} at " if geo_col else ""
        hint = "" if geo_col else " (a panel with regions needs --geo-col)"
        raise MarketingInputError(
            f"{name}: {where}{first['ds']:%Y-%m-%d} appears in "
            f"{int(((out['geo'] == first['geo']) & (out['ds'] == first['ds'])).sum())} rows; "
            f"expected one row per (geo, {date_col}){hint}")
    grid = pd.date_range(out["ds"].min(), out["ds"].max(), freq=freq)
    present = pd.DatetimeIndex(out["ds"].unique())
    gaps = grid.difference(present)
    if len(gaps):
        kind = "month" if freq == "MS" else "week"
        raise MarketingInputError(
            f"{name}: gap in {date_col}: no rows for {gaps[0]:%Y-%m-%d}"
            f"{f' and {len(gaps) - 1} more {kind}s' if len(gaps) > 1 else ''}; expected every "
            f"{kind} from {grid[0]:%Y-%m-%d} to {grid[-1]:%Y-%m-%d}")
    counts = out.groupby("geo")["ds"].nunique()
    short = counts[counts < len(grid)]
    if len(short):
        geo = short.index[0]
        have = set(out.loc[out["geo"] == geo, "ds"])
        first = next(d for d in grid if d not in have)
        raise MarketingInputError(
            f"{name}: geo {geo!r} has no row for {first:%Y-%m-%d} "
            f"({len(grid) - int(short.iloc[0])} of {len(grid)} periods missing); every geo "
            "needs every period")
    return out


def _constraint(values: pd.Series, y: pd.Series, column: str,
                name: str) -> tuple[pd.Series, str]:
    """A 0/1 flag, or the supply available per row (empty = unconstrained)."""
    numbers = pd.to_numeric(values, errors="coerce")
    text_bad = values.notna() & numbers.isna()
    if text_bad.any():
        raise MarketingInputError(
            f"{name}: {column} at row {_row(text_bad)} is {_shown(values[text_bad].iloc[0])}; "
            "expected 0/1 (supply-constrained) or the units available")
    if (numbers < 0).any():
        neg = numbers < 0
        raise MarketingInputError(f"{name}: {column} at row {_row(neg)} is "
                                  f"{_num(numbers[neg].iloc[0])}; expected 0/1 or units ≥ 0")
    observed = set(numbers.dropna().unique())
    if observed <= {0.0, 1.0} and numbers.notna().all():
        censored, kind = numbers.astype(bool), "flag"
        how = "flags"
    else:
        # available supply: scripts at (or above) what was available were capped by it
        censored, kind = numbers.notna() & (y >= numbers - 1e-9), "supply"
        how = "read as the units available per row, caps"
    # demand is learnt from the rows that were not capped: a column capping most rows is a
    # mistake (a stray 2 in a 0/1 flag turns it into 'units available' ≤ every row)
    if censored.mean() > 0.5:
        stray = ""
        others = numbers.notna() & ~numbers.isin([0.0, 1.0])
        if kind == "supply" and {0.0, 1.0} & observed and others.mean() < 0.05:
            stray = (f" (row {_row(others)} holds {_shown(values[others].iloc[0])}: a 0/1 flag "
                     "with another value is read as units available)")
        raise MarketingInputError(
            f"{name}: {column} {how} {int(censored.sum())} of {len(censored)} rows as "
            f"supply-constrained{stray}; expected a minority (0/1 flags with 1 where scripts "
            "were capped, or the units available per row, empty where supply was not "
            "limited)")
    return censored, kind
