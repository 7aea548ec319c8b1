"""Peephole rewrites of circe's DuckDB statements that keep Circe's results and save passes.

circepy (like Circe-be) writes one generic script for every cohort: each step is a temp table
built with windows, joins and groupings sized for any number of entry events per person. On
DuckDB every such step is a full pass over the entry events (about 0.05–0.3 s per step at a
million persons), and a cohort runs six to ten of them.

Each rewrite here replaces one statement **only when its text is exactly the template
circepy 0.3 writes** (compared with white space normalized), and only where the result is
provably the same rows; any other statement is left as it is, so a newer circepy that writes
different SQL gets no rewrite rather than a wrong one. The tests check that every rewrite
still applies to the CohortGenerator set and that cohort rows and statistics are unchanged.

Rewrites (``REWRITES``):

``analyze``
    ``ANALYZE <temp table>`` is dropped: DuckDB keeps a table's statistics up to date as it is
    written, and SqlRender adds it for engines that do not.
``truncate``
    ``DELETE FROM t`` directly before ``DROP TABLE t`` (SqlRender's ``TRUNCATE``) is dropped.
``unused_ordinal``
    The qualified events' second ``row_number()`` is computed for a qualified limit of
    ``First``; without that limit nothing reads it, and it becomes a constant.

The others apply when the entry events are limited to one per person (Circe's primary limit
``First`` or ``Last``: ``row_number() OVER (PARTITION BY E.person_id …) … WHERE P.ordinal =
1``). Then every later step holds at most one row per person — ``event_id`` is that ordinal,
so ``(person_id, event_id)`` is a person — and:

``best_events``
    the best event per person (inclusion-rule statistics by person) is the person's event:
    ``SELECT person_id, event_id FROM qualified_events``;
``person_mode_stats``
    so the statistics by person (``mode_id = 1``: ``cohort_inc_result``, ``cohort_inc_stats``,
    ``cohort_summary_stats``) equal those by event (``mode_id = 0``) and are copied from them;
``included_events``
    the expression limit (first, last or all events per person) keeps every event, and the
    events passing all ``n`` rules are those whose rule bits sum to ``2^n − 1``: an
    aggregation of ``inclusion_events`` joined to the events instead of a grouping of every
    event;
``cohort_rows``
    with Circe's default exit (the end of the event's observation period) and no censoring
    criteria, the first end on or after each start is ``op_end_date``;
``era_collapse``
    Circe's era collapse (pad ``p``: add ``p`` to each end, merge overlapping rows, subtract
    ``p``) returns each person's single row unchanged.
"""

from __future__ import annotations

import re

REWRITES = ("analyze", "truncate", "unused_ordinal", "best_events", "included_events",
            "cohort_rows", "era_collapse", "person_mode_stats")

# Circe's primary events limited to one per person (PrimaryCriteriaLimit First or Last:
# circepy's PRIMARY_EVENTS_SUBQUERY_TEMPLATE with @primaryEventLimit "WHERE P.ordinal = 1").
_ONE_EVENT_PER_PERSON = (
    re.compile(r"row_number\(\) OVER \(PARTITION BY E\.person_id ORDER BY E\.sort_date "
               r"(ASC|DESC), E\.event_id\) ordinal,", re.IGNORECASE),
    re.compile(r"\) P WHERE P\.ordinal = 1\)", re.IGNORECASE),
)

# Templates are circepy 0.3's statements, normalized; {name:regex} is a part that varies
# (its later uses must repeat the first).
_BEST_EVENTS = """
CREATE TEMP TABLE best_events AS SELECT q.person_id, q.event_id FROM qualified_events Q join (
SELECT R.person_id, R.event_id, ROW_NUMBER() OVER (PARTITION BY R.person_id ORDER BY
R.rule_count DESC, R.min_rule_id ASC, R.start_date ASC) AS rank_value FROM ( SELECT
Q.person_id, Q.event_id, COALESCE(COUNT(DISTINCT I.inclusion_rule_id), 0) AS rule_count,
COALESCE(MIN(I.inclusion_rule_id), 0) AS min_rule_id, Q.start_date FROM qualified_events Q LEFT
JOIN inclusion_events I ON q.person_id = i.person_id AND q.event_id = i.event_id GROUP BY
Q.person_id, Q.event_id, Q.start_date ) R ) ranked on Q.person_id = ranked.person_id and
Q.event_id = ranked.event_id WHERE ranked.rank_value = 1
"""
_BEST_EVENTS_ONE_PER_PERSON = (
    "CREATE TEMP TABLE best_events AS SELECT person_id, event_id FROM qualified_events")

