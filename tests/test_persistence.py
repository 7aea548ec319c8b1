"""Treatment episodes (AdhereR compute.treatment.episodes semantics) and persistence."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter

from pharmalab.engine import database
from pharmalab.errors import PharmalabInputError
from pharmalab.journey.persistence import (
    persistence,
    persistence_figure,
    treatment_episodes,
)

A, B = 10, 20
CELECOXIB = 1118084


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def as_date(value) -> dt.date:
    """A date from the engine's result (pandas gives Timestamps)."""
    return pd.Timestamp(value).date()


def fills_db(fills, periods=None):
    """An in-memory CDM with the fills ``(person, drug, start, days_supply)``; each person is
    observed 2019-01-01 … 2020-12-31 unless ``periods`` says otherwise."""
    db = database("duckdb://")
    exposure = pd.DataFrame([{
        "drug_exposure_id": i, "person_id": p, "drug_concept_id": c,
        "drug_exposure_start_date": day(s),
        "drug_exposure_end_date": day(s) + dt.timedelta(days=d - 1), "days_supply": d,
    } for i, (p, c, s, d) in enumerate(fills)])
    db.con.create_table("drug_exposure", exposure)
    db.con.create_table("concept", pd.DataFrame(
        {"concept_id": [A, B], "concept_class_id": ["Ingredient", "Ingredient"]}))
    db.con.create_table("concept_ancestor", pd.DataFrame({
        "ancestor_concept_id": [A, B], "descendant_concept_id": [A, B],
        "min_levels_of_separation": [0, 0], "max_levels_of_separation": [0, 0]}))
    persons = sorted({f[0] for f in fills})
    periods = periods or {p: ("2019-01-01", "2020-12-31") for p in persons}
    db.con.create_table("observation_period", pd.DataFrame([{
        "observation_period_id": p, "person_id": p,
        "observation_period_start_date": day(a), "observation_period_end_date": day(b),
        "period_type_concept_id": 0} for p, (a, b) in periods.items()]))
    return db


def episodes_of(db, **options) -> list[tuple]:
    frame = treatment_episodes(db, [A, B], **options).to_pandas().sort_values(
        ["person_id", "episode_id"])
    return [(r.person_id, r.episode_id, r.medication, str(as_date(r.start)), str(as_date(r.end)),
             r.duration_days, r.end_gap_days, bool(r.discontinued))
            for r in frame.itertuples()]


def test_carry_over_within_one_medication():
    # 30 days on Jan 1 and again on Jan 20: 11 days left over move to the second fill, whose
    # supply lasts to Feb 29 (exclusive end Mar 1); the Mar 10 fill is 9 days later.
    db = fills_db([(1, A, "2020-01-01", 30), (1, A, "2020-01-20", 30),
                   (1, A, "2020-03-10", 30)])
    assert episodes_of(db) == [
        (1, 1, A, "2020-01-01", "2020-04-09", 99, 267, True)]  # Mar 10 + 30 = Apr 9


def test_no_carry_over_across_medications_and_a_change_starts_an_episode():
    # A's supply would last to Jan 31, but B starts on Jan 20: A's episode ends there and
    # nothing is carried into B (B ends Jan 20 + 30 = Feb 19).
    db = fills_db([(1, A, "2020-01-01", 30), (1, B, "2020-01-20", 30)])
    assert episodes_of(db) == [
        (1, 1, A, "2020-01-01", "2020-01-20", 19, 0, True),
        (1, 2, B, "2020-01-20", "2020-02-19", 30, 317, True)]
    # a switch back to A starts a third episode; B's supply is not carried into it
    db = fills_db([(1, A, "2020-01-01", 30), (1, B, "2020-01-20", 30),
                   (1, A, "2020-02-01", 30)])
    assert episodes_of(db) == [
        (1, 1, A, "2020-01-01", "2020-01-20", 19, 0, True),
        (1, 2, B, "2020-01-20", "2020-02-01", 12, 0, True),
        (1, 3, A, "2020-02-01", "2020-03-02", 30, 305, True)]


def test_a_gap_longer_than_permissible_ends_the_episode():
    # supply ends Jan 31; the refill 60 days later keeps the episode, 61 days later does not
    db = fills_db([(1, A, "2020-01-01", 30), (1, A, "2020-03-31", 30),
                   (2, A, "2020-01-01", 30), (2, A, "2020-04-01", 30)])
    assert episodes_of(db, permissible_gap=60) == [
        (1, 1, A, "2020-01-01", "2020-04-30", 120, 246, True),
        (2, 1, A, "2020-01-01", "2020-01-31", 30, 61, True),
        (2, 2, A, "2020-04-01", "2020-05-01", 30, 245, True)]
    # with a larger permissible gap person 2 has one episode
    assert episodes_of(db, permissible_gap=61)[1] == (
        2, 1, A, "2020-01-01", "2020-05-01", 121, 245, True)


