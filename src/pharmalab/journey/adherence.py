"""Medication adherence: proportion of days covered (PQA PDC) and medication possession ratio
(AdhereR CMA1), per patient, computed in the engine.

PDC follows the Pharmacy Quality Alliance (PQA) technical specification of its adherence
measures (PDC-DR, PDC-STA, PDC-RASA, …):

- the *measurement period* is ``[period_start, period_end]``; only fills dispensed in it count;
- the *treatment period* runs from the first fill in the measurement period (the index
  prescription start date, IPSD) to ``period_end``, both days included;
- eligible patients have at least two fills on different dates of service in the measurement
  period, and an IPSD at least 91 days before ``period_end``;
- a fill of the SAME ingredient that starts while an earlier supply of it lasts is shifted to
  start the day after that supply ends; fills of different ingredients of the class are not
  shifted against each other (a day is covered when any ingredient covers it);
- supply past ``period_end`` is not counted; PDC = covered days / days in the treatment period.

The shift is computed without loops: with fills of one ingredient ordered by start day
``s_i`` and supply ``d_i``, cumulative supply ``C_i = d_1 + … + d_i`` (``C_0 = 0``), the
shifted supply of fill i ends on ``e_i = C_i + max_{j≤i}(s_j − 1 − C_{j−1})`` and starts
on ``e_i − d_i + 1`` — two running window aggregates. Covered days are the union of the
shifted intervals of all ingredients (gaps and islands), clipped to the treatment period.
"""

from __future__ import annotations

import datetime as dt
import numbers
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import pandas as pd

from pharmalab.characterize.time_at_risk import merge_overlapping
from pharmalab.engine import Database
from pharmalab.errors import PharmalabInputError
from pharmalab.journey.drugs import _concept_id_list, drug_exposures
from pharmalab.privacy import suppress

__all__ = ["PdcResult", "mpr", "pdc"]

_EPOCH = dt.date(1970, 1, 1)
_GENDERS = {8507: "MALE", 8532: "FEMALE"}
DEFAULT_AGE_BREAKS: tuple[int, ...] = (18, 45, 65, 75)

_PATIENT_COLUMNS = (
    "person_id",
    "index_date",
    "days_in_period",
    "days_covered",
    "pdc",
    "adherent",
    "fills",
    "imputed_supply_fills",
    "mpr",
)


@dataclass(frozen=True)
class AdherenceSettings:
    """The validated settings of one PDC analysis (see :func:`pdc` for their meaning)."""

    concept_ids: tuple[int, ...]
    period_start: dt.date
    period_end: dt.date
    min_fills: int = 2
    min_days_before_end: int = 91
    threshold: float = 0.8
    min_cell_count: int = 5


