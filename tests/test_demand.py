"""Patient-flow demand (``pharmalab.demand``): a 5-person CDM where starters, persistence and
units are known by hand; the flow identity on GiBleed (1800 celecoxib and 830 diclofenac new
users, as the demo's cohorts 1 and 6); scenario levers moving the forecast by hand-computed
amounts; a simulated CDM whose known future the 80% interval must cover; bad inputs; the CLI.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import pytest

from pharmalab.demand import (
    DemandInputError,
    FlowSettings,
    Scenario,
    flow_check,
    forecast_patient_demand,
    patient_flow,
    simulate_cdm,
)
from pharmalab.demand.project import project
from pharmalab.demand.rates import cohort_matrix, estimate_rates
from pharmalab.engine import database

DRUG = 1118084
DICLOFENAC = 1124300
D = dt.date


@pytest.fixture(scope="module")
def five_db(tmp_path_factory):
    """P1: starter 2019-03 (three 30-day fills, on treatment Mar–Jun); P2: only 292 days of
    observation before its fill (not a starter; its 30 days are 'other patients'); P3: starter
    2019-04 with a 60-day fill, leaves the database at the end of April; P4: starter 2019-03,
    stops, refills in August after a gap > 60 days (a second episode); P5: no drug."""
    path = tmp_path_factory.mktemp("five") / "cdm.duckdb"
    con = duckdb.connect(str(path))
    far = D(2020, 12, 31)
    observation = pd.DataFrame({
        "observation_period_id": [1, 2, 3, 4, 5], "person_id": [1, 2, 3, 4, 5],
        "observation_period_start_date": [D(2018, 1, 1), D(2018, 6, 1), D(2017, 1, 1),
                                          D(2017, 1, 1), D(2017, 1, 1)],
        "observation_period_end_date": [far, far, D(2019, 4, 30), far, far],
        "period_type_concept_id": 44814724})
    fills = [(1, D(2019, 3, 10), 30), (1, D(2019, 4, 9), 30), (1, D(2019, 5, 9), 30),
             (2, D(2019, 3, 20), 30), (3, D(2019, 4, 1), 60), (4, D(2019, 3, 1), 30),
             (4, D(2019, 8, 1), 30)]
    other = [(1, D(2019, 6, 20), 30)]  # P1 switches to diclofenac 12 days after running out
    exposure = _exposures(fills + other)
    concept = pd.DataFrame({"concept_id": [DRUG, 1118085, DICLOFENAC, 1124301],
                            "concept_name": ["celecoxib", "celecoxib 200 MG Oral Capsule",
                                             "diclofenac", "diclofenac 50 MG Oral Tablet"],
                            "domain_id": "Drug", "vocabulary_id": "RxNorm",
                            "concept_class_id": ["Ingredient", "Clinical Drug"] * 2,
                            "standard_concept": "S", "concept_code": ["1", "2", "3", "4"]})
    ancestor = pd.DataFrame({"ancestor_concept_id": [DRUG, DRUG, DICLOFENAC, DICLOFENAC],
                             "descendant_concept_id": [DRUG, 1118085, DICLOFENAC, 1124301],
                             "min_levels_of_separation": [0, 1, 0, 1],
                             "max_levels_of_separation": [0, 1, 0, 1]})
    person = pd.DataFrame({"person_id": [1, 2, 3, 4, 5], "gender_concept_id": 8507,
                           "year_of_birth": 1960, "race_concept_id": 0,
                           "ethnicity_concept_id": 0})
    for name, frame in (("person", person), ("observation_period", observation),
                        ("drug_exposure", exposure), ("concept", concept),
                        ("concept_ancestor", ancestor)):
        con.register("f", frame)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM f")
        con.unregister("f")
    con.close()
    return database(f"duckdb:///{path}")


def _exposures(fills) -> pd.DataFrame:
    """drug_exposure rows: celecoxib fills (1118085), then the diclofenac one (1124301)."""
    return pd.DataFrame({
        "drug_exposure_id": range(1, len(fills) + 1), "person_id": [f[0] for f in fills],
        "drug_concept_id": [1118085] * (len(fills) - 1) + [1124301],
        "drug_exposure_start_date": [f[1] for f in fills],
        "drug_exposure_end_date": [f[1] + dt.timedelta(days=f[2] - 1) for f in fills],
        "drug_type_concept_id": 38000177, "days_supply": [f[2] for f in fills],
        "quantity": 30.0})


@pytest.fixture(scope="module")
def five(five_db):
    return patient_flow(five_db, DRUG, switch_to=[DICLOFENAC])


def test_a_switch_to_another_drug_of_the_class_is_counted(five):
    """P1's first celecoxib episode supplies to 2019-06-08; the diclofenac fill of 06-20 is
    12 days later (within the 60-day gap): a switch, 3 months after P1's March start."""
    assert five.switches.to_dict("records") == [{"switch_to": DICLOFENAC, "k": 3,
                                                 "persons": 1}]


