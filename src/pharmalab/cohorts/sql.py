"""circepy's SQL route: OHDSI SQL for a Circe definition, rendered and translated per engine.

This is the route OHDSI CohortGenerator takes (CirceR ``buildCohortQuery`` → SqlRender
``render`` → ``translate`` → statements), with circepy's Python ports of CirceR and SqlRender.
It fills the inclusion-rule statistics that circepy's Ibis route does not write.

Engine overrides (each small and commented, see ``../shared/KNOWN.md``):
- all engines: Circe-be's censored-cases statistic, which circepy 0.3 leaves out, is added.
- BigQuery: translated to DuckDB's SQL by circepy, then to BigQuery's by sqlglot (circepy's
  own BigQuery translation does not finish on cohorts with inclusion rules).
- Spark: SqlRender emulates temp tables as ``CREATE TABLE … USING DELTA``; plain Spark has no
  Delta Lake, so they are ``USING PARQUET``; the ``DELETE`` statements on the (fresh, empty)
  staging tables are dropped, since Spark cannot delete from Parquet tables.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import sqlglot

from pharmalab.atomic import write_text
from pharmalab.cohorts.definitions import CohortDefinition

DIALECTS = {"duckdb": "duckdb", "pyspark": "spark", "bigquery": "bigquery",
            "postgres": "postgresql"}

# Circe-be's censor statistic (cohortCensoredStatsQuery): entries lost to the censor window.
_CENSOR_STATS = """
insert into @results_database_schema.cohort_censor_stats (cohort_definition_id, lost_count)
select @target_cohort_id as cohort_definition_id,
  coalesce(FCC.total_records - TCC.total_records, 0) as lost_count
