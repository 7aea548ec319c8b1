"""Monthly dispensing series from an OMOP CDM: drug exposures per ingredient or ATC class.

Real-world dispensing (``drug_exposure``) as demand series beside sales files, computed in
the engine with Ibis (DuckDB, Spark, BigQuery, PostgreSQL); only the aggregates come back,
and they pass through :func:`pharmalab.privacy.suppress`.
"""

from __future__ import annotations

import datetime as dt
import numbers
from collections.abc import Iterable

import ibis
import ibis.expr.types as ir
import pandas as pd
from ibis.backends import BaseBackend

from pharmalab.engine import Database, EngineURL
from pharmalab.errors import SalesInputError
from pharmalab.privacy import DEFAULT_MIN_CELL_COUNT, suppress
from pharmalab.sales.data import SalesData, check_series

__all__ = ["MEASURES", "cdm_dispensing_series"]

MEASURES = ("exposures", "days_supply", "persons")


def cdm_dispensing_series(
    con: BaseBackend | Database,
    *,
    cdm_schema: str | None = None,
    vocab_schema: str | None = None,
    ingredient_concept_ids: Iterable[int] | None = None,
    atc_codes: Iterable[str] | None = None,
    measure: str = "exposures",
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    min_cell_count: int = DEFAULT_MIN_CELL_COUNT,
) -> SalesData:
    """Monthly dispensing per ingredient and/or ATC class from an OMOP CDM.

    Method: each ``drug_exposure`` row is assigned to every requested concept its
    ``drug_concept_id`` descends from in ``concept_ancestor`` (or equals): an **ingredient**
    (a standard ``concept`` with ``concept_class_id = 'Ingredient'``, e.g. 1118084
    celecoxib; a combination product counts once for each of its ingredients) or an **ATC
    class** (``concept`` rows of ``vocabulary_id = 'ATC'`` whose ``concept_code`` is given,
    e.g. ``'M01AH'``). A row counts once per concept even when several paths lead to it.
    Rows are grouped by the calendar month of ``drug_exposure_start_date``. The drug groups
    are built as OHDSI CodelistGenerator's ``getDrugIngredientCodes``/``getATCCodes`` build
    them (the concept and its descendants in ``concept_ancestor``), the convention
    :mod:`pharmalab.journey.drugs` follows too. Everything runs in the engine; only the
    per-series and per-month aggregates are fetched.

    Privacy (OHDSI ``minCellCount``, :mod:`pharmalab.privacy.suppression`):

    - Every series first gets its number of distinct persons, passed through
      :func:`~pharmalab.privacy.suppress`. A series of fewer than ``min_cell_count``
      persons (a blanked count) is withheld entirely — its monthly values never leave the
      engine — and named in ``notes``.
    - ``measure="persons"``: the monthly person counts pass through
      :func:`~pharmalab.privacy.suppress` as well. A series with any blanked month is
      withheld (a demand series with holes cannot be forecast, and filling the holes
      would invent data); ``notes`` says how many months were blanked.
    - ``measure="exposures"`` and ``"days_supply"``: monthly values are volumes of
      dispensing, not head counts, and are returned in full for the series that passed
      the person floor, so that no series describes fewer than ``min_cell_count``
      persons. (A stricter policy would also blank small monthly exposure counts; that
      would punch holes in exactly the low-volume months a demand model needs.)

    Parameters
    ----------
    con
        An Ibis backend (``pharmalab.engine.connect(url)``) or a
        :class:`pharmalab.engine.Database` (its schemas are the defaults).
    cdm_schema, vocab_schema
        Schemas of ``drug_exposure`` and of ``concept``/``concept_ancestor``; None: the
        Database's, else the connection's current schema. ``vocab_schema`` defaults to
        ``cdm_schema``.
    ingredient_concept_ids
        Ingredient concept ids, one series each.
    atc_codes
        ATC codes (any level: ``'M01'``, ``'M01A'``, ``'M01AH'``), one series each.
        When both ``ingredient_concept_ids`` and ``atc_codes`` are None, every standard
        ingredient with dispensing gets a series.
    measure
        ``"exposures"`` (count of ``drug_exposure`` rows — not of distinct
        ``drug_exposure_id``, which some CDMs such as Eunomia GiBleed repeat), ``"days_supply"``
        (sum of days supplied: ``days_supply`` when positive, else ``drug_exposure_end_date
        − drug_exposure_start_date + 1`` (≥ 1), else 1 — the rule of
        :func:`pharmalab.journey.drugs.drug_exposures`), or ``"persons"`` (distinct persons
        with a dispensing in the month).
    start, end
        First and last month to count (a date or ``'YYYY-MM'``/``'YYYY-MM-DD'``; the whole
        month containing it). When given, every series spans exactly these months;
        otherwise each series spans its own first to last month with dispensing. The
        month containing the CDM's last recorded date may be incomplete: set ``end`` to
        the last complete month.
    min_cell_count
        Smallest person count that may be shown (default 5); 1 turns suppression off.

    Returns
    -------
    SalesData
        ``freq='MS'``, ``season_length=12``, no hierarchy. ``frame`` columns:

        - ``unique_id`` (str): the ingredient's ``concept_name`` (e.g. ``celecoxib``), or
          the ATC ``concept_code`` and name (``M01AH Coxibs``); `` (concept_id)`` is
          appended when two series would share a name.
        - ``ds`` (datetime64[ns]): month start.
        - ``y`` (float64): exposures, days of supply or persons in the month; months with
          no dispensing inside the series' span are 0.
        - ``concept_id`` (int64): the ingredient or ATC concept.
        - ``level`` (str): ``'ingredient'`` or ``'atc'``.

        ``notes`` lists withheld series, months set to 0, and requested concepts with no
        dispensing; ``short_series`` the series of fewer than 24 months.

    Raises
    ------
    SalesInputError
        An unknown ``measure``; a concept id that is not a standard Ingredient concept of
        the vocabulary, or an ATC code the vocabulary does not hold (naming them; Eunomia
        GiBleed's vocabulary holds no ATC concepts); a bad ``start``/``end`` or ``start``
        after ``end``; ``min_cell_count`` below 1; no series left (none with dispensing,
        or all withheld for privacy).
    CdmNotFoundError
        If ``drug_exposure``, ``concept`` or ``concept_ancestor`` is missing.
    """
    if measure not in MEASURES:
        raise SalesInputError(
            f"dispensing measure {measure!r} is unknown; expected one of {', '.join(MEASURES)}"
        )
    if isinstance(min_cell_count, bool) or not isinstance(min_cell_count, numbers.Integral) \
            or min_cell_count < 1:
        raise SalesInputError(f"min_cell_count must be a whole number ≥ 1, got {min_cell_count!r}")
    db = _database(con, cdm_schema, vocab_schema)
    first, last = _month(start, "start"), _month(end, "end")
    if first is not None and last is not None and first > last:
        raise SalesInputError(f"dispensing: start {first:%Y-%m} is after end {last:%Y-%m}")

    concept = db.table("concept", "vocab")
    ancestor = db.table("concept_ancestor", "vocab")
    exposure = db.table("drug_exposure", "cdm")
    targets, requested = _targets(concept, ingredient_concept_ids, atc_codes)
    rows = _assigned_exposures(exposure, ancestor, targets, first, last)

    per_series = rows.group_by("concept_id").aggregate(n_persons=rows.person_id.nunique())
    per_series = suppress(per_series.to_pandas(), ["n_persons"], min_cell_count)
    withheld_ids = per_series.loc[per_series["n_persons_suppressed"], "concept_id"].tolist()
    kept_ids = per_series.loc[~per_series["n_persons_suppressed"], "concept_id"].tolist()
    names = _series_names(concept, [*kept_ids, *withheld_ids], requested)
    notes = []
    if withheld_ids:
        notes.append(
            f"withheld {_n(len(withheld_ids), 'series', 'series')} of fewer than "
            f"{min_cell_count} persons (privacy): "
            + ", ".join(sorted(names.loc[withheld_ids, "unique_id"]))
        )
    silent = sorted(set(requested.index) - set(per_series["concept_id"]))
    if silent:
        notes.append("no dispensing in the period: "
                     + ", ".join(sorted(requested.loc[silent, "unique_id"])))

    monthly = pd.DataFrame(columns=["concept_id", "month", "y"])
    if kept_ids:
        monthly = _monthly(rows.filter(rows.concept_id.isin(kept_ids)), measure).to_pandas()
    if measure == "persons" and not monthly.empty:
        monthly, blanked = _withhold_small_months(monthly, min_cell_count)
        for concept_id, months, total in blanked:
            notes.append(
                f"withheld {names.loc[concept_id, 'unique_id']}: monthly person counts "
                f"below {min_cell_count} in {months} of {total} months (privacy)"
            )
    if monthly.empty:
        raise SalesInputError(
            f"dispensing from {db.url.redacted()}: no series left"
            + (f" ({'; '.join(notes)})" if notes else " (no drug exposure of the concepts)")
        )

    frame = pd.DataFrame({
        "unique_id": names.loc[monthly["concept_id"], "unique_id"].to_numpy(),
        "ds": pd.to_datetime(monthly["month"]).astype("datetime64[ns]"),
        "y": pd.to_numeric(monthly["y"]).astype("float64"),
        "concept_id": monthly["concept_id"].astype("int64").to_numpy(),
        "level": names.loc[monthly["concept_id"], "level"].to_numpy(),
    })
    frame, filled = zero_fill_months(frame, first, last)
    if filled:
        notes.append(f"{_n(filled[0], 'month')} without dispensing set to 0 in "
                     f"{_n(filled[1], 'series', 'series')}")
    source = f"cdm:{db.url.redacted()} drug_exposure ({measure})"
    data = check_series(frame, freq="MS", season_length=12, name=source)
    return SalesData(frame=data.frame, hierarchy=(), freq=data.freq,
                     season_length=data.season_length, short_series=data.short_series,
                     notes=tuple(notes) + data.notes, source=source)


