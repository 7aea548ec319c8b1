"""Patient flow of a drug from an OMOP CDM, aggregated in the engine: new starters per month,
who of them is still on treatment and still observed k months later, and what they take.

The pieces of an epidemiology-based ("patient-based") forecast (Cook 2016, ch. 4): new
patients starting therapy each month × the share still on treatment k months after the start
× units per active patient-month. Every count is computed from the patients themselves as Ibis
expressions in the engine; only monthly aggregates come back.

Definitions (months are calendar months; ``k`` = months since the start month, 0 = the start
month):

- a **new starter** is a person whose first fill of the drug (ever, in the data) lies in an
  observation period that began at least ``washout`` days before it — so the person was seen
  without the drug for that long (OHDSI's new-user design, e.g. the demo's
  ``diclofenacNewUsers``: 365 days of prior observation). With an indication cohort, the
  person must also have entered it on or before the first fill;
- **observed** at ``k``: the person's follow-up (to the end of the observation period holding
  the first fill, or the data cut-off) reaches into month ``k``;
- **on treatment** at ``k``: a treatment episode (:func:`pharmalab.journey.treatment_episodes`,
  AdhereR's rules with a permissible gap) supplies some day of month ``k``: from the episode
  start to its supply end, refill gaps within the permissible gap included;
- **units**: the drug's fills in the month, as days of supply (``days_supply``, imputed from the
  exposure dates as :func:`pharmalab.journey.drug_exposures` does), as fills
  (``exposures``) or as the recorded ``quantity``.

References
----------
Cook AG (2016). *Forecasting for the Pharmaceutical Industry*, 2nd ed., ch. 4 (patient-based
forecasting). Ryan PB et al. (2013), the new-user design in OHDSI; Dima & Dediu (2017),
AdhereR treatment episodes.
"""

from __future__ import annotations

import datetime as dt
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from pharmalab.engine import Database
from pharmalab.errors import PharmalabInputError
from pharmalab.journey import drug_exposures, treatment_episodes

MEASURES = ("days_supply", "exposures", "quantity")


class DemandInputError(PharmalabInputError):
    """Bad input to a patient-flow computation (unknown concept, no starters, …)."""


@dataclass(frozen=True)
class FlowSettings:
    """How patient flow is counted (validated on creation).

    Attributes
    ----------
    washout
        Days of observation without the drug before a first fill for a new starter (365).
    permissible_gap
        Days between the supply end and the next fill that keep a treatment episode going (60,
        :func:`pharmalab.journey.treatment_episodes`).
    measure
        The unit of demand: ``days_supply`` (default), ``exposures`` (fills) or ``quantity``
        (``drug_exposure.quantity``: tablets, mL, …; a fill without one counts 0 and the
        flow's notes say how many).
    indication_cohort
        A ``cohort_definition_id`` of the results ``cohort`` table the starters must have
        entered on or before their first fill (None: no indication required).
    max_months
        Longest time since the start estimated from the data (120 months); later months carry
        the last year's rates on.
    """

    washout: int = 365
    permissible_gap: int = 60
    measure: str = "days_supply"
    indication_cohort: int | None = None
    max_months: int = 120

    def __post_init__(self) -> None:
        for name in ("washout", "permissible_gap", "max_months"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise DemandInputError(f"{name} must be a whole number of days ≥ 0 "
                                       f"(months for max_months), got {value!r}")
        if self.max_months < 12:
            raise DemandInputError(f"max_months must be at least 12, got {self.max_months}")
        if self.measure not in MEASURES:
            raise DemandInputError(f"measure {self.measure!r} is unknown; expected one of "
                                   f"{', '.join(MEASURES)}")


@dataclass(frozen=True)
class PatientFlow:
    """Monthly patient-flow aggregates of one drug, as of a data cut-off.

    Attributes
    ----------
    unique_id
        The drug's name (its concept name), the series name in forecasts.
    concept_id
        The drug concept (an ingredient or a class; descendants included).
    months
        ``ds`` (datetime64[ns], month start) for every month from the first fill to the last
        month of data, and per month: ``starters`` (int64, persons), ``active`` (starters on
        treatment in the month, persons), ``units`` (the starters' dispensed units), and
        ``dispensed`` (every person's dispensed units: the CDM's dispensing series, in
        ``measure``), ``fills`` (every fill), ``persons`` (every person with a fill).
    cohorts
        Per start month and month since the start: ``start`` (datetime64), ``k`` (int64,
        months), ``observed`` (starters of that month still observed at ``k``), ``active``,
        ``units``. Only cells with ``observed > 0``.
    settings
        The :class:`FlowSettings` used.
    as_of
        The data cut-off (first day not seen; the month after the last month).
    notes
        What a reader should know (e.g. fills before the washout could be checked).
    switches
        Starters who switched to another drug of the class: ``switch_to`` (int64, its
        concept id), ``k`` (int64, months from the start to the first fill of the other drug),
        ``persons`` (int64). A switch is a first fill of the other drug after the start and no
        later than ``permissible_gap`` days after the supply of the first treatment episode
        ended, that episode having ended (TreatmentPatterns' switch: one drug era followed by
        another); the earliest such drug counts, once per person.

    These are unsuppressed aggregates for modelling inside the data holder's site (as
    :class:`pharmalab.journey.PersistenceResult`'s ``unsuppressed_*``); the files written from
    them pass through :func:`pharmalab.privacy.suppress`.
    """

    unique_id: str
    concept_id: int
    months: pd.DataFrame
    cohorts: pd.DataFrame
    settings: FlowSettings
    as_of: pd.Timestamp
    notes: list[str] = field(default_factory=list)
    switches: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["switch_to", "k", "persons"]))

    @property
    def last_month(self) -> pd.Timestamp:
        return self.months["ds"].max()


