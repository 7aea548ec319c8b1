"""Treatment pathways (TreatmentPatterns semantics)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from pharmalab.engine import database
from pharmalab.errors import PharmalabInputError
from pharmalab.journey.pathways import (
    PathwaySettings,
    sankey_figure,
    sunburst_figure,
    treatment_pathways,
)

TARGET, A, B = 1, 2, 3
LABELS = {A: "A", B: "B"}
ORIGIN = dt.date(2020, 1, 1)


def on(days: int) -> dt.date:
    return ORIGIN + dt.timedelta(days=days)


def cohort_db(people: dict[int, list[tuple[int, int, int]]]):
    """Every person is in the target cohort for days 0–400; ``people`` gives their event
    eras as (event cohort id, first day, last day)."""
    rows = []
    for person, eras in people.items():
        rows.append((TARGET, person, on(0), on(400)))
        rows += [(cohort, person, on(s), on(e)) for cohort, s, e in eras]
    db = database("duckdb://")
    db.con.create_table("cohort", pd.DataFrame(rows, columns=[
        "cohort_definition_id", "subject_id", "cohort_start_date", "cohort_end_date"]))
    return db


def counts(db, **settings) -> dict[str, int]:
    result = treatment_pathways(db, TARGET, LABELS, PathwaySettings(**settings),
                                min_cell_count=1)
    table = result.unsuppressed_table
    assert table.n_persons.sum() == result.n_treated
    return dict(zip(table.pathway, table.n_persons.astype(int), strict=True))


# A on days 10–100, B on 70–160: 31 days of overlap.
OVERLAP = {1: [(A, 10, 100), (B, 70, 160)], 2: [(A, 10, 100), (B, 70, 160)],
           3: [(A, 10, 50)]}


def test_combination_window_makes_a_combination_or_a_switch():
    db = cohort_db(OVERLAP)
    assert counts(db, combination_window=30) == {"A-A+B-B": 2, "A": 1}
    assert counts(db, combination_window=31) == {"A-A+B-B": 2, "A": 1}
    # 32 days needed: a switch, A ends where B starts
    assert counts(db, combination_window=32) == {"A-B": 2, "A": 1}


def test_short_remainders_of_a_combination_are_dropped():
    # A 10–100 and B 20–110: 10 days of A before, 10 of B after the 81-day combination
    db = cohort_db({1: [(A, 10, 100), (B, 20, 110)]})
    assert counts(db) == {"A+B": 1}
    assert counts(db, min_post_combination_duration=10) == {"A-A+B-B": 1}


def test_era_collapse_merges_same_event_eras():
    # A 10–40 and A 71–100 (30 days without A between), then B from 200
    db = cohort_db({1: [(A, 10, 40), (A, 71, 100), (B, 200, 250)]})
    assert counts(db, era_collapse_size=30, filter="all") == {"A-B": 1}
    assert counts(db, era_collapse_size=29, filter="all") == {"A-A-B": 1}
    assert counts(db, era_collapse_size=29, filter="changes") == {"A-B": 1}
    assert counts(db, era_collapse_size=29, filter="first") == {"A-B": 1}


def test_filters_first_and_changes():
    # A, then B, then A again (gaps of 100 days: no collapse)
    db = cohort_db({1: [(A, 0, 10), (B, 110, 120), (A, 220, 230)],
                    2: [(A, 0, 10), (A, 110, 120), (B, 220, 230)]})
    assert counts(db, filter="all") == {"A-B-A": 1, "A-A-B": 1}
    assert counts(db, filter="changes") == {"A-B-A": 1, "A-B": 1}
    assert counts(db, filter="first") == {"A-B": 2}


def test_minimum_era_duration_and_maximum_path_length():
    db = cohort_db({1: [(A, 0, 4), (B, 100, 200)], 2: [(A, 10, 100), (B, 70, 160)]})
    # A on days 0–4 lasts 5 days
    assert counts(db, min_era_duration=5) == {"A-B": 1, "A-A+B-B": 1}
    assert counts(db, min_era_duration=6) == {"B": 1, "A-A+B-B": 1}
    assert counts(db, max_path_length=2) == {"A-B": 1, "A-A+B": 1}
    assert counts(db, max_path_length=1) == {"A": 2}


def test_only_events_starting_in_the_target_window_count():
    db = cohort_db({1: [(A, -30, 20), (B, 390, 500)], 2: [(B, 401, 420)]})
    result = treatment_pathways(db, TARGET, LABELS, PathwaySettings(min_era_duration=0),
                                min_cell_count=1)
    # person 1: A started before the index, B inside (cut at day 400); person 2: none
    assert dict(zip(result.unsuppressed_table.pathway,
                    result.unsuppressed_table.n_persons, strict=True)) == {"B": 1}
    assert (result.n_target, result.n_treated) == (2, 1)


def test_suppression_and_figures():
    db = cohort_db({p: [(A, 0, 10)] for p in range(1, 7)} | {7: [(B, 0, 10)]})
    result = treatment_pathways(db, TARGET, LABELS)
    table = result.table
    assert table.pathway.tolist() == ["A", "B"]
    assert table.n_persons.tolist()[0] == 6 and pd.isna(table.n_persons.iloc[1])
    assert table.n_persons_suppressed.tolist() == [False, True]
    sunburst = sunburst_figure(result)
    assert list(sunburst.data[0].ids) == ["A"] and list(sunburst.data[0].values) == [6]
    db = cohort_db({p: [(A, 10, 100), (B, 70, 160)] for p in range(1, 6)})
    sankey = sankey_figure(treatment_pathways(db, TARGET, LABELS))
    assert list(sankey.data[0].node.label) == ["1. A", "2. A+B", "3. B"]
    assert list(sankey.data[0].link.value) == [5, 5]


def test_bad_arguments_are_clear_errors():
    db = cohort_db({1: [(A, 0, 10)]})
    with pytest.raises(PharmalabInputError, match="label"):
        treatment_pathways(db, TARGET, {A: "A-1"})
    with pytest.raises(PharmalabInputError, match="filter"):
        PathwaySettings(filter="last")
    with pytest.raises(PharmalabInputError, match="combination_window"):
        PathwaySettings(combination_window=-1)


def test_gibleed_pathways_of_gi_bleed_patients(gibleed_demo_cohorts):
    """GI-bleed patients (cohort 5), followed over the observation period holding the bleed
    (cohort 5 itself lasts one day, after the NSAID exposures), with the diclofenac (6) and
    celecoxib (7) new-user cohorts as events. The rows go to a schema of this test only."""
    import dataclasses

    source = gibleed_demo_cohorts
    cohort = source.table("cohort", "results").to_pandas()
    op = source.table("observation_period").to_pandas()
    bleeds = cohort[cohort.cohort_definition_id == 5].merge(
        op, left_on="subject_id", right_on="person_id")
    bleeds = bleeds[(bleeds.cohort_start_date >= bleeds.observation_period_start_date)
                    & (bleeds.cohort_start_date <= bleeds.observation_period_end_date)]
    target = bleeds.assign(cohort_definition_id=100)[["cohort_definition_id", "subject_id"]]
    target["cohort_start_date"] = bleeds.observation_period_start_date
    target["cohort_end_date"] = bleeds.observation_period_end_date
    rows = pd.concat([target, cohort[cohort.cohort_definition_id.isin([6, 7])]])
    db = dataclasses.replace(source, results_schema="pathways_test")
    db.ensure_schema("results")
    db.con.create_table("cohort", rows, database="pathways_test", overwrite=True)

    result = treatment_pathways(db, 100, {6: "diclofenac", 7: "celecoxib"},
                                PathwaySettings(filter="all"), min_cell_count=1)
    table = result.unsuppressed_table
    index = target.groupby("subject_id").agg(start=("cohort_start_date", "min"),
                                             end=("cohort_end_date", "max"))
    events = rows[rows.cohort_definition_id.isin([6, 7])].merge(
        index, left_on="subject_id", right_index=True)
    inside = events[(events.cohort_start_date >= events.start)
                    & (events.cohort_start_date <= events.end)]
    assert result.n_target == target.subject_id.nunique() > 400
    assert result.n_treated == inside.subject_id.nunique() == table.n_persons.sum() > 100
    assert set("-".join(table.pathway).replace("+", "-").split("-")) == {
        "diclofenac", "celecoxib"}
    # the suppressed table blanks only counts below 5 and keeps every pathway
    shared = treatment_pathways(db, 100, {6: "diclofenac", 7: "celecoxib"},
                                PathwaySettings(filter="all")).table
    assert shared.pathway.tolist() == table.pathway.tolist()
    assert shared.n_persons_suppressed.tolist() == (table.n_persons < 5).tolist()