# The events passing every inclusion rule ({rules} of them; no mask test when there are none),
# limited per person by the expression limit (First or Last; none for All).
_INCLUDED_EVENTS = """
CREATE TEMP TABLE included_events AS SELECT event_id, person_id, start_date, end_date,
op_start_date, op_end_date FROM ( SELECT event_id, person_id, start_date, end_date,
op_start_date, op_end_date, row_number() over (partition by person_id order by start_date
{order:ASC|DESC}) as ordinal from ( select Q.event_id, Q.person_id, Q.start_date, Q.end_date,
Q.op_start_date, Q.op_end_date, SUM(coalesce(POWER(cast(2 as bigint), I.inclusion_rule_id), 0))
as inclusion_rule_mask from qualified_events Q LEFT JOIN inclusion_events I on I.person_id =
Q.person_id and I.event_id = Q.event_id GROUP BY Q.event_id, Q.person_id, Q.start_date,
Q.end_date, Q.op_start_date, Q.op_end_date ) MG{mask:( WHERE \\(MG\\.inclusion_rule_mask =
POWER\\(cast\\(2 as bigint\\),\\d+\\)-1\\))?}) Results{limit:( WHERE Results\\.ordinal = 1)?}
"""
_INCLUDED_NO_RULES = (
    "CREATE TEMP TABLE included_events AS SELECT event_id, person_id, start_date, end_date, "
    "op_start_date, op_end_date FROM qualified_events")
_INCLUDED_WITH_RULES = (
    "CREATE TEMP TABLE included_events AS SELECT Q.event_id, Q.person_id, Q.start_date, "
    "Q.end_date, Q.op_start_date, Q.op_end_date FROM qualified_events Q JOIN (SELECT "
    "person_id, event_id FROM inclusion_events GROUP BY person_id, event_id HAVING "
    "SUM(POWER(cast(2 as bigint), inclusion_rule_id)) = POWER(cast(2 as bigint), {rules}) - 1"
    ") I ON I.person_id = Q.person_id AND I.event_id = Q.event_id")

# Cohort exit at the end of the event's observation period (Circe's default end strategy),
# with no censoring criteria: the first end on or after each event's start.
_COHORT_ROWS = """
CREATE TEMP TABLE cohort_rows AS SELECT person_id, start_date, end_date FROM ( select
F.person_id, F.start_date, F.end_date FROM ( select I.event_id, I.person_id, I.start_date,
CE.end_date, row_number() over (partition by I.person_id, I.event_id order by CE.end_date) as
ordinal from included_events I join ( select event_id, person_id, op_end_date as end_date from
included_events ) CE on I.event_id = CE.event_id and I.person_id = CE.person_id and
CE.end_date >= I.start_date ) F WHERE F.ordinal = 1 ) FE
"""
_COHORT_ROWS_ONE_PER_PERSON = (
    "CREATE TEMP TABLE cohort_rows AS SELECT person_id, start_date, op_end_date AS end_date "
    "FROM included_events WHERE op_end_date >= start_date")

_ERA_COLLAPSE = """
CREATE TEMP TABLE final_cohort AS SELECT person_id, min(start_date) as start_date,
(CAST(max(end_date) AS DATE) + CAST(-1 * {pad:\\d+} AS INTEGER)) as end_date FROM ( select
person_id, start_date, end_date, sum(is_start) over (partition by person_id order by
start_date, is_start desc rows unbounded preceding) group_idx from ( select person_id,
start_date, end_date, case when max(end_date) over (partition by person_id order by start_date
rows between unbounded preceding and 1 preceding) >= start_date then 0 else 1 end is_start
from ( select person_id, start_date, (CAST(end_date AS DATE) + CAST({pad} AS INTEGER)) as
end_date from cohort_rows ) CR ) ST ) GR group by person_id, group_idx
"""
_ERA_COLLAPSE_ONE_PER_PERSON = (
    "CREATE TEMP TABLE final_cohort AS SELECT person_id, start_date, "
    "CAST(end_date AS DATE) AS end_date FROM cohort_rows")