def test_follow_up_end_cuts_and_censors_the_last_episode():
    # observation ends 2020-03-15: the episode's supply (to Apr 9) is cut at Mar 16 and it is
    # censored; a fill after the observation end is left out.
    db = fills_db([(1, A, "2020-01-01", 30), (1, A, "2020-01-20", 30),
                   (1, A, "2020-03-10", 30), (1, A, "2020-04-01", 30)],
                  periods={1: ("2019-01-01", "2020-03-15")})
    assert episodes_of(db) == [(1, 1, A, "2020-01-01", "2020-03-16", 75, 0, False)]
    # follow_up = 50 days from the first fill: fills from Feb 20 on are left out
    assert episodes_of(db, follow_up=50) == [
        (1, 1, A, "2020-01-01", "2020-02-20", 50, 0, False)]
    # a last gap within the permissible gap at follow-up end is censored too
    # — and, as AdhereR reports it, lasts to the follow-up end (supply end kept beside it)
    db = fills_db([(1, A, "2020-01-01", 30)], periods={1: ("2019-01-01", "2020-02-29")})
    assert episodes_of(db) == [(1, 1, A, "2020-01-01", "2020-03-01", 60, 30, False)]


def test_an_episode_running_at_follow_up_end_lasts_to_it_as_in_adherer():
    """Issue 15 item 14: one fill of 30 days on 2020-01-01, permissible gap 90, follow-up 100
    days → AdhereR's episode 2020-01-01 to 2020-04-10, duration 100, end gap 70, censored."""
    db = fills_db([(1, A, "2020-01-01", 30)])
    assert episodes_of(db, permissible_gap=90, follow_up=100) == [
        (1, 1, A, "2020-01-01", "2020-04-10", 100, 70, False)]
    row = treatment_episodes(db, [A], permissible_gap=90, follow_up=100).to_pandas().iloc[0]
    assert str(as_date(row.supply_end)) == "2020-01-31"
    # a gap one day longer than permissible: discontinued at the supply end
    assert episodes_of(db, permissible_gap=69, follow_up=100) == [
        (1, 1, A, "2020-01-01", "2020-01-31", 30, 70, True)]


def test_bad_arguments_are_clear_errors():
    db = fills_db([(1, A, "2020-01-01", 30)])
    with pytest.raises(PharmalabInputError, match="permissible_gap"):
        treatment_episodes(db, [A], permissible_gap=-1)
    with pytest.raises(PharmalabInputError, match="follow_up"):
        treatment_episodes(db, [A], follow_up=0)
    with pytest.raises(PharmalabInputError, match="concept"):
        treatment_episodes(db, ["celecoxib"])


def small_cohort():
    """Six persons on A with first-episode durations 400, 200, 100, 100 (censored: observation
    ends), 30 and 182, and one person with only 100 days of follow-up."""
    fills = [
        (1, A, "2019-01-01", 200), (1, A, "2019-07-20", 200),       # 400 days, then stops
        (2, A, "2019-01-01", 100), (2, A, "2019-04-11", 100),       # 200
        (3, A, "2019-01-01", 100), (3, B, "2019-04-11", 100),       # 100, switch to B
        (4, A, "2019-01-01", 100),                                  # 100, censored
        (5, A, "2019-01-01", 30),                                   # 30
        (6, A, "2019-01-01", 182),                                  # 182
        (7, A, "2019-01-01", 30),                                   # 30, 100 days follow-up
    ]
    periods = {p: ("2018-01-01", "2020-12-31") for p in (1, 2, 3, 5, 6)}
    periods[4] = ("2018-01-01", "2019-04-10")
    periods[7] = ("2018-01-01", "2019-04-10")
    return fills_db(fills, periods)


def test_persistence_at_6_and_12_months_on_a_small_set():
    result = persistence(small_cohort(), [A, B], min_cell_count=1)
    table = result.unsuppressed_table
    # 6 months: persons 1, 2, 3, 5, 6 have ≥ 182 days of follow-up (4 and 7 have 100);
    # first episodes of 400, 200 and 182 days last that long.
    assert table.n_persons.tolist() == [5, 5]
    assert table.n_persistent.tolist() == [3, 1]
    assert table.proportion.tolist() == [0.6, 0.2]
    assert result.table.n_persons.tolist() == [5, 5]
    # suppressed with the default min cell count 5: 3 and 1 are blanked, with the proportion
    shared = persistence(small_cohort(), [A, B]).table
    assert shared.n_persistent.isna().tolist() == [True, True]
    assert shared.n_persons.tolist() == [5, 5]
    assert shared.proportion.isna().all()