@dataclass(frozen=True)
class PdcResult:
    """Per-patient PDC and MPR (an Ibis expression, run in the engine) and its summary.

    Attributes
    ----------
    settings : AdherenceSettings
        What was computed.
    db : Database
        Where the per-patient expression runs (also used for the ``person`` table).

    Use :meth:`table` for the per-patient Ibis expression (to join, filter or write in the
    engine), :meth:`patients` to fetch it as pandas, :meth:`summary` for the suppressed
    aggregate.
    """

    settings: AdherenceSettings
    db: Database
    _table: ir.Table

    def table(self) -> ir.Table:
        """The per-patient Ibis expression (not executed); columns as :meth:`patients`."""
        return self._table

    def patients(self) -> pd.DataFrame:
        """Run the per-patient expression and return it (patient-level data: keep it inside
        the secure environment; use :meth:`summary` for anything shared).

        Returns
        -------
        pandas.DataFrame
            One row per eligible patient, sorted by ``person_id``:

            - ``person_id`` (int64)
            - ``index_date`` (date): first fill in the measurement period (PQA IPSD)
            - ``days_in_period`` (int64, days): ``period_end − index_date + 1``
            - ``days_covered`` (int64, days): days of the treatment period with supply
            - ``pdc`` (float64): ``days_covered / days_in_period``, in [0, 1]
            - ``adherent`` (bool): ``pdc ≥ threshold``
            - ``fills`` (int64): fill records in the measurement period
            - ``imputed_supply_fills`` (int64): of those, fills whose days supply was
              missing or 0 and was derived from the exposure dates
            - ``mpr`` (float64): AdhereR CMA1 (see :func:`mpr`); missing when all fills are
              on one date (not possible for eligible patients with ``min_fills ≥ 2``)
        """
        frame = self._table.to_pandas()
        frame = frame.sort_values("person_id", ignore_index=True)
        for column in (
            "person_id",
            "days_in_period",
            "days_covered",
            "fills",
            "imputed_supply_fills",
        ):
            frame[column] = frame[column].astype("int64")
        frame["index_date"] = pd.to_datetime(frame["index_date"]).dt.date
        frame["pdc"] = frame["pdc"].astype("float64")
        frame["mpr"] = frame["mpr"].astype("float64")
        frame["adherent"] = frame["adherent"].astype(bool)
        return frame[list(_PATIENT_COLUMNS)]

    def summary(self, age_breaks: Sequence[int] = DEFAULT_AGE_BREAKS) -> pd.DataFrame:
        """Patients, adherent patients and the share adherent, overall, by gender and by age
        group at the index date — aggregated in the engine, small cells suppressed.

        Parameters
        ----------
        age_breaks
            Increasing ages (whole years) that start a new group; the default gives
            ``<18``, ``18-44``, ``45-64``, ``65-74``, ``>=75``. Age at index is
            ``year(index_date) − year_of_birth``.

        Returns
        -------
        pandas.DataFrame
            Rows: ``overall``, then each gender, then each age group present.
            Columns: ``stratum`` (str: "overall", "gender", "age group"), ``stratum_value``
            (str), ``patients``, ``adherent`` (nullable Int64, with ``*_suppressed``
            booleans: counts 1 … ``min_cell_count − 1`` are blanked, see
            :func:`pharmalab.privacy.suppress`), ``share_adherent`` and ``mean_pdc``
            (float64; blanked when either count is suppressed).

        Raises
        ------
        PharmalabInputError
            If ``age_breaks`` is not increasing.
        CdmNotFoundError
            If the ``person`` table is missing.
        """
        breaks = [int(b) for b in age_breaks]
        if any(b >= c for b, c in zip(breaks, breaks[1:], strict=False)):
            raise PharmalabInputError(f"age breaks must be increasing, got {list(age_breaks)}")
        person = self.db.table("person", "cdm")
        t = self._table
        joined = t.join(person, t.person_id == person.person_id.cast("int64"))
        age = joined.index_date.year().cast("int64") - joined.year_of_birth.cast("int64")
        group = ibis.literal(0, "int64")
        for number, value in enumerate(breaks, start=1):
            group = ibis.cases((age >= value, number), else_=group)
        rows = joined.select(
            gender=joined.gender_concept_id.cast("int64"),
            age_group=group,
            adherent=joined.adherent.cast("int64"),
            pdc=joined.pdc,
        )

        def counts(key) -> ir.Table:
            grouped = rows.group_by(key) if key is not None else rows
            return grouped.aggregate(
                patients=rows.count(), adherent=rows.adherent.sum(), mean_pdc=rows.pdc.mean()
            )

        overall = counts(None).to_pandas()
        overall.insert(0, "stratum_value", "all")
        overall.insert(0, "stratum", "overall")
        by_gender = counts("gender").to_pandas().sort_values("gender")
        by_gender.insert(
            0,
            "stratum_value",
            [
                _GENDERS.get(int(g), f"concept {int(g)}") if pd.notna(g) else "unknown"
                for g in by_gender.pop("gender")
            ],
        )
        by_gender.insert(0, "stratum", "gender")
        by_age = counts("age_group").to_pandas().sort_values("age_group")
        by_age.insert(
            0, "stratum_value", [_age_label(int(g), breaks) for g in by_age.pop("age_group")]
        )
        by_age.insert(0, "stratum", "age group")
        with warnings.catch_warnings():  # pandas warns on concatenating all-NA columns
            warnings.simplefilter("ignore", FutureWarning)
            frame = pd.concat([overall, by_gender, by_age], ignore_index=True)
        frame["patients"] = frame["patients"].fillna(0).astype("int64")
        frame["adherent"] = frame["adherent"].fillna(0).astype("int64")
        frame["share_adherent"] = (frame["adherent"] / frame["patients"]).astype("float64")
        frame["mean_pdc"] = frame["mean_pdc"].astype("float64")
        out = suppress(frame, ["patients", "adherent"], self.settings.min_cell_count)
        hidden = out["patients_suppressed"] | out["adherent_suppressed"]
        out.loc[hidden, ["share_adherent", "mean_pdc"]] = float("nan")
        return out[
            [
                "stratum",
                "stratum_value",
                "patients",
                "patients_suppressed",
                "adherent",
                "adherent_suppressed",
                "share_adherent",
                "mean_pdc",
            ]
        ]


