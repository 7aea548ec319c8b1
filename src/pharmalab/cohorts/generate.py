"""Generate a cohort set into the results schema, one cohort at a time, atomically.

Each cohort runs circe's SQL (see :mod:`pharmalab.cohorts.sql`) into staging tables of its
own; only when they are complete are the cohort's rows in ``cohort`` and in the statistics
tables replaced (:func:`pharmalab.cohorts.tables.replace_rows`). A failing cohort leaves every
other cohort — and its own previous rows — as they were, and is reported.

Semantics are Circe's (ATLAS, CohortGenerator): entry events must fall inside an observation
period. Eunomia's plain-SQL demo cohorts do not require this, so its celecoxib cohort counts
1,844 persons where Circe counts 1,800 (44 celecoxib eras start outside any observation
period).
"""

from __future__ import annotations

import datetime as _dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ibis
import pandas as pd

from pharmalab.cohorts import tables
from pharmalab.cohorts.definitions import CohortDefinition, CohortSet
from pharmalab.cohorts.sql import cohort_sql, new_session_id
from pharmalab.engine import Database
from pharmalab.errors import CdmNotFoundError

SCRATCH_SCHEMA = "pharmalab_scratch"  # emulated temp tables on Spark


@dataclass
class CohortRun:
    """One cohort's generation: status ``COMPLETE`` | ``SKIPPED`` | ``FAILED``."""

    cohort_id: int
    cohort_name: str
    status: str
    checksum: str
    start_time: _dt.datetime
    end_time: _dt.datetime
    seconds: float = 0.0
    error: str | None = None


@dataclass
class GenerationResult:
    """Result of :func:`generate_cohorts`.

    Attributes
    ----------
    runs : list[CohortRun]
        One per cohort, in set order.
    counts : pandas.DataFrame
        ``cohort_id`` (int64), ``cohort_name`` (str), ``cohort_entries`` (int64),
        ``cohort_subjects`` (int64, persons), ``status`` (str) — not suppressed (for the
        data holder; exports go through :func:`pharmalab.privacy.suppress`).
    """

    runs: list[CohortRun] = field(default_factory=list)
    counts: pd.DataFrame | None = None

    @property
    def failed(self) -> list[CohortRun]:
        return [r for r in self.runs if r.status == "FAILED"]


def generate_cohorts(
    db: Database,
    cohort_set: CohortSet,
    *,
    force: bool = False,
    progress: Callable[[CohortDefinition, str], None] | None = None,
) -> GenerationResult:
    """Generate every cohort of ``cohort_set`` into ``db``'s results schema.

    Parameters
    ----------
    db
        The CDM (``cdm_schema``, ``vocab_schema``) and where results go (``results_schema``).
    cohort_set
        A validated set (:func:`pharmalab.cohorts.read_cohort_set`).
    force
        Regenerate cohorts whose definition checksum is unchanged since their last
        ``COMPLETE`` generation (recorded in ``cohort_generation``); by default they are
        skipped.
    progress
        Called with ``(definition, status)`` after each cohort.

    Returns
    -------
    GenerationResult
        Per-cohort status and timing; entries and subjects per cohort.

    Writes (results schema): ``cohort`` (cohort_definition_id, subject_id, cohort_start_date,
    cohort_end_date), ``cohort_inclusion``, ``cohort_inc_result``, ``cohort_inc_stats``,
    ``cohort_summary_stats``, ``cohort_censor_stats``, ``cohort_count``, ``cohort_generation``
    — CohortGenerator's tables and columns.

    Raises
    ------
    CdmNotFoundError
        If the CDM lacks ``observation_period`` (every Circe cohort needs it). A cohort whose
        SQL fails does not raise: it is ``FAILED`` in the result and in ``cohort_generation``.
    """
    if not db.has_table("observation_period"):
        raise CdmNotFoundError(
            f"no observation_period table in the CDM of {db.url.redacted()}: load a CDM first")
    tables.ensure_tables(db)
    previous = _previous_generations(db)
    todo = [d for d in cohort_set
            if force or previous.get(d.cohort_id) != d.checksum]
    plans = {d.cohort_id: _plan(db, d) for d in todo}
    result = GenerationResult()
    alive = None  # primary events left in temp tables by the previous cohort, for this one
    for definition in cohort_set:
        start = _dt.datetime.now(_dt.UTC)
        t0 = time.perf_counter()
        if definition.cohort_id not in plans:
            status, error = "SKIPPED", None
        else:
            plan = plans[definition.cohort_id]
            following = todo[todo.index(definition) + 1:]
            keep = bool(following) and plan.shares_with(plans[following[0].cohort_id])
            try:
                alive = _generate_one(db, definition, plan, reuse=alive, keep=keep)
                status, error = "COMPLETE", None
            except Exception as exc:  # one failing cohort must not stop the set
                alive = None
                status, error = "FAILED", f"{type(exc).__name__}: {_first_line(exc)}"
        run = CohortRun(definition.cohort_id, definition.cohort_name, status,
                        definition.checksum, start, _dt.datetime.now(_dt.UTC),
                        round(time.perf_counter() - t0, 3), error)
        if status != "SKIPPED":
            _record_generation(db, run)
        result.runs.append(run)
        if progress:
            progress(definition, status)
    result.counts = _update_counts(db, result.runs)
    return result


