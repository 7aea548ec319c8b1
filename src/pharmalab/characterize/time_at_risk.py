"""Time-at-risk windows: definitions and the per-entry at-risk periods they give, in the engine.

The semantics are OHDSI CohortIncidence's (``incidenceAnalysis.sql``, step 1): a target
cohort entry counts only inside the observation period that contains its
``cohort_start_date``; the window's start and end are anchored on the entry's
``cohort_start_date`` or ``cohort_end_date`` plus an offset in days, each moved back to the
observation period's end when it falls on or after it; entries whose window then starts
after it ends have no time at risk.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import ibis
import ibis.expr.types as ir

from pharmalab.cdm.eras import collapse_periods
from pharmalab.errors import PharmalabInputError

Anchor = Literal["start", "end"]

# About 2,700 years: larger offsets are mistakes and overflow 32-bit day intervals.
MAX_OFFSET_DAYS = 1_000_000

_TAR_TEXT = re.compile(r"(start|end)([+-]\d+)?:(start|end)([+-]\d+)?")

# CohortIncidence's JSON spells the anchor "start"/"end"; older designs "StartDate"/"EndDate".
_ANCHORS = {"start": "start", "end": "end", "startdate": "start", "enddate": "end",
            "cohort start": "start", "cohort end": "end"}


@dataclass(frozen=True)
class TimeAtRisk:
    """A time-at-risk window relative to a cohort entry (CohortIncidence ``TimeAtRisk``).

    Attributes
    ----------
    id : int
        ``tar_id`` in outputs.
    start_with, end_with : {"start", "end"}
        Anchor of the window's start and end: the entry's ``cohort_start_date`` or
        ``cohort_end_date``.
    start_offset, end_offset : int
        Days added to the anchor (may be negative).
    """

    id: int = 1
    start_with: Anchor = "start"
    start_offset: int = 0
    end_with: Anchor = "end"
    end_offset: int = 0

    def __post_init__(self):
        for name in ("start_with", "end_with"):
            if getattr(self, name) not in ("start", "end"):
                raise PharmalabInputError(
                    f"time at risk {self.id}: {name} must be 'start' or 'end', "
                    f"got {getattr(self, name)!r}")
        for name in ("id", "start_offset", "end_offset"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise PharmalabInputError(
                    f"time at risk {self.id}: {name} must be a whole number of days, "
                    f"got {value!r}")
        for name in ("start_offset", "end_offset"):
            if abs(getattr(self, name)) > MAX_OFFSET_DAYS:
                raise PharmalabInputError(
                    f"time at risk {self.id}: {name} {getattr(self, name)} is beyond "
                    f"±{MAX_OFFSET_DAYS:,} days")
        if self.start_with == self.end_with and self.end_offset < self.start_offset:
            raise PharmalabInputError(
                f"time at risk {self.label}: the window ends before it starts for every entry")

    @property
    def label(self) -> str:
        """E.g. ``cohort start + 0 d → cohort end + 0 d``."""
        return (f"cohort {self.start_with} {self.start_offset:+d} d → "
                f"cohort {self.end_with} {self.end_offset:+d} d")

    @classmethod
    def parse(cls, text: str, id: int = 1) -> TimeAtRisk:
        """Read ``"start+0:end+0"`` (anchor and offset of the start, then of the end).

        Raises
        ------
        PharmalabInputError
            If the text is not two ``start|end±days`` parts separated by ``:``.
        """
        match = _TAR_TEXT.fullmatch(text.replace(" ", "").lower())
        if match is None:
            raise PharmalabInputError(
                f"time at risk {text!r}: expected START:END, each 'start' or 'end' with an "
                "optional offset in days, such as 'start+0:end+0' or 'start+1:start+365'")
        anchors = [(match[1], int(match[2] or 0)), (match[3], int(match[4] or 0))]
        (start_with, start_offset), (end_with, end_offset) = anchors
        return cls(id=id, start_with=start_with, start_offset=start_offset,
                   end_with=end_with, end_offset=end_offset)

    @classmethod
    def from_design(cls, spec: Mapping, where: str = "timeAtRiskDefs") -> TimeAtRisk:
        """Read one CohortIncidence ``timeAtRiskDefs`` entry:
        ``{"id": 1, "start": {"dateField": "start", "offset": 0}, "end": {...}}``.

        Raises
        ------
        PharmalabInputError
            Naming the field that is missing or invalid.
        """
        try:
            start, end = spec["start"], spec["end"]
            values = {}
            for key, part in (("start", start), ("end", end)):
                field_name = str(part.get("dateField", "start")).strip().lower()
                if field_name not in _ANCHORS:
                    raise PharmalabInputError(
                        f"{where} id {spec.get('id')}: {key}.dateField must be 'start' or "
                        f"'end', got {part.get('dateField')!r}")
                values[f"{key}_with"] = _ANCHORS[field_name]
                values[f"{key}_offset"] = part.get("offset", 0)
            return cls(id=spec["id"], **values)
        except KeyError as exc:
            raise PharmalabInputError(f"{where}: entry {dict(spec)} has no {exc}") from None
        except AttributeError:
            raise PharmalabInputError(
                f"{where}: entry {spec!r} is not an object with id, start and end") from None


def at_risk_periods(
    cohort: ir.Table,
    observation_period: ir.Table,
    tars: Sequence[TimeAtRisk],
    *,
    min_days_at_risk: int = 1,
) -> ir.Table:
    """Each cohort entry's time-at-risk period for each window, cut at observation end.

    Parameters
    ----------
    cohort
        Rows of the cohort table to use: ``cohort_definition_id`` (int64), ``subject_id``
        (int64), ``cohort_start_date``, ``cohort_end_date`` (date).
    observation_period
        The CDM table (``person_id``, ``observation_period_start_date``,
        ``observation_period_end_date``).
    tars
        Time-at-risk windows (ids must be distinct).
    min_days_at_risk
        Periods shorter than this many days (start and end included, after the cut at
        observation end) are dropped, as CohortMethod's ``minDaysAtRisk``; the default 1
        keeps every period that does not start after it ends (CohortIncidence).

    Returns
    -------
    ibis Table
        One row per (entry, window) with time at risk: ``cohort_definition_id``, ``tar_id``
        (int64), ``subject_id``, ``cohort_start_date``, ``cohort_end_date``, ``start_date``,
        ``end_date`` (date; the period is inclusive of both) and
        ``observation_period_end_date``. Entries outside every observation period are
        dropped, as are windows that start after they end (CohortIncidence step 1).

    Raises
    ------
    PharmalabInputError
        If no window is given, ids repeat, or ``min_days_at_risk`` is not a whole number ≥ 1.
    """
    if isinstance(min_days_at_risk, bool) or not isinstance(min_days_at_risk, int) \
            or min_days_at_risk < 1:
        raise PharmalabInputError(
            f"min_days_at_risk must be a whole number of days ≥ 1, got {min_days_at_risk!r}")
    if not tars:
        raise PharmalabInputError("no time-at-risk window given")
    ids = [tar.id for tar in tars]
    if len(set(ids)) != len(ids):
        raise PharmalabInputError(f"time-at-risk ids must be distinct, got {ids}")
    op = observation_period
    joined = cohort.join(
        op,
        (cohort.subject_id == op.person_id)
        & (cohort.cohort_start_date >= op.observation_period_start_date)
        & (cohort.cohort_start_date <= op.observation_period_end_date),
    )
    periods = []
    op_end = joined.observation_period_end_date

    def anchored(anchor: Anchor, offset: int):
        base = joined.cohort_start_date if anchor == "start" else joined.cohort_end_date
        moved = (base + ibis.interval(days=offset) if offset else base).cast("date")
        return ibis.cases((moved < op_end, moved), else_=op_end)

    for tar in tars:

        periods.append(joined.select(
            cohort_definition_id=joined.cohort_definition_id.cast("int64"),
            tar_id=ibis.literal(tar.id, "int64"),
            subject_id=joined.subject_id.cast("int64"),
            cohort_start_date=joined.cohort_start_date,
            cohort_end_date=joined.cohort_end_date,
            start_date=anchored(tar.start_with, tar.start_offset),
            end_date=anchored(tar.end_with, tar.end_offset),
            observation_period_end_date=op_end,
        ))
    union = periods[0] if len(periods) == 1 else ibis.union(*periods)
    if min_days_at_risk == 1:
        return union.filter(union.start_date <= union.end_date)
    return union.filter(
        days_between(union.start_date, union.end_date) + 1 >= min_days_at_risk)


def days_between(start, end):
    """Whole days from ``start`` to ``end`` (date columns), as int64: ``end − start``."""
    return end.delta(start, unit="day").cast("int64")


def merge_overlapping(periods: ir.Table, keys: Sequence[str]) -> ir.Table:
    """Collapse overlapping ``[start_date, end_date]`` periods within each group of ``keys``
    into eras (OHDSI "era-fy"; CohortIncidence's gaps-and-islands form).

    Two periods merge when one starts on or before the day the other ends; periods that
    only touch end-to-start + 1 day stay apart, as in CohortIncidence.

    Parameters
    ----------
    periods
        Table with the ``keys`` columns, ``start_date`` and ``end_date`` (date).
    keys
        Grouping columns (e.g. cohort, window and person).

    Returns
    -------
    ibis Table
        ``keys`` + ``start_date`` (first start) + ``end_date`` (last end) per era.
    """
    return collapse_periods(periods, keys, 0).drop("n")