def pdc(
    db: Database,
    concept_ids: Iterable[int],
    period_start: dt.date | str,
    period_end: dt.date | str,
    *,
    min_fills: int = 2,
    min_days_before_end: int = 91,
    threshold: float = 0.8,
    min_cell_count: int = 5,
) -> PdcResult:
    """Proportion of days covered (PDC) per patient, by the PQA rules.

    Parameters
    ----------
    db
        The database (``drug_exposure``, ``concept``, ``concept_ancestor``; ``person`` for
        the summary).
    concept_ids
        The drug or class: ingredients (e.g. ``[1118084]`` celecoxib) or class concepts; the
        fills are their descendants (:func:`pharmalab.journey.drugs.drug_exposures`), each
        mapped to its ingredient. Several ingredients form a class measure (PQA
        "any drug in the class").
    period_start, period_end
        The measurement period (dates or ISO ``YYYY-MM-DD`` strings), both days included;
        PQA measures use a calendar year.
    min_fills
        Fills on different dates of service in the measurement period a patient needs
        (PQA: 2).
    min_days_before_end
        Days from the index date to ``period_end`` that a patient needs (PQA: the IPSD is
        at least 91 days before the end of the measurement period, i.e.
        ``period_end − index_date ≥ 91``).
    threshold
        PDC at or above which a patient counts as adherent (PQA: 0.8).
    min_cell_count
        Small-cell suppression of the summary counts (OHDSI ``minCellCount``).

    Returns
    -------
    PdcResult
        The per-patient expression (:meth:`PdcResult.table`; :meth:`PdcResult.patients`
        fetches it: ``person_id, index_date, days_in_period, days_covered, pdc, adherent,
        fills, imputed_supply_fills, mpr``) and :meth:`PdcResult.summary`.

    Raises
    ------
    PharmalabInputError
        For no or non-integer concept ids, an unreadable date, a period that ends before it
        starts, ``min_fills < 1``, ``min_days_before_end < 0``, or a threshold outside
        (0, 1].
    CdmNotFoundError
        If a table it needs is missing.

    Notes
    -----
    - Fills dispensed before ``period_start`` do not count, not even the part of their
      supply that reaches into the period: PQA measures only look at claims with a date of
      service in the measurement year, and the treatment period starts at the first of them.
    - Fills dispensed after ``period_end`` do not count; supply reaching past
      ``period_end`` is cut there.
    - Several fills of the same ingredient on one date are all counted and chained (the
      second starts the day after the first runs out), as PQA's shift rule prescribes; they
      count once towards ``min_fills`` (different dates of service).
    - A days supply that is missing or 0 is derived from the exposure dates
      (:func:`~pharmalab.journey.drugs.drug_exposures`); ``imputed_supply_fills`` says how
      many fills that concerned, as such data (e.g. Eunomia GiBleed) can lower PDC a lot.

    References
    ----------
    Pharmacy Quality Alliance, *PQA Measure Manual: Adherence measures — Proportion of Days
    Covered* (technical specifications of PDC-DR, PDC-RASA, PDC-STA).
    Nau DP. *Proportion of Days Covered (PDC) as a preferred method of measuring medication
    adherence.* PQA, 2012.
    """
    settings = _settings(
        concept_ids,
        period_start,
        period_end,
        min_fills=min_fills,
        min_days_before_end=min_days_before_end,
        threshold=threshold,
        min_cell_count=min_cell_count,
    )
    fills = _period_fills(db, settings)
    eligible = _eligible_patients(fills, settings)
    covered = _covered_days(
        fills.join(eligible.select("person_id", "index_day"), "person_id"), settings
    )
    cma1 = _cma1(fills)
    end_day = _day_number(settings.period_end)
    p = eligible.left_join(covered, "person_id").select(
        eligible, days_covered=ibis.coalesce(covered.days_covered, 0).cast("int64")
    )
    p = p.left_join(cma1, "person_id").select(p, mpr=cma1.mpr)
    days_in_period = (ibis.literal(end_day, "int64") - p.index_day + 1).cast("int64")
    table = p.select(
        person_id=p.person_id,
        index_date=p.index_date,
        days_in_period=days_in_period,
        days_covered=p.days_covered,
        pdc=(p.days_covered.cast("float64") / days_in_period.cast("float64")),
        adherent=(p.days_covered.cast("float64") / days_in_period.cast("float64"))
        >= settings.threshold,
        fills=p.fills,
        imputed_supply_fills=p.imputed_supply_fills,
        mpr=p.mpr,
    )
    return PdcResult(settings=settings, db=db, _table=table)