FROM (select count_big(*) as total_records from #final_cohort) FCC,
(select count_big(*) as total_records from @target_database_schema.@target_cohort_table
 where cohort_definition_id = @target_cohort_id) TCC;
"""


# Circe's era collapse (circepy 0.3's COHORT_ERA template, as built): rows of a person whose
# ends, padded by the era pad, reach the next row's start are merged, whatever observation
# period they lie in.
_ERA_COLLAPSE = re.compile(
    r"select person_id, min\(start_date\) as start_date, DATEADD\(day,-1 \* (?P<pad>\d+), "
    r"max\(end_date\)\) as end_date\s+into #final_cohort\s+from \(\s+"
    r"select person_id, start_date, end_date, sum\(is_start\) over \(partition by person_id "
    r"order by start_date, is_start desc rows unbounded preceding\) group_idx\s+from \(\s+"
    r"select person_id, start_date, end_date,\s+case when max\(end_date\) over \(partition by "
    r"person_id order by start_date rows between unbounded preceding and 1 preceding\) >= "
    r"start_date then 0 else 1 end is_start\s+from \(\s+select person_id, start_date, "
    r"DATEADD\(day,(?P=pad),end_date\) as end_date\s+from #cohort_rows\s+\) CR\s+\) ST\s+"
    r"\) GR\s+group by person_id, group_idx;")

# The same collapse within the observation period each row starts in, each row's end cut at
# that period's end (circe-be#229, "Bound Cohort Eras to Observation Periods").
_ERA_COLLAPSE_WITHIN_OBSERVATION = """select person_id, min(start_date) as start_date, \
DATEADD(day,-1 * {pad}, max(end_date)) as end_date
into #final_cohort
from (
  select person_id, op_start_date, start_date, end_date, sum(is_start) over (partition by \
person_id, op_start_date order by start_date, is_start desc rows unbounded preceding) group_idx
  from (
    select person_id, op_start_date, start_date, end_date,
      case when max(end_date) over (partition by person_id, op_start_date order by start_date \
rows between unbounded preceding and 1 preceding) >= start_date then 0 else 1 end is_start
    from (
      select CR.person_id, OP.observation_period_start_date as op_start_date, CR.start_date,
        DATEADD(day,{pad},case when CR.end_date > OP.observation_period_end_date \
then OP.observation_period_end_date else CR.end_date end) as end_date
      from #cohort_rows CR
      join @cdm_database_schema.observation_period OP on OP.person_id = CR.person_id
        and CR.start_date >= OP.observation_period_start_date
        and CR.start_date <= OP.observation_period_end_date
    ) CR
  ) ST
) GR
group by person_id, op_start_date, group_idx;"""


def eras_within_observation_periods(sql: str) -> str:
    """Circe's era collapse bounded to observation periods, in a cohort's OHDSI SQL.

    Circe merges a person's cohort rows whose gap is at most the era pad even when they lie
    in different observation periods, so an era can span the unobserved time between them
    (circe-be#229: an era 2002-11-04 – 2003-03-12 for a person observed 2001-01-01 –
    2002-12-31 and 2003-03-01 – 2011-12-31). Here rows are merged only within the observation
    period they start in, and a row's end is cut at that period's end: that person's eras are
    2002-11-04 – 2002-12-31 and one starting in the second period. ATLAS and CohortGenerator
    have no such option (Circe's behaviour is the default here too).

    Raises
    ------
    PharmalabInputError
        If the SQL holds no era collapse in the form circepy 0.3 writes (a newer circepy).
    """
    from pharmalab.errors import PharmalabInputError

    match = _ERA_COLLAPSE.search(sql)
    if match is None:
        raise PharmalabInputError(
            "eras within observation periods: this circepy writes the era collapse in an "
            "unknown form; generate without the option or use circepy 0.3")
    bounded = _ERA_COLLAPSE_WITHIN_OBSERVATION.format(pad=match.group("pad"))
    return sql[:match.start()] + bounded + sql[match.end():]


@dataclass(frozen=True)
class CohortSql:
    """The statements of one cohort for one engine, and the temp tables they create."""

    statements: tuple[str, ...]
    temp_tables: tuple[str, ...]


def new_session_id() -> str:
    """An 8-character SqlRender session id (a letter then letters or digits)."""
    return "p" + secrets.token_hex(4)[:7]


def cohort_sql(
    definition: CohortDefinition,
    *,
    engine: str,
    cdm_schema: str,
    vocab_schema: str,
    results_schema: str,
    cohort_table: str,
    stats_tables: dict[str, str],
    session_id: str | None = None,
    temp_schema: str | None = None,
    stats: bool = True,
    eras_within_observation: bool = False,
) -> CohortSql:
    """Build, render and translate one cohort's SQL for ``engine``.

    Parameters
    ----------
    definition
        The validated Circe definition.
    engine
        ``duckdb``, ``pyspark``, ``bigquery`` or ``postgres`` (an :class:`EngineURL` kind).
    cdm_schema, vocab_schema, results_schema
        Schema names as the engine spells them.
    cohort_table
        The table (in ``results_schema``) receiving the cohort rows.
    stats_tables
        Circe's statistics table names (``cohort_inclusion_result``,
        ``cohort_inclusion_stats``, ``cohort_summary_stats``, ``cohort_censor_stats``) →
        the tables (in ``results_schema``) receiving them.
    session_id, temp_schema
        SqlRender's temp-table emulation (Spark, BigQuery): emulated temp tables are named
        ``<temp_schema>.<session_id><name>``.
    stats
        Include the inclusion-rule and censoring statistics (CirceR's ``generateStats``).
    eras_within_observation
        Collapse eras within observation periods only
        (:func:`eras_within_observation_periods`); default Circe's collapse.

    Returns
    -------
    CohortSql

    circepy's SqlRender translation is pure Python and costs 0.1–0.5 s per cohort whatever the
    data size, so translated statements are cached (in memory and under
    ``$PHARMALAB_CACHE``, default ``~/.cache/pharmalab``) by the definition's checksum, the
    engine and the schema and table names; the session id is put back on each use.
    """
    session_id = session_id or new_session_id()
    key, args = _cache_key(definition, session_id, engine=engine, cdm_schema=cdm_schema,
                           vocab_schema=vocab_schema, results_schema=results_schema,
                           cohort_table=cohort_table, stats_tables=stats_tables,
                           temp_schema=temp_schema, stats=stats,
                           eras_within_observation=eras_within_observation)
    statements = _cache_get(key)
    if statements is None:
        statements = _translate(definition, session_id=_TOKEN, **args)
        _cache_put(key, statements)
    statements = [s.replace(_TOKEN, session_id) for s in statements]
    return CohortSql(tuple(statements), tuple(_temp_tables(statements)))


def is_translated(definition: CohortDefinition, *, session_id: str, **options) -> bool:
    """Whether :func:`cohort_sql` with these arguments would find its statements cached
    (in memory or on disk), i.e. cost no translation."""
    key, _ = _cache_key(definition, session_id, **options)
    return _cache_get(key) is not None


_TOKEN = "zplsess0"  # stands for the session id in cached statements (same length)


def _cache_key(definition: CohortDefinition, session_id: str, *, engine, cdm_schema,
               vocab_schema, results_schema, cohort_table, stats_tables, temp_schema=None,
               stats=True, eras_within_observation=False) -> tuple[str, dict]:
    args = dict(engine=engine, cdm_schema=cdm_schema, vocab_schema=vocab_schema,
                results_schema=results_schema,
                cohort_table=cohort_table.replace(session_id, _TOKEN),
                stats_tables={k: v.replace(session_id, _TOKEN) for k, v in stats_tables.items()},
                temp_schema=temp_schema, stats=stats,
                eras_within_observation=eras_within_observation)
    # The cohort id is written into the SQL: the same definition under another id differs.
    key = hashlib.sha256(json.dumps([_TRANSLATION, definition.checksum, definition.cohort_id,
                                     args], sort_keys=True).encode()).hexdigest()
    return key, args


def _translate(definition, *, engine, cdm_schema, vocab_schema, results_schema, cohort_table,
               stats_tables, session_id, temp_schema, stats,
               eras_within_observation=False) -> list[str]:
    from circe.api import build_cohort_query
    from circe.cohortdefinition import BuildExpressionQueryOptions
    from circe.sqlrender.renderer import render
    from circe.sqlrender.splitter import split_sql
    from circe.sqlrender.translator import translate

    options = BuildExpressionQueryOptions()
    options.cohort_id = definition.cohort_id
    options.generate_stats = stats
    sql = build_cohort_query(definition.expression, options)
    if stats and definition.has_censor_window:
        sql = _add_censor_stats(sql, definition.cohort_id)
    if eras_within_observation:
        sql = eras_within_observation_periods(sql)
    params = {
        "cdm_database_schema": cdm_schema,
        "vocabulary_database_schema": vocab_schema,
        "target_database_schema": results_schema,
        "results_database_schema": results_schema,
        "target_cohort_table": cohort_table,
        "target_cohort_id": definition.cohort_id,
    }
    for circe_name, table in stats_tables.items():
        params[f"results_database_schema.{circe_name}"] = f"{results_schema}.{table}"
    sql = render(sql, **params)
    dialect = DIALECTS[engine]
    if engine == "bigquery":
        # circepy 0.3's translate(sql, "bigquery") does not finish on cohorts with inclusion
        # rules (a regular expression that backtracks without end, in translator.search);
        # translate to DuckDB, whose SQL runs and is verified here, and let sqlglot write it
        # as BigQuery.
        sql = translate(sql, "duckdb", session_id=session_id)
        return [sqlglot.transpile(s, read="duckdb", write="bigquery")[0]
                for s in split_sql(sql) if s.strip().strip(";").strip()]
    if engine == "duckdb":
        sql = _duckdb_date_arithmetic(sql)
    sql = translate(sql, dialect, session_id=session_id, temp_emulation_schema=temp_schema)
    statements = [s.strip() for s in split_sql(sql) if s.strip().strip(";").strip()]
    if engine == "pyspark":
        staging = {f"{results_schema}.{t}".lower() for t in (cohort_table, *stats_tables.values())}
        statements = [_spark_parquet(s) for s in statements
                      if not _is_delete_from(s, staging)]
    return statements


# Bump when _translate's output changes, so that cached statements are not reused.
_TRANSLATION = 2
_MEMORY: dict[str, list[str]] = {}


def _cache_folder() -> Path:
    from importlib.metadata import version

    root = Path(os.environ.get("PHARMALAB_CACHE", Path.home() / ".cache" / "pharmalab"))
    return root / f"circe-sql-{version('ohdsi-circepy')}"


def _cache_get(key: str) -> list[str] | None:
    if key in _MEMORY:
        return _MEMORY[key]
    path = _cache_folder() / f"{key}.json"
    try:
        statements = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    _MEMORY[key] = statements
    return statements


def _cache_put(key: str, statements: list[str]) -> None:
    _MEMORY[key] = statements
    try:
        write_text(_cache_folder() / f"{key}.json", json.dumps(statements))
    except OSError:  # a read-only home: the cache is an optimisation only
        pass


def _add_censor_stats(sql: str, cohort_id: int) -> str:
    marker = re.compile(
        r"(delete from @results_database_schema\.cohort_censor_stats where "
        rf"cohort_definition_id = {cohort_id};)", re.IGNORECASE)
    if not marker.search(sql):
        raise RuntimeError("circepy's SQL has no censored-stats block; cannot add lost_count")
    return marker.sub(lambda m: m.group(1) + "\n" + _CENSOR_STATS, sql, count=1)


# SqlRender's DuckDB pattern for DATEADD(day, n, d) is ``d + TO_DAYS(n)``: a DATE plus an
# INTERVAL is a TIMESTAMP, so every observation-window test compares timestamps (DuckDB cannot
# use them as join keys or zone-map filters) and every date Circe shifts becomes a TIMESTAMP.
# DATE + INTEGER is a DATE in DuckDB, with the same calendar result for whole days.
_DUCKDB_DAY_ADD = "(CAST(@date AS DATE) + CAST(@days AS INTEGER))"


def _duckdb_date_arithmetic(sql: str) -> str:
    from circe.sqlrender.translator import parse_search_pattern, search_and_replace

    for unit in ("day", "dd", "d"):
        sql = search_and_replace(sql, parse_search_pattern(f"DATEADD({unit},@days,@date)"),
                                 _DUCKDB_DAY_ADD)
    return sql


def _is_delete_from(statement: str, tables: set[str]) -> bool:
    match = re.match(r"\s*delete\s+from\s+([\w.]+)", statement, re.IGNORECASE)
    return bool(match) and match.group(1).lower() in tables


def _spark_parquet(statement: str) -> str:
    return re.sub(r"\bUSING\s+DELTA\b", "USING PARQUET", statement, flags=re.IGNORECASE)


def _temp_tables(statements: list[str]) -> list[str]:
    """Names of the tables the statements create as temp or emulated temp tables."""
    names = []
    for statement in statements:
        match = re.match(r"\s*create\s+(?:temp\s+|temporary\s+)?table\s+(?:if\s+not\s+exists\s+)?"
                         r"([\w.]+)", statement, re.IGNORECASE)
        if match:
            names.append(match.group(1))
    return names
