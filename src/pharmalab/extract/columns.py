"""What happens to each CDM column in an extraction (one rule per column, no engine work).

Under de-identification the output keeps only columns of the OMOP CDM specification (an
allow-list, so a site's own extra columns never leave) and, of those:

==========================================  =================================================
column                                      becomes
==========================================  =================================================
``person_id``                               the person's pseudonym
``*_concept_id``                            kept, with ``*_concept_name`` from ``concept``
``provider_id``, ``care_site_id``,          dropped (HIPAA Safe Harbor identifiers and
``location_id``                             links to them)
other ``*_id``                              a pseudonym (same key, same function)
text (``*_source_value``, ``sig``,          dropped: source values and free text (every text
``stop_reason``, ``value_as_string``, …)    column of the clinical tables is one)
dates                                       shifted by the person's offset, or, with
                                            relative dates, days from the index date
datetimes                                   shifted, or dropped with relative dates
birth (``year_of_birth`` …)                 dropped: ``age_at_index`` and ``age_group``
numbers (``quantity``, ``value_as_number``)  kept
==========================================  =================================================

Without de-identification every column is kept as it is (plus concept names).
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis.expr.datatypes as dt

from pharmalab.extract.settings import ExtractSettings

DROPPED_IDENTIFIERS = ("provider_id", "care_site_id", "location_id")
BIRTH_COLUMNS = ("year_of_birth", "month_of_birth", "day_of_birth", "birth_datetime")

PERSON = "person"  # the person's pseudonym (or id)
CONCEPT = "concept"  # kept, plus its concept name
PSEUDONYM = "pseudonym"
SHIFT = "shift"  # date or datetime moved by the person's offset
RELATIVE = "relative"  # date → days from the index date
KEEP = "keep"
DROP = "drop"


@dataclass(frozen=True)
class ColumnRule:
    """The fate of one column: ``action`` (module constants) and, for a drop, why."""

    action: str
    reason: str = ""


def classify(table: str, column: str, dtype: dt.DataType, settings: ExtractSettings, *,
             in_spec: bool, event_date: str | None) -> ColumnRule:
    """The rule for ``table.column`` (table in the module docstring)."""
    deid = settings.deidentify
    if deid and not in_spec:
        return ColumnRule(DROP, "not a column of the OMOP CDM specification")
    if column == "person_id":
        return ColumnRule(PERSON)
    if column.endswith("_concept_id"):
        return ColumnRule(CONCEPT)
    if deid and table == "person" and column in BIRTH_COLUMNS:
        return ColumnRule(DROP, "birth date: replaced by age_at_index and age_group")
    if deid and column in DROPPED_IDENTIFIERS:
        return ColumnRule(DROP, "provider, care-site and location identifiers are dropped")
    if deid and column.endswith("_id"):
        return ColumnRule(PSEUDONYM)
    if deid and dtype.is_string():
        return ColumnRule(DROP, "source value or free text")
    if dtype.is_date() or dtype.is_timestamp():
        if settings.relative_dates:
            if column == event_date:
                return ColumnRule(DROP, "the event date: kept as days_from_index")
            if dtype.is_timestamp():
                return ColumnRule(DROP, "relative dates: times of day are dropped")
            return ColumnRule(RELATIVE)
        return ColumnRule(SHIFT if deid and settings.date_shift_days else KEEP)
    return ColumnRule(KEEP)


def concept_name_column(column: str) -> str:
    """``condition_concept_id`` → ``condition_concept_name``."""
    return column.removesuffix("_id") + "_name"


def relative_column(column: str) -> str:
    """``drug_exposure_end_date`` → ``drug_exposure_end_days_from_index``."""
    return column.removesuffix("_date") + "_days_from_index"