def test_five_persons_starters_persistence_and_units_by_hand(five):
    months = five.months.set_index(five.months["ds"].dt.strftime("%Y-%m"))
    assert five.as_of == pd.Timestamp("2019-09-01")
    assert list(months.index) == ["2019-03", "2019-04", "2019-05", "2019-06", "2019-07",
                                  "2019-08"]
    assert months["starters"].tolist() == [2, 1, 0, 0, 0, 0]            # P1, P4 | P3
    assert months["active"].tolist() == [2, 2, 1, 1, 0, 1]              # P4's 2nd episode
    assert months["units"].tolist() == [60, 90, 30, 0, 0, 30]
    assert months["dispensed"].tolist() == [90, 90, 30, 0, 0, 30]       # + P2's 30
    rates = estimate_rates(cohort_matrix(five))
    np.testing.assert_allclose(rates.on_treatment[0][:6], [1, .5, .5, .5, 0, .5])
    # u(0) = 120 days / 3 starters; u(3): one on treatment, no fill; u(4): nobody on
    # treatment, the pooled 210 days / 7 patient-months
    np.testing.assert_allclose(rates.units[0][:6], [40, 30, 30, 0, 30, 30])
    # P3 leaves the database after month 0: 2 of the 3 starters seen at k = 1 are still there
    np.testing.assert_allclose(rates.retention[0][:6], [1, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3])


def test_five_persons_flow_identity(five):
    check = flow_check(five)
    np.testing.assert_allclose(check["active_flow"], check["active"])  # shares reproduce
    # units: the pooled 40 days at k = 0 is 20 too many for March's two 30-day starts and
    # 20 too few for April's 60-day one
    np.testing.assert_allclose(check["gap_units"], [20, -20, 0, 0, 0, 0])


def test_washout_and_bad_inputs_give_one_clear_error(five_db):
    db = five_db
    with pytest.raises(DemandInputError, match="no new starters.*shorter washout"):
        patient_flow(db, DRUG, settings=FlowSettings(washout=10_000))
    with pytest.raises(DemandInputError, match="concept id 999 is not in the vocabulary"):
        patient_flow(db, 999)
    with pytest.raises(DemandInputError, match="whole number"):
        patient_flow(db, "celecoxib")
    with pytest.raises(DemandInputError, match="measure 'grams' is unknown"):
        FlowSettings(measure="grams")
    with pytest.raises(DemandInputError, match="no drug_exposure rows"):
        db.con.raw_sql("INSERT INTO concept VALUES (1, 'nothing', 'Drug', 'RxNorm', "
                       "'Ingredient', 'S', '9')")
        patient_flow(db, 1)


