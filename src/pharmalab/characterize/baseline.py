"""Baseline characteristics of cohorts and a Table 1 with standardized mean differences.

The covariates follow OHDSI FeatureExtraction's prespecified analyses
(``inst/csv/PrespecAnalyses.csv``) in aggregated mode: the unit is a cohort entry (a
``subject_id`` with its ``cohort_start_date``, the index date), binary covariates count the
entries that have them, and ``covariate_id = concept_id * 1000 + analysis_id``.

====================  ===========================================  ===========================
analysis              covariate                                    analysis ids
====================  ===========================================  ===========================
demographics          gender, age, 5-year age group, race,         1, 2, 3, 4, 5, 6, 8
                      ethnicity, index year, prior observation
condition groups      condition and its groups (concept_ancestor)  209–212 (condition_era),
                      in each window                               109–112 (condition_occ.)
drug groups           ingredient and its ATC classes in each       409–412
                      window
visit counts          visits in each window (continuous)           920–922
====================  ===========================================  ===========================

The four windows are FeatureExtraction's terms (any time prior, long, medium and short term),
ids in that order. FeatureExtraction has no analysis for condition groups rolled up from
``condition_occurrence`` nor for visits any time prior: 109–112 are pharmalab's own ids (free
in FeatureExtraction's scheme) and visits are not counted any time prior.

Everything per patient runs in the engine (DuckDB, Spark, …) as Ibis expressions; one grouped
aggregate per analysis family comes back to pandas.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from pharmalab.cdm.spec import STANDARD_DEMOGRAPHIC_CONCEPTS
from pharmalab.engine import Database
from pharmalab.errors import PharmalabInputError
from pharmalab.privacy import suppress

Term = Literal["any time prior", "long term", "medium term", "short term"]
TERMS: tuple[str, ...] = ("any time prior", "long term", "medium term", "short term")
_TERM_NAMES = ("AnyTimePrior", "LongTerm", "MediumTerm", "ShortTerm")


@dataclass(frozen=True)
class Window:
    """A FeatureExtraction time window, in days relative to the index date, both inclusive.

    Attributes
    ----------
    term : {"any time prior", "long term", "medium term", "short term"}
        Which of FeatureExtraction's windows this is; it fixes the analysis ids.
    start_day : int or None
        First day (e.g. −365); None for "any time prior" (no lower bound, as FeatureExtraction).
    end_day : int
        Last day (FeatureExtraction's ``endDays``, default 0: the index date itself).
    """

    term: Term
    start_day: int | None
    end_day: int = 0

    def __post_init__(self):
        if self.term not in TERMS:
            raise PharmalabInputError(
                f"window term {self.term!r}: expected one of {', '.join(TERMS)}")
        for name in ("start_day", "end_day"):
            value = getattr(self, name)
            if value is None and name == "start_day":
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise PharmalabInputError(
                    f"window {self.term!r}: {name} must be a whole number of days, got {value!r}")
        if self.start_day is None and self.term != "any time prior":
            raise PharmalabInputError(f"window {self.term!r}: start_day is required")
        if self.start_day is not None and self.start_day > self.end_day:
            raise PharmalabInputError(
                f"window {self.term!r}: start_day {self.start_day} is after end_day "
                f"{self.end_day}")

    @property
    def label(self) -> str:
        """``"any time prior"`` or ``"START..END"`` (e.g. ``"-365..0"``)."""
        if self.term == "any time prior":
            return "any time prior"
        return f"{self.start_day}..{self.end_day}"

    @property
    def index(self) -> int:
        """0–3: the term's place in FeatureExtraction's analysis-id sequence."""
        return TERMS.index(self.term)


# FeatureExtraction's createDefaultCovariateSettings: anyTimePrior, longTermStartDays = -365,
# mediumTermStartDays = -180, shortTermStartDays = -30, endDays = 0.
DEFAULT_WINDOWS: tuple[Window, ...] = (
    Window("any time prior", None, 0),
    Window("long term", -365, 0),
    Window("medium term", -180, 0),
    Window("short term", -30, 0),
)

CONDITION_TABLES = ("condition_era", "condition_occurrence")
CONCEPT_GROUPS = ("featureextraction", "all")

_DEMOGRAPHICS = {
    1: "DemographicsGender",
    2: "DemographicsAge",
    3: "DemographicsAgeGroup",
    4: "DemographicsRace",
    5: "DemographicsEthnicity",
    6: "DemographicsIndexYear",
    8: "DemographicsPriorObservationTime",
}


@dataclass(frozen=True)
class _Domain:
    """A CDM event table: its concept column and the dates an event spans.

    Occurrences span one day (start = end = their start date), so "overlaps the window" is
    "starts in the window", FeatureExtraction's DomainConcept.sql for occurrence tables.
    """

    table: str
    concept: str
    start: str
    end: str
    family: Literal["condition", "drug", "visit"]
    first_analysis: int  # the "any time prior" analysis id
    analysis_stem: str


_DOMAINS = {
    "condition_era": _Domain("condition_era", "condition_concept_id",
                             "condition_era_start_date", "condition_era_end_date",
                             "condition", 209, "ConditionGroupEra"),
    "condition_occurrence": _Domain("condition_occurrence", "condition_concept_id",
                                    "condition_start_date", "condition_start_date",
                                    "condition", 109, "ConditionGroupOccurrence"),
    "drug_era": _Domain("drug_era", "drug_concept_id", "drug_era_start_date",
                        "drug_era_end_date", "drug", 409, "DrugGroupEra"),
    # VisitCountLongTerm = 920; FeatureExtraction has no "any time prior" visit count.
    "visit_occurrence": _Domain("visit_occurrence", "visit_concept_id", "visit_start_date",
                                "visit_end_date", "visit", 919, "VisitCount"),
}

# FeatureExtraction DomainConceptGroup.sql: SNOMED groups below "Clinical finding" (441840)
# deep enough to be informative, plus these broad disease groups it keeps on purpose.
_CLINICAL_FINDING = 441840
_KEPT_CONDITION_GROUPS = (433736, 433595, 441408, 72404, 192671, 137977, 434621, 437312,
                          439847, 4171917, 438555, 4299449, 375258, 76784, 40483532, 4145627,
                          434157, 433778, 258449, 313878)
_UNINFORMATIVE_NAMES = ("%finding", "Disorder of%", "Finding of%", "Disease of%", "Injury of%",
                        "%by site", "%by body site", "%by mechanism", "%of body region",
                        "%of anatomical site", "%of specific body structure%")

COLUMNS = ["cohort_definition_id", "covariate_id", "covariate_name", "analysis_id",
           "analysis_name", "concept_id", "window", "count", "proportion", "mean", "sd", "n"]


def baseline_characteristics(
    db: Database,
    cohort_id: int | Sequence[int],
    *,
    windows: Sequence[Window] = DEFAULT_WINDOWS,
    condition_table: str = "condition_era",
    concept_groups: str = "featureextraction",
    min_cell_count: int = 5,
) -> pd.DataFrame:
    """FeatureExtraction-style baseline covariates of one or more cohorts, small cells hidden.

    Parameters
    ----------
    db
        The database; reads ``cohort`` (results), ``person``, ``observation_period``,
        ``condition_era`` or ``condition_occurrence``, ``drug_era``, ``visit_occurrence``
        (CDM), ``concept`` and ``concept_ancestor`` (vocabulary).
    cohort_id
        A ``cohort_definition_id`` of the results ``cohort`` table, or several (one pass).
    windows
        Up to one :class:`Window` per term (default FeatureExtraction's four).
    condition_table
        ``"condition_era"`` (an era counts if it overlaps the window: it starts on or before
        the window's end and ends on or after its start) or ``"condition_occurrence"`` (an
        occurrence counts if it starts in the window).
    concept_groups
        ``"featureextraction"``: roll concepts up to the groups FeatureExtraction's
        ``DomainConceptGroup.sql`` keeps (drugs: the standard ingredient and ATC classes of
        levels 1, 3, 4 and 5; conditions: informative SNOMED groups below "Clinical finding");
        a group must be in the ``concept`` table. ``"all"``: every ancestor in
        ``concept_ancestor`` (the concept itself included) — large and slow: on GiBleed
        33,602 drug groups per cohort, most not in its ``concept`` table, 20 s on DuckDB.
    min_cell_count
        Smallest count shown (:func:`pharmalab.privacy.suppress`); 1 shows everything.

    Returns
    -------
    pandas.DataFrame
        One row per cohort and covariate, sorted by cohort, analysis and covariate id:

        - ``cohort_definition_id``, ``covariate_id``, ``analysis_id``, ``concept_id`` (int64;
          ``covariate_id = concept_id * 1000 + analysis_id``; age groups use the group number
          and index years the year in place of the concept id, and ``concept_id`` is 0 for
          them and for the continuous covariates, as FeatureExtraction);
        - ``covariate_name``, ``analysis_name`` (str; FeatureExtraction's names), ``window``
          (str: ``"any time prior"``, ``"-365..0"``, …; ``""`` for demographics);
        - ``count`` (Int64, entries with the covariate; for continuous covariates the entries
          with a value — non-zero visit count, an observation period at index), then
          ``count_suppressed`` (bool);
        - ``proportion`` (float64, ``count / n``; binary covariates only);
        - ``mean``, ``sd`` (float64; continuous covariates only: age in years, prior
          observation in days, visits; over all ``n`` entries, a missing value counting as
          zero as FeatureExtraction's ``missing_means_zero``; ``sd`` is the sample SD);
        - ``n`` (Int64, the cohort's entries, the denominator), then ``n_suppressed``.

        Binary covariates that no entry has are absent. Where a count (or ``n``) is
        suppressed, that row's proportion, mean and SD are blank too.

    Raises
    ------
    PharmalabInputError
        For a cohort id without rows in the ``cohort`` table (the message names it), an
        unknown ``condition_table`` or ``concept_groups``, a repeated window term, or
        ``min_cell_count`` below 1.

    Notes
    -----
    Source: OHDSI FeatureExtraction 3.x SQL (``DemographicsGender.sql``, ``…AgeGroup.sql``,
    ``DemographicsTime.sql``, ``DomainConceptGroup.sql``, ``ConceptCounts.sql``). Age is
    ``year(index) − year_of_birth``; prior observation is the days from the start of the
    observation period that holds the index date; gender, race and ethnicity concept 0 is not
    a covariate. FeatureExtraction's SD of visit counts is over the entries with a visit only;
    here it is over all entries (matching its mean, which divides by all entries).
    """
    frame = _characterize(db, _cohort_ids(cohort_id), windows, condition_table, concept_groups)
    return _suppress_characteristics(frame[COLUMNS], min_cell_count)


def table_one(
    db: Database,
    target_id: int,
    comparator_id: int,
    *,
    windows: Sequence[Window] = DEFAULT_WINDOWS,
    condition_table: str = "condition_era",
    concept_groups: str = "featureextraction",
    min_cell_count: int = 5,
) -> pd.DataFrame:
    """Baseline characteristics of a target and a comparator cohort side by side, with SMDs.

    Parameters
    ----------
    db, windows, condition_table, concept_groups, min_cell_count
        As :func:`baseline_characteristics`.
    target_id, comparator_id
        The two ``cohort_definition_id`` values.

    Returns
    -------
    pandas.DataFrame
        One row per covariate either cohort has, sorted by analysis and covariate id:
        ``covariate_id`` (int64), ``covariate_name`` (str), ``analysis_id`` (int64),
        ``analysis_name``, ``window`` (str); for each side ``target_…`` and
        ``comparator_…``: ``count`` (Int64) and ``count_suppressed`` (bool), ``proportion``,
        ``mean``, ``sd`` (float64, as in :func:`baseline_characteristics`; a binary covariate
        one side lacks has count 0 and proportion 0 there); ``smd`` (float64); ``target_n``,
        ``comparator_n`` (Int64, the cohorts' entries) and their ``_suppressed`` flags;
        ``smd_note`` (str): why ``smd`` is blank where no suppression explains it.

        ``smd`` is the standardized mean difference, target minus comparator: binary
        ``(p1 − p2) / sqrt((p1(1 − p1) + p2(1 − p2)) / 2)``, continuous
        ``(m1 − m2) / sqrt((s1² + s2²) / 2)``. It is computed from the unsuppressed
        aggregates, then blanked where either side's count is suppressed; it is blank (NaN)
        where neither side has spread (0% against 100%: undefined, said in ``smd_note``),
        never ±inf or −0.

    Raises
    ------
    PharmalabInputError
        As :func:`baseline_characteristics`.

    Notes
    -----
    SMD per Austin PC (2009), "Balance diagnostics for comparing the distribution of baseline
    covariates between treatment groups in propensity-score matched samples", Stat Med
    28:3083–3107, and FeatureExtraction's ``computeStandardizedDifference`` (which reports
    the opposite sign, second cohort minus first; CohortMethod's balance uses target minus
    comparator, as here).
    """
    ids = _cohort_ids([target_id, comparator_id])
    frame = _characterize(db, ids, windows, condition_table, concept_groups)
    sides = {"target": _side(frame, ids[0]), "comparator": _side(frame, ids[-1])}
    descriptors = (pd.concat([sides["target"], sides["comparator"]])
                   [["covariate_name", "analysis_id", "analysis_name", "window", "is_binary"]])
    table = descriptors[~descriptors.index.duplicated()]
    for name, side in sides.items():
        table = table.join(_absent_as_zero(side, table).add_prefix(f"{name}_"))
    table["smd"] = _standardized_difference(table)
    table["smd_note"] = _smd_note(table)
    table = table.sort_values(["analysis_id", "covariate_id"]).reset_index()
    return _suppress_table_one(table, min_cell_count)


def table_one_summary(
    frame: pd.DataFrame, *, top_n: int = 10, term: Term = "long term"
) -> pd.DataFrame:
    """The rows of a classic Table 1, for reports.

    Parameters
    ----------
    frame
        Output of :func:`table_one` (or of :func:`baseline_characteristics` for one cohort).
    top_n
        How many condition groups and how many drug groups to keep: the most prevalent, by
        the larger proportion of the two cohorts (suppressed proportions rank as 0).
    term
        The window of the condition and drug groups (FeatureExtraction's Table 1 uses the
        long term, analyses 210 and 410).

    Returns
    -------
    pandas.DataFrame
        ``frame``'s columns, rows in this order: age (mean, SD), age groups, gender, race,
        ethnicity, prior observation time, then the top condition groups and the top drug
        groups, each by decreasing prevalence. Index years are left out, as in
        FeatureExtraction's default Table 1 specification (they are in the full table).

    Raises
    ------
    PharmalabInputError
        If ``top_n`` is negative or ``term`` is not a window term.
    """
    if isinstance(top_n, bool) or not isinstance(top_n, numbers.Integral) or top_n < 0:
        raise PharmalabInputError(f"top_n must be a whole number ≥ 0, got {top_n!r}")
    if term not in TERMS:
        raise PharmalabInputError(f"term {term!r}: expected one of {', '.join(TERMS)}")
    order = [2, 3, 1, 4, 5, 8]
    demographics = frame[frame["analysis_id"].isin(order)].copy()
    demographics["_order"] = demographics["analysis_id"].map(order.index)
    parts = [demographics.sort_values(["_order", "covariate_id"]).drop(columns="_order")]
    prevalence = _prevalence(frame)
    for table in (*CONDITION_TABLES, "drug_era"):
        analysis_id = _DOMAINS[table].first_analysis + TERMS.index(term)
        rows = frame[frame["analysis_id"] == analysis_id]
        ranked = prevalence[rows.index].sort_values(ascending=False, kind="stable")
        parts.append(frame.loc[ranked.index[:top_n]])
    return pd.concat(parts).reset_index(drop=True)


# --- the covariates, in the engine -----------------------------------------------------------


def _characterize(
    db: Database,
    ids: list[int],
    windows: Sequence[Window],
    condition_table: str,
    concept_groups: str,
) -> pd.DataFrame:
    """Unsuppressed covariates of cohorts ``ids``: :data:`COLUMNS` plus ``is_binary``."""
    windows = _checked_windows(windows)
    if condition_table not in CONDITION_TABLES:
        raise PharmalabInputError(
            f"condition_table {condition_table!r}: expected one of {', '.join(CONDITION_TABLES)}")
    if concept_groups not in CONCEPT_GROUPS:
        raise PharmalabInputError(
            f"concept_groups {concept_groups!r}: expected one of {', '.join(CONCEPT_GROUPS)}")
    entries = _entries(db, ids)
    sizes = _cohort_sizes(db, entries, ids)
    parts = [
        _binary_demographics(db, entries),
        _continuous_demographics(db, entries),
        _group_covariates(db, entries, _DOMAINS[condition_table], windows, concept_groups),
        _group_covariates(db, entries, _DOMAINS["drug_era"], windows, concept_groups),
        _visit_counts(db, entries, windows, ids),
    ]
    frame = pd.concat([p for p in parts if len(p)], ignore_index=True)
    return _finish(frame, sizes)


def _entries(db: Database, ids: list[int]) -> ir.Table:
    """Distinct cohort entries (FeatureExtraction's unit: subject and index date)."""
    cohort = db.table("cohort", "results")
    rows = cohort.filter(cohort.cohort_definition_id.isin(ids))
    return rows.select(
        cohort_definition_id=rows.cohort_definition_id.cast("int64"),
        subject_id=rows.subject_id.cast("int64"),
        cohort_start_date=rows.cohort_start_date.cast("date"),
    ).distinct()


def _cohort_sizes(db: Database, entries: ir.Table, ids: list[int]) -> dict[int, int]:
    """Entries per cohort; raises for a cohort id with none."""
    counts = entries.group_by("cohort_definition_id").agg(n=entries.count()).to_pandas()
    sizes = {int(k): int(v) for k, v in zip(counts.cohort_definition_id, counts.n, strict=True)}
    missing = [i for i in ids if i not in sizes]
    if missing:
        cohort = db.table("cohort", "results")
        present = sorted(cohort.select("cohort_definition_id").distinct()
                         .to_pandas()["cohort_definition_id"].astype(int))
        shown = ", ".join(map(str, present[:20])) + (", …" if len(present) > 20 else "")
        schema = db.schema("results") or "the default schema"
        raise PharmalabInputError(
            f"cohort {missing[0]} has no rows in the cohort table of {schema}; expected a "
            f"generated cohort (cohort ids present: {shown or 'none'})")
    return sizes


def _binary_demographics(db: Database, entries: ir.Table) -> pd.DataFrame:
    """Gender (1), age group (3), race (4), ethnicity (5) and index year (6), one aggregate."""
    person = db.table("person")
    e = entries.join(person, entries.subject_id == person.person_id)
    age = e.cohort_start_date.year().cast("int64") - e.year_of_birth.cast("int64")

    def rows(analysis_id: int, key, where=None):
        chosen = e if where is None else e.filter(where)
        return chosen.select(cohort_definition_id=chosen.cohort_definition_id,
                             analysis_id=ibis.literal(analysis_id, "int64"),
                             key=key.cast("int64"))

    keyed = ibis.union(
        rows(1, e.gender_concept_id, e.gender_concept_id != 0),
        rows(3, (age / 5).floor()),
        rows(4, e.race_concept_id, e.race_concept_id != 0),
        rows(5, e.ethnicity_concept_id, e.ethnicity_concept_id != 0),
        rows(6, e.cohort_start_date.year()),
    )
    counts = keyed.group_by(["cohort_definition_id", "analysis_id", "key"]).agg(
        count=keyed.count())
    # Only gender, race and ethnicity keys are concepts (an index year is not concept 2010).
    named = _with_concept_names(db, counts, "key", counts.analysis_id.isin([1, 4, 5]))
    frame = named.to_pandas()
    frame["concept_id"] = frame["key"].where(frame["analysis_id"].isin([1, 4, 5]), 0)
    frame["covariate_name"] = [
        _demographic_name(a, k, name)
        for a, k, name in zip(frame.analysis_id, frame.key, frame.concept_name, strict=True)]
    frame["window"] = ""
    frame["is_binary"] = True
    return frame


def _demographic_name(analysis_id: int, key: int, concept_name: str | None) -> str:
    if analysis_id == 3:
        return f"age group: {5 * key} - {5 * key + 4}"
    if analysis_id == 6:
        return f"index year: {key}"
    label = {1: "gender", 4: "race", 5: "ethnicity"}[analysis_id]
    if _missing(concept_name):
        # A vocabulary without the demographic concepts (GiBleed): OMOP's standard names.
        concept_name = STANDARD_DEMOGRAPHIC_CONCEPTS.get(int(key))
    return f"{label} = {_concept_label(key, concept_name)}"


def _missing(name) -> bool:
    return name is None or (isinstance(name, float) and math.isnan(name))


def _concept_label(concept_id: int, concept_name: str | None) -> str:
    # FeatureExtraction writes "Unknown concept"; the id tells such rows apart.
    if _missing(concept_name):
        return f"Unknown concept ({concept_id})"
    return concept_name


def _continuous_demographics(db: Database, entries: ir.Table) -> pd.DataFrame:
    """Age in years (2) and prior observation days (8): count, sum and sum of squares."""
    person = db.table("person")
    op = db.table("observation_period")
    aged = entries.join(person, entries.subject_id == person.person_id)
    ages = aged.select(
        cohort_definition_id=aged.cohort_definition_id,
        analysis_id=ibis.literal(2, "int64"),
        value=aged.cohort_start_date.year().cast("int64") - aged.year_of_birth.cast("int64"))
    observed = entries.join(
        op,
        (entries.subject_id == op.person_id)
        & (op.observation_period_start_date <= entries.cohort_start_date)
        & (op.observation_period_end_date >= entries.cohort_start_date))
    prior = observed.select(
        cohort_definition_id=observed.cohort_definition_id,
        analysis_id=ibis.literal(8, "int64"),
        value=observed.cohort_start_date.delta(
            observed.observation_period_start_date, unit="day").cast("int64"))
    values = ibis.union(ages, prior)
    frame = values.group_by(["cohort_definition_id", "analysis_id"]).agg(
        count=values.value.count(), total=values.value.sum(),
        total_sq=(values.value * values.value).sum()).to_pandas()
    frame["key"] = 1
    frame["concept_id"] = 0
    frame["covariate_name"] = frame["analysis_id"].map(
        {2: "age in years", 8: "observation time (days) prior to index"})
    frame["window"] = ""
    frame["is_binary"] = False
    return frame


def _group_covariates(
    db: Database,
    entries: ir.Table,
    domain: _Domain,
    windows: Sequence[Window],
    concept_groups: str,
) -> pd.DataFrame:
    """Entries with an event of each concept group in each window (binary), one aggregate."""
    events = _events_in_windows(db, entries, domain, windows)
    flags = [f"w{i}" for i in range(len(windows))]
    entry = ["cohort_definition_id", "subject_id", "cohort_start_date"]
    # One row per entry and concept before the roll-up, so a person's repeated eras of a
    # concept are not multiplied by its (possibly hundreds of) ancestors.
    concepts = events.group_by([*entry, "concept_id"]).agg(
        **{f: events[f].max() for f in flags})
    groups = _concept_groups(db, domain.family, concept_groups)
    rolled = concepts.join(groups, concepts.concept_id == groups.descendant_concept_id)
    # Then one row per entry and group (an entry counts once however many concepts of the
    # group it has), then the entries per group: a window's count is the sum of its 0/1 flags.
    per_entry = rolled.group_by([*entry, "ancestor_concept_id"]).agg(
        **{f: rolled[f].max() for f in flags})
    counts = per_entry.group_by(["cohort_definition_id", "ancestor_concept_id"]).agg(
        **{f: per_entry[f].sum() for f in flags})
    named = _with_concept_names(db, counts, "ancestor_concept_id").to_pandas()
    long = named.melt(id_vars=["cohort_definition_id", "ancestor_concept_id", "concept_name"],
                      value_vars=flags, var_name="flag", value_name="count")
    long = long[long["count"] > 0]
    window = {f: w for f, w in zip(flags, windows, strict=True)}
    long["analysis_id"] = [domain.first_analysis + window[f].index for f in long.flag]
    long["window"] = [window[f].label for f in long.flag]
    long["concept_id"] = long["ancestor_concept_id"].astype("int64")
    long["key"] = long["concept_id"]
    long["covariate_name"] = [
        f"{domain.table} group {_window_phrase(window[f])}: {_concept_label(c, name)}"
        for f, c, name in zip(long.flag, long.concept_id, long.concept_name, strict=True)]
    long["is_binary"] = True
    return long


def _window_phrase(window: Window) -> str:
    """FeatureExtraction's wording of a window in covariate names."""
    if window.start_day is None:
        return f"any time prior through {window.end_day} days relative to index"
    return f"during day {window.start_day} through {window.end_day} days relative to index"


def _events_in_windows(
    db: Database, entries: ir.Table, domain: _Domain, windows: Sequence[Window]
) -> ir.Table:
    """Each entry's events that fall in any window, with a 0/1 column ``w<i>`` per window.

    An event counts in a window if it starts on or before the window's end and ends on or
    after its start (FeatureExtraction's overlap rule; "any time prior" has no start).
    """
    table = db.table(domain.table)
    joined = entries.join(table, entries.subject_id == table.person_id)
    start, end = joined[domain.start], joined[domain.end]
    index = joined.cohort_start_date
    flags = {}
    for i, window in enumerate(windows):
        inside = start <= _shifted(index, window.end_day)
        if window.start_day is not None:
            inside = inside & (end >= _shifted(index, window.start_day))
        flags[f"w{i}"] = inside
    in_any = flags["w0"]
    for flag in list(flags.values())[1:]:
        in_any = in_any | flag
    events = joined.filter(joined[domain.concept] != 0, in_any)
    return events.select(
        cohort_definition_id=events.cohort_definition_id,
        subject_id=events.subject_id,
        cohort_start_date=events.cohort_start_date,
        concept_id=events[domain.concept].cast("int64"),
        **{name: ibis.ifelse(flag, 1, 0).cast("int64") for name, flag in flags.items()},
    )


def _shifted(date: ir.DateValue, days: int) -> ir.DateValue:
    """``date`` plus ``days`` days, as a date."""
    if days == 0:
        return date
    return (date + ibis.interval(days=days)).cast("date")


def _concept_groups(db: Database, family: str, mode: str) -> ir.Table:
    """``(descendant_concept_id, ancestor_concept_id)``: the groups each concept rolls up to.

    FeatureExtraction's DomainConceptGroup.sql keeps, for drugs, the standard ingredients and
    the ATC classes of levels 1, 3, 4 and 5 (level 2 is a near copy of level 1's children);
    for conditions, the SNOMED concepts of the Condition domain more than two levels below
    "Clinical finding" (or on its list of broad groups) whose names are not generic
    ("…finding", "Disorder of…", "…by site", …). A group must be in the ``concept`` table.
    """
    ancestry = db.table("concept_ancestor", "vocab")
    pairs = ancestry.select(
        descendant_concept_id=ancestry.descendant_concept_id.cast("int64"),
        ancestor_concept_id=ancestry.ancestor_concept_id.cast("int64"))
    if mode == "all":
        return pairs.distinct()
    concept = db.table("concept", "vocab")
    if family == "drug":
        valid = concept.filter(
            ((concept.vocabulary_id == "ATC") & concept.concept_code.length().isin([1, 3, 4, 5]))
            | ((concept.standard_concept == "S") & (concept.concept_class_id == "Ingredient")
               & (concept.domain_id == "Drug")),
            concept.concept_id != 0)
    else:
        below = ancestry.view()
        below = below.filter(
            below.ancestor_concept_id == _CLINICAL_FINDING,
            (below.min_levels_of_separation > 2)
            | below.descendant_concept_id.isin(_KEPT_CONDITION_GROUPS))
        valid = concept.join(below, concept.concept_id == below.descendant_concept_id)
        valid = valid.filter(valid.domain_id == "Condition",
                             *[~valid.concept_name.like(p) for p in _UNINFORMATIVE_NAMES])
    valid_ids = valid.select(group_id=valid.concept_id.cast("int64")).distinct()
    kept = pairs.join(valid_ids, pairs.ancestor_concept_id == valid_ids.group_id)
    return kept.select("descendant_concept_id", "ancestor_concept_id").distinct()


def _with_concept_names(db: Database, table: ir.Table, key: str, only=None) -> ir.Table:
    """``table`` plus ``concept_name`` (missing where ``key`` is not in ``concept``)."""
    concept = db.table("concept", "vocab")
    names = concept.select(name_id=concept.concept_id.cast("int64"),
                           concept_name=concept.concept_name)
    predicate = table[key] == names.name_id
    if only is not None:
        predicate = predicate & only
    joined = table.left_join(names, predicate)
    return joined.select(*table.columns, "concept_name")


def _visit_counts(
    db: Database, entries: ir.Table, windows: Sequence[Window], ids: list[int]
) -> pd.DataFrame:
    """Visits overlapping each window per entry (continuous, FeatureExtraction 920–922)."""
    windows = [w for w in windows if w.start_day is not None]
    if not windows:
        return pd.DataFrame()
    domain = _DOMAINS["visit_occurrence"]
    events = _events_in_windows(db, entries, domain, windows)
    flags = [f"w{i}" for i in range(len(windows))]
    per_entry = events.group_by(["cohort_definition_id", "subject_id", "cohort_start_date"]).agg(
        **{f: events[f].sum() for f in flags})
    stats = {}
    for f in flags:
        visits = per_entry[f]
        stats[f"count_{f}"] = (visits > 0).cast("int64").sum()
        stats[f"total_{f}"] = visits.sum()
        stats[f"total_sq_{f}"] = (visits * visits).sum()
    sums = per_entry.group_by("cohort_definition_id").agg(**stats).to_pandas()
    sums = sums.set_index("cohort_definition_id").reindex(ids, fill_value=0)
    rows = []
    for cohort_id in ids:
        for f, window in zip(flags, windows, strict=True):
            rows.append({
                "cohort_definition_id": cohort_id,
                "analysis_id": domain.first_analysis + window.index,
                "key": 1, "concept_id": 0, "window": window.label,
                "covariate_name": f"visit_occurrence concept count {_window_phrase(window)}",
                "count": int(sums.at[cohort_id, f"count_{f}"]),
                "total": int(sums.at[cohort_id, f"total_{f}"]),
                "total_sq": int(sums.at[cohort_id, f"total_sq_{f}"]),
                "is_binary": False,
            })
    return pd.DataFrame(rows)


# --- finishing and privacy, in pandas (one row per covariate) --------------------------------


def _finish(frame: pd.DataFrame, sizes: dict[int, int]) -> pd.DataFrame:
    """Ids, names, denominators, proportions and means of the aggregated rows."""
    out = frame.copy()
    for column in ("cohort_definition_id", "analysis_id", "concept_id", "key", "count"):
        out[column] = out[column].astype("int64")
    out["covariate_id"] = out["key"] * 1000 + out["analysis_id"]
    out["analysis_name"] = out["analysis_id"].map(_analysis_name)
    out["n"] = out["cohort_definition_id"].map(sizes).astype("int64")
    binary = out["is_binary"].astype(bool)
    out["is_binary"] = binary
    out["proportion"] = (out["count"] / out["n"]).where(binary)
    means, sds = [], []
    for is_binary, n, total, total_sq in zip(binary, out["n"], out.get("total"),
                                             out.get("total_sq"), strict=True):
        mean, sd = (math.nan, math.nan) if is_binary else _mean_sd(n, total, total_sq)
        means.append(mean)
        sds.append(sd)
    out["mean"] = np.array(means, dtype="float64")
    out["sd"] = np.array(sds, dtype="float64")
    out["window"] = out["window"].astype(str)
    out["covariate_name"] = out["covariate_name"].astype(str)
    out = out.sort_values(["cohort_definition_id", "analysis_id", "covariate_id"])
    return out[COLUMNS + ["is_binary"]].reset_index(drop=True)


def _mean_sd(n: int, total, total_sq) -> tuple[float, float]:
    """Mean and sample SD of ``n`` integers from their sum and sum of squares.

    Python integers keep ``n·Σx² − (Σx)²`` exact (it can exceed float precision for days), so
    every engine gives bit-identical results from the same sums.
    """
    n, total, total_sq = int(n), int(total), int(total_sq)
    mean = total / n
    if n < 2:
        return mean, math.nan
    return mean, math.sqrt((n * total_sq - total * total) / (n * (n - 1)))


def _analysis_name(analysis_id: int) -> str:
    if analysis_id in _DEMOGRAPHICS:
        return _DEMOGRAPHICS[analysis_id]
    for domain in _DOMAINS.values():
        offset = analysis_id - domain.first_analysis
        if 0 <= offset < len(TERMS):
            return domain.analysis_stem + _TERM_NAMES[offset]
    raise AssertionError(f"no name for analysis {analysis_id}")


def _suppress_characteristics(frame: pd.DataFrame, min_cell_count: int) -> pd.DataFrame:
    out = suppress(frame, ["count", "n"], min_cell_count)
    hidden = out["count_suppressed"] | out["n_suppressed"]
    out.loc[hidden, ["proportion", "mean", "sd"]] = np.nan
    return out


def _side(frame: pd.DataFrame, cohort_id: int) -> pd.DataFrame:
    return frame[frame["cohort_definition_id"] == cohort_id].set_index("covariate_id")


def _absent_as_zero(side: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """One side's statistics for every covariate of ``table``; a covariate this cohort lacks
    has count 0 (binary: proportion 0; continuous: mean and SD 0, as FeatureExtraction)."""
    stats = side[["count", "proportion", "mean", "sd", "n"]].reindex(table.index)
    stats["count"] = stats["count"].fillna(0).astype("int64")
    stats["n"] = stats["n"].fillna(side["n"].iloc[0] if len(side) else 0).astype("int64")
    binary = table["is_binary"].astype(bool)
    stats.loc[binary, "proportion"] = stats.loc[binary, "proportion"].fillna(0.0)
    stats.loc[~binary, ["mean", "sd"]] = stats.loc[~binary, ["mean", "sd"]].fillna(0.0)
    return stats


def _standardized_difference(table: pd.DataFrame) -> pd.Series:
    """Austin (2009) SMD, target minus comparator, from unsuppressed aggregates."""
    binary = table["is_binary"].astype(bool)
    p1, p2 = table["target_proportion"], table["comparator_proportion"]
    m1 = p1.where(binary, table["target_mean"])
    m2 = p2.where(binary, table["comparator_mean"])
    var1 = (p1 * (1 - p1)).where(binary, table["target_sd"] ** 2)
    var2 = (p2 * (1 - p2)).where(binary, table["comparator_sd"] ** 2)
    pooled = np.sqrt((var1 + var2) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        smd = ((m1 - m2) / pooled).astype("float64")
    # No spread in either cohort (0% against 100%): undefined, blank with a note (smd_note),
    # never ±inf; and never -0 (a sign with nothing behind it).
    smd = smd.where(np.isfinite(smd))
    return smd.mask(smd == 0, 0.0)


def _smd_note(table: pd.DataFrame) -> pd.Series:
    """Why ``smd`` is blank where it is, for the reader of Table 1."""
    note = pd.Series("", index=table.index)
    undefined = table["smd"].isna() & table["target_proportion"].notna() \
        & table["comparator_proportion"].notna()
    note[undefined] = "no spread in either cohort (e.g. 0% against 100%): SMD undefined"
    return note


def _suppress_table_one(table: pd.DataFrame, min_cell_count: int) -> pd.DataFrame:
    columns = ["covariate_id", "covariate_name", "analysis_id", "analysis_name", "window"]
    for side in ("target", "comparator"):
        columns += [f"{side}_count", f"{side}_proportion", f"{side}_mean", f"{side}_sd"]
    columns += ["smd", "target_n", "comparator_n", "smd_note"]
    out = suppress(table[columns],
                   ["target_count", "comparator_count", "target_n", "comparator_n"],
                   min_cell_count)
    hidden_any = pd.Series(False, index=out.index)
    for side in ("target", "comparator"):
        hidden = out[f"{side}_count_suppressed"] | out[f"{side}_n_suppressed"]
        out.loc[hidden, [f"{side}_proportion", f"{side}_mean", f"{side}_sd"]] = np.nan
        hidden_any |= hidden
    out.loc[hidden_any, "smd"] = np.nan
    out.loc[hidden_any, "smd_note"] = ""
    return out


def _prevalence(frame: pd.DataFrame) -> pd.Series:
    """Each row's largest proportion over the cohorts in ``frame`` (missing counts as 0)."""
    columns = [c for c in ("proportion", "target_proportion", "comparator_proportion")
               if c in frame.columns]
    return frame[columns].astype("float64").fillna(0.0).max(axis=1)


# --- input checks ------------------------------------------------------------------------------


def _cohort_ids(cohort_id: int | Iterable[int]) -> list[int]:
    """The cohort ids as a list of distinct ints (order kept)."""
    values = [cohort_id] if isinstance(cohort_id, numbers.Integral) else cohort_id
    try:
        values = list(values)
    except TypeError:
        raise PharmalabInputError(
            f"cohort id {cohort_id!r}: expected an integer cohort_definition_id") from None
    ids: list[int] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise PharmalabInputError(
                f"cohort id {value!r}: expected an integer cohort_definition_id")
        if int(value) not in ids:
            ids.append(int(value))
    if not ids:
        raise PharmalabInputError("no cohort id given")
    return ids


def _checked_windows(windows: Sequence[Window]) -> list[Window]:
    windows = list(windows)
    if not windows:
        raise PharmalabInputError("no window given; expected e.g. DEFAULT_WINDOWS")
    terms = [w.term if isinstance(w, Window) else None for w in windows]
    if None in terms:
        raise PharmalabInputError(
            f"windows must be Window objects, got {windows[terms.index(None)]!r}")
    repeated = {t for t in terms if terms.count(t) > 1}
    if repeated:
        raise PharmalabInputError(
            f"window term {sorted(repeated)[0]!r} is given twice; each term fixes the "
            "analysis ids, so each may appear once")
    return windows
