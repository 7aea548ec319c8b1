"""Persistence: treatment episodes with a permissible gap, persistence at 6 and 12 months and
the Kaplan–Meier curve of time to discontinuation, computed in the engine.

The episode rules are AdhereR's ``compute.treatment.episodes`` (Dima & Dediu 2017) with
``carry.only.for.same.medication = TRUE`` and
``medication.change.means.new.treatment.episode = TRUE``:

- each person's fills are taken in date order; a fill of day ``s`` with ``d`` days of supply
  covers the days ``s … s + d − 1``; its supply *end* is the first day not covered, ``s + d``;
- supply left over from earlier fills is carried over to the next fill only when that fill is
  of the same medication (ingredient): the supply end of fill ``i`` of a run of the same
  medication is ``E_i = max(E_{i−1}, s_i) + d_i``, which in closed form is
  ``E_i = C_i + max_{j ≤ i}(s_j − C_{j−1})`` with ``C_i`` the running total of days of
  supply (a running sum and a running maximum: window functions, no loop);
- a fill of another medication than the previous fill starts a new episode, and so does a fill
  that starts more than ``permissible_gap`` days after the supply end of the previous fill;
- an episode starts on its first fill and ends on the supply end of its last fill, or earlier
  where the next episode (another medication) starts before that, or the follow-up ends;
  ``duration_days = end − start``; ``end_gap_days`` is the number of days from the end to
  the start of the next episode, or to the end of follow-up for the last one.

Follow-up starts on the person's first fill of the given medications and ends with the
observation period holding that fill, or ``follow_up`` days after it if sooner (AdhereR's
follow-up window, ``followup.window.start = 0``). Fills on or after its end are left out.

References
----------
Dima AL, Dediu D (2017). Computation of adherence to medication and visualization of medication
histories in R with AdhereR. PLoS ONE 12(4): e0174426 (``compute.treatment.episodes``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from pharmalab.cdm.spec import OPEN_END_AFTER
from pharmalab.characterize.survival import (
    DEFAULT_TAR,
    KM_COLUMNS,
    SurvivalResult,
    aggregate_events,
    kaplan_meier,
    median_survival,
    survival_figure,
)
from pharmalab.engine import Database
from pharmalab.errors import PharmalabInputError
from pharmalab.journey.drugs import drug_exposures
from pharmalab.privacy import suppress
from pharmalab.privacy.suppression import DEFAULT_MIN_CELL_COUNT

EPISODE_COLUMNS = ["person_id", "episode_id", "medication", "start", "end", "duration_days",
                   "end_gap_days", "discontinued", "follow_up_end", "supply_end"]

# Persistence checkpoints: 6 and 12 months, in days.
DEFAULT_CHECKPOINTS = {6: 182, 12: 365}

_EPOCH = ibis.date(1970, 1, 1)


# --------------------------------------------------------------------------------------------
# Fills
# --------------------------------------------------------------------------------------------


def _check_concept_ids(concept_ids) -> list[int]:
    ids = [concept_ids] if isinstance(concept_ids, (int, np.integer)) else list(concept_ids)
    if not ids or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in ids):
        raise PharmalabInputError(
            f"concept_ids must be one or more ingredient concept ids (integers), got "
            f"{concept_ids!r}")
    return [int(c) for c in ids]


def _day(column) -> ir.IntegerValue:
    """Days since 1970-01-01 (int64)."""
    return column.delta(_EPOCH, unit="day").cast("int64")


def _date(days) -> ir.DateValue:
    """The date ``days`` after 1970-01-01."""
    return (_EPOCH + days.cast("int32").as_interval("D")).cast("date")


# --------------------------------------------------------------------------------------------
# Episodes
# --------------------------------------------------------------------------------------------


def treatment_episodes(
    db: Database,
    concept_ids: int | Sequence[int],
    *,
    permissible_gap: int = 60,
    follow_up: int | None = None,
    include_descendants: bool = True,
    append_gap: bool = False,
    as_of: dt.date | None = None,
) -> ir.Table:
    """Treatment episodes per person (AdhereR ``compute.treatment.episodes``), in the engine.

    Parameters
    ----------
    db
        The database: ``drug_exposure`` and ``observation_period`` in the CDM schema,
        ``concept`` and ``concept_ancestor`` in the vocabulary schema.
    concept_ids
        Drug concept ids (ingredients or classes); each fill's *medication* is its ingredient
        as mapped by :func:`pharmalab.journey.drugs.drug_exposures`, which also gives the
        days of supply (``days_supply``, else imputed from the exposure dates, at least 1).
    permissible_gap
        Largest gap in days, from the supply end of a fill to the next fill of the same
        medication, that keeps the episode going (AdhereR ``maximum.permissible.gap``); a
        longer gap ends the episode.
    follow_up
        Days of follow-up from the first fill; None (default) follows up to the end of the
        observation period holding the first fill. Either way follow-up stops at that end.
    include_descendants
        Whether drugs below the ingredients in ``concept_ancestor`` count (default True).
    append_gap
        AdhereR's ``maximum.permissible.gap.append.to.episode``: a discontinued episode's
        ``end`` is its supply end plus ``permissible_gap`` days (the time a patient could
        still have been taking it), cut at follow-up end; ``end_gap_days`` still counts from
        the supply end. False (default, as AdhereR) ends it at the supply end.
    as_of
        A data cut-off: the episodes as they were known on that day. Fills starting on or
        after it are left out and follow-up ends there at the latest (an origin of a rolling
        backtest sees nothing after it). None (default): all the data.

    Returns
    -------
    ibis Table
        One row per episode:

        - ``person_id`` (int64);
        - ``episode_id`` (int64): 1, 2, … in time order per person;
        - ``medication`` (int64): the ingredient concept id;
        - ``start``, ``end`` (date): first fill day; exclusive end, as AdhereR's
          ``episode.end``: for a discontinued episode the first day without supply (cut at
          the next episode's start); for an episode still running at the end of follow-up
          (censored) the follow-up end, as AdhereR reports it;
        - ``duration_days`` (int64, days): ``end − start``;
        - ``end_gap_days`` (int64, days): from the supply end to the next episode's start,
          or to the follow-up end for the last episode (AdhereR's ``end.episode.gap.days``);
        - ``discontinued`` (boolean): the episode is known to have ended, because another
          episode follows or the gap after the last one exceeds ``permissible_gap``; False
          means the episode is censored at the follow-up end;
        - ``follow_up_end`` (date): the first day after follow-up;
        - ``supply_end`` (date): the first day without supply, cut at the next episode's
          start and at follow-up end (the ``end`` of a discontinued episode).

        Persons whose first fill lies outside every observation period are left out.

    Raises
    ------
    PharmalabInputError
        For concept ids that are not integers, a negative ``permissible_gap`` or a
        ``follow_up`` below 1 day.
    CdmNotFoundError
        If a table the computation reads is missing.

    References
    ----------
    Dima AL, Dediu D (2017), PLoS ONE 12(4): e0174426; AdhereR ``compute.treatment.episodes``
    with ``carry.only.for.same.medication = TRUE`` and
    ``medication.change.means.new.treatment.episode = TRUE``.
    """
    ids = _check_concept_ids(concept_ids)
    if isinstance(permissible_gap, bool) or not isinstance(permissible_gap, (int, np.integer)) \
            or permissible_gap < 0:
        raise PharmalabInputError(
            f"permissible_gap must be a whole number of days ≥ 0, got {permissible_gap!r}")
    if follow_up is not None and (isinstance(follow_up, bool)
                                  or not isinstance(follow_up, (int, np.integer))
                                  or follow_up < 1):
        raise PharmalabInputError(
            f"follow_up must be None or a whole number of days ≥ 1, got {follow_up!r}")
    fills = drug_exposures(db, ids, include_descendants=include_descendants)
    observation_period = db.table("observation_period")
    if as_of is not None:
        as_of = pd.Timestamp(as_of).date()
        cut = ibis.literal(as_of, type="date")
        fills = fills.filter(fills.drug_exposure_start_date < cut)
        last_day = observation_period.observation_period_end_date.cast("date")
        observation_period = observation_period.mutate(observation_period_end_date=ibis.least(
            _closed(last_day), ibis.literal(as_of - dt.timedelta(days=1), type="date")))
    return _episodes(fills, observation_period, int(permissible_gap),
                     None if follow_up is None else int(follow_up), bool(append_gap))


def _closed(end: ir.DateValue) -> ir.DateValue:
    """An observation end after 2099-12-31 (OMOP's open end 9999-12-31) is still running:
    follow-up ends today, not in the year 9999."""
    today = ibis.literal(dt.date.today())
    return ibis.cases((end > OPEN_END_AFTER, today), else_=end)


def _episodes(fills: ir.Table, observation_period: ir.Table, permissible_gap: int,
              follow_up: int | None, append_gap: bool = False) -> ir.Table:
    rows = fills.select(
        person_id=fills.person_id, medication=fills.ingredient_concept_id,
        s=_day(fills.drug_exposure_start_date), d=fills.days_supply_used)

    # Follow-up: from the first fill to the end of its observation period (exclusive end).
    firsts = rows.group_by(f_person_id=rows.person_id).aggregate(f_start=rows.s.min())
    op = observation_period.select(
        op_person_id=observation_period.person_id.cast("int64"),
        op_start=_day(observation_period.observation_period_start_date.cast("date")),
        op_end=_day(_closed(observation_period.observation_period_end_date.cast("date"))) + 1)
    held = firsts.join(op, (firsts.f_person_id == op.op_person_id)
                       & (firsts.f_start >= op.op_start) & (firsts.f_start < op.op_end))
    fu_end = held.op_end
    if follow_up is not None:
        fu_end = ibis.least(fu_end, held.f_start + follow_up)
    windows = held.select(w_person_id=held.f_person_id, fu_end=fu_end)
    rows = rows.join(windows, rows.person_id == windows.w_person_id)
    rows = rows.filter(rows.s < rows.fu_end).drop("w_person_id")

    # Runs of consecutive fills of one medication, in date order.
    order = ["s", "medication", "d"]
    person = ibis.window(group_by="person_id", order_by=order)
    rows = rows.mutate(_changed=ibis.cases(
        (rows.medication.lag().over(person) == rows.medication, 0), else_=1))
    cumulative = ibis.window(group_by="person_id", order_by=order, preceding=None, following=0)
    rows = rows.mutate(run=rows._changed.sum().over(cumulative))

    # Supply end with carry-over inside the run: E_i = C_i + max_{j ≤ i}(s_j − C_{j−1}).
    in_run = ibis.window(group_by=["person_id", "run"], order_by=order,
                         preceding=None, following=0)
    rows = rows.mutate(c=rows.d.sum().over(in_run))
    rows = rows.mutate(e=rows.c + (rows.s - (rows.c - rows.d)).max().over(in_run))
    run_order = ibis.window(group_by=["person_id", "run"], order_by=order)
    previous_end = rows.e.lag().over(run_order)
    rows = rows.mutate(_new=ibis.cases(
        (previous_end.isnull(), 1), (rows.s - previous_end > permissible_gap, 1), else_=0))
    rows = rows.mutate(episode_id=rows._new.sum().over(cumulative).cast("int64"))

    episodes = rows.group_by(["person_id", "episode_id"]).aggregate(
        medication=rows.medication.max(), start_day=rows.s.min(), supply_end=rows.e.max(),
        fu_end=rows.fu_end.max())
    by_episode = ibis.window(group_by="person_id", order_by="episode_id")
    episodes = episodes.mutate(next_start=episodes.start_day.lead().over(by_episode))
    limit = ibis.cases((episodes.next_start.isnull(), episodes.fu_end),
                       else_=ibis.least(episodes.next_start, episodes.fu_end))
    end_day = ibis.least(episodes.supply_end, limit)
    boundary = episodes.next_start.fill_null(episodes.fu_end)
    gap = boundary - end_day
    discontinued = episodes.next_start.notnull() | (gap > permissible_gap)
    # AdhereR: an episode still running at the end of follow-up (its trailing gap within the
    # permissible gap) lasts to the follow-up end; the supply end is kept beside it.
    stop = (ibis.least(end_day + permissible_gap, episodes.fu_end) if append_gap
            else end_day)
    reported_end = ibis.cases((discontinued, stop), else_=episodes.fu_end)
    return episodes.select(
        person_id=episodes.person_id,
        episode_id=episodes.episode_id,
        medication=episodes.medication,
        start=_date(episodes.start_day),
        end=_date(reported_end),
        duration_days=(reported_end - episodes.start_day).cast("int64"),
        end_gap_days=gap.cast("int64"),
        discontinued=discontinued,
        follow_up_end=_date(episodes.fu_end),
        supply_end=_date(end_day),
    )


# --------------------------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PersistenceResult:
    """Persistence of the first treatment episode.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per checkpoint: ``months`` (int64), ``days`` (int64), ``n_persons``
        (persons with at least ``days`` of follow-up), ``n_persistent`` (of those, persons
        whose first episode lasts ≥ ``days``), both suppressed by
        :func:`pharmalab.privacy.suppress` (nullable Int64 plus ``_suppressed`` flags), and
        ``proportion`` (float64, blank where either count is suppressed).
    km : pandas.DataFrame
        The Kaplan–Meier table of time to discontinuation (``time`` in days since the first
        fill; see :func:`pharmalab.characterize.survival.kaplan_meier`), counts suppressed.
    median_days : float or None
        Median time to discontinuation in days (None: not reached).
    permissible_gap : int
    min_cell_count : int
    unsuppressed_table, unsuppressed_km : pandas.DataFrame
        The same tables with every count: for use inside the data holder's site only.
    """

    table: pd.DataFrame
    km: pd.DataFrame
    median_days: float | None
    permissible_gap: int
    min_cell_count: int
    unsuppressed_table: pd.DataFrame = field(repr=False)
    unsuppressed_km: pd.DataFrame = field(repr=False)


def persistence(
    db: Database,
    concept_ids: int | Sequence[int],
    *,
    permissible_gap: int = 60,
    follow_up: int | None = None,
    include_descendants: bool = True,
    append_gap: bool = False,
    checkpoints: dict[int, int] | None = None,
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT,
) -> PersistenceResult:
    """Persistence at 6 and 12 months and the time to discontinuation of the first episode.

    Parameters
    ----------
    db, concept_ids, permissible_gap, follow_up, include_descendants, append_gap
        As :func:`treatment_episodes`.
    checkpoints
        Months → days (default ``{6: 182, 12: 365}``).
    min_cell_count
        Counts from 1 to ``min_cell_count − 1`` are blanked (OHDSI ``minCellCount``).

    Returns
    -------
    PersistenceResult
        Persistence at ``t`` days is the share of persons with at least ``t`` days of
        follow-up (from the first fill) whose first episode lasts at least ``t`` days or never
        ends (not ``discontinued``: it runs to the end of follow-up, as in AdhereR). The
        Kaplan–Meier curve takes the first episode's ``duration_days`` as time, with an event
        where it is ``discontinued`` and censoring otherwise (the episode runs to the
        follow-up end, or the last gap is still within ``permissible_gap`` there). Only the
        per-day and per-checkpoint aggregates leave the engine.

    Raises
    ------
    PharmalabInputError
        As :func:`treatment_episodes`, or when no person has a fill.

    References
    ----------
    Dima AL, Dediu D (2017), PLoS ONE 12(4): e0174426 (AdhereR treatment episodes); Kaplan EL,
    Meier P (1958).
    """
    checkpoints = dict(DEFAULT_CHECKPOINTS if checkpoints is None else checkpoints)
    episodes = treatment_episodes(db, concept_ids, permissible_gap=permissible_gap,
                                  append_gap=append_gap,
                                  follow_up=follow_up, include_descendants=include_descendants)
    first = episodes.filter(episodes.episode_id == 1)
    follow = _day(first.follow_up_end) - _day(first.start)
    measures = {}
    for months, days in checkpoints.items():
        eligible = follow >= days
        measures[f"n_{months}"] = eligible.cast("int64").sum()
        # A first episode that never ended (its last gap stays within the permissible gap
        # until follow-up ends) is persistent through follow-up, as AdhereR's episode that
        # runs to the end of the follow-up window.
        persistent = (first.duration_days >= days) | ~first.discontinued
        measures[f"p_{months}"] = (eligible & persistent).cast("int64").sum()
    counts = first.aggregate(**measures).to_pandas().iloc[0]
    raw = pd.DataFrame({
        "months": pd.Series(list(checkpoints), dtype="int64"),
        "days": pd.Series(list(checkpoints.values()), dtype="int64"),
        "n_persons": [int(counts[f"n_{m}"] or 0) for m in checkpoints],
        "n_persistent": [int(counts[f"p_{m}"] or 0) for m in checkpoints],
    })
    with np.errstate(divide="ignore", invalid="ignore"):
        raw["proportion"] = np.where(raw.n_persons > 0, raw.n_persistent / raw.n_persons,
                                     np.nan)
    shared = suppress(raw, ["n_persons", "n_persistent"], min_cell_count)
    hidden = shared.n_persons_suppressed | shared.n_persistent_suppressed
    shared["proportion"] = shared.proportion.mask(hidden)

    events = aggregate_events(first.select(
        time=first.duration_days, event=first.discontinued.cast("int8")))
    if events.empty:
        raise PharmalabInputError(
            f"persistence: no person has a fill of concept ids {concept_ids!r} inside an "
            "observation period")
    curve = kaplan_meier(events)
    return PersistenceResult(
        table=shared,
        km=suppress(curve, ["n_at_risk", "n_events", "n_censored"], min_cell_count),
        median_days=median_survival(curve),
        permissible_gap=int(permissible_gap),
        min_cell_count=min_cell_count,
        unsuppressed_table=raw,
        unsuppressed_km=curve,
    )


def persistence_figure(result: PersistenceResult, title: str | None = None, name: str = "first "
                       "episode"):
    """A Plotly step plot of the time to discontinuation with its 95% band.

    Parameters
    ----------
    result
        From :func:`persistence`; the suppressed curve is drawn.
    title
        Figure title (default names the permissible gap).
    name
        Legend name of the curve.

    Returns
    -------
    plotly.graph_objects.Figure
        As :func:`pharmalab.characterize.survival.survival_figure`, x in days since the first
        fill, y the share still on treatment.
    """
    table = result.km.assign(cohort_definition_id=0)[
        ["cohort_definition_id", *KM_COLUMNS[:1], *[c for c in result.km.columns
                                                     if c != "time"]]]
    wrapped = SurvivalResult(table=table, medians={0: result.median_days}, log_rank=None,
                             tar=DEFAULT_TAR, min_cell_count=result.min_cell_count,
                             unsuppressed_table=result.unsuppressed_km)
    figure = survival_figure(
        wrapped, title=title or f"Time to discontinuation (permissible gap "
                                f"{result.permissible_gap} days)", names={0: name})
    figure.update_layout(xaxis_title="days since the first fill",
                         yaxis_title="still on treatment")
    return figure