def test_scenario_levers_move_the_forecast_by_the_hand_computed_amount(five):
    """Origin 2019-08, 10 starters a month, no other patients, expected values: Sep = March
    cohort (2 observed × a(6) 0.5 × 30 days) + 10 × 40 = 430; Oct = 30 + 400 + 10 × r(1) 2/3
    × a(1) 0.5 × u(1) 30 = 530."""
    rates = estimate_rates(cohort_matrix(five))
    starters, rest = np.full((1, 2), 10.0), np.zeros((1, 2))

    def run(**levers):
        return project(five, starters, rest, rates, Scenario(**levers), noise=False)[0]

    np.testing.assert_allclose(run(), [430, 530])
    # October's starters halve (200 days); September's cohort is not touched (100)
    np.testing.assert_allclose(run(competitor_launch="2019-10", competitor_share=0.5),
                               [430, 30 + 200 + 100])
    np.testing.assert_allclose(run(starter_growth=0.2),
                               [30 + 400 * 1.2 ** (1 / 12),
                                30 + 400 * 1.2 ** (2 / 12) + 100 * 1.2 ** (1 / 12)])
    np.testing.assert_allclose(run(dose_factor=1.5, dose_from="2019-10"), [430, 530 * 1.5])
    # a dose change reaches the other patients too: 100 days a month of theirs
    with_rest = project(five, starters, np.full((1, 2), 100.0), rates,
                        Scenario(dose_factor=1.5, dose_from="2019-10"), noise=False)[0]
    np.testing.assert_allclose(with_rest, [530, 630 * 1.5])
    with pytest.raises(ValueError, match="support_from is given without "
                                         "discontinuation_reduction"):
        Scenario(support_from="2019-10")
    with pytest.raises(ValueError, match="expected a month YYYY-MM"):
        Scenario(dose_factor=2, dose_from="2019-10-01")
    # half of the discontinuations avoided: a(1) = 1 − 0.5 × (1 − 0.5) = 0.75 for the new
    # cohort; the March cohort's share does not fall from k = 5 to 6
    np.testing.assert_allclose(run(discontinuation_reduction=0.5), [430, 30 + 400 + 150])


@pytest.fixture(scope="module")
def gibleed(tmp_path_factory, demo_results):
    return database(f"duckdb:///{demo_results.out / 'cdm.duckdb'}")


@pytest.mark.parametrize("concept_id, name, starters", [(1118084, "celecoxib", 1800),
                                                         (1124300, "diclofenac", 830)])
def test_gibleed_flow_identity_holds(gibleed, concept_id, name, starters):
    """GiBleed's NSAID users each have one fill of one day: the new starters (365 days of
    prior observation) are the demo's new-user cohorts, and the identity holds exactly."""
    flow = patient_flow(gibleed, concept_id)
    assert flow.unique_id.lower() == name and flow.months["starters"].sum() == starters
    check = flow_check(flow)
    assert check["gap_units"].abs().max() == pytest.approx(0, abs=1e-9)
    assert check["units"].sum() == starters
    assert flow.months["dispensed"].sum() == {1118084: 1844, 1124300: 850}[concept_id]
    with pytest.raises(DemandInputError, match="192671 .* is a Condition concept, not a Drug"):
        patient_flow(gibleed, 192671)  # gastrointestinal hemorrhage
    with pytest.raises(DemandInputError, match="no fill records a quantity above 0"):
        patient_flow(gibleed, concept_id, settings=FlowSettings(measure="quantity"))


def test_known_future_demand_is_covered_by_the_80_percent_interval(tmp_path):
    """A simulated CDM (40 starters a month growing 20 % a year, 8 % monthly discontinuation,
    1 % leaving the database, 30-day fills): the 80% interval covers ≥ 75% of the 12 months
    that follow the data."""
    con = duckdb.connect(str(tmp_path / "sim.duckdb"))
    truth = simulate_cdm(con, months=48, seed=3)
    con.close()
    flow = patient_flow(database(f"duckdb:///{tmp_path / 'sim.duckdb'}"), DRUG)
    assert flow.as_of.date() == truth.data_end
    np.testing.assert_allclose(flow.months["dispensed"], truth.history["dispensed"])
    made = forecast_patient_demand(flow)
    fc = made.forecast.assign(y=truth.future["dispensed"].to_numpy())
    covered = ((fc["y"] >= fc["lo-80"]) & (fc["y"] <= fc["hi-80"])).mean()
    assert covered >= 0.75
    assert abs(fc["mean"].sum() / fc["y"].sum() - 1) < 0.05