# Circe's first statements build the concept sets and the primary (entry) events of a cohort
# in temp tables; nothing after them changes those tables. Cohorts of a set often share them
# (a base cohort and its restrictions): on DuckDB, where temp tables live as long as the
# connection, consecutive cohorts with identical first statements build them once.
_SHARED_TEMPS = ("codesets", "qualified_events")


@dataclass
class _Plan:
    """One cohort's statements, staging names, and its shareable first statements."""

    session: str
    stage: dict[str, str]
    sql: object = None
    error: Exception | None = None
    prefix: tuple[str, ...] = ()

    def shares_with(self, other: _Plan) -> bool:
        return bool(self.prefix) and self.prefix == other.prefix


def _plan(db: Database, definition: CohortDefinition) -> _Plan:
    session = new_session_id()
    stage = {name: f"_pl_{session}_{name}" for name in
             ("cohort", *tables.CIRCE_STATS_TABLES.values())}
    plan = _Plan(session, stage)
    try:
        plan.sql = cohort_sql(
            definition,
            engine=db.url.kind,
            cdm_schema=db.schema("cdm") or db.con.current_database,
            vocab_schema=db.schema("vocab") or db.con.current_database,
            results_schema=tables.results_schema(db),
            cohort_table=stage["cohort"],
            stats_tables={c: stage[ours] for c, ours in tables.CIRCE_STATS_TABLES.items()},
            session_id=session,
            temp_schema=SCRATCH_SCHEMA if db.url.kind == "pyspark" else None,
        )
    except Exception as exc:  # reported when the cohort's turn comes
        plan.error = exc
        return plan
    if db.url.kind == "duckdb":
        plan.prefix = _shareable_prefix(plan.sql.statements)
    return plan


def _shareable_prefix(statements) -> tuple[str, ...]:
    for i, statement in enumerate(statements):
        if re.match(r"\s*create\s+temp\s+table\s+qualified_events\b", statement, re.I):
            end = i + 1
            if end < len(statements) and re.match(r"\s*analyze\s+qualified_events\b",
                                                  statements[end], re.I):
                end += 1
            prefix = tuple(statements[:end])
            # only temp tables may be written before: nothing of the results schema
            writes = [s for s in prefix if re.match(r"\s*(insert|create)", s, re.I)]
            if all(any(t in s.lower()[:60] for t in _SHARED_TEMPS) for s in writes):
                return prefix
            return ()
    return ()


def _is_shared_cleanup(statement: str) -> bool:
    # SqlRender writes TRUNCATE as DELETE FROM on DuckDB
    match = re.match(r"\s*(?:truncate\s+table|drop\s+table|delete\s+from)\s+"
                     r"(?:if\s+exists\s+)?(\w+)\s*;?\s*$", statement, re.I)
    return bool(match) and match.group(1).lower() in _SHARED_TEMPS


