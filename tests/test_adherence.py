"""Adherence (PQA PDC, AdhereR CMA1) and the shared drug-exposure selection.

PDC is checked three ways: the four published-rule cases of
``../shared/data/cases/adherence_pdc_pqa.json``, hand-made edge cases, and a differential test
against a deliberately simple day-by-day Python implementation of the PQA rules on every
patient of Eunomia GiBleed. Spark must give DuckDB's per-patient result.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import defaultdict

import pandas as pd
import pytest

from conftest import DATA, need
from pharmalab.engine import database
from pharmalab.errors import PharmalabInputError
from pharmalab.journey.adherence import mpr, pdc
from pharmalab.journey.drugs import drug_exposures

CASES = DATA / "cases" / "adherence_pdc_pqa.json"

# Real RxNorm ingredient ids for the drugs named in the case file.
INGREDIENTS = {"metformin": 1503297, "glipizide": 1560171, "atorvastatin": 1545958}
# A clinical drug below each ingredient, so selection through concept_ancestor is exercised.
CLINICAL = {1503297: 40163924, 1560171: 40164020, 1545958: 40165254}

CELECOXIB, DICLOFENAC, IBUPROFEN, NAPROXEN = 1118084, 1124300, 1177480, 1115008
NSAIDS = [CELECOXIB, DICLOFENAC, IBUPROFEN, NAPROXEN]


# --- a small CDM in memory ---------------------------------------------------------------


def _vocabulary() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, ancestors = [], []
    for name, ingredient in INGREDIENTS.items():
        clinical = CLINICAL[ingredient]
        rows.append((ingredient, name, "Ingredient"))
        rows.append((clinical, f"{name} 500 MG Oral Tablet", "Clinical Drug"))
        ancestors += [(ingredient, ingredient), (clinical, clinical), (ingredient, clinical)]
    concept = pd.DataFrame(rows, columns=["concept_id", "concept_name", "concept_class_id"])
    concept["domain_id"] = "Drug"
    concept["vocabulary_id"] = "RxNorm"
    concept["standard_concept"] = "S"
    ancestor = pd.DataFrame(ancestors, columns=["ancestor_concept_id", "descendant_concept_id"])
    ancestor["min_levels_of_separation"] = (
        ancestor.ancestor_concept_id != ancestor.descendant_concept_id
    ).astype("int64")
    ancestor["max_levels_of_separation"] = ancestor["min_levels_of_separation"]
    return concept, ancestor


def small_cdm(fills: list[dict], persons: list[tuple[int, int, int]] | None = None):
    """A fresh in-memory DuckDB CDM holding ``fills``: dicts with person_id, drug (name),
    date (ISO), days_supply (None allowed) and optionally end (ISO)."""
    db = database("duckdb://")
    concept, ancestor = _vocabulary()
    rows = []
    for number, fill in enumerate(fills, start=1):
        start = dt.date.fromisoformat(fill["date"])
        supply = fill.get("days_supply")
        end = fill.get("end")
        if end is None and supply:
            end = (start + dt.timedelta(days=supply - 1)).isoformat()
        rows.append(
            {
                "drug_exposure_id": number,
                "person_id": fill.get("person_id", 1),
                "drug_concept_id": CLINICAL[INGREDIENTS[fill["drug"]]],
                "drug_exposure_start_date": start,
                "drug_exposure_end_date": dt.date.fromisoformat(end) if end else None,
                "days_supply": supply,
                "drug_type_concept_id": 38000177,
            }
        )
    exposure = pd.DataFrame(rows)
    exposure["days_supply"] = exposure["days_supply"].astype("Int64")
    exposure["drug_exposure_start_date"] = pd.to_datetime(exposure["drug_exposure_start_date"])
    exposure["drug_exposure_end_date"] = pd.to_datetime(exposure["drug_exposure_end_date"])
    persons = persons or sorted({(r["person_id"], 8507, 1960) for r in rows})
    person = pd.DataFrame(persons, columns=["person_id", "gender_concept_id", "year_of_birth"])
    db.con.create_table("drug_exposure", exposure)
    db.con.create_table("concept", concept)
    db.con.create_table("concept_ancestor", ancestor)
    db.con.create_table("person", person)
    return db


def _case_fills(case: dict) -> list[dict]:
    return [
        {"drug": f["drug"], "date": f["date"], "days_supply": f["days_supply"]}
        for f in case["fills"]
    ]


def _load_cases() -> list[dict]:
    return json.loads(need(CASES).read_text())["cases"]


# --- the PQA cases -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "case_id",
    [
        "class-two-drugs-sequential",
        "class-two-drugs-same-day",
        "same-drug-shifted",
        "same-drug-shifted-and-truncated",
    ],
)
def test_pdc_reproduces_pqa_case(case_id):
    case = next(c for c in _load_cases() if c["id"] == case_id)
    db = small_cdm(_case_fills(case))
    drugs = sorted({INGREDIENTS[f["drug"]] for f in case["fills"]})
    dates = {f["date"] for f in case["fills"]}
    # The case file's same-day case has its two fills on ONE date of service: PQA's
    # denominator (two fills on different dates) excludes that patient, so the coverage rule
    # it is about is checked with min_fills=1.
    min_fills = min(2, len(dates))
    if len(dates) < 2:
        assert pdc(db, drugs, "2018-01-01", case["period_end"]).patients().empty
    result = pdc(db, drugs, "2018-01-01", case["period_end"], min_fills=min_fills)
    patients = result.patients()
    assert len(patients) == 1
    row = patients.iloc[0]
    assert row.days_covered == case["days_covered"]
    assert row.days_in_period == case["days_in_period"]
    assert round(row.pdc, 4) == case["pdc"]
    assert row.index_date == dt.date.fromisoformat(case["fills"][0]["date"])
    assert row.fills == len(case["fills"])
    assert row.imputed_supply_fills == 0
    assert bool(row.adherent) == (case["pdc"] >= 0.8)
    if "union_of_days" in case:
        assert round(row.pdc, 4) != case["union_of_days"]


# --- hand-made edge cases ----------------------------------------------------------------


def _one_patient(fills, **kwargs) -> pd.DataFrame:
    db = small_cdm(fills)
    drugs = sorted({INGREDIENTS[f["drug"]] for f in fills})
    return pdc(db, drugs, "2018-01-01", "2018-12-31", **kwargs).patients()


def test_one_fill_only_is_not_eligible():
    assert _one_patient([{"drug": "atorvastatin", "date": "2018-02-01", "days_supply": 300}]).empty
    # ... nor two fills on one date (PQA: different dates of service)
    assert _one_patient(
        [
            {"drug": "atorvastatin", "date": "2018-02-01", "days_supply": 30},
            {"drug": "metformin", "date": "2018-02-01", "days_supply": 30},
        ]
    ).empty
    # ... but it is with min_fills=1
    one = _one_patient(
        [{"drug": "atorvastatin", "date": "2018-02-01", "days_supply": 30}], min_fills=1
    )
    assert one.days_covered.tolist() == [30]
    assert one.days_in_period.tolist() == [334]


def test_index_must_be_91_days_before_period_end():
    late = [
        {"drug": "atorvastatin", "date": "2018-10-02", "days_supply": 30},
        {"drug": "atorvastatin", "date": "2018-11-01", "days_supply": 30},
    ]
    # 2018-10-01 is 91 days before 2018-12-31, 2018-10-02 only 90
    assert _one_patient(late).empty
    late[0]["date"] = "2018-10-01"
    row = _one_patient(late).iloc[0]
    assert (row.days_in_period, row.days_covered) == (92, 60)


def test_fill_on_period_end_counts_one_day():
    row = _one_patient(
        [
            {"drug": "atorvastatin", "date": "2018-06-01", "days_supply": 30},
            {"drug": "atorvastatin", "date": "2018-12-31", "days_supply": 90},
        ]
    ).iloc[0]
    assert row.days_in_period == 214  # 2018-06-01 .. 2018-12-31
    assert row.days_covered == 31
    assert row.fills == 2


def test_supply_spanning_period_end_is_truncated_and_shift_pushes_past_it():
    row = _one_patient(
        [
            {"drug": "atorvastatin", "date": "2018-09-01", "days_supply": 90},
            {"drug": "atorvastatin", "date": "2018-11-01", "days_supply": 90},
        ]
    ).iloc[0]
    # 122 days in period; the first fill covers 09-01..11-29, the second shifts to 11-30
    assert row.days_in_period == 122
    assert row.days_covered == 122
    assert row.pdc == 1.0


def test_fills_before_period_start_do_not_count():
    row = _one_patient(
        [
            {"drug": "atorvastatin", "date": "2017-12-01", "days_supply": 90},
            {"drug": "atorvastatin", "date": "2018-03-01", "days_supply": 30},
            {"drug": "atorvastatin", "date": "2018-04-01", "days_supply": 30},
        ]
    ).iloc[0]
    assert row.index_date == dt.date(2018, 3, 1)
    assert row.fills == 2
    assert (row.days_in_period, row.days_covered) == (306, 60)


def test_missing_or_zero_days_supply_is_derived_from_dates():
    fills = [
        {"drug": "atorvastatin", "date": "2018-01-01", "days_supply": 0, "end": "2018-01-30"},
        {"drug": "atorvastatin", "date": "2018-03-01", "days_supply": None, "end": "2018-03-10"},
        {"drug": "atorvastatin", "date": "2018-05-01", "days_supply": None},
    ]
    row = _one_patient(fills).iloc[0]
    assert row.imputed_supply_fills == 3
    assert row.days_covered == 30 + 10 + 1
    assert row.days_in_period == 365
    db = small_cdm(fills)
    rows = (
        drug_exposures(db, [INGREDIENTS["atorvastatin"]])
        .to_pandas()
        .sort_values("drug_exposure_id")
    )
    assert rows.days_supply_used.tolist() == [30, 10, 1]
    assert rows.days_supply_imputed.tolist() == [True, True, True]
    assert rows.ingredient_concept_id.tolist() == [INGREDIENTS["atorvastatin"]] * 3


def test_two_ingredients_same_day_are_not_shifted_but_same_ingredient_is():
    two = _one_patient(
        [
            {"drug": "metformin", "date": "2018-01-01", "days_supply": 30},
            {"drug": "glipizide", "date": "2018-01-01", "days_supply": 30},
            {"drug": "metformin", "date": "2018-02-15", "days_supply": 30},
        ]
    ).iloc[0]
    assert two.days_covered == 60  # Jan 1-30 (both drugs) + Feb 15 - Mar 16
    same = _one_patient(
        [
            {"drug": "metformin", "date": "2018-01-01", "days_supply": 30},
            {"drug": "metformin", "date": "2018-01-01", "days_supply": 30},
            {"drug": "metformin", "date": "2018-02-15", "days_supply": 30},
        ]
    ).iloc[0]
    # two same-day fills chain to Jan 1 - Mar 1; the third shifts to Mar 2 - Mar 31
    assert same.days_covered == 90
    assert same.fills == 3


def test_drug_exposures_maps_class_to_ingredients():
    db = small_cdm(
        [
            {"drug": "metformin", "date": "2018-01-01", "days_supply": 30},
            {"drug": "glipizide", "date": "2018-01-05", "days_supply": 60},
            {"drug": "atorvastatin", "date": "2018-01-05", "days_supply": 60},
        ]
    )
    rows = drug_exposures(db, [1503297, 1560171]).to_pandas().sort_values("drug_exposure_id")
    assert rows.ingredient_concept_id.tolist() == [1503297, 1560171]
    assert rows.drug_concept_id.tolist() == [40163924, 40164020]
    assert rows.days_supply_used.tolist() == [30, 60]
    assert not rows.days_supply_imputed.any()
    exact = drug_exposures(db, [1503297], include_descendants=False).to_pandas()
    assert exact.empty  # recorded with the clinical drug, not the ingredient
    assert len(drug_exposures(db, [40163924], include_descendants=False).to_pandas()) == 1


def test_bad_input_is_refused():
    db = small_cdm([{"drug": "metformin", "date": "2018-01-01", "days_supply": 30}])
    with pytest.raises(PharmalabInputError, match="ends .* before it starts"):
        pdc(db, [1503297], "2018-12-31", "2018-01-01")
    with pytest.raises(PharmalabInputError, match="not a date"):
        pdc(db, [1503297], "2018-13-01", "2018-12-31")
    with pytest.raises(PharmalabInputError, match="none given"):
        pdc(db, [], "2018-01-01", "2018-12-31")
    with pytest.raises(PharmalabInputError, match="threshold"):
        pdc(db, [1503297], "2018-01-01", "2018-12-31", threshold=80)


# --- MPR (AdhereR CMA1) ------------------------------------------------------------------


def test_mpr_is_cma1_computed_by_hand():
    fills = [
        {"drug": "atorvastatin", "date": "2018-01-01", "days_supply": 30},
        {"drug": "atorvastatin", "date": "2018-02-15", "days_supply": 30},
        {"drug": "metformin", "date": "2018-03-01", "days_supply": 20},
        {"drug": "atorvastatin", "date": "2018-04-11", "days_supply": 90},
    ]
    db = small_cdm(fills)
    # supply before the last fill: 30 + 30 + 20 = 80 days; 2018-01-01 → 2018-04-11 = 100 days
    table = mpr(db, [1545958, 1503297], "2018-01-01", "2018-12-31").to_pandas()
    assert table.supply_before_last.tolist() == [80]
    assert table.days_first_to_last.tolist() == [100]
    assert table.mpr.tolist() == [0.8]
    row = pdc(db, [1545958, 1503297], "2018-01-01", "2018-12-31").patients().iloc[0]
    assert row.mpr == 0.8
    # atorvastatin alone: (30 + 30) / 100
    assert mpr(db, [1545958], "2018-01-01", "2018-12-31").to_pandas().mpr.tolist() == [0.6]


def test_summary_suppresses_small_cells():
    fills, persons = [], []
    for person in range(1, 8):  # 7 patients: 6 adherent, 1 not; all born 1960, male
        supply = 180 if person < 7 else 10
        fills += [
            {
                "person_id": person,
                "drug": "atorvastatin",
                "date": "2018-01-01",
                "days_supply": supply,
            },
            {"person_id": person, "drug": "atorvastatin", "date": "2018-07-01", "days_supply": 185},
        ]
        persons.append((person, 8507 if person < 7 else 8532, 1960))
    db = small_cdm(fills, persons)
    result = pdc(db, [1545958], "2018-01-01", "2018-12-31")
    assert result.patients().adherent.tolist() == [True] * 6 + [False]
    summary = result.summary().set_index(["stratum", "stratum_value"])
    overall = summary.loc[("overall", "all")]
    assert (overall.patients, overall.adherent) == (7, 6)
    assert overall.share_adherent == pytest.approx(6 / 7)
    male = summary.loc[("gender", "MALE")]
    assert (male.patients, male.adherent, male.share_adherent) == (6, 6, 1.0)
    female = summary.loc[("gender", "FEMALE")]
    assert female.patients_suppressed and pd.isna(female.patients)
    assert female.adherent == 0 and not female.adherent_suppressed  # zero is shown
    assert math.isnan(female.share_adherent)
    assert summary.loc[("age group", "45-64")].patients == 7  # aged 58 in 2018


# --- differential test on GiBleed ---------------------------------------------------------


def reference_pdc(
    exposures: pd.DataFrame,
    ingredient_of: dict[int, int],
    start: dt.date,
    end: dt.date,
    min_fills: int,
    min_days_before_end: int,
) -> dict:
    """PDC written straight from the PQA rules, one day at a time: {person: (index date,
    days in period, days covered)}."""
    by_person = defaultdict(list)
    for row in exposures.itertuples():
        if row.drug_concept_id not in ingredient_of:
            continue
        day = row.drug_exposure_start_date
        if not start <= day <= end:
            continue
        supply = row.days_supply
        if pd.isna(supply) or supply <= 0:
            stop = row.drug_exposure_end_date
            supply = 1 if pd.isna(stop) else max((stop - day).days + 1, 1)
        by_person[row.person_id].append(
            (day, int(supply), ingredient_of[row.drug_concept_id], row.drug_exposure_id)
        )
    out = {}
    for person, fills in by_person.items():
        index = min(f[0] for f in fills)
        if len({f[0] for f in fills}) < min_fills or (end - index).days < min_days_before_end:
            continue
        covered = set()
        for ingredient in {f[2] for f in fills}:
            next_free = None
            for day, supply, _, _ in sorted(f for f in fills if f[2] == ingredient):
                first = day if next_free is None or day >= next_free else next_free
                for k in range(supply):
                    covered.add(first + dt.timedelta(days=k))
                next_free = first + dt.timedelta(days=supply)
        days = {d for d in covered if index <= d <= end}
        out[person] = (index, (end - index).days + 1, len(days))
    return out


@pytest.fixture(scope="module")
def gibleed(gibleed_csv_db):
    db = database(f"duckdb://{gibleed_csv_db[0]}", create=False)
    yield db
    db.con.disconnect()


def _ingredient_map(db, ingredients) -> dict[int, int]:
    ancestor = db.table("concept_ancestor", "vocab")
    rows = ancestor.filter(ancestor.ancestor_concept_id.isin(ingredients)).to_pandas()
    assert rows.descendant_concept_id.is_unique  # GiBleed: each drug has one of them
    return dict(zip(rows.descendant_concept_id, rows.ancestor_concept_id, strict=True))


@pytest.mark.parametrize(
    ("ingredients", "start", "end", "min_fills", "min_days"),
    [
        # celecoxib and diclofenac: one fill per person in GiBleed, days_supply 0 (imputed 1 day)
        ([CELECOXIB], "2000-01-01", "2019-12-31", 1, 91),
        ([DICLOFENAC], "2000-01-01", "2019-12-31", 1, 91),
        ([IBUPROFEN], "2000-01-01", "2019-12-31", 2, 91),
        (NSAIDS, "2000-01-01", "2019-12-31", 2, 91),
        (NSAIDS, "2010-01-01", "2010-12-31", 1, 30),
    ],
)
def test_pdc_agrees_with_day_by_day_reference_on_gibleed(
    gibleed, ingredients, start, end, min_fills, min_days
):
    start_d, end_d = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    result = pdc(
        gibleed, ingredients, start, end, min_fills=min_fills, min_days_before_end=min_days
    )
    got = result.patients()
    exposures = (
        gibleed.table("drug_exposure")
        .select(
            "drug_exposure_id",
            "person_id",
            "drug_concept_id",
            "drug_exposure_start_date",
            "drug_exposure_end_date",
            "days_supply",
        )
        .to_pandas()
    )
    for column in ("drug_exposure_start_date", "drug_exposure_end_date"):
        exposures[column] = pd.to_datetime(exposures[column]).dt.date
    expected = reference_pdc(
        exposures, _ingredient_map(gibleed, ingredients), start_d, end_d, min_fills, min_days
    )
    assert len(got) > 50
    assert set(got.person_id) == set(expected)
    for row in got.itertuples():
        index, days_in_period, days_covered = expected[row.person_id]
        assert (row.index_date, row.days_in_period, row.days_covered) == (
            index,
            days_in_period,
            days_covered,
        ), row.person_id
        assert row.pdc == pytest.approx(days_covered / days_in_period, abs=1e-12)


def test_pdc_agrees_with_day_by_day_reference_on_random_overlapping_fills():
    """GiBleed has no overlapping fills of one ingredient (checked: none in 2000–2019), so
    the shift rule is exercised here: 300 seeded random patients, three ingredients, fills
    that overlap, repeat on one day, reach past the period end or lack a days supply."""
    import random

    rng = random.Random(20181231)
    fills = []
    for person in range(1, 301):
        for _ in range(rng.randint(1, 8)):
            day = dt.date(2017, 11, 1) + dt.timedelta(days=rng.randint(0, 450))
            supply = rng.choice([None, 0, 1, 7, 30, 30, 60, 90, 90, 120])
            end = None
            if not supply and rng.random() < 0.7:
                end = (day + dt.timedelta(days=rng.randint(0, 40))).isoformat()
            fills.append(
                {
                    "person_id": person,
                    "drug": rng.choice(list(INGREDIENTS)),
                    "date": day.isoformat(),
                    "days_supply": supply,
                    "end": end,
                }
            )
    db = small_cdm(fills)
    ingredients = sorted(INGREDIENTS.values())
    got = pdc(db, ingredients, "2018-01-01", "2018-12-31").patients()
    exposures = db.table("drug_exposure").to_pandas()
    for column in ("drug_exposure_start_date", "drug_exposure_end_date"):
        exposures[column] = pd.to_datetime(exposures[column]).dt.date
    ingredient_of = {clinical: ingredient for ingredient, clinical in CLINICAL.items()}
    expected = reference_pdc(
        exposures, ingredient_of, dt.date(2018, 1, 1), dt.date(2018, 12, 31), 2, 91
    )
    assert len(expected) > 150
    assert set(got.person_id) == set(expected)
    for row in got.itertuples():
        assert (row.index_date, row.days_in_period, row.days_covered) == expected[row.person_id], (
            row.person_id
        )


# --- every engine ------------------------------------------------------------------------


def test_every_engine_gives_duckdbs_pdc_per_patient(other_engine, gibleed):
    engine_db = other_engine.db
    for ingredients, min_fills in ((NSAIDS, 2), ([CELECOXIB], 1)):
        got = pdc(
            engine_db, ingredients, "2000-01-01", "2019-12-31", min_fills=min_fills
        ).patients()
        on_duckdb = pdc(
            gibleed, ingredients, "2000-01-01", "2019-12-31", min_fills=min_fills
        ).patients()
        assert len(on_duckdb) > 500
        pd.testing.assert_frame_equal(got, on_duckdb, check_exact=False, rtol=1e-12)
    engine_summary = pdc(engine_db, NSAIDS, "2000-01-01", "2019-12-31").summary()
    duckdb_summary = pdc(gibleed, NSAIDS, "2000-01-01", "2019-12-31").summary()
    pd.testing.assert_frame_equal(engine_summary, duckdb_summary)
