"""Incidence proportions and rates with OHDSI CohortIncidence semantics, computed in the engine.

The steps are those of CohortIncidence's ``incidenceAnalysis.sql``:

1. each target entry's time at risk (TAR), cut at the end of its observation period, and the
   overlapping TARs of a person merged into eras (:mod:`time_at_risk`);
2. the excluded time: for each outcome, the day after the outcome start through its end plus
   the clean window (and the periods of an exclusion cohort), merged and cut to each era;
3. per era and outcome: outcomes starting in the era (``outcomes_pe``) and those not inside
   excluded time (``outcomes``), days at risk before (``person_days_pe``) and after exclusion;
4. sums by target, window, subgroup, outcome and strata (age group, gender, start year).

Only the final aggregates come back from the engine. Rates are per 100 person-years of
365.25 days (CohortIncidence) and per 1,000 person-years with exact Poisson limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from scipy import stats

from pharmalab.characterize.design import (
    AgeGroup,
    Analysis,
    IncidenceDesign,
    Strata,
)
from pharmalab.characterize.time_at_risk import at_risk_periods, days_between, merge_overlapping
from pharmalab.engine import Database
from pharmalab.errors import PharmalabInputError
from pharmalab.privacy import suppress

DAYS_PER_YEAR = 365.25

#: The CohortIncidence ``incidence_summary`` counts, in its order.
COUNT_COLUMNS = ["persons_at_risk_pe", "persons_at_risk", "person_days_pe", "person_days",
                 "person_outcomes_pe", "person_outcomes", "outcomes_pe", "outcomes"]
#: Counts of persons or events, which small-cell suppression applies to (days are not).
SUPPRESSED_COLUMNS = ["persons_at_risk_pe", "persons_at_risk", "person_outcomes_pe",
                      "person_outcomes", "outcomes_pe", "outcomes"]
STRATA_COLUMNS = ["age_group_id", "gender_id", "start_year"]
_ERA_KEYS = ["target_cohort_definition_id", "tar_id", "subgroup_id", "subject_id", "start_date"]


@dataclass(frozen=True)
class IncidenceResult:
    """Output of :func:`incidence_rates`.

    Attributes
    ----------
    summary : pandas.DataFrame
        CohortIncidence's ``incidence_summary`` columns plus limits, with small cells
        suppressed (see :func:`incidence_rates`).
    design : IncidenceDesign
    min_cell_count : int
    empty_cohorts : list of int
        Outcome, exclusion or subgroup cohorts of the design with no rows (zero outcomes
        is a result, but often means a cohort was not generated: callers should say so).
    """

    summary: pd.DataFrame
    design: IncidenceDesign
    min_cell_count: int
    empty_cohorts: list[int]


def incidence_rates(
    db: Database,
    design: IncidenceDesign,
    *,
    cohort_table: str = "cohort",
    min_cell_count: int = 5,
) -> IncidenceResult:
    """Incidence proportion and rate for every analysis of ``design``.

    Parameters
    ----------
    db
        Database with the CDM (``person``, ``observation_period``; ``concept`` for gender
        names when present) and the results table ``cohort_table`` holding the target,
        outcome, exclusion and subgroup cohorts.
    design
        A CohortIncidence design (:func:`read_design`, :func:`simple_design`).
    cohort_table
        Name of the cohort table in the results schema.
    min_cell_count
        OHDSI ``minCellCount``: person and outcome counts from 1 to ``min_cell_count − 1``
        are blanked (with ``<column>_suppressed`` flags), and so are the person-time,
        proportion and rate that would reveal them. 1 shows everything. As in OHDSI's tools,
        a hidden stratum can still be the difference of the overall row and the other strata.

    Returns
    -------
    IncidenceResult
        ``summary`` has one row per analysis × target × window × subgroup × outcome for the
        overall population (strata columns null), and one per stratum present in the data:
        ``analysis_id`` (int64, 1-based position in ``analysisList``),
        ``target_cohort_definition_id``, ``target_name``, ``tar_id``, ``tar_start_with``,
        ``tar_start_offset``, ``tar_end_with``, ``tar_end_offset``, ``subgroup_id``
        (0 = all), ``subgroup_name``, ``outcome_id``, ``outcome_cohort_definition_id``,
        ``outcome_name``, ``clean_window`` (days), ``age_group_id``, ``age_group_name``,
        ``gender_id``, ``gender_name``, ``start_year`` (nullable Int64 / str),
        ``persons_at_risk_pe``, ``persons_at_risk``, ``person_days_pe``, ``person_days``,
        ``person_outcomes_pe``, ``person_outcomes``, ``outcomes_pe``, ``outcomes`` (Int64;
        persons, days, events; ``_pe`` = before removing excluded time),
        ``incidence_proportion_p100p`` (persons with an outcome per 100 persons at risk) with
        Clopper–Pearson ``_lower_95``/``_upper_95``, ``person_years`` (person_days / 365.25),
        ``incidence_rate_p100py`` (outcomes per 100 person-years), ``incidence_rate_p1000py``
        with exact Poisson (Garwood) ``_lower_95``/``_upper_95``. Rates and proportions are
        null when their denominator is 0.

    Raises
    ------
    PharmalabInputError
        If a target cohort of the design has no rows in ``cohort_table`` (the message lists
        them), or ``min_cell_count`` < 1.
    CdmNotFoundError
        If a needed table is missing.

    Notes
    -----
    Matches CohortIncidence 4.x (``incidenceAnalysis.sql``) and its conformance scenarios,
    with one deliberate difference: a person is *at risk* in a stratum when any of their eras
    there keeps at least one day after exclusion (CohortIncidence's own definition in its
    documentation; its 4.x SQL subtracts persons whose only excluded/outcome era is fully
    excluded even when another era of theirs has time at risk).

    References
    ----------
    OHDSI CohortIncidence, https://github.com/OHDSI/CohortIncidence (method documentation).
    Garwood F. Fiducial limits for the Poisson distribution. Biometrika 1936;28:437–442.
    Ulm K. A simple method to calculate the confidence interval of a standardized mortality
    ratio. Am J Epidemiol 1990;131:373–375.
    Clopper CJ, Pearson ES. Biometrika 1934;26:404–413.
    """
    if min_cell_count < 1:
        raise PharmalabInputError(f"min_cell_count must be at least 1, got {min_cell_count}")
    cohorts = db.table(cohort_table, "results")
    empty = _empty_cohorts(cohorts, design, db, cohort_table)
    frames = [_analysis_summary(db, cohorts, design, analysis, n)
              for n, analysis in enumerate(design.analyses, start=1)]
    summary = _finish(pd.concat(frames, ignore_index=True), design, db)
    return IncidenceResult(_suppress(summary, min_cell_count), design, min_cell_count, empty)


def _empty_cohorts(cohorts: ir.Table, design: IncidenceDesign, db, table) -> list[int]:
    """Cohorts the design names that have no rows; raises when a target is among them."""
    wanted = sorted(design.cohort_ids())
    present = cohorts.filter(cohorts.cohort_definition_id.isin(wanted))
    found = set(present.select(cohort=present.cohort_definition_id.cast("int64"))
                .distinct().to_pandas().cohort.tolist())
    empty = [c for c in wanted if c not in found]
    targets = [t.id for t in design.targets if t.id in empty]
    if targets:
        schema = db.schema("results") or "the default schema"
        raise PharmalabInputError(
            f"target cohorts {targets} have no rows in table {table!r} of {schema}; "
            "generate them first (pharmalab cohorts generate)")
    return empty


# --- the engine part -------------------------------------------------------------------


def _analysis_summary(db: Database, cohorts: ir.Table, design: IncidenceDesign,
                      analysis: Analysis, number: int) -> pd.DataFrame:
    eras = _at_risk_eras(db, cohorts, design, analysis)
    excluded = _excluded_periods(cohorts, design, analysis)
    # Materialize the per-era rows once: every strata combination reads them.
    with _incidence_raw(db, cohorts, design, analysis, eras, excluded).cache() as raw:
        counts = _aggregate_all(raw, design.strata)
    grid = _analysis_grid(design, analysis)
    # Every T × TAR × subgroup × outcome has an overall row, even with nobody at risk.
    overall = counts[counts[STRATA_COLUMNS].isna().all(axis=1)]
    strata = counts[~counts[STRATA_COLUMNS].isna().all(axis=1)]
    keys = ["target_cohort_definition_id", "tar_id", "subgroup_id", "outcome_id"]
    overall = grid.merge(overall, on=keys, how="left")
    out = pd.concat([overall, strata], ignore_index=True)
    out.insert(0, "analysis_id", number)
    return out


def _at_risk_eras(db: Database, cohorts: ir.Table, design: IncidenceDesign,
                  analysis: Analysis) -> ir.Table:
    """Step 1: merged at-risk periods, for all persons (subgroup 0) and each subgroup."""
    targets = cohorts.filter(cohorts.cohort_definition_id.isin(list(analysis.targets)))
    tars = [design.tar(t) for t in analysis.tars]
    periods = at_risk_periods(targets, db.table("observation_period"), tars,
                              min_days_at_risk=design.min_days_at_risk)
    periods = periods.select(target_cohort_definition_id=periods.cohort_definition_id,
                             tar_id=periods.tar_id, subject_id=periods.subject_id,
                             start_date=periods.start_date, end_date=periods.end_date)
    eras = merge_overlapping(periods, ["target_cohort_definition_id", "tar_id", "subject_id"])
    eras = _study_window(eras, design)
    everyone = eras.mutate(subgroup_id=ibis.literal(0, "int64"))
    parts = [everyone]
    for subgroup in design.subgroups:
        members = cohorts.filter(cohorts.cohort_definition_id == subgroup.cohort_id)
        inside = eras.semi_join(members, (eras.subject_id == members.subject_id)
                                & (eras.start_date >= members.cohort_start_date)
                                & (eras.start_date <= members.cohort_end_date))
        parts.append(inside.mutate(subgroup_id=ibis.literal(subgroup.id, "int64")))
    union = parts[0] if len(parts) == 1 else ibis.union(*parts)
    # Strata come from the person: age at the era's start year, gender.
    person = db.table("person")
    joined = union.join(person, union.subject_id == person.person_id)
    start_year = joined.start_date.year().cast("int64")
    return joined.select(
        *_ERA_KEYS, "end_date",
        age=start_year - joined.year_of_birth.cast("int64"),
        gender_id=joined.gender_concept_id.cast("int64"),
        start_year=start_year,
    )


def _study_window(eras: ir.Table, design: IncidenceDesign) -> ir.Table:
    if design.study_start is not None:
        eras = eras.filter(eras.start_date >= design.study_start)
    if design.study_end is not None:
        end = ibis.literal(design.study_end, "date")
        eras = eras.filter(eras.start_date <= end)
        eras = eras.mutate(end_date=ibis.cases((eras.end_date > end, end),
                                               else_=eras.end_date))
    return eras


def _excluded_periods(cohorts: ir.Table, design: IncidenceDesign,
                      analysis: Analysis) -> ir.Table:
    """Step 2: per person and outcome, the merged periods that are not at risk."""
    parts = []
    for outcome_id in analysis.outcomes:
        outcome = design.outcome(outcome_id)
        rows = cohorts.filter(cohorts.cohort_definition_id == outcome.cohort_id)
        # the day after the outcome starts through its end plus the clean window
        clean = rows.select(
            subject_id=rows.subject_id.cast("int64"),
            outcome_id=ibis.literal(outcome.id, "int64"),
            start_date=(rows.cohort_start_date + ibis.interval(days=1)).cast("date"),
            end_date=(rows.cohort_end_date + ibis.interval(days=outcome.clean_window)
                      if outcome.clean_window else rows.cohort_end_date).cast("date"),
        )
        parts.append(clean.filter(clean.end_date >= clean.start_date))
        if outcome.exclude_cohort_id:
            other = cohorts.filter(cohorts.cohort_definition_id == outcome.exclude_cohort_id)
            parts.append(other.select(
                subject_id=other.subject_id.cast("int64"),
                outcome_id=ibis.literal(outcome.id, "int64"),
                start_date=other.cohort_start_date, end_date=other.cohort_end_date))
    union = parts[0] if len(parts) == 1 else ibis.union(*parts)
    return merge_overlapping(union, ["subject_id", "outcome_id"])


def _incidence_raw(db: Database, cohorts: ir.Table, design: IncidenceDesign,
                   analysis: Analysis, eras: ir.Table, excluded: ir.Table) -> ir.Table:
    """Step 3: one row per era × outcome with days at risk and outcome counts."""
    # excluded time inside each era, in days
    cut = eras.join(excluded, (eras.subject_id == excluded.subject_id)
                    & (excluded.start_date <= eras.end_date)
                    & (excluded.end_date >= eras.start_date))
    cut_start = ibis.cases((cut.start_date_right > cut.start_date, cut.start_date_right),
                           else_=cut.start_date)
    cut_end = ibis.cases((cut.end_date_right < cut.end_date, cut.end_date_right),
                         else_=cut.end_date)
    cut = cut.select(*_ERA_KEYS, "outcome_id", exc_start=cut_start, exc_end=cut_end)
    excluded_days = cut.group_by([*_ERA_KEYS, "outcome_id"]).aggregate(
        excluded_days=(days_between(cut.exc_start, cut.exc_end) + 1).sum())
    # outcomes starting inside each era; excluded when inside excluded time
    outcome_rows = _outcome_rows(cohorts, design, analysis)
    hits = eras.join(outcome_rows, (eras.subject_id == outcome_rows.subject_id)
                     & (outcome_rows.outcome_date >= eras.start_date)
                     & (outcome_rows.outcome_date <= eras.end_date))
    hits = hits.select(*_ERA_KEYS, "outcome_id", "outcome_date", "_row")
    in_excluded = hits.join(cut, [hits[k] == cut[k] for k in [*_ERA_KEYS, "outcome_id"]]
                            + [hits.outcome_date >= cut.exc_start,
                               hits.outcome_date <= cut.exc_end])
    in_excluded = in_excluded.select(*_ERA_KEYS, "outcome_id", "_row").distinct()
    flagged = hits.left_join(
        in_excluded.mutate(_excluded=ibis.literal(1)),
        [hits[k] == in_excluded[k] for k in [*_ERA_KEYS, "outcome_id", "_row"]])
    outcome_counts = flagged.group_by(
        [flagged[k] for k in [*_ERA_KEYS, "outcome_id"]]).aggregate(
        outcomes_pe=flagged.count(),
        outcomes=flagged._excluded.isnull().cast("int64").sum())
    # every era × outcome of the analysis
    # (a union of literals, not a memtable: Spark loses memtables inside cached tables)
    per_outcome = [eras.mutate(outcome_id=ibis.literal(o, "int64")) for o in analysis.outcomes]
    grid = per_outcome[0] if len(per_outcome) == 1 else ibis.union(*per_outcome,
                                                                    distinct=False)
    grid = grid.mutate(pe_days=days_between(grid.start_date, grid.end_date) + 1)
    with_days = grid.left_join(excluded_days,
                               [grid[k] == excluded_days[k] for k in [*_ERA_KEYS, "outcome_id"]])
    with_days = with_days.select(
        *_ERA_KEYS, "outcome_id", "age", "gender_id", "start_year", "pe_days",
        days=with_days.pe_days - with_days.excluded_days.fill_null(0))
    raw = with_days.left_join(outcome_counts,
                              [with_days[k] == outcome_counts[k]
                               for k in [*_ERA_KEYS, "outcome_id"]])
    return raw.select(
        *_ERA_KEYS, "outcome_id", "age", "gender_id", "start_year", "pe_days", "days",
        outcomes_pe=raw.outcomes_pe.fill_null(0), outcomes=raw.outcomes.fill_null(0))


def _outcome_rows(cohorts: ir.Table, design: IncidenceDesign, analysis: Analysis) -> ir.Table:
    """Outcome cohort rows (each a case) tagged with the design's ``outcome_id``."""
    parts = []
    for outcome_id in analysis.outcomes:
        outcome = design.outcome(outcome_id)
        rows = cohorts.filter(cohorts.cohort_definition_id == outcome.cohort_id)
        parts.append(rows.select(
            subject_id=rows.subject_id.cast("int64"),
            outcome_id=ibis.literal(outcome.id, "int64"),
            outcome_date=rows.cohort_start_date,
            outcome_end=rows.cohort_end_date))
    union = parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=False)
    # A row number tells identical outcome rows apart (CohortIncidence counts each).
    return union.mutate(_row=ibis.row_number().over(
        ibis.window(order_by=["subject_id", "outcome_id", "outcome_date", "outcome_end"])))