# Inclusion-rule statistics by person (mode_id = 1), computed on best_events; with one event
# per person best_events is qualified_events, so they equal those by event (mode_id = 0).
_MODE_1 = {
    "cohort_inc_result": """
insert into {table:[\\w.]+} (cohort_definition_id, inclusion_rule_mask, person_count, mode_id)
select {cohort:\\d+} as cohort_definition_id, inclusion_rule_mask, COUNT(*) as person_count,
1 as mode_id from ( select Q.person_id, Q.event_id, CAST(SUM(coalesce(POWER(cast(2 as bigint),
I.inclusion_rule_id), 0)) AS bigint) as inclusion_rule_mask from best_events Q LEFT JOIN
inclusion_events I on q.person_id = i.person_id and q.event_id = i.event_id GROUP BY
Q.person_id, Q.event_id ) MG group by inclusion_rule_mask
""",
    "cohort_inc_stats": """
insert into {table:[\\w.]+} (cohort_definition_id, rule_sequence, person_count, gain_count,
person_total, mode_id) select {cohort:\\d+} as cohort_definition_id, ir.rule_sequence,
coalesce(T.person_count, 0) as person_count, coalesce(SR.person_count, 0) gain_count,
EventTotal.total, 1 as mode_id from inclusion_rules ir left join ( select i.inclusion_rule_id,
COUNT(i.event_id) as person_count from best_events Q JOIN inclusion_events i on Q.person_id =
I.person_id and Q.event_id = i.event_id group by i.inclusion_rule_id ) T on ir.rule_sequence =
T.inclusion_rule_id CROSS JOIN (select count(*) as total_rules from inclusion_rules) RuleTotal
CROSS JOIN (select COUNT(event_id) as total from best_events) EventTotal LEFT JOIN
{result:[\\w.]+} SR on SR.mode_id = 1 AND SR.cohort_definition_id = {cohort} AND
(POWER(cast(2 as bigint),RuleTotal.total_rules) - POWER(cast(2 as bigint),ir.rule_sequence) -
1) = SR.inclusion_rule_mask
""",
    "cohort_summary_stats": """
insert into {table:[\\w.]+} (cohort_definition_id, base_count, final_count, mode_id) select
{cohort:\\d+} as cohort_definition_id, PC.total as person_count, coalesce(FC.total, 0) as
final_count, 1 as mode_id FROM (select COUNT(event_id) as total from best_events) PC, (select
sum(sr.person_count) as total from {result:[\\w.]+} sr CROSS JOIN (select count(*) as
total_rules from inclusion_rules) RuleTotal where sr.mode_id = 1 and sr.cohort_definition_id =
{cohort} and sr.inclusion_rule_mask = POWER(cast(2 as bigint),RuleTotal.total_rules)-1 ) FC
""",
}
_MODE_1_COLUMNS = {
    "cohort_inc_result": "inclusion_rule_mask, person_count",
    "cohort_inc_stats": "rule_sequence, person_count, gain_count, person_total",
    "cohort_summary_stats": "base_count, final_count",
}
_MODE_1_COPY = (
    "insert into {table} (cohort_definition_id, {columns}, mode_id) select "
    "cohort_definition_id, {columns}, 1 from {table} where cohort_definition_id = {cohort} "
    "and mode_id = 0")

# The outer ordinal of the qualified events, used only by a qualified limit of First.
_UNUSED_ORDINAL = re.compile(
    r"row_number\(\)\s+over\s+\(partition\s+by\s+pe\.person_id\s+order\s+by\s+"
    r"pe\.start_date\s+ASC\)\s+as\s+ordinal", re.IGNORECASE)


def normalize(statement: str) -> str:
    """One line, comments removed, single spaces, no space inside brackets: for comparing."""
    text = re.sub(r"--[^\n]*", " ", statement)
    text = re.sub(r"\s+", " ", text).strip().rstrip(";").strip()
    return re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", text))


_PLACEHOLDER = re.compile(r"\{(\w+)(?::([^{}]*))?\}")


def _template(text: str) -> re.Pattern:
    """A template (normalized like a statement) as a regular expression for fullmatch."""
    parts, seen, pos = [], set(), 0
    pieces = list(_PLACEHOLDER.finditer(text))
    for match in pieces:
        parts.append(_literal(text[pos:match.start()]))
        name, regex = match.group(1), match.group(2)
        if name in seen or regex is None:
            parts.append(f"(?P={name})")
        else:
            seen.add(name)
            regex = re.sub(r"\s+", " ", regex)
            parts.append(f"(?P<{name}>{regex})")
        pos = match.end()
    parts.append(_literal(text[pos:]))
    return re.compile("".join(parts).strip(), re.IGNORECASE)


