"""Check a CDM in the database against the specification, and summarize it.

Every check is an aggregate computed in the engine; only counts come back. The checks follow
the spirit of OHDSI DataQualityDashboard's conformance and plausibility checks
(``isRequired``, ``cdmDatatype``, ``isPrimaryKey``, ``isForeignKey`` to person,
``plausibleTemporalAfter``, ``withinVisitDates``-like observation-period coverage), reported
as findings, not crashes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import ibis
import ibis.expr.datatypes as idt
import pandas as pd

from pharmalab.cdm.spec import Table, cdm_spec, normalize_version
from pharmalab.engine import Database
from pharmalab.errors import CdmInputError, CdmNotFoundError
from pharmalab.privacy import DEFAULT_MIN_CELL_COUNT, suppress

FINDING_COLUMNS = ["check", "table", "column", "severity", "rows_affected", "rows_total", "detail"]

# Vocabulary tables the analyses read: concept sets with descendants need concept_ancestor,
# "mapped" concepts concept_relationship, names concept. Absent → an error.
ANALYSIS_VOCABULARY = ("concept", "concept_ancestor", "concept_relationship", "vocabulary")
# Clinical domains cohorts and characterization look in. Absent or empty → a warning.
CLINICAL_TABLES = ("visit_occurrence", "condition_occurrence", "drug_exposure",
                   "procedure_occurrence", "device_exposure", "measurement", "observation",
                   "death")
# In the specification but written by analyses, not shipped with a CDM.
RESULTS_TABLES = ("cohort", "cohort_definition")
# Dates before this are implausible for care records (DataQualityDashboard uses 1850 for
# birth and 1950 for events; the 1900 sits between).
EARLIEST_PLAUSIBLE_DATE = dt.date(1900, 1, 1)


@dataclass
class CheckResult:
    """Result of :func:`check`.

    Attributes
    ----------
    findings : pandas.DataFrame
        One row per finding: ``check`` (str), ``table`` (str), ``column`` (str, '' for a
        table-level finding), ``severity`` ('error' | 'warning' | 'info'), ``rows_affected``
        (Int64, small counts suppressed), ``rows_affected_suppressed`` (bool), ``rows_total``
        (Int64), ``detail`` (str). Written as ``cdm_check.csv``.
    tables : pandas.DataFrame
        ``table`` (str), ``schema`` (str), ``rows`` (Int64) for every CDM table present.
    summary : dict
        ``cdm_version``, ``cdm_source_name``, ``source_cdm_version``, ``vocabulary_version``,
        ``persons``, ``observation_period_start`` and ``observation_period_end`` (ISO dates),
        ``tables_present``, ``required_tables_missing``, ``analysis_tables_missing`` (the
        vocabulary tables and clinical domains analyses read that are absent), ``errors``,
        ``warnings``.
    """

    findings: pd.DataFrame
    tables: pd.DataFrame
    summary: dict

    @property
    def ok(self) -> bool:
        """True when no finding has severity 'error'."""
        return not (self.findings["severity"] == "error").any()


def check(
    db: Database,
    *,
    cdm_version: str | None = None,
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT,
) -> CheckResult:
    """Validate the CDM in ``db`` against the specification and summarize it.

    Checks (``check`` column): ``missing_table`` (a required table), ``missing_column``,
    ``wrong_type`` (the column's type family differs from the spec: integer, floating,
    date, timestamp, string), ``required_value_missing`` (NULL in a required column),
    ``end_date_missing`` (NULL end date in an optional column, info), ``non_unique_primary_key``
    (rows − distinct keys), ``orphan_person_id`` (rows whose ``person_id`` is not in
    ``person``), ``end_before_start`` (``*_end_date`` < ``*_start_date``),
    ``outside_observation_period`` (events whose date is in no observation period of the
    person; orphans included), ``missing_table`` (error for a required table and for the
    vocabulary tables analyses read — concept, concept_ancestor, concept_relationship,
    vocabulary; warning for a clinical domain table; info for any other table of the
    specification), ``empty_table`` (a clinical domain without rows), ``date_after_today``
    and ``date_before_1900`` (any date column; OMOP's open end ``9999-12-31`` counts as after
    today), ``event_after_death`` (the event date after the person's death date),
    ``event_before_birth`` (before ``birth_datetime``, or when only ``year_of_birth`` /
    ``month_of_birth`` are known before the first day they allow; an event on the birth date
    is fine), ``drug_era_differs`` (warning: shipped ``drug_era`` rows with
    no equal row in the one derived from ``drug_exposure`` by OHDSI's era logic,
    :func:`pharmalab.cdm.eras.compare_drug_eras`).

    Parameters
    ----------
    db
        Database holding the CDM (and vocabulary) schemas.
    cdm_version
        '5.3' or '5.4'; None reads ``cdm_source.cdm_version`` (default '5.4' if absent).
    min_cell_count
        Counts from 1 to ``min_cell_count - 1`` in ``rows_affected`` are suppressed
        (:func:`pharmalab.privacy.suppress`).

    Returns
    -------
    CheckResult

    Raises
    ------
    CdmNotFoundError
        If the database holds none of the CDM tables.
    """
    present = set(db.list_tables("cdm")) | set(db.list_tables("vocab"))
    version = _version(db, present, cdm_version)
    spec = cdm_spec(version)
    tables = {name: t for name, t in spec.tables.items() if name in present}
    if not tables:
        raise CdmNotFoundError(
            f"no OMOP CDM table found in {db.url.redacted()}"
            + (f" (schema {db.cdm_schema!r})" if db.cdm_schema else "")
            + ("; load the tables with bq load (a Parquet export) into that dataset"
               if db.url.kind == "bigquery"
               else "; load one with: pharmalab cdm load SOURCE --cdm URL")
        )
    findings: list[dict] = []
    rows: dict[str, int] = {}
    for name, t in spec.tables.items():
        if name not in tables and name not in RESULTS_TABLES:
            findings.append(_missing_table(name, t, version))
    for name, t in tables.items():
        expr = db.table(name, t.role)
        rows[name] = _check_table(t, expr, findings)
        if rows[name] == 0 and name in CLINICAL_TABLES:
            findings.append(_finding("empty_table", name, "", "warning", 0, 0,
                                     "no rows: analyses of this domain will find nothing"))
    _check_person_links(db, tables, rows, findings)
    _check_birth_and_death(db, tables, rows, findings)
    _check_drug_era(db, present, findings)

    frame = pd.DataFrame(findings, columns=FINDING_COLUMNS)
    frame["rows_total"] = frame["rows_total"].astype("Int64")
    frame = suppress(frame, ["rows_affected"], min_cell_count)
    table_rows = pd.DataFrame(
        [{"table": n, "schema": db.schema(tables[n].role) or "", "rows": r}
         for n, r in rows.items()]
    ).astype({"rows": "Int64"})
    summary = _summary(db, tables, version, rows, frame)
    return CheckResult(findings=frame, tables=table_rows, summary=summary)


def summary(db: Database, *, cdm_version: str | None = None) -> dict:
    """The summary part of :func:`check` alone (no checks): version, persons, date range.

    Returns
    -------
    dict
        As ``CheckResult.summary`` without the finding counts.

    Raises
    ------
    CdmNotFoundError
        If the database holds none of the CDM tables.
    """
    present = set(db.list_tables("cdm")) | set(db.list_tables("vocab"))
    spec = cdm_spec(_version(db, present, cdm_version))
    tables = {n: t for n, t in spec.tables.items() if n in present}
    if not tables:
        raise CdmNotFoundError(f"no OMOP CDM table found in {db.url.redacted()}")
    rows = {n: int(db.table(n, t.role).count().execute()) for n, t in tables.items()}
    return _summary(db, tables, spec.version, rows, None)


def _version(db: Database, present: set[str], cdm_version: str | None) -> str:
    if cdm_version:
        return normalize_version(cdm_version)
    if "cdm_source" in present:
        source = db.table("cdm_source")
        if "cdm_version" in source.columns:
            value = source.cdm_version.cast("string").max().execute()
            try:
                return normalize_version(value)
            except CdmInputError:
                pass
    return "5.4" if "episode" in present else "5.3"


def _finding(check, table, column, severity, affected, total, detail) -> dict:
    return {"check": check, "table": table, "column": column, "severity": severity,
            "rows_affected": affected, "rows_total": total, "detail": detail}


def _family(dtype: idt.DataType) -> str:
    if dtype.is_integer():
        return "integer"
    if dtype.is_floating() or dtype.is_decimal():
        return "floating"
    if dtype.is_timestamp():
        return "timestamp"
    if dtype.is_date():
        return "date"
    if dtype.is_string():
        return "string"
    return str(dtype)


_SPEC_FAMILY = {"BIGINT": "integer", "DOUBLE": "floating", "DATE": "date",
                "TIMESTAMP": "timestamp", "VARCHAR": "string"}


def _check_table(t: Table, expr: ibis.Table, findings: list[dict]) -> int:
    """Column presence and types, then one aggregate for counts; returns the row count."""
    schema = expr.schema()
    for col in t.columns:
        if col.name not in schema:
            findings.append(_finding(
                "missing_column", t.name, col.name, "error" if col.required else "warning",
                None, None, f"{'required' if col.required else 'optional'} column absent"))
            continue
        actual, expected = _family(schema[col.name]), _SPEC_FAMILY[col.datatype]
        if actual != expected:
            findings.append(_finding(
                "wrong_type", t.name, col.name, "error", None, None,
                f"expected {col.datatype} ({expected}), found {schema[col.name]}"))
    present = [c for c in t.columns if c.name in schema]
    pairs = _date_pairs(t, schema)
    paired_ends = {end for _, end in pairs}  # verbatim_end_date has no start: not checked
    metrics = {"_rows": expr.count()}
    for col in present:
        if col.required or col.name in paired_ends:
            metrics[f"null__{col.name}"] = expr[col.name].isnull().sum()
    pk = t.primary_key
    if pk and pk.name in schema:
        metrics["distinct_pk"] = expr[pk.name].nunique()
    for start, end in pairs:
        metrics[f"order__{end}"] = (expr[end] < expr[start]).sum()
    today = dt.date.today()
    # Clinical dates only: the vocabulary's valid_end_date is 2099-12-31 by convention.
    dates = [c.name for c in present if t.role == "cdm"
             and _family(schema[c.name]) in ("date", "timestamp")]
    for name in dates:
        day = expr[name].cast("date")
        metrics[f"future__{name}"] = (day > today).sum()
        metrics[f"early__{name}"] = (day < EARLIEST_PLAUSIBLE_DATE).sum()
    row = expr.aggregate(**metrics).execute().iloc[0].to_dict()
    values = {k: _int(v) for k, v in row.items()}
    total = values["_rows"]
    for col in present:
        key = f"null__{col.name}"
        if key in values and values[key] > 0:
            n = values[key]
            if col.required:
                findings.append(_finding("required_value_missing", t.name, col.name, "error",
                                         n, total, "NULL in a required column"))
            else:
                findings.append(_finding("end_date_missing", t.name, col.name, "info", n, total,
                                         "end date empty"))
    if "distinct_pk" in values:
        distinct = values["distinct_pk"]
        if distinct < total:
            findings.append(_finding(
                "non_unique_primary_key", t.name, pk.name, "warning", total - distinct, total,
                f"{distinct:,} distinct of {total:,}"))
    for start, end in pairs:
        n = values[f"order__{end}"]
        if n:
            findings.append(_finding("end_before_start", t.name, end, "warning", n, total,
                                     f"{end} before {start}"))
    for name in dates:
        if values[f"future__{name}"]:
            findings.append(_finding(
                "date_after_today", t.name, name, "warning", values[f"future__{name}"], total,
                f"after {today.isoformat()} (today; 9999-12-31 open ends included)"))
        if values[f"early__{name}"]:
            findings.append(_finding(
                "date_before_1900", t.name, name, "warning", values[f"early__{name}"], total,
                f"before {EARLIEST_PLAUSIBLE_DATE.isoformat()}"))
    return total


def _missing_table(name: str, t: Table, version: str) -> dict:
    if t.required:
        return _finding("missing_table", name, "", "error", None, None,
                        f"required by CDM v{version}")
    if name in ANALYSIS_VOCABULARY:
        return _finding("missing_table", name, "", "error", None, None,
                        "vocabulary table the analyses read (concept sets, descendants, "
                        "names): load the OMOP vocabulary")
    if name in CLINICAL_TABLES:
        return _finding("missing_table", name, "", "warning", None, None,
                        "clinical domain absent: analyses of it will find nothing")
    return _finding("missing_table", name, "", "info", None, None,
                    f"optional table of CDM v{version} absent")


def _int(value) -> int:
    """An aggregate as int; a SUM over no rows is NULL (NaN in pandas) and counts as 0."""
    return 0 if value is None or pd.isna(value) else int(value)


def _date_pairs(t: Table, schema) -> list[tuple[str, str]]:
    pairs = []
    for col in t.columns:
        if col.name.endswith("_start_date"):
            end = col.name[: -len("_start_date")] + "_end_date"
            if col.name in schema and end in schema:
                pairs.append((col.name, end))
    return pairs


def _event_date(t: Table) -> str | None:
    """The date that places an event in time: the first ``*_date`` column of the table."""
    for col in t.columns:
        if col.datatype == "DATE" and col.name.endswith("_date") and "birth" not in col.name:
            return col.name
    return None


def _check_person_links(db: Database, tables: dict[str, Table], rows: dict[str, int],
                        findings: list[dict]) -> None:
    if "person" not in tables:
        return
    person = db.table("person").select("person_id").distinct()
    op = None
    if "observation_period" in tables:
        op = db.table("observation_period").select(
            "person_id", "observation_period_start_date", "observation_period_end_date")
    for name, t in tables.items():
        if name == "person" or "person_id" not in t.column_names or t.role != "cdm":
            continue
        events = db.table(name, t.role)
        if "person_id" not in events.columns:
            continue
        orphans = int(events.anti_join(person, "person_id").count().execute())
        if orphans:
            findings.append(_finding(
                "orphan_person_id", name, "person_id", "warning", orphans, rows[name],
                "rows whose person_id is not in person"))
        date = _event_date(t)
        if op is None or name == "observation_period" or date is None or date not in events.columns:
            continue
        outside = events.anti_join(op, [
            events.person_id == op.person_id,
            events[date] >= op.observation_period_start_date,
            events[date] <= op.observation_period_end_date,
        ])
        n = int(outside.count().execute())
        if n:
            findings.append(_finding(
                "outside_observation_period", name, date, "warning", n, rows[name],
                f"{date} in no observation period of the person"))


def _check_birth_and_death(db: Database, tables: dict[str, Table], rows: dict[str, int],
                           findings: list[dict]) -> None:
    """Events dated after the person's death or before the person's birth (DQD's
    ``plausibleBeforeDeath`` without its 60-day margin, and ``plausibleAfterBirth``)."""
    if "person" not in tables:
        return
    person = db.table("person")
    cols = person.columns
    year = person.year_of_birth.cast("int64")
    month = (person.month_of_birth.cast("int64") if "month_of_birth" in cols
             else ibis.null("int64"))
    day = person.day_of_birth.cast("int64") if "day_of_birth" in cols else ibis.null("int64")
    # The earliest day the known parts of the birth date allow.
    from_parts = ibis.date(year, ibis.coalesce(month, 1),
                           ibis.cases((month.isnull(), 1), else_=ibis.coalesce(day, 1)))
    birth = (ibis.coalesce(person.birth_datetime.cast("date"), from_parts)
             if "birth_datetime" in cols else from_parts)
    births = person.select(b_person_id=person.person_id.cast("int64"), birth_date=birth)
    births = births.filter(births.birth_date.notnull())
    deaths = None
    if "death" in tables and {"person_id", "death_date"} <= set(db.table("death").columns):
        death = db.table("death")
        deaths = death.group_by(d_person_id=death.person_id.cast("int64")).aggregate(
            death_date=death.death_date.cast("date").min())
    for name, t in tables.items():
        if name in ("person", "death") or t.role != "cdm" or "person_id" not in t.column_names:
            continue
        events = db.table(name, t.role)
        date = _event_date(t)
        if date is None or date not in events.columns or "person_id" not in events.columns:
            continue
        day_of = events.select(e_person_id=events.person_id.cast("int64"),
                               e_date=events[date].cast("date"))
        early = day_of.join(births, day_of.e_person_id == births.b_person_id)
        n = int(early.filter(early.e_date < early.birth_date).count().execute())
        if n:
            findings.append(_finding("event_before_birth", name, date, "warning", n, rows[name],
                                     f"{date} before the person's birth date"))
        if deaths is None:
            continue
        late = day_of.join(deaths, day_of.e_person_id == deaths.d_person_id)
        n = int(late.filter(late.e_date > late.death_date).count().execute())
        if n:
            findings.append(_finding("event_after_death", name, date, "warning", n, rows[name],
                                     f"{date} after the person's death date"))


def _check_drug_era(db: Database, present: set[str], findings: list[dict]) -> None:
    """Compare a shipped ``drug_era`` with the one derived from ``drug_exposure``."""
    from pharmalab.cdm.eras import compare_drug_eras

    if "drug_era" not in present:
        return
    needed = [t for t in ("drug_exposure", "concept_ancestor", "concept") if t not in present]
    if needed:
        findings.append(_finding("drug_era_not_compared", "drug_era", "", "info", None, None,
                                 f"{needed[0]} is missing: drug_era cannot be derived"))
        return
    c = compare_drug_eras(db)
    differ = c["shipped"] - c["matching"]
    if differ:
        findings.append(_finding(
            "drug_era_differs", "drug_era", "", "warning", differ, c["shipped"],
            f"derived from drug_exposure with OHDSI's 30-day era logic ({c['derived']} rows): "
            f"{c['matching']} shipped rows equal, {c['gap_days_only']} differ only in "
            f"gap_days, {c['shipped_only']} have no era with the same ingredient, dates and "
            "count; rebuild with: pharmalab cdm eras --replace"))


def _summary(db, tables: dict[str, Table], version, rows, findings) -> dict:
    out: dict = {"cdm_version": version, "tables_present": len(tables)}
    if "cdm_source" in tables:
        src = db.table("cdm_source")
        cols = [c for c in ("cdm_source_name", "cdm_version", "vocabulary_version")
                if c in src.columns]
        first = src.select(*cols).limit(1).execute() if cols else pd.DataFrame()
        if len(first):
            out["cdm_source_name"] = first.get("cdm_source_name", pd.Series([None])).iloc[0]
            out["source_cdm_version"] = first.get("cdm_version", pd.Series([None])).iloc[0]
            out["vocabulary_version"] = first.get("vocabulary_version", pd.Series([None])).iloc[0]
    if not out.get("vocabulary_version") and "vocabulary" in tables:
        voc = db.table("vocabulary", "vocab")
        v = voc.filter(voc.vocabulary_id == "None").vocabulary_version.max().execute()
        out["vocabulary_version"] = v
    out["persons"] = rows.get("person")
    if "observation_period" in tables:
        op = db.table("observation_period")
        span = op.aggregate(
            start=op.observation_period_start_date.min(),
            end=op.observation_period_end_date.max(),
        ).execute().iloc[0]
        out["observation_period_start"] = _iso(span["start"])
        out["observation_period_end"] = _iso(span["end"])
    spec_tables = cdm_spec(version).tables
    out["required_tables_missing"] = sorted(
        n for n, t in spec_tables.items() if t.required and n not in tables)
    out["analysis_tables_missing"] = sorted(
        n for n in (*ANALYSIS_VOCABULARY, *CLINICAL_TABLES)
        if n in spec_tables and n not in tables)
    if findings is not None:
        out["errors"] = int((findings["severity"] == "error").sum())
        out["warnings"] = int((findings["severity"] == "warning").sum())
    return out


def _iso(value) -> str | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).date().isoformat()