def _strata_combinations(strata: Strata) -> list[tuple[str, ...]]:
    """The strata CohortIncidence reports, in its order (``getStrataQueries``)."""
    combos: list[tuple[str, ...]] = [()]
    if strata.by_age:
        combos.append(("age_group_id",))
        if strata.by_gender:
            combos.append(("age_group_id", "gender_id"))
        if strata.by_year:
            combos.append(("age_group_id", "start_year"))
        if strata.by_gender and strata.by_year:
            combos.append(("age_group_id", "gender_id", "start_year"))
    if strata.by_gender:
        combos.append(("gender_id",))
        if strata.by_year:
            combos.append(("gender_id", "start_year"))
    if strata.by_year:
        combos.append(("start_year",))
    return combos


def _age_group_rows(raw: ir.Table, groups: list[AgeGroup]) -> ir.Table:
    """``raw`` with ``age_group_id`` of one break list (every row falls in one band)."""
    cases = []
    for group in groups:
        condition = ibis.literal(True)
        if group.min_age is not None:
            condition = condition & (raw.age >= group.min_age)
        if group.max_age is not None:
            condition = condition & (raw.age < group.max_age)
        cases.append((condition, group.id))
    return raw.mutate(age_group_id=ibis.cases(*cases).cast("int64"))