def patient_flow(db: Database, concept_id: int, *, settings: FlowSettings | None = None,
                 as_of: dt.date | str | None = None, name: str | None = None,
                 switch_to: Sequence[int] = ()) -> PatientFlow:
    """New starters, on-treatment and observed counts and units of one drug, per month.

    Parameters
    ----------
    db
        The database: ``drug_exposure``, ``observation_period`` (cdm), ``concept``,
        ``concept_ancestor`` (vocab), ``cohort`` (results) when an indication cohort is given.
    concept_id
        A drug concept id: an ingredient (1118084 celecoxib) or a class (an ATC group);
        exposures of its descendants in ``concept_ancestor`` count.
    settings
        :class:`FlowSettings` (defaults: 365-day washout, 60-day permissible gap, days of
        supply).
    as_of
        Data cut-off (a date; the first day not seen, e.g. a backtest origin's next month):
        fills on or after it are left out and follow-up ends there. None: the first day of
        the month after the last fill (the last month is counted in full).
    name
        Series name (default: the concept's name).
    switch_to
        Other drugs of the class (concept ids): starters who switch to one of them are
        counted (:attr:`PatientFlow.switches`).

    Returns
    -------
    PatientFlow

    Raises
    ------
    DemandInputError
        For a concept id that is not a whole number, not in ``concept`` or of another domain
        than Drug (a condition, say), a drug without
        fills before ``as_of``, no new starter (e.g. a washout longer than any observation
        before a first fill), or an indication cohort with no rows.
    CdmNotFoundError
        If a table the computation reads is missing.

    References
    ----------
    Cook AG (2016), *Forecasting for the Pharmaceutical Industry*, ch. 4; Dima & Dediu (2017),
    PLoS ONE 12(4): e0174426 (treatment episodes).
    """
    settings = settings or FlowSettings()
    if isinstance(concept_id, bool) or not isinstance(concept_id, numbers.Integral):
        raise DemandInputError(f"concept id must be a whole number, got {concept_id!r}")
    concept_id = int(concept_id)
    label = name or _concept_name(db, concept_id)
    fills = _fills(db, concept_id, settings.measure)
    if as_of is None:
        last = fills.drug_exposure_start_date.max().to_pandas()
        if last is None or pd.isna(last):
            raise DemandInputError(f"concept {concept_id} ({label}): no drug_exposure rows of "
                                   "it or its descendants")
        as_of = (pd.Timestamp(last) + pd.offsets.MonthBegin(1)).date()
    as_of = pd.Timestamp(as_of).normalize()
    if as_of.day != 1:
        raise DemandInputError(f"as_of must be the first day of a month, got {as_of.date()}")
    cut = ibis.literal(as_of.date(), type="date")
    fills = fills.filter(fills.drug_exposure_start_date < cut)

    episodes = treatment_episodes(db, [concept_id], permissible_gap=settings.permissible_gap,
                                  as_of=as_of.date())
    starters = _starters(db, episodes, settings)
    cohorts, months = _aggregate(fills, episodes, starters, settings)
    switches = _switches(db, episodes, starters, [int(c) for c in switch_to
                                                  if int(c) != concept_id], cut, settings)
    first_month = months["ds"].min() if len(months) else None
    if first_month is None:
        raise DemandInputError(f"concept {concept_id} ({label}): no fills before {as_of.date()}")
    if months["starters"].sum() == 0:
        raise DemandInputError(
            f"concept {concept_id} ({label}): no new starters — no first fill lies "
            f"{settings.washout} days or more after the start of its observation period"
            + (f" with indication cohort {settings.indication_cohort} before it"
               if settings.indication_cohort is not None else "")
            + "; try a shorter washout")
    months = _complete(months, first_month, as_of)
    notes = []
    if settings.measure == "quantity":
        if months["dispensed"].sum() <= 0:
            raise DemandInputError(
                f"concept {concept_id} ({label}): no fill records a quantity above 0 "
                "(drug_exposure.quantity); use --measure days_supply or exposures")
        missing = int(fills.no_quantity.sum().to_pandas() or 0)
        if missing:
            notes.append(f"{label}: {missing:,} fills record no quantity and count 0")
    share = months["units"].sum() / months["dispensed"].sum() if months["dispensed"].sum() \
        else 0.0
    notes.append(f"{label}: new starters' fills are {share:.0%} of the units dispensed; the "
                 "rest (persons already on the drug when the data begin, or without "
                 f"{settings.washout} days of observation before their first fill) is "
                 "forecast as its own series")
    others = [int(c) for c in switch_to if int(c) != concept_id]
    if others and switches.empty:
        notes.append(f"{label}: no new starter switched to {', '.join(map(str, others))} "
                     f"within {settings.permissible_gap} days of the end of the first "
                     "treatment episode")
    return PatientFlow(label, concept_id, months, cohorts, settings, as_of, notes, switches)