def test_time_to_discontinuation_equals_lifelines():
    result = persistence(small_cohort(), [A, B], min_cell_count=1)
    durations = [400, 200, 100, 100, 30, 182, 30]
    # person 4 runs to observation end (censored); person 7's supply ends Jan 31 and
    # follow-up on Apr 11: a gap of 70 days > 60, discontinued.
    discontinued = [1, 1, 1, 0, 1, 1, 1]
    kmf = KaplanMeierFitter().fit(durations, discontinued)
    km = result.unsuppressed_km.set_index("time")
    for t in km.index:
        assert km.loc[t, "survival"] == pytest.approx(
            float(kmf.survival_function_at_times(t).iloc[0]), abs=1e-12)
    lower = kmf.confidence_interval_.iloc[:, 0]
    for t in durations:
        assert km.loc[t, "lower_95"] == pytest.approx(float(lower.loc[t]), abs=1e-9)
    assert km.n_censored.sum() == 1 and km.n_events.sum() == 6
    assert result.median_days == kmf.median_survival_time_ == 182
    figure = persistence_figure(result)
    assert figure.layout.xaxis.title.text == "days since the first fill"
    assert len(figure.data) == 3


def loop_episodes(fills: pd.DataFrame, ends: dict, gap: int) -> list[tuple]:
    """A direct loop over each person's sorted fills (AdhereR's rules, one fill at a time)."""
    out = []
    for person, rows in fills.groupby("person_id"):
        rows = rows.sort_values(["drug_exposure_start_date", "ingredient_concept_id",
                                 "days_supply_used"])
        first = as_date(rows.drug_exposure_start_date.iloc[0])
        fu_end = as_date(ends[person])
        episodes, medication, supply_end = [], None, None
        for r in rows.itertuples():
            start = as_date(r.drug_exposure_start_date)
            if start >= fu_end:
                continue
            if medication == r.ingredient_concept_id and (start - supply_end).days <= gap:
                supply_end = max(supply_end, start) + dt.timedelta(days=r.days_supply_used)
                episodes[-1][2] = supply_end
            else:
                medication = r.ingredient_concept_id
                supply_end = start + dt.timedelta(days=r.days_supply_used)
                episodes.append([medication, start, supply_end])
        for i, (medication, start, supply_end) in enumerate(episodes):
            following = episodes[i + 1][1] if i + 1 < len(episodes) else None
            end = min(supply_end, following or fu_end, fu_end)
            end_gap = ((following or fu_end) - end).days
            if following is None and end_gap <= gap:
                end = fu_end  # AdhereR: still running at the end of follow-up
            out.append((person, i + 1, medication, start, end, (end - start).days, end_gap))
        assert first == episodes[0][1]
    return out


def test_gibleed_celecoxib_episodes_equal_a_loop(gibleed_csv_db):
    db = database(f"duckdb://{gibleed_csv_db[0]}")
    try:
        from pharmalab.journey.drugs import drug_exposures

        fills = drug_exposures(db, [CELECOXIB]).to_pandas()
        op = db.table("observation_period").to_pandas()
        ends = {}
        for person, start in fills.groupby("person_id").drug_exposure_start_date.min().items():
            held = op[(op.person_id == person) & (op.observation_period_start_date <= start)
                      & (op.observation_period_end_date >= start)]
            if len(held):  # persons whose first fill is outside observation are left out
                ends[person] = held.observation_period_end_date.iloc[0] + dt.timedelta(days=1)
        fills = fills[fills.person_id.isin(ends)]
        expected = loop_episodes(fills, ends, 60)
        got = treatment_episodes(db, [CELECOXIB]).to_pandas().sort_values(
            ["person_id", "episode_id"])
        rows = [(r.person_id, r.episode_id, r.medication, as_date(r.start), as_date(r.end),
                 r.duration_days, r.end_gap_days) for r in got.itertuples()]
        # 1,844 users, 1,800 with the fill inside an observation period (CohortGenerator
        # cohort 1 counts the same 1,800)
        assert len(rows) == len(expected) == len(ends) == 1800
        assert rows == expected
        supplied = (pd.to_datetime(got.supply_end) - pd.to_datetime(got.start)).dt.days
        assert set(supplied) == {1}  # GiBleed's celecoxib fills have no days_supply
        assert fills.days_supply_imputed.all()
    finally:
        db.con.disconnect()