def _aggregate_all(raw: ir.Table, strata: Strata) -> pd.DataFrame:
    """Step 4: sums for every strata combination, in one query (one row per stratum)."""
    parts = [_aggregate(raw, columns, strata) for columns in _strata_combinations(strata)]
    union = parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=False)
    frame = union.to_pandas()
    for column in STRATA_COLUMNS:
        frame[column] = frame[column].astype("Int64")
    return frame


def _aggregate(raw: ir.Table, columns: tuple[str, ...], strata: Strata) -> ir.Table:
    """The sums for one strata combination; strata not in ``columns`` are null."""
    if "age_group_id" in columns:
        sets = [_age_group_rows(raw, groups) for groups in strata.break_sets()]
        source = sets[0] if len(sets) == 1 else ibis.union(*sets, distinct=False)
    else:
        source = raw
    keys = ["target_cohort_definition_id", "tar_id", "subgroup_id", "outcome_id", *columns]
    aggregated = source.group_by(keys).aggregate(
        persons_at_risk_pe=source.subject_id.nunique(),
        persons_at_risk=source.subject_id.nunique(where=source.days > 0),
        person_days_pe=source.pe_days.sum(),
        person_days=source.days.sum(),
        person_outcomes_pe=source.subject_id.nunique(where=source.outcomes_pe > 0),
        person_outcomes=source.subject_id.nunique(where=source.outcomes > 0),
        outcomes_pe=source.outcomes_pe.sum(),
        outcomes=source.outcomes.sum(),
    )
    null = ibis.null("int64")
    return aggregated.select(
        "target_cohort_definition_id", "tar_id", "subgroup_id", "outcome_id",
        *[(aggregated[c].cast("int64") if c in columns else null).name(c)
          for c in STRATA_COLUMNS],
        *COUNT_COLUMNS)


