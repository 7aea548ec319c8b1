"""One Ibis expression per extracted table: members only, events in the window, columns
de-identified by :mod:`pharmalab.extract.columns`, concept names joined from ``concept``.

Nothing runs here; :mod:`pharmalab.extract.write` streams each expression to Parquet.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

from pharmalab.cdm.spec import cdm_spec
from pharmalab.engine import Database
from pharmalab.extract import columns as col
from pharmalab.extract import pseudonyms
from pharmalab.extract.domains import Domain
from pharmalab.extract.members import END, ENTRY, INDEX, OFFSET, PERSON, SUBJECT
from pharmalab.extract.settings import AGE_TOP_CODE, UNSHIFTED_AFTER, ExtractSettings

DAYS = "_x_days"
HMAC_TEXT = "pseudonym: HMAC-SHA256 (RFC 2104) of the decimal id, first 63 bits (BIGINT)"


@dataclass(frozen=True)
class OutputColumn:
    """One column of an extracted table, for the data dictionary.

    Attributes
    ----------
    name : str
    source : str
        The CDM column(s) it comes from (``table.column``), or ``""``.
    transformation : str
        What was done to it (``""``: copied).
    description : str
    """

    name: str
    source: str
    transformation: str
    description: str


@dataclass(frozen=True)
class TablePlan:
    """The expression of one extracted table and what went into it.

    Attributes
    ----------
    domain : Domain
    expr : ibis.Table
        The rows to write (not yet run).
    columns : tuple of OutputColumn
        In the order of ``expr``'s columns.
    dropped : dict
        CDM column → why it was left out.
    """

    domain: Domain
    expr: ir.Table
    columns: tuple[OutputColumn, ...]
    dropped: dict[str, str]


def spec_description(table: str, column: str, version: str) -> str:
    """The CDM specification's description of ``table.column`` (``version`` first)."""
    for v in dict.fromkeys((version, "5.4", "5.3")):
        spec = cdm_spec(v).tables.get(table)
        if spec is not None and column in spec.column_names:
            return spec.column(column).description
    return ""


def in_spec(table: str, column: str) -> bool:
    """Whether ``table.column`` is in OMOP CDM v5.3 or v5.4."""
    return any(t is not None and column in t.column_names
               for t in (cdm_spec(v).tables.get(table) for v in ("5.3", "5.4")))


def table_plan(db: Database, domain: Domain, members: ir.Table, settings: ExtractSettings, *,
               keys: ir.Table | None, concept: ir.Table, cdm_version: str) -> TablePlan:
    """The expression for ``domain`` (see the module docstring).

    Columns, in order: ``person_id``, ``entry_number``, ``days_from_index`` (events) or the
    entry and age columns (person), then the table's CDM columns after
    :func:`pharmalab.extract.columns.classify`, each ``*_concept_id`` followed by its
    ``*_concept_name``; ``zip3`` last in ``person`` when the CDM has a ``location`` table.

    Raises
    ------
    CdmNotFoundError
        If the CDM lacks the domain's table.
    """
    events = db.table(domain.table)
    schema = events.schema()
    kind = db.url.kind
    rules = {name: col.classify(domain.table, name, dtype, settings,
                                in_spec=in_spec(domain.table, name),
                                event_date=domain.event_date)
             for name, dtype in schema.items()}

    rel, names, zip3 = _relation(db, domain, events, members, rules, settings, keys=keys,
                                 concept=concept)
    out: dict[str, ir.Value] = {}
    info: list[OutputColumn] = []

    def add(name, value, source="", transformation="", description=""):
        out[name] = value
        info.append(OutputColumn(name, source, transformation, description))

    table = domain.table
    person_text = HMAC_TEXT if settings.deidentify else ""
    add("person_id", rel[PERSON], f"{table}.person_id", person_text,
        spec_description(table, "person_id", cdm_version))
    add("entry_number", rel[ENTRY], "cohort.cohort_start_date", "",
        "The person's cohort entry these rows belong to: 1 for the earliest "
        "cohort_start_date, 2 for the next, …")
    if domain.event_date is not None:
        add("days_from_index", rel[DAYS],
            f"{table}.{domain.event_date}, cohort.cohort_start_date", "",
            f"Days from the entry's index date (cohort_start_date) to {domain.event_date}; "
            "negative before the index.")
    else:
        _entry_columns(add, rel, settings)

    dropped: dict[str, str] = {}
    for name in schema.names:
        rule = rules[name]
        source = f"{table}.{name}"
        text = spec_description(table, name, cdm_version)
        value = rel[name]
        if name == "person_id":
            continue
        if rule.action == col.DROP:
            dropped[name] = rule.reason
        elif rule.action == col.CONCEPT:
            add(name, value, source, "", text)
            add(col.concept_name_column(name), rel[names[name]], f"concept.concept_name of "
                f"{source}", "joined from the vocabulary", f"The name of {name}.")
        elif rule.action == col.PSEUDONYM:
            digest = pseudonyms.hmac_hex(kind, rel, value, name)
            # OMOP's 0 means "none" (visit_detail_id = 0): a pseudonym would invent a record
            add(name, ibis.ifelse(value == 0, ibis.literal(0, "int64"),
                                  pseudonyms.digest_pseudonym(kind, digest)),
                source, HMAC_TEXT, text)
        elif rule.action == col.SHIFT:
            add(name, shift(value, rel[OFFSET], settings.unshifted_after), source,
                f"shifted by the person's date offset (±{settings.date_shift_days} days)", text)
        elif rule.action == col.RELATIVE:
            day = value.cast("date")
            add(col.relative_column(name),
                ibis.cases((day > settings.unshifted_after, ibis.null("int64")),
                           else_=day.delta(rel[INDEX], unit="day").cast("int64")), source,
                "days from the index date (cohort_start_date); blank for dates after "
                f"{settings.unshifted_after.isoformat()} (open ends)", text)
        else:
            add(name, value, source, "", text)
    if zip3:
        add("zip3", rel._l_zip3, "location.zip", "first 3 characters",
            "The first three digits of the person's ZIP code (location.zip), a "
            "quasi-identifier.")
    return TablePlan(domain, rel.select(**out), tuple(info), dropped)