# --------------------------------------------------------------------------------------------
# In the engine
# --------------------------------------------------------------------------------------------


def _switches(db: Database, episodes: ir.Table, starters: ir.Table, others: list[int],
              cut: ir.DateValue, settings: FlowSettings) -> pd.DataFrame:
    """Per (other drug, months since the start): starters switching to it."""
    empty = pd.DataFrame({"switch_to": pd.Series(dtype="int64"),
                          "k": pd.Series(dtype="int64"), "persons": pd.Series(dtype="int64")})
    if not others:
        return empty
    first = episodes.filter(episodes.episode_id == 1)
    first = first.join(starters, first.person_id == starters.s_person_id)
    first = first.select(p=first.person_id, start=first.start, supply_end=first.supply_end,
                         discontinued=first.discontinued)
    parts = []
    for other in others:
        fills = drug_exposures(db, [other])
        fills = fills.filter(fills.drug_exposure_start_date < cut)
        later = first.join(fills, first.p == fills.person_id)
        later = later.filter(
            later.discontinued & (later.drug_exposure_start_date > later.start)
            & (later.drug_exposure_start_date.delta(later.supply_end, unit="day")
               <= settings.permissible_gap))
        parts.append(later.group_by("p").aggregate(
            when=later.drug_exposure_start_date.min(), start=later.start.min())
            .mutate(switch_to=ibis.literal(other, "int64")))
    union = ibis.union(*parts) if len(parts) > 1 else parts[0]
    # the earliest other drug per person (ties: the smallest concept id)
    order = ibis.window(group_by="p", order_by=["when", "switch_to"])
    union = union.mutate(rank=ibis.row_number().over(order))
    union = union.filter(union["rank"] == 0)
    union = union.mutate(k=_month(union.when) - _month(union.start))
    counts = union.group_by(["switch_to", "k"]).aggregate(persons=union.count()).to_pandas()
    return counts.astype("int64").sort_values(["switch_to", "k"], ignore_index=True) \
        if len(counts) else empty


