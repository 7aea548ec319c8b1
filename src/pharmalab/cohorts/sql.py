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

    Returns
    -------
    CohortSql

    circepy's SqlRender translation is pure Python and costs 0.1–0.5 s per cohort whatever the
    data size, so translated statements are cached (in memory and under
    ``$PHARMALAB_CACHE``, default ``~/.cache/pharmalab``) by the definition's checksum, the
    engine and the schema and table names; the session id is put back on each use.
    """
    session_id = session_id or new_session_id()
    token = "zplsess0"  # stands for the session id in cached statements (same length)
    args = dict(engine=engine, cdm_schema=cdm_schema, vocab_schema=vocab_schema,
                results_schema=results_schema,
                cohort_table=cohort_table.replace(session_id, token),
                stats_tables={k: v.replace(session_id, token) for k, v in stats_tables.items()},
                temp_schema=temp_schema, stats=stats)
    # The cohort id is written into the SQL: the same definition under another id differs.
    key = hashlib.sha256(json.dumps([_TRANSLATION, definition.checksum, definition.cohort_id,
                                     args],
                                    sort_keys=True)
                         .encode()).hexdigest()
    statements = _cache_get(key)
    if statements is None:
        statements = _translate(definition, session_id=token, **args)
        _cache_put(key, statements)
    statements = [s.replace(token, session_id) for s in statements]
    return CohortSql(tuple(statements), tuple(_temp_tables(statements)))


def _translate(definition, *, engine, cdm_schema, vocab_schema, results_schema, cohort_table,
               stats_tables, session_id, temp_schema, stats) -> list[str]:
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
