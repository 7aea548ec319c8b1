"""Kaplan–Meier survival of a target cohort until an outcome, with the per-day counts computed in
the engine.

The pipeline is: :func:`time_to_event` (an Ibis expression, one row per target entry) →
:func:`event_table` (grouped by day in the engine; only that aggregate leaves the database) →
:func:`kaplan_meier` / :func:`log_rank` (numpy on the aggregate) → :func:`survival`, which
bundles them for one or two cohorts with small counts suppressed.

Time is counted in whole days from the time-at-risk start: an outcome on the start day has time
0, and ``S(t)`` is the probability of no outcome on days ``0 … t`` after the start (so
``S(365)`` is "no outcome in the year after the start, the start day included"). The estimator
and confidence interval follow lifelines' ``KaplanMeierFitter`` (a person censored at ``t`` is
at risk at ``t``; outcomes at ``t`` are counted before censorings at ``t``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from scipy import stats

from pharmalab.characterize.time_at_risk import TimeAtRisk, at_risk_periods, days_between
from pharmalab.engine import Database
from pharmalab.errors import PharmalabInputError
from pharmalab.privacy import suppress
from pharmalab.privacy.suppression import DEFAULT_MIN_CELL_COUNT

EVENT_COLUMNS = ["time", "n_events", "n_censored"]
KM_COLUMNS = ["time", "n_at_risk", "n_events", "n_censored", "survival", "lower_95", "upper_95"]
COUNT_COLUMNS = ["n_at_risk", "n_events", "n_censored"]

# Cohort start + 0 d → cohort end + 0 d: follow-up for as long as the person is in the cohort.
DEFAULT_TAR = TimeAtRisk()

# lifelines' KaplanMeierFitter(alpha=0.05): z of the two-sided 95% interval.
_Z95 = float(stats.norm.ppf(0.975))

# S(t) is a product of ratios computed in floating point: a curve that is exactly 0.5 in
# arithmetic may come out as 0.5 + 1e-16; the median should still be that day.
_MEDIAN_TOLERANCE = 1e-12


# --------------------------------------------------------------------------------------------
# In the engine
# --------------------------------------------------------------------------------------------


def time_to_event(
    db: Database,
    target_cohort_id: int,
    outcome: int | ir.Table,
    tar: TimeAtRisk = DEFAULT_TAR,
    *,
    first_entry_only: bool = True,
    min_days_at_risk: int = 1,
) -> ir.Table:
    """Days from each target entry's time-at-risk start to the first outcome or censoring.

    Parameters
    ----------
    db
        The database: ``observation_period`` and (if present) ``death`` in the CDM schema, the
        ``cohort`` table in the results schema.
    target_cohort_id
        ``cohort_definition_id`` of the target cohort in the results ``cohort`` table.
    outcome
        Either an outcome cohort id (its rows are read from the results ``cohort`` table) or an
        Ibis table of outcome rows, on the same backend, with ``subject_id`` and
        ``cohort_start_date`` (the outcome day; other columns are ignored).
    tar
        Time-at-risk window (default: cohort start + 0 d → cohort end + 0 d). Its end is cut
        at the end of the observation period holding the entry, as in
        :func:`~pharmalab.characterize.time_at_risk.at_risk_periods` (OHDSI CohortIncidence).
    first_entry_only
        Keep only each person's earliest entry into the target cohort (a new-user index); the
        person is left out if that entry has no time at risk. False keeps every entry.
    min_days_at_risk
        Entries whose window (cut at observation end, start and end days included) is
        shorter are left out (CohortMethod ``createStudyPopulation(minDaysAtRisk=)``; the
        default 1 keeps every entry with a window).

    Returns
    -------
    ibis Table
        One row per target entry with time at risk:

        - ``subject_id`` (int64), ``cohort_start_date`` (date): the entry;
        - ``time`` (int64, days): from the window's start to the first outcome day inside
          ``[start, censoring day]`` when there is one (an outcome on the start day gives 0),
          else to the censoring day;
        - ``event`` (int8): 1 if that outcome occurred, 0 if censored.

        The censoring day is the window's end (already cut at observation end) or the death
        day (``death.death_date``) if earlier: a death on the start day gives time 0, censored,
        unless the outcome is recorded that day. Outcomes before the start or after the
        censoring day do not count. Entries whose person died before the window starts have no
        time at risk and are left out.

    Raises
    ------
    PharmalabInputError
        If a cohort id is not an integer, the outcome table lacks ``subject_id`` or
        ``cohort_start_date``, or the window is invalid.
    CdmNotFoundError
        If ``observation_period`` or the results ``cohort`` table is missing.
    """
    _check_cohort_id(target_cohort_id, "target_cohort_id")
    entries = _cohort_rows(db, target_cohort_id)
    if first_entry_only:
        # An aggregate and a join rather than a window in the filter: Ibis 12 compiles the
        # latter (QUALIFY) to SQL that Spark cannot resolve.
        firsts = entries.group_by(first_subject_id=entries.subject_id).aggregate(
            first_start_date=entries.cohort_start_date.min())
        entries = entries.join(
            firsts,
            (entries.subject_id == firsts.first_subject_id)
            & (entries.cohort_start_date == firsts.first_start_date),
        ).select(entries.columns)
    periods = at_risk_periods(entries, db.table("observation_period"), [tar],
                              min_days_at_risk=min_days_at_risk)
    periods = _with_censoring_day(db, periods)

    outcomes = _outcome_rows(db, outcome)
    # One left join and one aggregate over the periods' own columns: a first-outcome
    # aggregate joined back onto the periods made PostgreSQL (which estimates the periods at
    # one row) re-run that aggregate per period in a nested loop, minutes on GiBleed.
    joined = periods.left_join(
        outcomes,
        (periods.subject_id == outcomes.outcome_subject_id)
        & (outcomes.outcome_date >= periods.start_date)
        & (outcomes.outcome_date <= periods.censor_date),
    )
    joined = joined.group_by(["subject_id", "cohort_start_date", "start_date", "censor_date"]) \
        .aggregate(first_outcome_date=joined.outcome_date.min())
    had_event = joined.first_outcome_date.notnull()
    return joined.select(
        subject_id=joined.subject_id,
        cohort_start_date=joined.cohort_start_date,
        time=ibis.cases(
            (had_event, days_between(joined.start_date, joined.first_outcome_date)),
            else_=days_between(joined.start_date, joined.censor_date),
        ).cast("int64"),
        event=had_event.cast("int8"),
    )


def event_table(
    db: Database,
    target_cohort_id: int,
    outcome: int | ir.Table,
    tar: TimeAtRisk = DEFAULT_TAR,
    *,
    first_entry_only: bool = True,
    min_days_at_risk: int = 1,
) -> pd.DataFrame:
    """Outcomes and censorings per day of follow-up, counted in the engine.

    Parameters are those of :func:`time_to_event`; only the per-day aggregate is fetched.

    Returns
    -------
    pandas.DataFrame
        ``time`` (int64, days since the time-at-risk start), ``n_events`` and ``n_censored``
        (int64): entries whose first outcome, or censoring, falls on that day. One row per day
        with at least one of them, sorted by ``time``; empty if no entry has time at risk.

    Raises
    ------
    PharmalabInputError, CdmNotFoundError
        As :func:`time_to_event`.
    """
    rows = time_to_event(db, target_cohort_id, outcome, tar, first_entry_only=first_entry_only,
                         min_days_at_risk=min_days_at_risk)
    return aggregate_events(rows)


def aggregate_events(rows: ir.Table) -> pd.DataFrame:
    """Group a :func:`time_to_event` table by ``time`` in the engine and fetch the counts.

    ``rows`` has ``time`` (days) and ``event`` (0/1); an optional ``entry`` column (days, on
    the same clock, ``entry < time``) adds delayed entry: the result then has ``n_entered``,
    the entries entering per day, for :func:`kaplan_meier`.

    Returns
    -------
    pandas.DataFrame
        As :func:`event_table` (plus ``n_entered``, int64, with an ``entry`` column).
    """
    events = rows.event.cast("int64")
    counts = rows.group_by("time").aggregate(
        n_events=events.sum(), n_censored=(1 - events).sum())
    frame = counts.to_pandas()
    frame = frame.astype({column: "int64" for column in EVENT_COLUMNS})
    frame = frame[EVENT_COLUMNS]
    if "entry" in rows.columns:
        entries = rows.group_by(time=rows.entry.cast("int64")).aggregate(
            n_entered=rows.count()).to_pandas()
        frame = frame.merge(entries, on="time", how="outer").fillna(0).astype("int64")
    return frame.sort_values("time", ignore_index=True)


def _check_cohort_id(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise PharmalabInputError(f"{name} must be a cohort id (an integer), got {value!r}")


def _cohort_rows(db: Database, cohort_id: int) -> ir.Table:
    cohort = db.table("cohort", "results")
    rows = cohort.filter(cohort.cohort_definition_id == int(cohort_id))
    return rows.select(
        cohort_definition_id=rows.cohort_definition_id.cast("int64"),
        subject_id=rows.subject_id.cast("int64"),
        cohort_start_date=rows.cohort_start_date.cast("date"),
        cohort_end_date=rows.cohort_end_date.cast("date"),
    )


def _outcome_rows(db: Database, outcome: int | ir.Table) -> ir.Table:
    """Outcome days as ``outcome_subject_id``, ``outcome_date`` (names that cannot collide)."""
    if isinstance(outcome, ir.Table):
        missing = [c for c in ("subject_id", "cohort_start_date") if c not in outcome.columns]
        if missing:
            raise PharmalabInputError(
                f"outcome table has no column {missing[0]!r} (it needs subject_id and "
                f"cohort_start_date; columns: {', '.join(outcome.columns)})")
        rows = outcome
    else:
        _check_cohort_id(outcome, "outcome")
        rows = _cohort_rows(db, outcome)
    return rows.select(
        outcome_subject_id=rows.subject_id.cast("int64"),
        outcome_date=rows.cohort_start_date.cast("date"),
    )


def _with_censoring_day(db: Database, periods: ir.Table) -> ir.Table:
    """Add ``censor_date``: the window's end, or the death day if earlier.

    A person who died before the window starts was never at risk: the entry is dropped.
    """
    if not db.has_table("death"):
        return periods.mutate(censor_date=periods.end_date)
    death = db.table("death")
    # CDM 5.3 has one death row per person, 5.4 may have more: the earliest counts.
    deaths = death.group_by(death_person_id=death.person_id.cast("int64")).aggregate(
        death_date=death.death_date.cast("date").min())
    joined = periods.left_join(deaths, periods.subject_id == deaths.death_person_id)
    dies_first = joined.death_date.notnull() & (joined.death_date < joined.end_date)
    joined = joined.mutate(
        censor_date=ibis.cases((dies_first, joined.death_date), else_=joined.end_date))
    alive_at_start = joined.death_date.isnull() | (joined.death_date >= joined.start_date)
    return joined.filter(alive_at_start).drop("death_person_id", "death_date")


# --------------------------------------------------------------------------------------------
# On the aggregate
# --------------------------------------------------------------------------------------------


def kaplan_meier(events: pd.DataFrame, n_total: int | None = None) -> pd.DataFrame:
    """The product-limit (Kaplan–Meier) estimate from per-day event and censoring counts.

    Parameters
    ----------
    events
        ``time`` (days ≥ 0), ``n_events``, ``n_censored`` (counts ≥ 0), as from
        :func:`event_table`; repeated times are added up. An optional ``n_entered`` column
        gives **delayed entry** (left truncation): the entries whose follow-up starts at
        ``time`` and who are at risk only after it — an entry that enters at ``e`` and leaves
        at ``x`` is at risk at ``t`` for ``e < t ≤ x`` (R's ``Surv(start, stop, event)``;
        lifelines' ``KaplanMeierFitter.fit(..., entry=)`` gives the same curve). Without it
        every entry is at risk from time 0.
    n_total
        Number of entries. By default the total of ``n_events`` and ``n_censored``; when
        given it must equal that total (a guard against a filtered or truncated aggregate).

    Returns
    -------
    pandas.DataFrame
        One row per time of ``events``, plus a first row at time 0 if there is none:

        - ``time`` (int64, days);
        - ``n_at_risk`` (int64): entries with time ≥ ``time`` (and, with delayed entry,
          that entered before ``time``);
        - ``n_events``, ``n_censored`` (int64);
        - ``survival`` (float64): ``S(t) = ∏_{t_i ≤ t} (1 − d_i / n_i)`` (Kaplan & Meier 1958);
        - ``lower_95``, ``upper_95`` (float64): the 95% interval from Greenwood's variance on
          the log(−log S) scale, the "exponential Greenwood" interval that lifelines'
          ``KaplanMeierFitter`` reports (Kalbfleisch & Prentice 1980): ``exp(−exp(log(−log S)
          ∓ z·σ / log S))`` with ``σ² = Σ d_i / (n_i (n_i − d_i))``. Where ``S = 1`` both
          bounds are 1; where ``S = 0`` both are 0.

        The values equal lifelines' ``survival_function_``, ``confidence_interval_`` and
        ``event_table.at_risk`` at the same times.

    Raises
    ------
    PharmalabInputError
        If a column is missing, a time is negative, a count negative, there are no entries,
        ``n_total`` disagrees with the counts, or (delayed entry) the entered total differs
        from the entries that leave, or an entry would leave before it enters.
    """
    table = _clean_events(events, "events")
    if table.empty or table[["n_events", "n_censored"]].to_numpy().sum() == 0:
        raise PharmalabInputError("kaplan_meier: no entries with time at risk to estimate from")
    removed = (table.n_events + table.n_censored).to_numpy()
    total = int(removed.sum())
    if n_total is not None and int(n_total) != total:
        raise PharmalabInputError(
            f"kaplan_meier: n_total is {n_total} but the event table counts {total} entries")
    if table.time.iloc[0] > 0:
        # lifelines' timeline starts at 0, where everyone is at risk and S = 1.
        start = pd.DataFrame({"time": [0], "n_events": [0], "n_censored": [0],
                              "n_entered": [0]})
        table = pd.concat([start, table], ignore_index=True)
        removed = np.r_[0, removed]

    left_before = np.r_[0, np.cumsum(removed)[:-1]]
    if "n_entered" in events.columns:
        entered = table.n_entered.to_numpy()
        if int(entered.sum()) != total:
            raise PharmalabInputError(
                f"kaplan_meier: n_entered sums to {int(entered.sum())} but {total} entries "
                "leave (every entry must enter once)")
        # In the risk set at t: entered strictly before t, not yet left before t.
        at_risk = np.r_[0, np.cumsum(entered)[:-1]] - left_before
        if (at_risk < (table.n_events + table.n_censored).to_numpy()).any():
            day = int(table.time[at_risk < (table.n_events + table.n_censored)].iloc[0])
            raise PharmalabInputError(
                f"kaplan_meier: on day {day} more entries leave than are at risk; an entry "
                "must leave after the day it enters (entry < exit)")
    else:
        at_risk = total - left_before
    deaths = table.n_events.to_numpy().astype(float)
    n = at_risk.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Summed on the log scale, as lifelines does, so the values agree to the last digits.
        # (A day with nobody at risk and no outcome — before delayed entries — adds 0.)
        log_survival = np.cumsum(np.where(deaths > 0, np.log(n - deaths) - np.log(n), 0.0))
        # Greenwood's terms; a day on which everyone left at risk has the outcome adds
        # nothing (lifelines replaces the infinite term by 0; S is 0 from then on anyway).
        terms = deaths / (n * (n - deaths))
        terms[~np.isfinite(terms)] = 0.0
        sigma = np.sqrt(np.cumsum(terms))
        survival = np.exp(log_survival)
        log_minus_log = np.log(-log_survival)
        lower = np.exp(-np.exp(log_minus_log - _Z95 * sigma / log_survival))
        upper = np.exp(-np.exp(log_minus_log + _Z95 * sigma / log_survival))
    # S = 1 gives 0/0 above; lifelines fills those bounds with 1.
    lower[np.isnan(lower)] = 1.0
    upper[np.isnan(upper)] = 1.0

    return pd.DataFrame({
        "time": table.time.to_numpy(dtype="int64"),
        "n_at_risk": at_risk.astype("int64"),
        "n_events": table.n_events.to_numpy(dtype="int64"),
        "n_censored": table.n_censored.to_numpy(dtype="int64"),
        "survival": survival,
        "lower_95": lower,
        "upper_95": upper,
    })


def median_survival(table: pd.DataFrame) -> float | None:
    """The first time at which survival is at most 0.5.

    Parameters
    ----------
    table
        A :func:`kaplan_meier` table (``time``, ``survival``).

    Returns
    -------
    float or None
        Days; None if the curve never reaches 0.5 (lifelines' ``median_survival_time_``
        reports ``inf`` then). As lifelines: no interpolation between steps.
    """
    reached = table.loc[table.survival <= 0.5 + _MEDIAN_TOLERANCE, "time"]
    return None if reached.empty else float(reached.iloc[0])


def survival_at(table: pd.DataFrame, t: float) -> float:
    """The Kaplan–Meier step function at day ``t``.

    Parameters
    ----------
    table
        A :func:`kaplan_meier` table (``time``, ``survival``).
    t
        Days since the time-at-risk start.

    Returns
    -------
    float
        ``S(t)``: the survival at the last time ≤ ``t`` (1.0 before the first time; the last
        value after the last time, as lifelines' ``survival_function_at_times``).
    """
    times = table.time.to_numpy()
    position = int(np.searchsorted(times, t, side="right")) - 1
    return 1.0 if position < 0 else float(table.survival.iloc[position])


@dataclass(frozen=True)
class LogRankResult:
    """A two-group log-rank test: ``chi2`` with ``df`` degrees of freedom and its ``p_value``."""

    chi2: float
    df: int
    p_value: float


def log_rank(events_a: pd.DataFrame, events_b: pd.DataFrame) -> LogRankResult:
    """The log-rank test of equal hazards in two groups, from their per-day counts.

    Parameters
    ----------
    events_a, events_b
        :func:`event_table` frames (``time``, ``n_events``, ``n_censored``) of the two groups.

    Returns
    -------
    LogRankResult
        ``chi2 = (O_a − E_a)² / V`` summed over the days with an outcome in either group, with
        ``E_a = Σ n_a d / n`` and the hypergeometric variance ``V = Σ n_a n_b d (n − d) /
        (n² (n − 1))``; ``df = 1``; ``p_value`` from the χ² distribution (scipy). This is
        Mantel's (1966) test, and equals ``lifelines.statistics.logrank_test`` on the
        per-person rows. With no variance (no outcome where both groups are at risk) chi2
        is 0 and p is 1, as lifelines gives.

    Raises
    ------
    PharmalabInputError
        If a frame lacks a column, or holds a negative time or count, or no entries.
    """
    a = _clean_events(events_a, "events_a").set_index("time")
    b = _clean_events(events_b, "events_b").set_index("time")
    if a.n_entered.sum() or b.n_entered.sum():
        raise PharmalabInputError(
            "log_rank: delayed entry (n_entered) is not supported by this test; compare "
            "curves without it")
    a, b = a.drop(columns="n_entered"), b.drop(columns="n_entered")
    for name, frame in (("events_a", a), ("events_b", b)):
        if frame.to_numpy().sum() == 0:
            raise PharmalabInputError(f"log_rank: {name} counts no entries")
    both = a.join(b, how="outer", lsuffix="_a", rsuffix="_b").fillna(0).sort_index()

    def at_risk(suffix: str) -> np.ndarray:
        removed = (both[f"n_events{suffix}"] + both[f"n_censored{suffix}"]).to_numpy()
        return removed.sum() - np.r_[0, np.cumsum(removed)[:-1]]

    n_a, n_b = at_risk("_a"), at_risk("_b")
    d_a = both.n_events_a.to_numpy()
    d = d_a + both.n_events_b.to_numpy()
    n = n_a + n_b
    expected_a = n_a * d / n
    with np.errstate(divide="ignore", invalid="ignore"):
        # With one person at risk the (n − d)/(n − 1) correction is 0/0; n_a·n_b is 0 then.
        variance = np.where(n > 1, n_a * n_b * d * (n - d) / (n**2 * (n - 1)), 0.0)
    total_variance = float(variance.sum())
    difference = float(d_a.sum() - expected_a.sum())
    chi2 = difference**2 / total_variance if total_variance > 0 else 0.0
    return LogRankResult(chi2=chi2, df=1, p_value=float(stats.chi2.sf(chi2, 1)))


def _clean_events(events: pd.DataFrame, name: str) -> pd.DataFrame:
    """Validated ``time, n_events, n_censored[, n_entered]`` (int64), one row per time,
    sorted; ``n_entered`` is 0 when absent."""
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise PharmalabInputError(
            f"{name}: column {missing[0]!r} is missing (expected time, n_events, n_censored; "
            f"columns: {', '.join(map(str, events.columns))})")
    columns = EVENT_COLUMNS + (["n_entered"] if "n_entered" in events.columns else [])
    table = events[columns]
    if table.isna().any().any():
        raise PharmalabInputError(f"{name}: time and counts must not be missing")
    table = table.astype("int64")
    if "n_entered" not in table.columns:
        table = table.assign(n_entered=0)
    if (table.time < 0).any():
        raise PharmalabInputError(f"{name}: times must be ≥ 0 days, found {table.time.min()}")
    for column in ("n_events", "n_censored", "n_entered"):
        if (table[column] < 0).any():
            raise PharmalabInputError(f"{name}: {column} must be ≥ 0")
    return table.groupby("time", as_index=False).sum().sort_values("time", ignore_index=True)


# --------------------------------------------------------------------------------------------
# One or two cohorts, suppressed
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SurvivalResult:
    """Kaplan–Meier curves of one or two target cohorts until one outcome.

    Attributes
    ----------
    table : pandas.DataFrame
        The shareable table: ``cohort_definition_id`` (int64) then the :func:`kaplan_meier`
        columns, with ``n_at_risk``, ``n_events`` and ``n_censored`` suppressed by
        :func:`pharmalab.privacy.suppress` (nullable Int64, each followed by a
        ``<column>_suppressed`` flag).
    medians : dict[int, float | None]
        Median survival in days per cohort id (None: not reached).
    log_rank : LogRankResult or None
        The test between the two cohorts, in the order given; None for one cohort.
    tar : TimeAtRisk
    min_cell_count : int
    unsuppressed_table : pandas.DataFrame
        The same table with every count: for analysis inside the data holder's site only,
        never to be shared.
    """

    table: pd.DataFrame
    medians: dict[int, float | None]
    log_rank: LogRankResult | None
    tar: TimeAtRisk
    min_cell_count: int
    unsuppressed_table: pd.DataFrame = field(repr=False)

    @property
    def cohort_ids(self) -> list[int]:
        """Target cohort ids, in the order given."""
        return list(self.medians)


def survival(
    db: Database,
    target_cohort_ids: Sequence[int],
    outcome: int | ir.Table,
    tar: TimeAtRisk = DEFAULT_TAR,
    *,
    first_entry_only: bool = True,
    min_days_at_risk: int = 1,
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT,
) -> SurvivalResult:
    """Kaplan–Meier survival of one or two target cohorts, with a log-rank test for two.

    Parameters
    ----------
    db, outcome, tar, first_entry_only, min_days_at_risk
        As :func:`time_to_event`.
    target_cohort_ids
        One or two distinct target cohort ids.
    min_cell_count
        Counts from 1 to ``min_cell_count − 1`` are blanked in :attr:`SurvivalResult.table`
        (OHDSI ``minCellCount``; default 5).

    Returns
    -------
    SurvivalResult

    Raises
    ------
    PharmalabInputError
        If not one or two distinct integer ids are given, a target cohort has no entry with
        time at risk (naming it), or as :func:`time_to_event`.
    """
    ids = list(target_cohort_ids) if not isinstance(target_cohort_ids, int) else [
        target_cohort_ids]
    for cohort_id in ids:
        _check_cohort_id(cohort_id, "target_cohort_ids")
    if not 1 <= len(ids) <= 2 or len(set(ids)) != len(ids):
        raise PharmalabInputError(
            f"target_cohort_ids: give one or two distinct cohort ids, got {ids}")

    counts, curves, medians = {}, [], {}
    for cohort_id in ids:
        events = event_table(db, cohort_id, outcome, tar, first_entry_only=first_entry_only,
                             min_days_at_risk=min_days_at_risk)
        if events.empty:
            raise PharmalabInputError(
                f"target cohort {cohort_id}: no entry with time at risk ({tar.label}); is "
                "the cohort generated in the results schema?")
        curve = kaplan_meier(events)
        counts[cohort_id] = events
        medians[int(cohort_id)] = median_survival(curve)
        curves.append(curve.assign(cohort_definition_id=int(cohort_id))[
            ["cohort_definition_id", *KM_COLUMNS]])
    test = log_rank(counts[ids[0]], counts[ids[1]]) if len(ids) == 2 else None
    raw = pd.concat(curves, ignore_index=True)
    return SurvivalResult(
        table=suppress(raw, COUNT_COLUMNS, min_cell_count),
        medians=medians,
        log_rank=test,
        tar=tar,
        min_cell_count=min_cell_count,
        unsuppressed_table=raw,
    )


# Plotly's default qualitative colours, as (r, g, b) so the bands can be translucent.
_COLOURS = [(99, 110, 250), (239, 85, 59), (0, 204, 150), (171, 99, 250)]


def survival_figure(result: SurvivalResult, title: str | None = None,
                    names: Mapping[int, str] | None = None):
    """A Plotly figure of the curves: one step line per cohort with its 95% band.

    Parameters
    ----------
    result
        From :func:`survival`; the suppressed table is drawn (hover shows counts only where
        they are not suppressed).
    title
        Figure title (default: the time-at-risk window).
    names
        Legend names by cohort id (default "cohort <id>").

    Returns
    -------
    plotly.graph_objects.Figure
        Per cohort, a filled band between ``lower_95`` and ``upper_95`` (two traces, not in
        the legend) and the survival step line (``line_shape="hv"``), x in days.
    """
    import plotly.graph_objects as go

    figure = go.Figure()
    for index, (cohort_id, curve) in enumerate(result.table.groupby(
            "cohort_definition_id", sort=False)):
        red, green, blue = _COLOURS[index % len(_COLOURS)]
        name = (names or {}).get(int(cohort_id), f"cohort {cohort_id}")
        figure.add_trace(go.Scatter(
            x=curve.time, y=curve.upper_95, mode="lines", line_shape="hv",
            line={"width": 0}, hoverinfo="skip", showlegend=False, legendgroup=name))
        figure.add_trace(go.Scatter(
            x=curve.time, y=curve.lower_95, mode="lines", line_shape="hv",
            line={"width": 0}, fill="tonexty", fillcolor=f"rgba({red},{green},{blue},0.2)",
            hoverinfo="skip", showlegend=False, legendgroup=name))
        at_risk = curve.n_at_risk.astype("string").fillna(f"<{result.min_cell_count}")
        figure.add_trace(go.Scatter(
            x=curve.time, y=curve.survival, mode="lines", line_shape="hv", name=name,
            legendgroup=name, line={"color": f"rgb({red},{green},{blue})"},
            customdata=at_risk.to_numpy(),
            hovertemplate="day %{x}: S = %{y:.3f} (at risk %{customdata})"
                          f"<extra>{name}</extra>"))
    figure.update_layout(
        title=title or f"Kaplan–Meier survival, {result.tar.label}",
        xaxis_title="days since time-at-risk start",
        yaxis_title="survival (no outcome)",
        # from just below the lowest limit to 1: curves that stay near 1 remain readable
        yaxis_range=[max(0.0, float(result.table.lower_95.min()) - 0.02), 1.005],
        template="plotly_white",
    )
    return figure
