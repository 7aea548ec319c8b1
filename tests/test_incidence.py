"""Incidence rates: CohortIncidence's own conformance scenarios, GiBleed against an independent
person-by-person computation, Spark against DuckDB, and small-cell suppression."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import ibis
import pandas as pd
import pytest

from pharmalab.characterize import (
    IncidenceDesign,
    Strata,
    TimeAtRisk,
    incidence_rates,
    read_design,
    simple_design,
)
from pharmalab.characterize.incidence import poisson_exact_limits
from pharmalab.engine import database
from pharmalab.errors import PharmalabInputError
from conftest import DATA, need

CASES = DATA / "cases" / "cohortincidence"
SCENARIOS = sorted(p.name[: -len("Test.json")] for p in CASES.glob("*Test.json"))

_TYPES = {"person_id": "int64", "gender_concept_id": "int64", "year_of_birth": "int64",
          "race_concept_id": "int64", "ethnicity_concept_id": "int64",
          "observation_period_id": "int64", "period_type_concept_id": "int64",
          "observation_period_start_date": "date", "observation_period_end_date": "date",
          "cohort_definition_id": "int64", "subject_id": "int64",
          "cohort_start_date": "date", "cohort_end_date": "date"}


def load_prep(prep: Path):
    """A fresh in-memory DuckDB holding a scenario's input rows; returns the Database."""
    tables = json.loads(prep.read_text())
    results = next(k.split(".")[0] for k in tables if k.endswith(".cohort"))
    db = database(f"duckdb://?cdm_schema=cdm&results_schema={results}")
    db.ensure_schema("cdm")
    db.ensure_schema("results")
    for key, rows in tables.items():
        schema, name = key.split(".")
        frame = pd.DataFrame(rows)
        types = {c: _TYPES[c] for c in frame.columns}
        for column, kind in types.items():
            if kind == "date":
                frame[column] = pd.to_datetime(frame[column]).dt.date
        db.con.create_table(name, ibis.memtable(frame, schema=ibis.schema(types)),
                            database=schema)
    return db


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_cohortincidence_conformance(scenario):
    design = read_design(need(CASES / f"{scenario}Test.json"))
    db = load_prep(CASES / f"{scenario}_PREP.json")
    expected_rows = next(iter(json.loads((CASES / f"{scenario}_VERIFY.json").read_text())
                              .values()))
    got = incidence_rates(db, design, min_cell_count=1).summary
    keys = ["target_cohort_definition_id", "tar_id", "subgroup_id", "outcome_id",
            "age_group_id", "gender_id", "start_year"]
    assert len(got) == len(expected_rows), got[keys]
    for expected in expected_rows:
        match = got
        for key in keys:
            value = expected.get(key)
            match = match[match[key].isna()] if value is None else match[match[key] == value]
        assert len(match) == 1, (scenario, expected)
        row = match.iloc[0]
        for field, value in expected.items():
            if field == "ref_id":
                continue
            if value is None:
                assert pd.isna(row[field]), (scenario, field, row[field])
            elif isinstance(value, float) or field.startswith("incidence_"):
                # to 4 decimals (CohortIncidence rounds half up: 1141.40625 → 1141.4063)
                assert float(row[field]) == pytest.approx(value, abs=0.5e-4 + 1e-9), (
                    scenario, field)
            else:
                assert row[field] == value, (scenario, field, row[field], value)


def test_the_conformance_folder_has_every_scenario():
    # a parametrized test over the folder: guard against an empty or renamed folder
    assert len(SCENARIOS) == 10


def test_garwood_limits_match_published_values():
    # Ulm (1990), Table 1: exact 95% limits for 0, 1, 5 and 10 observed events
    lower, upper = poisson_exact_limits([0, 1, 5, 10])
    assert lower == pytest.approx([0.0, 0.0253, 1.6235, 4.7954], abs=1e-4)
    assert upper == pytest.approx([3.6889, 5.5716, 11.6683, 18.3904], abs=1e-4)