def _analysis_grid(design: IncidenceDesign, analysis: Analysis) -> pd.DataFrame:
    rows = [(t, tar, s, o) for t in analysis.targets for tar in analysis.tars
            for s in [0, *(g.id for g in design.subgroups)] for o in analysis.outcomes]
    return pd.DataFrame(rows, columns=["target_cohort_definition_id", "tar_id", "subgroup_id",
                                       "outcome_id"]).astype("int64")


# --- names, rates and limits (on the small aggregate) -----------------------------------


def _finish(counts: pd.DataFrame, design: IncidenceDesign, db: Database) -> pd.DataFrame:
    out = counts.copy()
    for column in COUNT_COLUMNS:
        out[column] = pd.to_numeric(out[column]).fillna(0).astype("Int64")
    out["target_name"] = out.target_cohort_definition_id.map(
        lambda t: design.target(int(t)).name)
    tars = {t.id: t for t in design.tars}
    out["tar_start_with"] = out.tar_id.map(lambda t: tars[int(t)].start_with)
    out["tar_start_offset"] = out.tar_id.map(lambda t: tars[int(t)].start_offset)
    out["tar_end_with"] = out.tar_id.map(lambda t: tars[int(t)].end_with)
    out["tar_end_offset"] = out.tar_id.map(lambda t: tars[int(t)].end_offset)
    subgroups = {0: "All", **{s.id: s.name for s in design.subgroups}}
    out["subgroup_name"] = out.subgroup_id.map(lambda s: subgroups[int(s)])
    outcomes = {o.id: o for o in design.outcomes}
    out["outcome_cohort_definition_id"] = out.outcome_id.map(lambda o: outcomes[int(o)].cohort_id)
    out["outcome_name"] = out.outcome_id.map(lambda o: outcomes[int(o)].name)
    out["clean_window"] = out.outcome_id.map(lambda o: outcomes[int(o)].clean_window)
    ages = {g.id: g.name for g in design.strata.age_groups()}
    out["age_group_name"] = out.age_group_id.map(lambda a: ages.get(int(a)) if pd.notna(a)
                                                 else None)
    out["gender_name"] = _gender_names(db, out.gender_id)
    _add_rates(out)
    order = ["analysis_id", "target_cohort_definition_id", "target_name", "tar_id",
             "tar_start_with", "tar_start_offset", "tar_end_with", "tar_end_offset",
             "subgroup_id", "subgroup_name", "outcome_id", "outcome_cohort_definition_id",
             "outcome_name", "clean_window", "age_group_id", "age_group_name", "gender_id",
             "gender_name", "start_year", *COUNT_COLUMNS,
             "incidence_proportion_p100p", "incidence_proportion_p100p_lower_95",
             "incidence_proportion_p100p_upper_95", "person_years", "incidence_rate_p100py",
             "incidence_rate_p1000py", "incidence_rate_p1000py_lower_95",
             "incidence_rate_p1000py_upper_95"]
    out = out[order]
    sort = ["analysis_id", "target_cohort_definition_id", "tar_id", "subgroup_id",
            "outcome_id", *STRATA_COLUMNS]
    return out.sort_values(sort, na_position="first", kind="stable").reset_index(drop=True)