def zero_fill_months(
    frame: pd.DataFrame, first: pd.Timestamp | None = None, last: pd.Timestamp | None = None
) -> tuple[pd.DataFrame, tuple[int, int] | None]:
    """Add the months with no row as ``y = 0``, per series, from ``first`` (or the series'
    first month) to ``last`` (or its last month).

    ``frame`` has ``unique_id``, ``ds`` (month starts), ``y`` and columns constant within a
    series. Returns the completed frame and (months added, series touched), or None when
    nothing was added.
    """
    spans = frame.groupby("unique_id")["ds"].agg(["min", "max"])
    if first is not None:
        spans["min"] = first
    if last is not None:
        spans["max"] = last
    grid = pd.concat(
        [pd.DataFrame({"unique_id": uid,
                       "ds": pd.date_range(row["min"], row["max"], freq="MS")})
         for uid, row in spans.iterrows()],
        ignore_index=True,
    )
    constant = frame.drop(columns=["ds", "y"]).drop_duplicates("unique_id")
    full = grid.merge(frame[["unique_id", "ds", "y"]], on=["unique_id", "ds"], how="left")
    added = full["y"].isna()
    full["y"] = full["y"].fillna(0.0)
    full = full.merge(constant, on="unique_id", how="left")[list(frame.columns)]
    if not added.any():
        return full, None
    return full, (int(added.sum()), int(full.loc[added, "unique_id"].nunique()))