def mpr(
    db: Database,
    concept_ids: Iterable[int],
    period_start: dt.date | str,
    period_end: dt.date | str,
    *,
    min_fills: int = 2,
) -> ir.Table:
    """Medication possession ratio per patient: AdhereR's CMA1.

    CMA1 = total days supply of all fills in the observation window except the last fill,
    divided by the days from the first to the last fill (``last date − first date``). The
    observation window is the measurement period ``[period_start, period_end]``; the class
    is pooled (all ingredients' fills together), no shifting, no truncation, no cap: values
    above 1 mean oversupply.

    Parameters
    ----------
    db, concept_ids, period_start, period_end
        As :func:`pdc`.
    min_fills
        Fills on different dates in the window a patient needs (at least 2 gives a
        non-zero denominator; CMA1 needs two events).

    Returns
    -------
    ibis Table
        Computed in the engine, one row per patient with ``min_fills`` fill dates:
        ``person_id`` (int64), ``first_fill_date``, ``last_fill_date`` (date),
        ``days_first_to_last`` (int64, days), ``supply_before_last`` (int64, days: supply of
        all fills not on the last fill date), ``mpr`` (float64; null when
        ``days_first_to_last`` is 0).

    Raises
    ------
    PharmalabInputError
        As :func:`pdc`.

    Notes
    -----
    AdhereR drops exactly one event, the last after sorting by date. When several fills
    share the last date (two ingredients of a class on the same day), which one is "last"
    depends on row order there; pharmalab excludes every fill on the last date, which is
    order-free and agrees with AdhereR whenever the last date has one fill.

    References
    ----------
    Dima AL, Dediu D. *Computation of adherence to medication and visualization of
    medication histories in R with AdhereR: Towards transparent and reproducible use of
    electronic healthcare data.* PLoS ONE 12(4): e0174426, 2017 (CMA1).
    """
    settings = _settings(concept_ids, period_start, period_end, min_fills=min_fills)
    fills = _period_fills(db, settings)
    table = _cma1(fills)
    stats = fills.group_by("person_id").aggregate(_dates=fills.drug_exposure_start_date.nunique())
    table = table.join(stats.filter(stats._dates >= settings.min_fills), "person_id")
    return table.select(
        "person_id",
        "first_fill_date",
        "last_fill_date",
        "days_first_to_last",
        "supply_before_last",
        "mpr",
    )


# --- internals --------------------------------------------------------------------------


def _settings(concept_ids, period_start, period_end, **values) -> AdherenceSettings:
    ids = tuple(_concept_id_list(concept_ids))
    start, end = _date(period_start, "period_start"), _date(period_end, "period_end")
    if end < start:
        raise PharmalabInputError(f"measurement period ends ({end}) before it starts ({start})")
    for name in ("min_fills", "min_days_before_end", "min_cell_count"):
        if name not in values:
            continue
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise PharmalabInputError(f"{name} must be a whole number, got {value!r}")
    if values.get("min_fills", 1) < 1:
        raise PharmalabInputError(f"min_fills must be at least 1, got {values['min_fills']}")
    if values.get("min_days_before_end", 0) < 0:
        raise PharmalabInputError(
            f"min_days_before_end must be 0 or more days, got {values['min_days_before_end']}"
        )
    threshold = values.get("threshold", 0.8)
    if not isinstance(threshold, numbers.Real) or not 0 < threshold <= 1:
        raise PharmalabInputError(f"threshold must be in (0, 1], got {threshold!r}")
    if values.get("min_cell_count", 5) < 1:
        raise PharmalabInputError(
            f"min_cell_count must be at least 1, got {values['min_cell_count']}"
        )
    return AdherenceSettings(concept_ids=ids, period_start=start, period_end=end, **values)


