"""Generate a cohort set into the results schema, one cohort at a time, atomically.

Each cohort runs circe's SQL (see :mod:`pharmalab.cohorts.sql`) into staging tables of its
own; only when they are complete are the cohort's rows in ``cohort`` and in the statistics
tables replaced, in one transaction (:func:`pharmalab.cohorts.tables.replace_many`). A failing
cohort leaves every other cohort — and its own previous rows — as they were, and is reported.

On DuckDB circe's statements are first rewritten where a cheaper statement provably gives the
same rows (:mod:`pharmalab.cohorts.rewrite`), and temp tables that several cohorts of the set
build the same way are built once (:mod:`pharmalab.cohorts.reuse`).

Semantics are Circe's (ATLAS, CohortGenerator): entry events must fall inside an observation
period. Eunomia's plain-SQL demo cohorts do not require this, so its celecoxib cohort counts
1,844 persons where Circe counts 1,800 (44 celecoxib eras start outside any observation
period).
"""

from __future__ import annotations

import datetime as _dt
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import ibis
import pandas as pd

from pharmalab.cohorts import tables
from pharmalab.cohorts.definitions import CohortDefinition, CohortSet
from pharmalab.cohorts.reuse import Reuse, Step, lineage
from pharmalab.cohorts.rewrite import rewrite_for_duckdb
from pharmalab.cohorts.sql import cohort_sql, is_translated, new_session_id
from pharmalab.engine import Database
from pharmalab.errors import CdmNotFoundError, EngineConnectionError