def _gender_names(db: Database, gender_ids: pd.Series) -> pd.Series:
    ids = sorted({int(g) for g in gender_ids.dropna()})
    names: dict[int, str] = {}
    if ids and db.has_table("concept", "vocab"):
        concept = db.table("concept", "vocab")
        found = concept.filter(concept.concept_id.isin(ids)).select(
            "concept_id", "concept_name").to_pandas()
        names = dict(zip(found.concept_id.astype(int), found.concept_name, strict=False))
    return gender_ids.map(lambda g: names.get(int(g)) if pd.notna(g) else None)


def _add_rates(out: pd.DataFrame) -> None:
    persons = out.persons_at_risk.astype("float64")
    cases = out.person_outcomes.astype("float64")
    days = out.person_days.astype("float64")
    events = out.outcomes.astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        out["incidence_proportion_p100p"] = np.where(persons > 0, 100.0 * cases / persons,
                                                     np.nan)
        lower, upper = clopper_pearson(cases.to_numpy(), persons.to_numpy())
        out["incidence_proportion_p100p_lower_95"] = np.where(persons > 0, 100 * lower, np.nan)
        out["incidence_proportion_p100p_upper_95"] = np.where(persons > 0, 100 * upper, np.nan)
        years = days / DAYS_PER_YEAR
        out["person_years"] = years
        out["incidence_rate_p100py"] = np.where(days > 0, 100.0 * events / years, np.nan)
        out["incidence_rate_p1000py"] = np.where(days > 0, 1000.0 * events / years, np.nan)
        low, high = poisson_exact_limits(events.to_numpy())
        out["incidence_rate_p1000py_lower_95"] = np.where(days > 0, 1000.0 * low / years, np.nan)
        out["incidence_rate_p1000py_upper_95"] = np.where(days > 0, 1000.0 * high / years,
                                                          np.nan)