def _database(con, cdm_schema: str | None, vocab_schema: str | None) -> Database:
    if isinstance(con, Database):
        return Database(con=con.con, url=con.url,
                        cdm_schema=cdm_schema or con.cdm_schema,
                        vocab_schema=vocab_schema or con.vocab_schema or cdm_schema,
                        results_schema=con.results_schema)
    if not isinstance(con, BaseBackend):
        raise SalesInputError(
            f"dispensing: expected an Ibis backend or a pharmalab Database, got "
            f"{type(con).__name__}"
        )
    return Database(con=con, url=EngineURL(kind=getattr(con, "name", "ibis"), target=""),
                    cdm_schema=cdm_schema, vocab_schema=vocab_schema)


def _month(value, which: str) -> pd.Timestamp | None:
    """The month start of ``value`` (None stays None)."""
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        stamp = pd.NaT
    if pd.isna(stamp):
        raise SalesInputError(
            f"dispensing: {which} {value!r} is not a date; expected e.g. 2010-01 or 2010-01-31"
        )
    return stamp.to_period("M").to_timestamp()


def _targets(
    concept: ir.Table, ingredient_concept_ids, atc_codes
) -> tuple[ir.Table, pd.DataFrame]:
    """The requested concepts as an engine table ``concept_id, level`` and, for explicit
    requests, a small frame of their names (index concept_id: unique_id, level)."""
    concept_id = concept.concept_id.cast("int64")
    parts, requested = [], []
    everything = ingredient_concept_ids is None and atc_codes is None
    ingredient = (concept.concept_class_id == "Ingredient") & (concept.standard_concept == "S")
    if everything:
        parts.append(concept.filter(ingredient).select(concept_id=concept_id,
                                                       level=ibis.literal("ingredient")))
    if ingredient_concept_ids is not None:
        ids = _ids(ingredient_concept_ids)
        found = concept.filter(concept_id.isin(ids)).select(
            "concept_id", "concept_name", "concept_class_id", "standard_concept"
        ).to_pandas()
        found["concept_id"] = found["concept_id"].astype("int64")
        good = found[(found["concept_class_id"] == "Ingredient")
                     & (found["standard_concept"] == "S")]
        bad = [i for i in ids if i not in set(good["concept_id"])]
        if bad:
            what = {int(r.concept_id): f"{r.concept_class_id} concept {r.concept_name!r}"
                    for r in found.itertuples()}
            raise SalesInputError(
                "dispensing: ingredient concept id(s) "
                + ", ".join(f"{i} ({what.get(i, 'not in concept')})" for i in bad)
                + "; expected standard concepts of concept_class_id 'Ingredient' "
                "(e.g. 1118084 celecoxib)"
            )
        parts.append(concept.filter(concept_id.isin(ids)).select(
            concept_id=concept_id, level=ibis.literal("ingredient")))
        requested.append(pd.DataFrame({"concept_id": good["concept_id"],
                                       "unique_id": good["concept_name"],
                                       "level": "ingredient"}))
    if atc_codes is not None:
        codes = _codes(atc_codes)
        is_atc = (concept.vocabulary_id == "ATC") & concept.concept_code.isin(codes)
        found = concept.filter(is_atc).select("concept_id", "concept_code",
                                              "concept_name").to_pandas()
        bad = [c for c in codes if c not in set(found["concept_code"])]
        if bad:
            n_atc = int(concept.filter(concept.vocabulary_id == "ATC").count().execute())
            raise SalesInputError(
                f"dispensing: ATC code(s) {', '.join(bad)} not in the vocabulary (concept "
                f"rows of vocabulary_id 'ATC': {n_atc}); expected codes such as 'M01AH'"
            )
        parts.append(concept.filter(is_atc).select(concept_id=concept_id,
                                                   level=ibis.literal("atc")))
        requested.append(pd.DataFrame({
            "concept_id": found["concept_id"].astype("int64"),
            "unique_id": found["concept_code"] + " " + found["concept_name"],
            "level": "atc",
        }))
    targets = parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=True)
    frame = (pd.concat(requested, ignore_index=True) if requested
             else pd.DataFrame(columns=["concept_id", "unique_id", "level"]))
    return targets, _unique_names(frame).set_index("concept_id")