def _concept_name(db: Database, concept_id: int) -> str:
    concept = db.table("concept", "vocab")
    columns = [c for c in ("concept_name", "domain_id") if c in concept.columns]
    rows = concept.filter(concept.concept_id == concept_id).select(columns).to_pandas()
    if rows.empty:
        raise DemandInputError(f"concept id {concept_id} is not in the vocabulary's concept "
                               "table; expected a drug concept such as 1118084 (celecoxib)")
    name = str(rows["concept_name"].iloc[0])
    domain = rows["domain_id"].iloc[0] if "domain_id" in rows else None
    if isinstance(domain, str) and domain not in ("Drug", ""):
        raise DemandInputError(f"concept {concept_id} ({name}) is a {domain} concept, not a "
                               "Drug; expected an ingredient or a drug class such as 1118084 "
                               "(celecoxib)")
    return name


def _month(date: ir.DateValue) -> ir.IntegerValue:
    """Months since year 0 (int64): comparable and subtractable month numbers."""
    return (date.year().cast("int64") * 12 + date.month().cast("int64") - 1)


def _fills(db: Database, concept_id: int, measure: str) -> ir.Table:
    rows = drug_exposures(db, [concept_id])
    units = {"days_supply": rows.days_supply_used.cast("float64"),
             "exposures": ibis.literal(1.0, "float64"),
             "quantity": rows.quantity.fill_null(0.0)}[measure]
    return rows.select("person_id", "drug_exposure_start_date", units=units,
                       no_quantity=rows.quantity.isnull().cast("int64"))


def _starters(db: Database, episodes: ir.Table, settings: FlowSettings) -> ir.Table:
    """Per new starter: ``person_id``, ``first_fill`` (date), ``follow_up_end`` (date)."""
    first = episodes.filter(episodes.episode_id == 1)
    op = db.table("observation_period")
    op = op.select(op_person_id=op.person_id.cast("int64"),
                   op_start=op.observation_period_start_date.cast("date"),
                   op_end=op.observation_period_end_date.cast("date"))
    held = first.join(op, (first.person_id == op.op_person_id)
                      & (first.start >= op.op_start) & (first.start <= op.op_end))
    held = held.filter(held.start.delta(held.op_start, unit="day") >= settings.washout)
    if settings.indication_cohort is not None:
        cohort = db.table("cohort", "results")
        cohort = cohort.filter(cohort.cohort_definition_id == int(settings.indication_cohort))
        if cohort.count().to_pandas() == 0:
            raise DemandInputError(
                f"indication cohort {settings.indication_cohort}: no rows in the results "
                "cohort table (generate it first)")
        indicated = cohort.select(i_person_id=cohort.subject_id.cast("int64"),
                                  i_start=cohort.cohort_start_date.cast("date"))
        held = held.join(indicated, (held.person_id == indicated.i_person_id)
                         & (indicated.i_start <= held.start))
    return held.select(s_person_id=held.person_id, first_fill=held.start,
                       follow_up_end=held.follow_up_end).distinct()


