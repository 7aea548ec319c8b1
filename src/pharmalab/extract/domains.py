"""What an extraction covers: the domains (CDM tables) and the window around the index date."""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pharmalab.extract.errors import ExtractInputError


@dataclass(frozen=True)
class Domain:
    """A CDM table an extraction can write.

    Attributes
    ----------
    name : str
        The domain's short name (``condition``).
    table : str
        The CDM table (``condition_occurrence``).
    event_date : str or None
        The date that places an event in the window (None for ``person``).
    """

    name: str
    table: str
    event_date: str | None


DOMAINS: dict[str, Domain] = {
    d.name: d
    for d in (
        Domain("person", "person", None),
        Domain("condition", "condition_occurrence", "condition_start_date"),
        Domain("drug", "drug_exposure", "drug_exposure_start_date"),
        Domain("measurement", "measurement", "measurement_date"),
        Domain("procedure", "procedure_occurrence", "procedure_date"),
        Domain("observation", "observation", "observation_date"),
        Domain("visit", "visit_occurrence", "visit_start_date"),
        Domain("death", "death", "death_date"),
    )
}
DEFAULT_DOMAINS: tuple[str, ...] = tuple(DOMAINS)


def parse_domains(domains: str | Iterable[str] | None) -> tuple[str, ...]:
    """Domain names from ``"person,condition"`` or a list; table names are accepted too.

    Returns
    -------
    tuple of str
        Known domain names, in :data:`DEFAULT_DOMAINS` order, without duplicates.

    Raises
    ------
    ExtractInputError
        For an empty list or an unknown name (the message lists the known ones).
    """
    if domains is None:
        return DEFAULT_DOMAINS
    items = domains.split(",") if isinstance(domains, str) else list(domains)
    by_table = {d.table: d.name for d in DOMAINS.values()}
    chosen = set()
    for item in items:
        name = str(item).strip().lower()
        if not name:
            continue
        name = by_table.get(name, name)
        if name not in DOMAINS:
            raise ExtractInputError(
                f"unknown extraction domain {item!r}; expected some of {', '.join(DOMAINS)}")
        chosen.add(name)
    if not chosen:
        raise ExtractInputError(
            f"no extraction domain given; expected some of {', '.join(DOMAINS)}")
    return tuple(d for d in DEFAULT_DOMAINS if d in chosen)


@dataclass(frozen=True)
class Window:
    """Days relative to each entry's index date (``cohort_start_date``), both inclusive.

    Attributes
    ----------
    start_day, end_day : int or None
        E.g. −365 and 365; None is unbounded on that side.
    """

    start_day: int | None = -365
    end_day: int | None = 365

    def __post_init__(self):
        for name in ("start_day", "end_day"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, numbers.Integral)):
                raise ExtractInputError(
                    f"window {name} must be a whole number of days, got {value!r}")
            if value is not None and abs(value) > 1_000_000:
                raise ExtractInputError(
                    f"window {name} {value} is beyond ±1,000,000 days")
        if (self.start_day is not None and self.end_day is not None
                and self.start_day > self.end_day):
            raise ExtractInputError(
                f"window start {self.start_day} is after its end {self.end_day} (days)")

    @classmethod
    def parse(cls, value: Window | str | tuple | list) -> Window:
        """``"-365:365"``, ``"-365:"`` (no end), ``(-365, 365)`` or a Window.

        Raises
        ------
        ExtractInputError
            For any other form, a non-integer day, or a start after the end.
        """
        if isinstance(value, Window):
            return value
        if isinstance(value, str):
            match = re.fullmatch(r"\s*([+-]?\d+)?\s*:\s*([+-]?\d+)?\s*", value)
            if not match:
                raise ExtractInputError(
                    f"window {value!r}: expected START:END in days, e.g. -365:365")
            start, end = (int(g) if g is not None else None for g in match.groups())
            return cls(start, end)
        if isinstance(value, tuple | list) and len(value) == 2:
            return cls(*value)
        raise ExtractInputError(f"window {value!r}: expected START:END in days, e.g. -365:365")

    @property
    def label(self) -> str:
        """``"-365:365"`` (an open side is empty)."""
        return f"{'' if self.start_day is None else self.start_day}:" \
               f"{'' if self.end_day is None else self.end_day}"