def _date(value, name: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise PharmalabInputError(f"{name}: {value!r} is not a date; expected YYYY-MM-DD") from None


def _day_number(day: dt.date) -> int:
    """Days since 1970-01-01."""
    return (day - _EPOCH).days


def _period_fills(db: Database, settings: AdherenceSettings) -> ir.Table:
    """Fills dispensed in the measurement period, with ``start_day`` (days since 1970)."""
    e = drug_exposures(db, settings.concept_ids)
    start = e.drug_exposure_start_date
    e = e.filter(
        (start >= ibis.literal(settings.period_start, "date"))
        & (start <= ibis.literal(settings.period_end, "date"))
    )
    return e.mutate(start_day=start.delta(ibis.literal(_EPOCH, "date"), unit="day").cast("int64"))


def _eligible_patients(fills: ir.Table, settings: AdherenceSettings) -> ir.Table:
    """PQA denominator: ``person_id, index_date, index_day, fills, imputed_supply_fills``."""
    per = fills.group_by("person_id").aggregate(
        index_date=fills.drug_exposure_start_date.min(),
        index_day=fills.start_day.min(),
        fills=fills.count(),
        imputed_supply_fills=fills.days_supply_imputed.cast("int64").sum(),
        _dates=fills.drug_exposure_start_date.nunique(),
    )
    last_index_day = _day_number(settings.period_end) - settings.min_days_before_end
    per = per.filter((per._dates >= settings.min_fills) & (per.index_day <= last_index_day))
    return per.select(
        "person_id",
        "index_date",
        per.index_day.cast("int64"),
        per.fills.cast("int64"),
        per.imputed_supply_fills.cast("int64"),
    )


def _covered_days(fills: ir.Table, settings: AdherenceSettings) -> ir.Table:
    """``person_id, days_covered``: the union of shifted supply, clipped to the treatment
    period (fills must carry ``index_day``)."""
    keys = ["person_id", "ingredient_concept_id"]
    order = ["start_day", "days_supply_used", "drug_exposure_id"]
    running = ibis.window(group_by=keys, order_by=order, rows=(None, 0))
    d = fills.days_supply_used
    cum = fills.mutate(_cum=d.sum().over(running))
    # s_j − 1 − C_{j−1}, with C_{j−1} = C_j − d_j
    cum = cum.mutate(_slack=cum.start_day - 1 - (cum._cum - cum.days_supply_used))
    shifted = cum.mutate(_end=cum._cum + cum._slack.max().over(running))
    end_day = ibis.literal(_day_number(settings.period_end), "int64")
    start = shifted._end - shifted.days_supply_used + 1
    clipped = shifted.select(
        "person_id",
        start_date=ibis.greatest(start, shifted.index_day).cast("int64"),
        end_date=ibis.least(shifted._end, end_day).cast("int64"),
    )
    clipped = clipped.filter(clipped.start_date <= clipped.end_date)
    # gaps and islands across ingredients (integer day numbers work as well as dates)
    islands = merge_overlapping(clipped, ["person_id"])
    return islands.group_by("person_id").aggregate(
        days_covered=(islands.end_date - islands.start_date + 1).sum().cast("int64")
    )


def _cma1(fills: ir.Table) -> ir.Table:
    """AdhereR CMA1 per patient over ``fills`` (see :func:`mpr`)."""
    bounds = fills.group_by("person_id").aggregate(
        first_day=fills.start_day.min(),
        last_day=fills.start_day.max(),
        first_fill_date=fills.drug_exposure_start_date.min(),
        last_fill_date=fills.drug_exposure_start_date.max(),
    )
    f = fills.join(bounds, "person_id")
    before = f.group_by("person_id").aggregate(
        supply_before_last=ibis.cases((f.start_day < f.last_day, f.days_supply_used), else_=0)
        .sum()
        .cast("int64")
    )
    t = bounds.join(before, "person_id")
    days = (t.last_day - t.first_day).cast("int64")
    return t.select(
        person_id=t.person_id,
        first_fill_date=t.first_fill_date,
        last_fill_date=t.last_fill_date,
        days_first_to_last=days,
        supply_before_last=t.supply_before_last,
        mpr=ibis.cases(
            (days > 0, t.supply_before_last.cast("float64") / days.cast("float64")),
            else_=ibis.null("float64"),
        ),
    )


def _age_label(group: int, breaks: list[int]) -> str:
    if not breaks:
        return "all ages"
    if group == 0:
        return f"<{breaks[0]}"
    if group == len(breaks):
        return f">={breaks[-1]}"
    return f"{breaks[group - 1]}-{breaks[group] - 1}"