def _generate_one(db: Database, definition: CohortDefinition, plan: _Plan, *,
                  reuse: tuple | None, keep: bool) -> tuple | None:
    """Run one cohort; return the first statements whose temp tables are kept alive."""
    if plan.error is not None:
        raise plan.error
    statements = list(plan.sql.statements)
    if reuse is not None and reuse == plan.prefix:
        statements = statements[len(plan.prefix):]
    if keep:
        statements = [s for s in statements if not _is_shared_cleanup(s)]
    if db.url.kind == "pyspark":
        db.con.create_database(SCRATCH_SCHEMA, force=True)
    succeeded = False
    try:
        for final, staged in plan.stage.items():
            tables.create_stage(db, staged, final)
        for statement in statements:
            db.con.raw_sql(statement)
        for final, staged in plan.stage.items():
            tables.replace_rows(db, final, [definition.cohort_id], staged)
        rules = pd.DataFrame(
            [(definition.cohort_id, seq, name, desc)
             for seq, name, desc in definition.inclusion_rules],
            columns=list(tables.COHORT_TABLES["cohort_inclusion"]))
        tables.insert_frame(db, "cohort_inclusion", rules, [definition.cohort_id])
        succeeded = True
    finally:
        for staged in plan.stage.values():
            tables.drop_quietly(db, staged)
        for temp in plan.sql.temp_tables:
            if not (succeeded and keep and temp.lower() in _SHARED_TEMPS):
                _drop_temp(db, temp)
    return plan.prefix if keep else None


def _drop_temp(db: Database, name: str) -> None:
    try:
        db.con.raw_sql(f"DROP TABLE IF EXISTS {name}")
    except Exception:  # cleanup after a failure must not hide the failure
        pass


def _previous_generations(db: Database) -> dict[int, str]:
    """cohort_id → checksum of its last COMPLETE generation."""
    gen = db.table("cohort_generation", "results")
    done = gen.filter(gen.generation_status == "COMPLETE").select("cohort_id", "checksum")
    frame = done.execute()
    return dict(zip(frame["cohort_id"].astype(int), frame["checksum"], strict=True))


def _record_generation(db: Database, run: CohortRun) -> None:
    frame = pd.DataFrame([{
        "cohort_id": run.cohort_id, "cohort_name": run.cohort_name, "checksum": run.checksum,
        "generation_status": run.status,
        "start_time": run.start_time.replace(tzinfo=None),
        "end_time": run.end_time.replace(tzinfo=None), "error": run.error,
    }])
    tables.insert_frame(db, "cohort_generation", frame, [run.cohort_id])


def _update_counts(db: Database, runs: list[CohortRun]) -> pd.DataFrame:
    ids = [r.cohort_id for r in runs]
    counts = cohort_counts(db, ids)
    tables.insert_frame(db, "cohort_count", counts, ids)
    names = {r.cohort_id: r.cohort_name for r in runs}
    status = {r.cohort_id: r.status for r in runs}
    counts.insert(1, "cohort_name", counts["cohort_id"].map(names))
    counts["status"] = counts["cohort_id"].map(status)
    return counts


def cohort_counts(db: Database, cohort_ids: list[int] | None = None) -> pd.DataFrame:
    """Entries and subjects per cohort, computed in the engine from ``cohort``.

    Parameters
    ----------
    cohort_ids
        Cohorts to count (a cohort without rows gets 0 / 0); None counts every cohort present.

    Returns
    -------
    pandas.DataFrame
        ``cohort_id`` (int64), ``cohort_entries`` (int64, rows), ``cohort_subjects``
        (int64, distinct persons) — CohortGenerator's ``cohort_count``; not suppressed.
    """
    cohort = db.table("cohort", "results")
    if cohort_ids is not None:
        cohort = cohort.filter(cohort.cohort_definition_id.isin([int(i) for i in cohort_ids]))
    frame = (cohort.group_by(cohort_id=cohort.cohort_definition_id)
             .aggregate(cohort_entries=ibis._.count(),
                        cohort_subjects=ibis._.subject_id.nunique())
             .execute())
    if cohort_ids is not None:
        frame = (pd.DataFrame({"cohort_id": [int(i) for i in cohort_ids]})
                 .merge(frame, on="cohort_id", how="left").fillna(0))
    return frame.astype({"cohort_id": "int64", "cohort_entries": "int64",
                         "cohort_subjects": "int64"}).sort_values("cohort_id",
                                                                  ignore_index=True)


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