SCRATCH_SCHEMA = "pharmalab_scratch"  # emulated temp tables on Spark
# Untranslated cohorts from which translation goes to worker processes (starting one costs
# about 2 s; circepy's translation 0.1 s to minutes a cohort, median 2 s on PhenotypeLibrary)
PARALLEL_FROM = 8


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
    stats: bool = True,
    progress: Callable[[CohortDefinition, str], None] | None = None,
    eras_within_observation: bool = False,
    translation_workers: int | None = None,
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
    stats
        Write the inclusion-rule and censoring statistics (CohortGenerator's
        ``generateStats``); without them a cohort's statistics rows are emptied, and it is
        recorded with checksum ``<checksum>-nostats`` so that a later run with statistics
        regenerates it.
    progress
        Called with ``(definition, status)`` after each cohort.
    eras_within_observation
        Collapse each cohort's eras within observation periods, each era cut at the end of
        the period it starts in (circe-be#229; :func:`pharmalab.cohorts.sql.
        eras_within_observation_periods`). Default: Circe's collapse, as ATLAS and
        CohortGenerator. Recorded in the generation checksum, so switching regenerates.
    translation_workers
        Processes that translate circe's SQL (pure Python, the dominant cost of a large set's
        first run; cached afterwards). None: one per CPU when at least ``PARALLEL_FROM``
        cohorts of the set are not translated yet, else this process; 1: this process.

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
    tables.drop_leftover_stages(db)
    previous = _previous_generations(db)
    options = {"stats": stats, "eras_within_observation": eras_within_observation}
    todo = [d for d in cohort_set
            if force or previous.get(d.cohort_id) != _generation_checksum(d, **options)]
    plans = _plans(_target(db), todo, options, translation_workers)
    reuse = Reuse.for_scripts(db.con.raw_sql, [p.steps for p in plans.values()])
    result = GenerationResult()
    try:
        for definition in cohort_set:
            start = _dt.datetime.now(_dt.UTC)
            t0 = time.perf_counter()
            if definition.cohort_id not in plans:
                status, error = "SKIPPED", None
            else:
                try:
                    _generate_one(db, definition, plans[definition.cohort_id], reuse)
                    status, error = "COMPLETE", None
                except Exception as exc:  # one failing cohort must not stop the set
                    if _interrupted(exc):  # Ctrl-C or SIGTERM during a query stops the run
                        raise KeyboardInterrupt from exc
                    if not db.reachable():  # ... but a lost engine stops it, said plainly
                        raise _lost_connection(db, definition, result, exc) from None
                    status, error = "FAILED", f"{type(exc).__name__}: {_first_line(exc)}"
            run = CohortRun(definition.cohort_id, definition.cohort_name, status,
                            _generation_checksum(definition, **options), start,
                            _dt.datetime.now(_dt.UTC), round(time.perf_counter() - t0, 3),
                            error)
            if status != "SKIPPED":
                _record_generation(db, run)
            result.runs.append(run)
            if progress:
                progress(definition, status)
    finally:
        reuse.close()
    result.counts = _update_counts(db, result.runs)
    return result


def _lost_connection(db: Database, definition: CohortDefinition, result: GenerationResult,
                     exc: Exception) -> EngineConnectionError:
    done = [r.cohort_id for r in result.runs if r.status == "COMPLETE"]
    if not done:
        kept = "no cohort of this run was complete"
    elif len(done) == 1:
        kept = f"cohort {done[0]} generated in this run is complete and kept"
    else:
        kept = (f"cohorts {', '.join(map(str, done))} generated in this run are complete and "
                "kept")
    target = f"{db.schema('results') or 'the default schema'}.cohort"
    return EngineConnectionError(
        f"lost the connection to {db.url.kind} ({db.url.redacted()}) while generating cohort "
        f"{definition.cohort_id} ({definition.cohort_name}) into {target}: "
        f"{type(exc).__name__}: {_first_line(exc)}. Cohort {definition.cohort_id}'s previous "
        f"rows are untouched, {kept}; run again to generate the rest (complete cohorts are "
        "skipped).")


def _generation_checksum(definition: CohortDefinition, stats: bool,
                         eras_within_observation: bool = False) -> str:
    # a cohort generated without statistics is regenerated when statistics are asked for,
    # and one generated with the other era collapse when the collapse changes
    return (definition.checksum + ("" if stats else "-nostats")
            + ("-eras-within-op" if eras_within_observation else ""))


@dataclass
class _Plan:
    """One cohort's statements (as reusable steps) and its staging tables.

    ``stage`` maps each results table to the staging table circe's statements write for this
    cohort; it is swapped in once complete.
    """

    stage: dict[str, str]
    sql: object = None
    steps: list[Step] = field(default_factory=list)
    error: Exception | None = None


@dataclass(frozen=True)
class _Target:
    """Where circe's SQL reads and writes, by name: what planning needs of the database,
    and all it needs, so that worker processes can plan without a connection."""

    engine: str
    cdm_schema: str
    vocab_schema: str
    results_schema: str


def _target(db: Database) -> _Target:
    return _Target(db.url.kind, db.schema("cdm") or db.con.current_database,
                   db.schema("vocab") or db.con.current_database, tables.results_schema(db))


def _plans(target: _Target, todo: list[CohortDefinition], options: dict,
           workers: int | None) -> dict[int, _Plan]:
    """Each cohort's plan; translated in worker processes when many are not cached."""
    if workers is None:
        untranslated = sum(not is_translated(d, **_sql_options(target, d, "p0000000", **options))
                           for d in todo)
        workers = (os.cpu_count() or 1) if untranslated >= PARALLEL_FROM else 1
    workers = min(workers, len(todo))
    if workers <= 1:
        return {d.cohort_id: _plan(target, d, **options) for d in todo}
    # spawn, not fork: this process may hold engine threads (DuckDB, a JVM) a fork would copy
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {d.cohort_id: pool.submit(_plan, target, d, **options) for d in todo}
        return {cohort_id: future.result() for cohort_id, future in futures.items()}


def _stage_names(session: str) -> dict[str, str]:
    return {name: f"_pl_{session}_{name}" for name in
            ("cohort", *tables.CIRCE_STATS_TABLES.values(), "cohort_inclusion")}


def _sql_options(target: _Target, definition: CohortDefinition, session: str, *,
                 stats: bool, eras_within_observation: bool = False) -> dict:
    """:func:`cohort_sql`'s arguments for ``definition`` under staging session ``session``."""
    stage = _stage_names(session)
    return dict(
        engine=target.engine, cdm_schema=target.cdm_schema, vocab_schema=target.vocab_schema,
        results_schema=target.results_schema, cohort_table=stage["cohort"],
        stats_tables={c: stage[ours] for c, ours in tables.CIRCE_STATS_TABLES.items()},
        session_id=session,
        temp_schema=SCRATCH_SCHEMA if target.engine == "pyspark" else None,
        stats=stats, eras_within_observation=eras_within_observation)


def _plan(target: _Target, definition: CohortDefinition, stats: bool,
          eras_within_observation: bool = False) -> _Plan:
    session = new_session_id()
    plan = _Plan(_stage_names(session))
    try:
        plan.sql = cohort_sql(definition, **_sql_options(
            target, definition, session, stats=stats,
            eras_within_observation=eras_within_observation))
    except Exception as exc:  # reported when the cohort's turn comes
        plan.error = exc
        return plan
    statements = list(plan.sql.statements)
    if target.engine == "duckdb":
        # DuckDB: rewrites that save passes, and temp tables shared across the set (temp
        # tables live as long as the connection); see rewrite.py and reuse.py
        statements, _ = rewrite_for_duckdb(
            statements, one_event_per_person=definition.one_event_per_person)
        # circe reads and writes the results schema only through the staging tables
        plan.steps = lineage(statements, volatile=r"\b_pl_\w+")
    else:
        plan.steps = [Step(s) for s in statements]
    return plan


def _generate_one(db: Database, definition: CohortDefinition, plan: _Plan,
                  reuse: Reuse) -> None:
    """Run one cohort into its staging tables, then swap its rows in (all or nothing)."""
    if plan.error is not None:
        raise plan.error
    rules = pd.DataFrame(
        [(definition.cohort_id, seq, name, desc)
         for seq, name, desc in definition.inclusion_rules],
        columns=list(tables.COHORT_TABLES["cohort_inclusion"]))
    if db.url.kind == "pyspark":
        db.con.create_database(SCRATCH_SCHEMA, force=True)
    try:
        for final, staged in plan.stage.items():
            tables.create_stage(db, staged, final)
        reuse.execute(plan.steps)
        tables.append_frame(db, plan.stage["cohort_inclusion"], "cohort_inclusion", rules)
        # one transaction on DuckDB: the cohort's rows and statistics change together
        tables.replace_many(db, [(final, [definition.cohort_id], staged)
                                 for final, staged in plan.stage.items()])
    finally:
        for staged in plan.stage.values():
            tables.drop_quietly(db, staged)
        for temp in plan.sql.temp_tables:
            _drop_temp(db, temp)


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


def _interrupted(exc: Exception) -> bool:
    # DuckDB turns a signal during a query into InterruptException ("Query interrupted")
    return type(exc).__name__ == "InterruptException" or "query interrupted" in str(exc).lower()


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
