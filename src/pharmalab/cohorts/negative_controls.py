"""Negative-control outcome cohorts, as OHDSI CohortGenerator generates them.

CohortGenerator's ``generateNegativeControlOutcomeCohorts``: for each outcome concept (and,
with ``detect_on_descendants``, its descendants through ``concept_ancestor``), every event
day of a person in any clinical domain (condition, drug, procedure, observation,
measurement, device, visit), inside an observation period, distinct per cohort, person and
day; ``occurrence_type = "first"`` keeps each person's earliest. ``cohort_start_date`` =
``cohort_end_date`` = the event day. One Ibis expression, so it runs in any engine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import ibis
import pandas as pd

from pharmalab.cohorts import tables
from pharmalab.engine import Database
from pharmalab.errors import CohortDefinitionError

# (table, concept column, date column) of each domain CohortGenerator searches.
DOMAINS = (
    ("condition_occurrence", "condition_concept_id", "condition_start_date"),
    ("drug_exposure", "drug_concept_id", "drug_exposure_start_date"),
    ("procedure_occurrence", "procedure_concept_id", "procedure_date"),
    ("observation", "observation_concept_id", "observation_date"),
    ("measurement", "measurement_concept_id", "measurement_date"),
    ("device_exposure", "device_concept_id", "device_exposure_start_date"),
    ("visit_occurrence", "visit_concept_id", "visit_start_date"),
)
COLUMNS = ["cohort_id", "cohort_name", "outcome_concept_id", "occurrence_type",
           "detect_on_descendants"]


def read_negative_controls(path: str | Path) -> pd.DataFrame:
    """Read a negative-control outcome CSV (CohortGenerator's ``negativeControlOutcomes``).

    Columns: ``outcome_concept_id`` (required), optional ``cohort_id`` (default: the concept
    id), ``cohort_name``, ``occurrence_type`` (``first`` | ``all``, default ``all``),
    ``detect_on_descendants`` (true/false, default true). camelCase names are accepted.

    Returns
    -------
    pandas.DataFrame
        ``cohort_id`` (int64), ``cohort_name`` (str), ``outcome_concept_id`` (int64),
        ``occurrence_type`` (str), ``detect_on_descendants`` (bool).

    Raises
    ------
    CohortDefinitionError
        Missing file or column, a non-integer id, an unknown occurrence type, duplicate
        cohort ids (each naming the file and row).
    """
    path = Path(path)
    if not path.is_file():
        raise CohortDefinitionError(f"negative-control file {str(path)!r} does not exist")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CohortDefinitionError(f"{path}: cannot be read as CSV: "
                                    f"{str(exc).splitlines()[0]}") from None
    raw.columns = [_snake(c) for c in raw.columns]
    if raw.empty:
        raise CohortDefinitionError(f"{path}: no negative-control outcome listed")
    if "outcome_concept_id" not in raw.columns:
        raise CohortDefinitionError(f"{path}: column 'outcome_concept_id' is missing "
                                    f"(columns: {', '.join(raw.columns)})")
    rows = []
    for line, row in enumerate(raw.to_dict("records"), start=2):
        concept = _integer(row["outcome_concept_id"], path, line, "outcome_concept_id")
        cohort_id = _integer(row.get("cohort_id") or str(concept), path, line, "cohort_id")
        occurrence = (row.get("occurrence_type") or "all").strip().lower()
        if occurrence not in ("first", "all"):
            raise CohortDefinitionError(f"{path}, line {line}: occurrence_type must be 'first' "
                                        f"or 'all', found {occurrence!r}")
        descendants = (row.get("detect_on_descendants") or "true").strip().lower()
        if descendants not in ("true", "false", "1", "0", "yes", "no"):
            raise CohortDefinitionError(f"{path}, line {line}: detect_on_descendants must be "
                                        f"true or false, found {descendants!r}")
        rows.append((cohort_id, (row.get("cohort_name") or "").strip() or str(concept), concept,
                     occurrence, descendants in ("true", "1", "yes")))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    duplicated = frame["cohort_id"].duplicated()
    if duplicated.any():
        raise CohortDefinitionError(f"{path}: duplicate cohort_id "
                                    f"{int(frame.loc[duplicated, 'cohort_id'].iloc[0])}")
    return frame.astype({"cohort_id": "int64", "outcome_concept_id": "int64"})


def negative_control_cohorts(db: Database, controls: pd.DataFrame) -> ibis.Table:
    """The cohort rows of ``controls`` as an Ibis expression (not executed).

    Returns
    -------
    ibis.Table
        ``cohort_definition_id`` (int64), ``subject_id`` (int64), ``cohort_start_date``,
        ``cohort_end_date`` (date).
    """
    nc = ibis.memtable(controls[["cohort_id", "outcome_concept_id", "occurrence_type",
                                 "detect_on_descendants"]])
    ancestor = db.table("concept_ancestor", "vocab")
    by_descendant = nc.filter(nc.detect_on_descendants).join(
        ancestor, nc.outcome_concept_id == ancestor.ancestor_concept_id
    ).select(nc.cohort_id, concept_id=ancestor.descendant_concept_id)
    exact = nc.filter(~nc.detect_on_descendants).select(
        nc.cohort_id, concept_id=nc.outcome_concept_id)
    codesets = by_descendant.union(exact, distinct=True)

    events = None
    for table, concept_column, date_column in DOMAINS:
        if not db.has_table(table):
            continue
        t = db.table(table)
        hits = t.join(codesets, t[concept_column] == codesets.concept_id).select(
            cohort_definition_id=codesets.cohort_id, subject_id=t.person_id,
            event_date=t[date_column])
        events = hits if events is None else events.union(hits, distinct=False)
    if events is None:
        raise CohortDefinitionError("the CDM has none of the clinical tables negative-control "
                                    "outcomes are searched in")
    events = events.distinct()
    op = db.table("observation_period")
    in_period = events.join(op, [
        events.subject_id == op.person_id,
        events.event_date >= op.observation_period_start_date,
        events.event_date <= op.observation_period_end_date,
    ]).select(events.cohort_definition_id, events.subject_id, events.event_date)
    ordinal = ibis.row_number().over(group_by=["cohort_definition_id", "subject_id"],
                                     order_by="event_date")
    firsts = nc.filter(nc.occurrence_type == "first").select("cohort_id")
    ranked = in_period.mutate(ordinal=ordinal)
    ranked = ranked.left_join(firsts, ranked.cohort_definition_id == firsts.cohort_id)
    kept = ranked.filter(ranked.cohort_id.isnull() | (ranked.ordinal == 0))
    return kept.select(
        cohort_definition_id=kept.cohort_definition_id.cast("int64"),
        subject_id=kept.subject_id.cast("int64"),
        cohort_start_date=kept.event_date.cast("date"),
        cohort_end_date=kept.event_date.cast("date"),
    )


def generate_negative_control_cohorts(db: Database, controls: pd.DataFrame) -> pd.DataFrame:
    """Write the negative-control cohorts into the results ``cohort`` table, all at once.

    Their previous rows are replaced atomically (:func:`pharmalab.cohorts.tables.replace_rows`).

    Returns
    -------
    pandas.DataFrame
        ``cohort_id`` (int64), ``cohort_name`` (str), ``cohort_entries`` (int64),
        ``cohort_subjects`` (int64) — CohortGenerator's ``cohort_count_neg_ctrl``; not
        suppressed.
    """
    from pharmalab.cohorts.generate import cohort_counts

    tables.ensure_tables(db)
    ids = [int(i) for i in controls["cohort_id"]]
    stage = "_pl_stage_negative_controls"
    db.con.create_table(stage, negative_control_cohorts(db, controls),
                        database=tables.results_schema(db), overwrite=True)
    try:
        tables.replace_rows(db, "cohort", ids, stage)
    finally:
        tables.drop_quietly(db, stage)
    counts = cohort_counts(db, ids)
    tables.insert_frame(db, "cohort_count", counts, ids)
    # Recorded like any cohort, so a Circe cohort later given one of these ids regenerates.
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    generation = pd.DataFrame({
        "cohort_id": ids, "cohort_name": list(controls["cohort_name"]),
        "checksum": [hashlib.sha256(("negative control " + json.dumps(
            row, sort_keys=True, default=str)).encode()).hexdigest()
            for row in controls.to_dict("records")],
        "generation_status": "COMPLETE", "start_time": now, "end_time": now, "error": None})
    tables.insert_frame(db, "cohort_generation", generation, ids)
    names = dict(zip(controls["cohort_id"], controls["cohort_name"], strict=True))
    counts.insert(1, "cohort_name", counts["cohort_id"].map(names))
    return counts


def _snake(name: str) -> str:
    out = "".join("_" + c.lower() if c.isupper() else c for c in name.strip())
    return out.lstrip("_")


def _integer(value: str, path: Path, line: int, column: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise CohortDefinitionError(f"{path}, line {line}: {column} {value!r} is not an "
                                    "integer") from None
    if not 0 <= number < 2**63:
        raise CohortDefinitionError(f"{path}, line {line}: {column} {number} is out of range "
                                    "(0 to 2^63 - 1)")
    return number


def check_ids_apart(controls: pd.DataFrame, cohort_ids) -> None:
    """Negative-control cohort ids must not be ids of the cohort set: their rows would
    replace that cohort's.

    Raises
    ------
    CohortDefinitionError
        Naming the first shared id.
    """
    shared = sorted(set(int(i) for i in controls["cohort_id"]) & {int(i) for i in cohort_ids})
    if shared:
        raise CohortDefinitionError(
            f"negative-control cohort_id {shared[0]} is also a cohort of the set: give the "
            "negative controls other cohort_id values (by default the outcome concept id)")