def test_episodes_with_mixed_medications_equal_the_loop():
    rng = np.random.default_rng(7)
    fills = []
    for person in range(1, 41):
        date = day("2019-01-01") + dt.timedelta(days=int(rng.integers(0, 30)))
        for _ in range(int(rng.integers(1, 8))):
            fills.append((person, int(rng.choice([A, B], p=[0.7, 0.3])), date.isoformat(),
                          int(rng.choice([7, 30, 90]))))
            date += dt.timedelta(days=int(rng.integers(0, 120)))
    db = fills_db(fills)
    from pharmalab.journey.drugs import drug_exposures

    frame = drug_exposures(db, [A, B]).to_pandas()
    ends = {p: day("2021-01-01") for p in frame.person_id.unique()}
    for gap in (0, 30, 60):
        expected = loop_episodes(frame, ends, gap)
        got = treatment_episodes(db, [A, B], permissible_gap=gap).to_pandas().sort_values(
            ["person_id", "episode_id"])
        rows = [(r.person_id, r.episode_id, r.medication, as_date(r.start), as_date(r.end),
                 r.duration_days, r.end_gap_days) for r in got.itertuples()]
        assert rows == expected


def test_every_engine_gives_duckdbs_episodes(other_engine, gibleed_csv_db):
    engine_db = other_engine.db
    duck = database(f"duckdb://{gibleed_csv_db[0]}")
    try:
        concepts = [CELECOXIB, 1124300]  # celecoxib and diclofenac
        columns = ["person_id", "episode_id", "medication", "start", "end", "duration_days",
                   "end_gap_days", "discontinued"]
        expected = treatment_episodes(duck, concepts, permissible_gap=30).to_pandas()
        got = treatment_episodes(engine_db, concepts, permissible_gap=30).to_pandas()
        order = ["person_id", "episode_id"]
        expected = expected[columns].sort_values(order, ignore_index=True)
        got = got[columns].sort_values(order, ignore_index=True)
        assert len(got) == len(expected) > 1000
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    finally:
        duck.con.disconnect()


def test_a_first_episode_that_never_ended_is_persistent():
    # with a gap allowance longer than any follow-up, only person 3 (who switched to B) is
    # known to have stopped; the others are persistent through their follow-up
    result = persistence(small_cohort(), [A, B], permissible_gap=100_000, min_cell_count=1)
    table = result.unsuppressed_table
    assert table.n_persons.tolist() == [5, 5]
    assert table.n_persistent.tolist() == [4, 4]


def test_episodes_csv_is_pseudonymized_with_dates_shifted_per_person(tmp_path):
    """Issue 15 item 14: episodes as AdhereR users get them, de-identified."""
    from pharmalab.extract import date_offset, pseudonym
    from pharmalab.journey.outputs import write_episodes

    key = b"pharmalab persistence test key 0123"
    db = fills_db([(1, A, "2020-01-01", 30), (7, A, "2020-01-01", 30), (7, B, "2020-03-01", 30)])
    path, n = write_episodes(db, tmp_path, [A, B], permissible_gap=90, follow_up=100, key=key,
                             date_shift_days=30)
    frame = pd.read_csv(path)
    assert n == 3 and "person_id" not in frame.columns
    assert frame.columns.tolist() == ["person_pseudonym", "episode_id", "medication", "start",
                                      "end", "duration_days", "end_gap_days", "discontinued",
                                      "follow_up_end", "supply_end"]
    one = frame[frame.person_pseudonym == pseudonym(key, 1)].iloc[0]
    shift = dt.timedelta(days=date_offset(key, 1, 30))
    assert one.start == str(day("2020-01-01") + shift)
    assert one.end == str(day("2020-04-10") + shift)
    assert one.supply_end == str(day("2020-01-31") + shift)
    assert (one.duration_days, one.end_gap_days, bool(one.discontinued)) == (100, 70, False)
    assert sorted(frame[frame.person_pseudonym == pseudonym(key, 7)].episode_id) == [1, 2]


def test_append_gap_adds_the_permissible_gap_to_a_discontinued_episode():
    """Issue 15 item 9: AdhereR's maximum.permissible.gap.append.to.episode as an option."""
    db = fills_db([(1, A, "2020-01-01", 30), (1, A, "2020-06-01", 30)])
    assert episodes_of(db, permissible_gap=60) == [
        (1, 1, A, "2020-01-01", "2020-01-31", 30, 122, True),
        (1, 2, A, "2020-06-01", "2020-07-01", 30, 184, True)]
    # appended: Jan 31 + 60 days = Mar 31; the last episode (gap 184 > 60) gets it too
    assert episodes_of(db, permissible_gap=60, append_gap=True) == [
        (1, 1, A, "2020-01-01", "2020-03-31", 90, 122, True),
        (1, 2, A, "2020-06-01", "2020-08-30", 90, 184, True)]
