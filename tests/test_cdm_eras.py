"""Drug and condition eras derived in the engine (issue 15, item 7): OHDSI's era logic with
the 30-day persistence window, gap_days in inclusive days, GiBleed's shipped tables."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from pharmalab import cdm
from pharmalab.cdm.eras import build_eras, compare_drug_eras, condition_eras, drug_eras
from pharmalab.engine import database
from pharmalab.errors import PharmalabInputError

ACETAMINOPHEN, IBUPROFEN = 1125315, 1177480
TABLET, COMBINATION = 19000001, 19000002


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def tiny_db(exposures: list[tuple], conditions: list[tuple] = ()):
    """A DuckDB CDM with a vocabulary of two ingredients, a tablet of the first and a
    combination of both. exposures: (person, drug concept, start, end or None, days_supply)."""
    db = database("duckdb://")
    db.con.create_table("drug_exposure", pd.DataFrame(
        [(i + 1, p, c, day(s), day(e) if e else None, n) for i, (p, c, s, e, n)
         in enumerate(exposures)],
        columns=["drug_exposure_id", "person_id", "drug_concept_id", "drug_exposure_start_date",
                 "drug_exposure_end_date", "days_supply"]).astype({"days_supply": "Int64"}))
    db.con.create_table("concept", pd.DataFrame({
        "concept_id": [ACETAMINOPHEN, IBUPROFEN, TABLET, COMBINATION],
        "concept_class_id": ["Ingredient", "Ingredient", "Clinical Drug", "Clinical Drug"],
        "vocabulary_id": "RxNorm"}))
    pairs = [(ACETAMINOPHEN, ACETAMINOPHEN), (IBUPROFEN, IBUPROFEN), (ACETAMINOPHEN, TABLET),
             (TABLET, TABLET), (ACETAMINOPHEN, COMBINATION), (IBUPROFEN, COMBINATION)]
    db.con.create_table("concept_ancestor", pd.DataFrame(
        pairs, columns=["ancestor_concept_id", "descendant_concept_id"]))
    db.con.create_table("condition_occurrence", pd.DataFrame(
        [(i + 1, p, c, day(s), day(e) if e else None) for i, (p, c, s, e)
         in enumerate(conditions)],
        columns=["condition_occurrence_id", "person_id", "condition_concept_id",
                 "condition_start_date", "condition_end_date"]).astype(
            {"condition_occurrence_id": "int64", "person_id": "int64",
             "condition_concept_id": "int64", "condition_start_date": "datetime64[s]",
             "condition_end_date": "datetime64[s]"}))
    return db


def eras_of(expr) -> list[tuple]:
    frame = expr.to_pandas().drop(columns=[c for c in expr.columns if c.endswith("_era_id")])
    return sorted(tuple(str(v)[:10] if isinstance(v, (dt.date, pd.Timestamp)) else int(v)
                        for v in row) for row in frame.itertuples(index=False))


def test_the_issue_example_is_one_era_with_five_gap_days():
    # 01-01–01-05, 01-03–01-07, 01-11–01-13, 01-16–01-20: uncovered days 8, 9, 10, 14, 15
    db = tiny_db([(1, TABLET, "2020-01-01", "2020-01-05", 5),
                  (1, TABLET, "2020-01-03", "2020-01-07", 5),
                  (1, TABLET, "2020-01-11", "2020-01-13", 3),
                  (1, TABLET, "2020-01-16", "2020-01-20", 5)])
    assert eras_of(drug_eras(db)) == [(1, ACETAMINOPHEN, "2020-01-01", "2020-01-20", 4, 5)]
    schema = drug_eras(db).schema()
    assert [str(schema[c]) for c in ("drug_era_start_date", "gap_days")] == ["date", "int64"]


def test_ingredients_end_dates_and_the_30_day_window():
    db = tiny_db([
        # person 1: a combination counts for both ingredients; its end from days_supply
        (1, COMBINATION, "2021-03-01", None, 10),          # → 03-11
        (1, TABLET, "2021-04-10", None, None),             # 30 days after 03-11: joins, → 04-11
        (1, TABLET, "2021-05-12", "2021-05-12", 1),        # 31 days after 04-11: a new era
        (1, 0, "2021-05-12", "2021-05-20", 8),             # unmapped concept 0: left out
        (2, TABLET, "2021-01-01", "2021-01-10", -5),       # negative days_supply: left out
    ], conditions=[
        (1, 201826, "2021-01-01", "2021-01-05"),
        (1, 201826, "2021-02-04", None),                   # 30 days after 01-05: joins
        (1, 201826, "2021-03-08", None),                   # 31 days after 02-05: new era
        (1, 0, "2021-01-01", "2021-01-02"),                # concept 0: no era
    ])
    assert eras_of(drug_eras(db)) == [
        # 03-01–04-11 is 42 days; covered 03-01–03-11 (11) and 04-10–04-11 (2): 29 uncovered
        (1, ACETAMINOPHEN, "2021-03-01", "2021-04-11", 2, 29),
        (1, ACETAMINOPHEN, "2021-05-12", "2021-05-12", 1, 0),
        (1, IBUPROFEN, "2021-03-01", "2021-03-11", 1, 0),
    ]
    assert eras_of(condition_eras(db)) == [(1, 201826, "2021-01-01", "2021-02-05", 2),
                                           (1, 201826, "2021-03-08", "2021-03-09", 1)]
    assert eras_of(drug_eras(db, persistence_days=0)) == [
        (1, ACETAMINOPHEN, "2021-03-01", "2021-03-11", 1, 0),
        (1, ACETAMINOPHEN, "2021-04-10", "2021-04-11", 1, 0),
        (1, ACETAMINOPHEN, "2021-05-12", "2021-05-12", 1, 0),
        (1, IBUPROFEN, "2021-03-01", "2021-03-11", 1, 0)]
    with pytest.raises(PharmalabInputError, match="persistence window"):
        drug_eras(db, persistence_days=-1)


def test_gibleed_derived_eras_against_the_shipped_tables(gibleed_csv_db):
    db = database(f"duckdb://{gibleed_csv_db[0]}", create=False)
    # condition_era: equal to every shipped era but the 443 of concept 0, which OHDSI's
    # script leaves out
    shipped = db.table("condition_era")
    keys = ["person_id", "condition_concept_id", "condition_era_start_date",
            "condition_era_end_date", "condition_occurrence_count"]
    derived = condition_eras(db)
    assert derived.count().execute() == 65_276
    assert shipped.filter(shipped.condition_concept_id != 0).count().execute() == 65_276
    assert shipped.semi_join(derived, keys).count().execute() == 65_276
    # drug_era: the same eras but 8, whose shipped end is not the latest exposure's end;
    # GiBleed's gap_days are simulated (negative for some), not computed from exposures
    c = compare_drug_eras(db)
    assert (c["shipped"], c["derived"], c["shipped_only"]) == (52_508, 52_508, 8)
    era = drug_eras(db)
    one = era.filter(era.person_id == 3956, era.drug_concept_id == ACETAMINOPHEN,
                     era.drug_era_start_date == day("1958-11-22"))
    assert one.drug_era_end_date.execute().tolist() == [pd.Timestamp("1958-12-27")]
    finding = cdm.check(db).findings.query("check == 'drug_era_differs'").iloc[0]
    assert (finding.rows_affected, finding.rows_total) == (52_507, 52_508)
    db.con.disconnect()


def test_build_eras_keeps_or_replaces_and_cdm_check_then_agrees(tmp_path, gibleed_csv_db):
    path = tmp_path / "cdm.duckdb"
    shutil.copy(gibleed_csv_db[0], path)
    db = database(f"duckdb://{path}", create=False)
    kept = build_eras(db)
    assert [(b.table, b.action, b.rows) for b in kept] == [("drug_era", "kept", 52_508),
                                                            ("condition_era", "kept", 65_719)]
    db.con.disconnect()
    proc = subprocess.run([sys.executable, "-m", "pharmalab.cli", "cdm", "eras", "--cdm",
                           f"duckdb://{path}", "--replace"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "drug_era: rebuilt, 52,508 rows" in proc.stdout
    assert "condition_era: rebuilt, 65,276 rows" in proc.stdout
    db = database(f"duckdb://{path}", create=False)
    assert not [t for t in db.list_tables() if "pharmalab" in t]  # no staging left behind
    findings = cdm.check(db).findings
    assert "drug_era_differs" not in set(findings["check"])
    with pytest.raises(PharmalabInputError, match="dose_era"):
        build_eras(db, ["dose_era"])
    db.con.disconnect()


def test_every_engine_gives_duckdbs_drug_era_comparison(other_engine, gibleed_csv_db):
    db = database(f"duckdb://{gibleed_csv_db[0]}", create=False)
    expected = compare_drug_eras(db)
    db.con.disconnect()
    assert compare_drug_eras(other_engine.db) == expected