def _relation(db: Database, domain: Domain, events: ir.Table, members: ir.Table,
              rules: dict, settings: ExtractSettings, *, keys: ir.Table | None,
              concept: ir.Table) -> tuple[ir.Table, dict[str, str], bool]:
    """The table's rows joined to the members (events in the window), the key table when a
    column needs a pseudonym, one ``concept`` view per concept column and, for ``person``,
    the ZIP code's first three digits: (relation, concept column → name column, has zip3)."""
    base = events.join(members, events.person_id == members[SUBJECT])
    if domain.event_date is not None:
        day = events[domain.event_date].cast("date").delta(members[INDEX], unit="day")
        base = base.mutate(**{DAYS: day.cast("int64")})
        window = settings.window
        if window.start_day is not None:
            base = base.filter(base[DAYS] >= window.start_day)
        if window.end_day is not None:
            base = base.filter(base[DAYS] <= window.end_day)
    rel = base
    if any(r.action == col.PSEUDONYM for r in rules.values()):
        rel = rel.cross_join(keys)
    names: dict[str, str] = {}
    for i, name in enumerate(n for n, r in rules.items() if r.action == col.CONCEPT):
        view = concept.select(**{f"_c{i}_id": concept.concept_id.cast("int64"),
                                 f"_c{i}_name": concept.concept_name})
        key = rel[name] if rel[name].type().is_integer() else rel[name].cast("int64")
        rel = rel.left_join(view, key == view[f"_c{i}_id"])
        names[name] = f"_c{i}_name"
    zip3 = domain.name == "person" and db.has_table("location")
    if zip3:
        location = db.table("location")
        places = location.select(_l_location_id=location.location_id.cast("int64"),
                                 _l_zip3=location.zip.cast("string").substr(0, 3))
        rel = rel.left_join(places, rel.location_id.cast("int64") == places._l_location_id)
    return rel, names, zip3


def _entry_columns(add, rel: ir.Table, settings: ExtractSettings) -> None:
    """The person table's entry dates, age at index and age group."""
    deid = settings.deidentify
    if settings.relative_dates:
        add("cohort_end_days_from_index", rel[END].delta(rel[INDEX], unit="day").cast("int64"),
            "cohort.cohort_end_date", "days from the index date",
            "Days from the entry's index date to its cohort_end_date.")
    else:
        shifted = deid and settings.date_shift_days > 0
        text = (f"shifted by the person's date offset (±{settings.date_shift_days} days)"
                if shifted else "")
        for name, column in (("cohort_start_date", INDEX), ("cohort_end_date", END)):
            value = (shift(rel[column], rel[OFFSET], settings.unshifted_after) if shifted
                     else rel[column])
            add(name, value, f"cohort.{name}", text,
                "The entry's index date." if column == INDEX else "The entry's end date.")
    age = (rel[INDEX].year().cast("int64") - rel.year_of_birth.cast("int64"))
    top = f"top-coded at {AGE_TOP_CODE} (HIPAA Safe Harbor: {AGE_TOP_CODE} means " \
          f"{AGE_TOP_CODE} or older)"
    add("age_at_index", ibis.least(age, AGE_TOP_CODE) if deid else age,
        "person.year_of_birth, cohort.cohort_start_date", top if deid else "",
        "Age at the index date in years: year of cohort_start_date minus year_of_birth "
        "(OHDSI FeatureExtraction).")
    add("age_group", age_group(age, settings.age_band_years),
        "person.year_of_birth, cohort.cohort_start_date", f"{settings.age_band_years}-year bands",
        f"Age at index in {settings.age_band_years}-year bands ('40-44'); '{AGE_TOP_CODE}+' "
        "from 90. A quasi-identifier of the k-anonymity report.")


def age_group(age: ir.IntegerValue, width: int) -> ir.StringValue:
    """``"40-44"``-style bands of ``width`` years, ``"90+"`` from the top code."""
    low = (age // width) * width
    high = ibis.least(low + width - 1, AGE_TOP_CODE - 1)
    label = low.cast("string") + "-" + high.cast("string")
    return ibis.ifelse(age >= AGE_TOP_CODE, f"{AGE_TOP_CODE}+", label)


def shift(value: ir.Value, days: ir.IntegerValue, unshifted_after: dt.date = UNSHIFTED_AFTER
          ) -> ir.Value:
    """A date or timestamp moved by ``days``; a date stays a date. Dates after
    ``unshifted_after`` (sentinels such as ``9999-12-31``) are kept as they are: moving them
    would give year 10000, which no Parquet reader accepts, and they say nothing of the
    person.

    DuckDB's ``DATE + INTERVAL`` is a TIMESTAMP and Ibis drops a cast to the type it already
    believes the value has, so dates go through an explicit timestamp → date cast.
    """
    sentinel = value.cast("date") > unshifted_after
    # The sentinel itself is never moved, even inside the expression (no overflow).
    base = ibis.cases((sentinel, ibis.literal(unshifted_after).cast(value.type())),
                      else_=value)
    moved = base + days.as_interval("D")
    if value.type().is_date():
        moved = moved.cast("timestamp").cast("date")
    return ibis.cases((sentinel, value), else_=moved)