def _assigned_exposures(
    exposure: ir.Table, ancestor: ir.Table, targets: ir.Table, first, last
) -> ir.Table:
    """Exposure rows × requested concepts they belong to: ``concept_id, person_id, month,
    supply`` (engine expression; one row per exposure row and concept)."""
    below = ancestor.join(targets, ancestor.ancestor_concept_id.cast("int64")
                          == targets.concept_id).select(
        drug_concept_id=ancestor.descendant_concept_id.cast("int64"),
        concept_id=targets.concept_id,
    )
    itself = targets.select(drug_concept_id=targets.concept_id, concept_id=targets.concept_id)
    drug_map = ibis.union(below, itself, distinct=True)

    start = exposure.drug_exposure_start_date.cast("date")
    e = exposure.filter(start.notnull())
    if first is not None:
        e = e.filter(e.drug_exposure_start_date.cast("date") >= first.date())
    if last is not None:
        month_end = (last + pd.offsets.MonthEnd(0)).date()
        e = e.filter(e.drug_exposure_start_date.cast("date") <= month_end)
    begin = e.drug_exposure_start_date.cast("date")
    finish = e.drug_exposure_end_date.cast("date")
    recorded = e.days_supply.cast("int64")
    span = finish.delta(begin, unit="day").cast("int64") + 1
    from_dates = ibis.cases((finish.isnull(), 1), (span < 1, 1), else_=span)
    supply = ibis.cases((recorded.notnull() & (recorded > 0), recorded), else_=from_dates)
    e = e.select(
        drug_concept_id=e.drug_concept_id.cast("int64"),
        person_id=e.person_id.cast("int64"),
        month=begin.truncate("M"),
        supply=supply.cast("int64"),
    )
    return e.join(drug_map, "drug_concept_id").select("concept_id", "person_id", "month",
                                                      "supply")


