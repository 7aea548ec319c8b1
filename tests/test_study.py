"""study.toml validation, the runner (manifest, report, failed steps) and the demo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import DATA, GIBLEED_TAR, need
from pharmalab.errors import StudyConfigError
from pharmalab.study import demo_cdm_side, read_study, run


def _write(tmp_path, text: str):
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    path = _write(tmp_path, '[study]\nname = "x"\n[cdm]\nurl = "duckdb://"\nsorce = "a.zip"\n')
    with pytest.raises(StudyConfigError) as err:
        read_study(path)
    assert str(err.value) == f"{path}: unknown key 'cdm.sorce'"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[study]\nname = "x"\n[cdm]\n', "missing key 'cdm.url'"),
        ('[study]\nname = "x"\nmin_cell_count = 0\n', "key 'study.min_cell_count'"),
        ('[study]\nname = "x"\n[cdm]\nurl = "duckdb://"\nversion = "6.0"\n', "key 'cdm.version'"),
        ('[study\nname = "x"\n', "not valid TOML"),
    ],
)
def test_invalid_study_files(tmp_path, text, message):
    with pytest.raises(StudyConfigError, match=message):
        read_study(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[study]\nname = "x"\n[cdm]\nurl = "sqlite:///x.db"\n', "unknown scheme 'sqlite'"),
        ('[study]\nname = "x"\n[cdm]\nurl = "duckdb:///{outdir}/x.duckdb"\n',
         "unknown placeholder {outdir}"),
        ('[study]\nname = "x"\nmin_cell_count = "7"\n', "key 'study.min_cell_count'"),
        ('[study]\nname = "x"\n[[sales.inputs]]\nsource = "s.csv"\n',
         "a CSV sales source needs ds_column"),
        ('[study]\nname = "x"\n[incidence]\ntargets = [1]\n',
         "give either design .* or targets and outcomes"),
        ('[study]\nname = "x"\n[incidence]\ntargets = [1]\noutcomes = [2]\n'
         'tars = ["start+0:finish"]\n', "time at risk 'start\\+0:finish'"),
        ('[study]\nname = "x"\n[survival]\ntargets = [1, 2, 3]\noutcome = 4\n',
         "key 'survival.targets'"),
        ('[study]\nname = "x"\n[characterize]\ntarget = "7"\n', "key 'characterize.target'"),
    ],
)
def test_invalid_values_are_caught_before_running(tmp_path, text, message):
    with pytest.raises(StudyConfigError, match=message):
        read_study(_write(tmp_path, text))


def test_the_demo_studys_cdm_side_keeps_every_cdm_step_and_drops_the_others(tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    text = demo_cdm_side(url="duckdb:///{out}/cdm.duckdb?memory_limit=2GB", source="/data/x10")
    study = read_study(_write(folder, text))
    assert (study.sales, study.forecast, study.supply, study.marketing) == (None,) * 4
    for section in ("cdm", "cohorts", "characterize", "incidence", "survival", "extract",
                    "journey", "pathways", "demand"):
        assert getattr(study, section) is not None, section
    assert study.cdm.url == "duckdb:///{out}/cdm.duckdb?memory_limit=2GB"
    assert study.cdm.source == "/data/x10"
    assert Path(study.cohorts.path).is_absolute() and Path(study.cohorts.path).is_dir()
    # a quote or a backslash in a value (a Windows path) is escaped, not a broken TOML file
    odd = 'C:\\CDM\\x "10"'
    study = read_study(_write(folder, demo_cdm_side(source=odd)))
    assert study.cdm.source == odd


def test_missing_study_file(tmp_path):
    with pytest.raises(StudyConfigError, match="does not exist"):
        run(tmp_path / "nope.toml")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_step_is_recorded_and_the_others_still_run(tmp_path):
    archive = need(GIBLEED_TAR)
    path = _write(tmp_path, f"""