def poisson_exact_limits(events, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Garwood) limits of a Poisson mean given the observed number of events.

    ``lower = χ²((1−level)/2; 2k) / 2`` (0 when k = 0), ``upper = χ²((1+level)/2; 2k+2) / 2``
    — Garwood 1936, Ulm 1990. Divide by person-time for the rate's limits.
    """
    k = np.asarray(events, dtype="float64")
    alpha = 1.0 - level
    with np.errstate(invalid="ignore"):
        lower = np.where(k > 0, stats.chi2.ppf(alpha / 2, 2 * k) / 2, 0.0)
        upper = stats.chi2.ppf(1 - alpha / 2, 2 * k + 2) / 2
    return lower, upper


def clopper_pearson(successes, trials, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial (Clopper–Pearson) limits of a proportion, as fractions in [0, 1]."""
    x = np.asarray(successes, dtype="float64")
    n = np.asarray(trials, dtype="float64")
    alpha = 1.0 - level
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = np.where(x > 0, stats.beta.ppf(alpha / 2, x, n - x + 1), 0.0)
        upper = np.where(x < n, stats.beta.ppf(1 - alpha / 2, x + 1, n - x), 1.0)
    return lower, upper


def _suppress(summary: pd.DataFrame, min_cell_count: int) -> pd.DataFrame:
    out = suppress(summary, SUPPRESSED_COLUMNS, min_cell_count)
    # Person-time next to a hidden person count gives it back when windows have a fixed
    # length (365 days → 1 person): blank it with the count it belongs to.
    for persons, days in (("persons_at_risk_pe", "person_days_pe"),
                          ("persons_at_risk", "person_days")):
        out[days] = out[days].mask(out[f"{persons}_suppressed"])
    out["person_years"] = out["person_years"].mask(out["persons_at_risk_suppressed"])
    # A rate or proportion next to a hidden count would give it back.
    hide_rate = out.outcomes_suppressed | out.persons_at_risk_suppressed
    hide_proportion = out.person_outcomes_suppressed | out.persons_at_risk_suppressed
    for column in ["incidence_rate_p100py", "incidence_rate_p1000py",
                   "incidence_rate_p1000py_lower_95", "incidence_rate_p1000py_upper_95"]:
        out.loc[hide_rate, column] = np.nan
    for column in ["incidence_proportion_p100p", "incidence_proportion_p100p_lower_95",
                   "incidence_proportion_p100p_upper_95"]:
        out.loc[hide_proportion, column] = np.nan
    return out