def _monthly(rows: ir.Table, measure: str) -> ir.Table:
    value = {"exposures": rows.count(), "days_supply": rows.supply.sum(),
             "persons": rows.person_id.nunique()}[measure]
    return rows.group_by(["concept_id", "month"]).aggregate(y=value).order_by(
        ["concept_id", "month"])


def _withhold_small_months(
    monthly: pd.DataFrame, min_cell_count: int
) -> tuple[pd.DataFrame, list[tuple[int, int, int]]]:
    """Suppress monthly person counts; drop every series with a blanked month."""
    checked = suppress(monthly, ["y"], min_cell_count)
    per = checked.groupby("concept_id")["y_suppressed"].agg(["sum", "size"])
    bad = per[per["sum"] > 0]
    blanked = [(int(i), int(r["sum"]), int(r["size"])) for i, r in bad.iterrows()]
    kept = checked[~checked["concept_id"].isin(bad.index)]
    return kept.drop(columns="y_suppressed").reset_index(drop=True), blanked


def _series_names(concept: ir.Table, ids: list[int], requested: pd.DataFrame) -> pd.DataFrame:
    """``unique_id`` and ``level`` per concept id (index), unique across series."""
    missing = [int(i) for i in ids if int(i) not in requested.index]
    frame = requested.reset_index()
    if missing:
        rows = concept.filter(concept.concept_id.cast("int64").isin(missing)).select(
            "concept_id", "concept_name").to_pandas()
        frame = pd.concat([frame, pd.DataFrame({
            "concept_id": rows["concept_id"].astype("int64"),
            "unique_id": rows["concept_name"], "level": "ingredient"})], ignore_index=True)
    frame = frame[frame["concept_id"].isin([int(i) for i in ids])]
    return _unique_names(frame).set_index("concept_id")


def _unique_names(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.drop_duplicates("concept_id").copy()
    frame["concept_id"] = frame["concept_id"].astype("int64")
    frame["unique_id"] = frame["unique_id"].astype(str)
    clash = frame["unique_id"].duplicated(keep=False).to_numpy()
    frame.loc[clash, "unique_id"] = (frame.loc[clash, "unique_id"] + " ("
                                     + frame.loc[clash, "concept_id"].astype(str) + ")")
    return frame


def _ids(values) -> list[int]:
    if isinstance(values, numbers.Integral):
        values = [values]
    values = list(values)
    if not values:
        raise SalesInputError("dispensing: ingredient_concept_ids is empty; expected e.g. "
                              "[1118084]")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise SalesInputError(
                f"dispensing: ingredient concept id {value!r} is not a whole number")
    return sorted({int(v) for v in values})


def _codes(values) -> list[str]:
    if isinstance(values, str):
        values = [values]
    codes = sorted({str(v).strip() for v in values})
    if not codes or "" in codes:
        raise SalesInputError("dispensing: atc_codes is empty or holds an empty code; "
                              "expected e.g. ['M01AH']")
    return codes


def _n(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"