[study]
name = "partly broken"
out = "results"
[cdm]
url = "duckdb:///{{out}}/cdm.duckdb"
source = "{archive}"
[[sales.inputs]]
source = "missing_sales.csv"
ds_column = "Month"
y_column = "Cost"
""")
    result = run(path)
    status = {s.name: s.status for s in result.steps}
    assert status == {"cdm_load": "ok", "cdm_check": "ok", "sales": "failed"}
    assert not result.ok
    manifest = json.loads(result.manifest.read_text())
    assert manifest["status"] == "failed"
    failed = next(s for s in manifest["steps"] if s["name"] == "sales")
    assert "missing_sales.csv' does not exist" in failed["error"]
    assert manifest["inputs_sha256"][str(path)]
    assert manifest["inputs_sha256"][str(archive)]
    assert manifest["cdm_source"]["cdm_source_name"] == "Synthea synthetic health database"
    checks = pd.read_csv(tmp_path / "results" / "cdm" / "cdm_check.csv")
    assert set(checks.columns) >= {"check", "table", "column", "severity", "rows_affected"}
    report = result.report.read_text()
    assert "partly broken" in report and "missing_sales.csv" in report


def test_a_step_that_needs_a_failed_step_is_skipped(tmp_path):
    path = _write(tmp_path, """
[study]
name = "bad cdm"
[cdm]
url = "duckdb:///{out}/cdm.duckdb"
source = "no_such_cdm.zip"
""")
    result = run(path, tmp_path / "out")
    assert [(s.name, s.status) for s in result.steps] == [
        ("cdm_load", "failed"), ("cdm_check", "skipped")]
    assert not (tmp_path / "out" / "cdm.duckdb").exists()
    assert (tmp_path / "out" / "report.html").exists()


def test_demo_study_runs_end_to_end(demo_results):
    result = demo_results
    assert result.ok, [(s.name, s.error) for s in result.steps]
    out = result.out
    summary = json.loads((out / "cdm" / "cdm_summary.json").read_text())
    assert summary["persons"] == 2694
    tables = pd.read_csv(out / "cdm" / "cdm_tables.csv")
    assert dict(zip(tables["table"], tables["rows"], strict=True))["drug_exposure"] == 67707
    series = pd.read_csv(out / "sales" / "series.csv")
    assert series.groupby("unique_id").size().to_dict() == {"A10": 204, "H02": 204}
    manifest = json.loads(result.manifest.read_text())
    assert manifest["libraries"]["ibis-framework"].startswith("12.")
    assert [(s["name"], s["status"]) for s in manifest["steps"]] == [
        ("cdm_load", "ok"), ("cdm_check", "ok"), ("cohorts", "ok"), ("characterize", "ok"),
        ("incidence", "ok"), ("survival", "ok"), ("extract", "ok"), ("journey", "ok"),
        ("pathways", "ok"), ("sales", "ok"), ("forecast", "ok"), ("supply", "ok"),
        ("marketing", "ok"), ("demand", "ok")]
    counts = pd.read_csv(out / "cohorts" / "cg_cohort_count.csv")
    assert counts.set_index("cohort_id")["cohort_subjects"].to_dict() == {
        1: 1800, 2: 569, 3: 266, 4: 1750, 5: 479, 6: 830, 7: 1800}
    # characterization of celecoxib (7) vs diclofenac (6) new users, GI bleed (5)
    one = pd.read_csv(out / "characterize" / "table_one.csv").set_index("covariate_name")
    assert one.loc["gender = MALE", ["target_count", "comparator_count"]].tolist() == [894, 395]
    incidence = pd.read_csv(out / "characterize" / "incidence_summary.csv")
    overall = incidence[incidence.age_group_id.isna() & incidence.gender_id.isna()]
    assert overall.set_index(["target_cohort_definition_id", "tar_id"]).loc[
        (7, 1), ["persons_at_risk", "outcomes"]].tolist() == [1800, 113]
    km = pd.read_csv(out / "characterize" / "km_survival.csv")
    assert set(km.cohort_definition_id) == {6, 7}
    assert json.loads((out / "characterize" / "survival_summary.json").read_text())[
        "log_rank"]["p_value"] < 0.05
    # the GI-bleed patients' records, de-identified, with the small-k override recorded
    extraction = json.loads((out / "extract" / "cohort_5" / "manifest.json").read_text())
    assert extraction["deidentification"]["deidentified"] is True
    assert extraction["k_anonymity"]["allow_small_k"] is True
    assert extraction["k_anonymity"]["written_under_k_min"] is True
    assert (out / "extract" / "cohort_5" / "person").is_dir()
    # NSAID adherence (PQA PDC) and persistence; pathways of celecoxib users
    pdc = pd.read_csv(out / "journey" / "pdc_summary.csv").set_index("stratum_value")
    assert pdc.loc["all", "patients"] == 857  # ≥ 2 fills on different dates, 2000–2019
    pathways = pd.read_csv(out / "journey" / "pathways.csv").set_index("pathway")
    assert pathways.n_persons.to_dict() == {"celecoxibNewUsers": 1445,
                                            "celecoxibNewUsers-giBleed": 355}
    support = pd.read_csv(out / "journey" / "support_list.csv")
    assert "person_id" not in support.columns and len(support) > 0
    # H02 and A10 forecast 24 months from July 2008 with AutoARIMA among the models
    fc = pd.read_parquet(out / "forecast" / "forecast.parquet")
    assert fc.groupby("unique_id").size().to_dict() == {"A10": 24, "H02": 24}
    assert fc["ds"].min() == pd.Timestamp("2008-07-01")
    assert (fc["lo-95"] <= fc["mean"]).all() and (fc["mean"] <= fc["hi-95"]).all()
    choice = pd.read_csv(out / "forecast" / "model_choice.csv")
    assert (choice["weight_AutoARIMA"] > 0).all()
    # (R, S) policies for a 95% fill rate and their backtest on the 3 windows, both policies
    policy = pd.read_csv(out / "supply" / "policy.csv")
    assert sorted(policy["unique_id"]) == ["A10", "H02"] and (policy["lead_time"] == 2).all()
    backtest = pd.read_csv(out / "supply" / "backtest.csv")
    assert len(backtest) == 6 and backtest["naive_fill_rate"].notna().all()
    # the simulated brand's marketing mix: the true ROI inside every 90% interval, and next
    # quarter's budget split with its demand as a forecast folder for supply
    roi = pd.read_csv(out / "marketing" / "roi.csv")
    truth = pd.read_csv(out / "marketing" / "truth_roi.csv")
    assert roi["channel"].tolist() == truth["channel"].tolist() == [
        "detailing", "samples", "hcp_email"]
    assert ((roi["roi_lo"] <= truth["roi"]) & (truth["roi"] <= roi["roi_hi"])).all()
    assert roi["converged"].all()
    allocation = pd.read_csv(out / "marketing" / "allocation" / "allocation.csv")
    assert allocation.set_index("channel").loc["Total", "recommended_spend"] == \
        pytest.approx(500_000)
    assert (out / "marketing" / "allocation" / "forecast" / "paths.parquet").is_file()
    assert (out / "marketing" / "latent_demand.parquet").is_file()
    report = result.report.read_text()
    assert "Marketing mix and budget" in report and "converged: max R-hat" in report
    assert "Sales forecast" in report
    assert "63,323 distinct of 67,707" in report and "Plotly" in report
    assert "1,844 persons where Circe has 1,800" in report  # which semantics, said
    # results are complete files: no temporary names left behind
    assert not [p for p in out.rglob(".*") if p.is_file()]


def test_relative_paths_resolve_against_the_study_file(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(need(DATA / "sales" / "h02_fpp2.csv"), folder / "h02.csv")
    path = folder / "study.toml"
    path.write_text("""