def test_cli_writes_a_forecast_folder_that_supply_reads(tmp_path):
    con = duckdb.connect(str(tmp_path / "sim.duckdb"))
    simulate_cdm(con, months=48, seed=4)
    con.close()
    out = tmp_path / "demand"
    subprocess.run([sys.executable, "-m", "pharmalab.cli", "demand", "patients",
                    "--cdm", f"duckdb:///{tmp_path / 'sim.duckdb'}", "--concept-id", str(DRUG),
                    "--backtest-windows", "2", "--horizon", "6", "--models",
                    "SeasonalNaive,AutoETS", "--out", str(out)],
                   check=True, capture_output=True, text=True)
    manifest = json.loads((out / "forecast_manifest.json").read_text())
    assert manifest["settings"]["models"] == ["SeasonalNaive", "AutoETS"]
    forecast = pd.read_parquet(out / "forecast.parquet")
    assert len(forecast) == 6 and {"mean", "q0.50", "lo-80", "hi-95"} <= set(forecast)
    persistence = pd.read_csv(out / "persistence.csv")
    first = persistence[persistence["k"] == 0].iloc[0]
    assert first["on_treatment"] == 1 and first["units_per_patient"] == 30  # one 30-day fill
    assert first["mpr"] == pytest.approx(30 / (365.25 / 12))
    comparison = pd.read_csv(out / "backtest_comparison.csv")
    assert set(comparison["method"]) == {"patient_flow", "sales_series", "combined"}
    assert comparison["cutoff"].nunique() == 2
    subprocess.run([sys.executable, "-m", "pharmalab.cli", "supply", "--forecast", str(out),
                    "--lead-time", "1", "--out", str(tmp_path / "supply")],
                   check=True, capture_output=True)
    assert (tmp_path / "supply" / "policy.csv").is_file()
    bad = tmp_path / "scenario.toml"
    bad.write_text("competitor_share = 2\n")
    run = subprocess.run([sys.executable, "-m", "pharmalab.cli", "demand", "patients",
                          "--cdm", f"duckdb:///{tmp_path / 'sim.duckdb'}", "--concept-id",
                          str(DRUG), "--scenario", str(bad), "--out", str(out)],
                         capture_output=True, text=True)
    assert run.returncode != 0 and "competitor_share" in run.stderr + run.stdout
    # again without a backtest: no comparison of the earlier run is left beside it
    subprocess.run([sys.executable, "-m", "pharmalab.cli", "demand", "patients", "--cdm",
                    f"duckdb:///{tmp_path / 'sim.duckdb'}", "--concept-id", str(DRUG),
                    "--backtest-windows", "0", "--horizon", "6", "--out", str(out)],
                   check=True, capture_output=True)
    assert not (out / "backtest_comparison.csv").exists()
    assert "mase" in (out / "backtest_metrics.csv").read_text()


def test_the_demo_runs_the_demand_step(demo_results):
    """The demo's [demand] step: a forecast folder for celecoxib and diclofenac with the
    backtest of three methods over three windows, and the flow identity exact on GiBleed."""
    out = demo_results.out / "demand"
    step = next(s for s in demo_results.steps if s.name == "demand")
    assert step.status == "ok"
    comparison = pd.read_csv(out / "backtest_comparison.csv")
    assert comparison.groupby(["unique_id", "method"]).size().tolist() == [3] * 6
    forecast = pd.read_parquet(out / "forecast.parquet")
    assert sorted(forecast["unique_id"].str.lower().unique()) == ["celecoxib", "diclofenac"]
    check = pd.read_csv(out / "flow_check.csv")
    assert check["gap_units"].abs().max() == 0  # where shown (small cells are blank)
    # a blanked count cannot be rebuilt from what is shown beside it
    blank = check[check["starters_suppressed"] | check["active_suppressed"]]
    assert len(blank) and blank[["units", "dispensed", "starters_share"]].isna().all().all()
    few = check[check["persons_suppressed"]]
    assert few["dispensed"].isna().all()
    assert "Demand from patients" in (demo_results.out / "report.html").read_text()