def _aggregate(fills: ir.Table, episodes: ir.Table, starters: ir.Table,
               settings: FlowSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The aggregates that leave the engine: per (start month, k) and per calendar month.

    The drug's fills, the starters and their episode months feed four aggregates: they are
    built once as temporary tables in the engine (``Table.cache()``), not once per aggregate
    (on GiBleed × 100 the episodes were derived three times per call, the fills twice).
    """
    starters = starters.select(
        s_person_id=starters.s_person_id, s0=_month(starters.first_fill),
        # the last month with follow-up: that of the last day before the (exclusive) end
        f=_month(starters.follow_up_end - ibis.interval(days=1)))
    with starters.cache() as s:
        # On treatment: each starter's episode months, start to supply end (exclusive).
        joined = episodes.join(s, episodes.person_id == s.s_person_id)
        joined = joined.select(person_id=joined.person_id, s0=joined.s0, f=joined.f,
                               m0=_month(joined.start),
                               m1=_month(joined.supply_end - ibis.interval(days=1)))
        with joined.cache() as e, fills.cache() as f:
            return _aggregate_cached(f, s, e)


def _aggregate_cached(fills: ir.Table, s: ir.Table, e: ir.Table
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    bounds = e.aggregate(lo=e.m0.min(), hi=e.m1.max()).to_pandas()
    lo, hi = bounds["lo"].iloc[0], bounds["hi"].iloc[0]
    calendar = ibis.memtable(
        {"m": list(range(int(lo), int(hi) + 1)) if pd.notna(lo) else []},
        schema={"m": "int64"})
    # (a view: Ibis cannot tell e's derived columns from their parents' in a range join)
    e = e.view()
    spans = e.join(calendar, (calendar.m >= e.m0) & (calendar.m <= e.m1)
                   & (calendar.m <= e.f))
    on = spans.select(person_id=spans.person_id, s0=spans.s0, m=spans.m).distinct()
    active = on.group_by(["s0", on.m.name("m")]).aggregate(active=on.count())

    # The starters' own fills, within follow-up.
    sf = fills.join(s, fills.person_id == s.s_person_id)
    sf = sf.mutate(m=_month(sf.drug_exposure_start_date))
    sf = sf.filter((sf.m >= sf.s0) & (sf.m <= sf.f))
    units = sf.group_by(["s0", "m"]).aggregate(units=sf.units.sum())

    starts = s.group_by(["s0", "f"]).aggregate(n=s.count())
    everyone = fills.mutate(m=_month(fills.drug_exposure_start_date))
    dispensed = everyone.group_by("m").aggregate(dispensed=everyone.units.sum(),
                                                 fills=everyone.count(),
                                                 persons=everyone.person_id.nunique())

    starts, active, units, dispensed = (
        x.to_pandas() for x in (starts, active, units, dispensed))
    return _cohort_table(starts, active, units), _month_table(starts, active, units, dispensed)


def _cohort_table(starts: pd.DataFrame, active: pd.DataFrame, units: pd.DataFrame
                  ) -> pd.DataFrame:
    """``observed`` per (start month, k) from the follow-up ends, with active and units."""
    rows = []
    for s0, group in starts.groupby("s0"):
        # observed at k: follow-up reaches month s0 + k (last month f ≥ s0 + k)
        span = int(group["f"].max() - s0)
        ending = np.bincount((group["f"] - s0).to_numpy(dtype="int64"),
                             weights=group["n"].to_numpy(dtype="float64"), minlength=span + 1)
        observed = np.cumsum(ending[::-1])[::-1]
        rows.append(pd.DataFrame({"s0": int(s0), "k": np.arange(span + 1),
                                  "observed": observed.astype("int64")}))
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        {"s0": [], "k": [], "observed": []})
    for frame, column in ((active, "active"), (units, "units")):
        keyed = frame.assign(k=frame["m"] - frame["s0"])[["s0", "k", column]]
        table = table.merge(keyed, on=["s0", "k"], how="left")
    table = table[table["observed"] > 0].fillna({"active": 0, "units": 0.0})
    table = table.astype({"s0": "int64", "k": "int64", "observed": "int64", "active": "int64",
                          "units": "float64"})
    table.insert(0, "start", _to_ds(table["s0"]))
    return table.drop(columns="s0").reset_index(drop=True)


def _month_table(starts: pd.DataFrame, active: pd.DataFrame, units: pd.DataFrame,
                 dispensed: pd.DataFrame) -> pd.DataFrame:
    per = [starts.groupby("s0")["n"].sum().rename("starters").rename_axis("m"),
           active.groupby("m")["active"].sum(), units.groupby("m")["units"].sum(),
           dispensed.set_index("m")["dispensed"], dispensed.set_index("m")["fills"],
           dispensed.set_index("m")["persons"]]
    table = pd.concat(per, axis=1).sort_index()
    table.index = _to_ds(pd.Series(table.index, dtype="int64"))
    return table.rename_axis("ds").reset_index()


def _complete(months: pd.DataFrame, first: pd.Timestamp, as_of: pd.Timestamp) -> pd.DataFrame:
    """Every month from the first fill to the month before ``as_of``, zeros where none."""
    grid = pd.date_range(first, as_of - pd.offsets.MonthBegin(1), freq="MS")
    out = months.set_index("ds").reindex(grid).fillna(0).rename_axis("ds").reset_index()
    return out.astype({"starters": "int64", "active": "int64", "units": "float64",
                       "dispensed": "float64", "fills": "int64", "persons": "int64"})


def _to_ds(month_number: pd.Series) -> pd.DatetimeIndex:
    years, months = divmod(month_number.to_numpy(dtype="int64"), 12)
    return pd.DatetimeIndex(pd.to_datetime(
        pd.DataFrame({"year": years, "month": months + 1, "day": 1})))


__all__ = ["MEASURES", "DemandInputError", "FlowSettings", "PatientFlow", "patient_flow"]