def _literal(chunk: str) -> str:
    # keep one space where the chunk met a placeholder across white space
    lead = " " if chunk[:1].isspace() else ""
    trail = " " if chunk[-1:].isspace() else ""
    core = normalize(chunk)
    return lead + re.escape(core) + trail if core else (lead or trail)


_BEST_EVENTS_RE = _template(_BEST_EVENTS)
_INCLUDED_EVENTS_RE = _template(_INCLUDED_EVENTS)
_COHORT_ROWS_RE = _template(_COHORT_ROWS)
_ERA_COLLAPSE_RE = _template(_ERA_COLLAPSE)
_MODE_1_RE = {table: _template(text) for table, text in _MODE_1.items()}


def _one_event_per_person_sql(statements: list[str]) -> bool:
    """True if the script's qualified events hold at most one event per person."""
    for statement in statements:
        if re.match(r"\s*create\s+temp\s+table\s+qualified_events\b", statement, re.I):
            text = normalize(statement)
            return all(pattern.search(text) for pattern in _ONE_EVENT_PER_PERSON)
    return False


def rewrite_for_duckdb(statements: list[str], *,
                       one_event_per_person: bool) -> tuple[list[str], list[str]]:
    """Apply the rewrites to one cohort's translated statements.

    Parameters
    ----------
    statements
        circe's statements for one cohort, translated to DuckDB, in order.
    one_event_per_person
        The definition's primary limit is First or Last
        (:attr:`pharmalab.cohorts.CohortDefinition.one_event_per_person`). The rewrites that
        rely on it apply only if the SQL says so too: text from the definition (a
        ``ValueAsString``, say) cannot switch them on alone.

    Returns
    -------
    (statements, applied)
        The rewritten statements, and the names (from ``REWRITES``) of the rewrites applied,
        once per statement changed or dropped.
    """
    one_per_person = one_event_per_person and _one_event_per_person_sql(statements)
    out: list[str] = []
    applied: list[str] = []
    for i, statement in enumerate(statements):
        text = normalize(statement)
        following = normalize(statements[i + 1]) if i + 1 < len(statements) else ""
        name, replacement = _rewrite(statement, text, following, one_per_person)
        if name:
            applied.append(name)
        if replacement is not None:
            out.append(replacement)
    return out, applied


def _rewrite(statement: str, text: str, following: str,
             one_per_person: bool) -> tuple[str | None, str | None]:
    """(rewrite applied or None, the statement to run or None to drop it)."""
    if re.fullmatch(r"ANALYZE \w+", text, re.I):
        return "analyze", None
    truncated = re.fullmatch(r"DELETE FROM (\w+)", text, re.I)
    if truncated and following.lower() == f"drop table {truncated.group(1).lower()}":
        return "truncate", None
    if (re.match(r"CREATE TEMP TABLE qualified_events AS ", text, re.I)
            and text.endswith(") QE") and "qe.ordinal" not in text.lower()
            and len(_UNUSED_ORDINAL.findall(statement)) == 1):
        return "unused_ordinal", _UNUSED_ORDINAL.sub("CAST(NULL AS BIGINT) as ordinal",
                                                     statement)
    if not one_per_person:
        return None, statement
    if _BEST_EVENTS_RE.fullmatch(text):
        return "best_events", _BEST_EVENTS_ONE_PER_PERSON
    if match := _INCLUDED_EVENTS_RE.fullmatch(text):
        rules = re.search(r"\d+(?=\)-1\)$)", match.group("mask") or "")
        return "included_events", (_INCLUDED_WITH_RULES.format(rules=rules.group(0))
                                   if rules else _INCLUDED_NO_RULES)
    if _COHORT_ROWS_RE.fullmatch(text):
        return "cohort_rows", _COHORT_ROWS_ONE_PER_PERSON
    if _ERA_COLLAPSE_RE.fullmatch(text):
        return "era_collapse", _ERA_COLLAPSE_ONE_PER_PERSON
    for table, pattern in _MODE_1_RE.items():
        if match := pattern.fullmatch(text):
            return "person_mode_stats", _MODE_1_COPY.format(
                table=match.group("table"), columns=_MODE_1_COLUMNS[table],
                cohort=match.group("cohort"))
    return None, statement