def test_indication_cohort_restricts_the_starters(gibleed_cohorts):
    """With CohortGenerator's cohort 2 (celecoxib at age ≥ 40: 569 persons, entering on their
    first fill) as the indication, the 1800 celecoxib starters narrow to its 569."""
    everyone = patient_flow(gibleed_cohorts, DRUG)
    indicated = patient_flow(gibleed_cohorts, DRUG,
                             settings=FlowSettings(indication_cohort=2))
    assert everyone.months["starters"].sum() == 1800
    assert indicated.months["starters"].sum() == 569
    with pytest.raises(DemandInputError, match="indication cohort 99: no rows"):
        patient_flow(gibleed_cohorts, DRUG, settings=FlowSettings(indication_cohort=99))


def test_every_engine_gives_duckdbs_flow(other_engine, tmp_path):
    """The simulated CDM (refills, discontinuation, persons leaving) copied into another
    engine gives the same monthly and cohort aggregates as DuckDB."""
    import dataclasses

    import ibis

    con = duckdb.connect(str(tmp_path / "sim.duckdb"))
    simulate_cdm(con, months=30, starters=15, seed=5)
    tables = {name: con.execute(f"SELECT * FROM {name}").df() for name in (
        "person", "observation_period", "drug_exposure", "concept", "concept_ancestor")}
    con.close()
    db = dataclasses.replace(other_engine.db, cdm_schema="demand_sim",
                             vocab_schema="demand_sim")
    db.ensure_schema("cdm")
    for name, frame in tables.items():
        for column in frame.columns:
            if column.endswith("_date"):
                frame[column] = pd.to_datetime(frame[column]).dt.date
        db.con.create_table(name, ibis.memtable(frame), database="demand_sim", overwrite=True)
    got = patient_flow(db, DRUG)
    on_duckdb = patient_flow(database(f"duckdb:///{tmp_path / 'sim.duckdb'}"), DRUG)
    pd.testing.assert_frame_equal(got.months, on_duckdb.months)
    pd.testing.assert_frame_equal(got.cohorts, on_duckdb.cohorts)


def test_a_bad_scenario_lever_in_study_toml_names_the_key(tmp_path):
    from pharmalab.errors import StudyConfigError
    from pharmalab.study.config import read_study

    study = tmp_path / "study.toml"
    study.write_text('[study]\nname = "x"\n[cdm]\nurl = "duckdb://"\n[demand]\n'
                     'concept_ids = [1118084]\n[demand.scenario]\ncompetitor_share = 2\n')
    with pytest.raises(StudyConfigError, match="demand.scenario.*competitor_share"):
        read_study(study)
    study.write_text(study.read_text().replace("competitor_share = 2", "dose_factor = 1.2"))
    assert read_study(study).demand.scenario["dose_factor"] == 1.2


def test_quantity_and_fills_as_the_unit(five_db):
    """Every fill of the 5-person CDM records 30 tablets: March's two starts are 60 tablets,
    April's (P1's refill and P3's 60-day fill) 60; as fills, 2 and 2."""
    tablets = patient_flow(five_db, DRUG, settings=FlowSettings(measure="quantity"))
    assert tablets.months["units"].tolist() == [60, 60, 30, 0, 0, 30]
    fills = patient_flow(five_db, DRUG, settings=FlowSettings(measure="exposures"))
    assert fills.months["units"].tolist() == [2, 2, 1, 0, 0, 1]
    assert fills.months["dispensed"].tolist() == [3, 2, 1, 0, 0, 1]