[study]
name = "sales only"
out = "results"
[[sales.inputs]]
source = "h02.csv"
ds_column = "Month"
y_column = "Cost_millions_AUD"
unique_id = "H02"
""")
    result = run(path)
    assert result.ok and result.out == folder / "results"
    series = pd.read_csv(folder / "results" / "sales" / "series.csv")
    assert len(series) == 204 and series["y"].iloc[0] == pytest.approx(0.429795)


def test_a_rerun_removes_the_last_runs_files_of_a_step_before_it_runs(tmp_path):
    # run 1 writes sales/series.csv; run 2's sales step fails: the old file must not stay
    # beside the new manifest (it would look like this run's result)
    good = tmp_path / "good.csv"
    good.write_text("Month,Cost\n2000-01,1\n2000-02,2\n")
    path = _write(tmp_path, f'[study]\nname = "x"\n[[sales.inputs]]\nsource = "{good}"\n'
                            'ds_column = "Month"\ny_column = "Cost"\n')
    first = run(path, tmp_path / "out")
    assert first.ok and (tmp_path / "out" / "sales" / "series.csv").exists()
    good.write_text("Month,Cost\n2000-01,x\n")
    second = run(path, tmp_path / "out")
    assert [s.status for s in second.steps] == ["failed"]
    assert not (tmp_path / "out" / "sales" / "series.csv").exists()
    assert json.loads(second.manifest.read_text())["status"] == "failed"
