"""Cohorts on GiBleed (DuckDB): CohortGenerator's published counts and statistics, negative
controls, incremental and atomic generation, and cohort-set validation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import sqlglot

from conftest import DATA, need
from pharmalab import cohorts
from pharmalab.cohorts.sql import cohort_sql
from pharmalab.engine import database
from pharmalab.errors import CohortDefinitionError

COHORTGENERATOR = DATA / "cohorts" / "cohortgenerator"
REFERENCE = COHORTGENERATOR / "reference_results"
DEMO_SET = Path(__file__).resolve().parents[1] / "src" / "pharmalab" / "study" / "demo" / "cohorts"


@pytest.fixture(scope="module")
def exported(gibleed_cohorts, tmp_path_factory):
    out = tmp_path_factory.mktemp("cg_export")
    nc = pd.read_csv(need(REFERENCE / "cg_cohort_count_neg_ctrl.csv"))["cohort_id"].tolist()
    cohorts.export_cohort_statistics(gibleed_cohorts, out, [1, 2, 3, 4],
                                     negative_control_ids=nc, database_id="Eunomia")
    return out


@pytest.mark.parametrize("name", [
    "cg_cohort_inclusion.csv", "cg_cohort_inc_result.csv", "cg_cohort_inc_stats.csv",
    "cg_cohort_summary_stats.csv", "cg_cohort_censor_stats.csv", "cg_cohort_count_neg_ctrl.csv",
])
def test_statistics_equal_cohortgenerator(exported, name):
    reference = pd.read_csv(need(REFERENCE / name)).fillna("")
    ours = pd.read_csv(exported / name).fillna("")
    assert list(reference.columns) == [c for c in ours.columns if not c.endswith("_suppressed")]
    key = list(reference.columns)
    pd.testing.assert_frame_equal(
        ours[key].sort_values(key, ignore_index=True),
        reference.sort_values(key, ignore_index=True), check_dtype=False)


def test_counts_equal_cohortgenerator(exported):
    reference = pd.read_csv(need(REFERENCE / "cg_cohort_count.csv"))
    reference = reference[reference["cohort_id"] <= 4]  # 1001… are subsets (not in scope)
    ours = pd.read_csv(exported / "cg_cohort_count.csv")
    assert ours[list(reference.columns)].to_dict("records") == reference.to_dict("records")
    # the published numbers, spelled out
    assert ours.set_index("cohort_id")["cohort_subjects"].to_dict() == {
        1: 1800, 2: 569, 3: 266, 4: 1750}


def test_negative_control_counts(gibleed_cohorts):
    counts = cohorts.cohort_counts(gibleed_cohorts, [4059173, 4048695, 40480160])
    assert counts.set_index("cohort_id")[["cohort_entries", "cohort_subjects"]].to_dict(
        "index") == {4048695: {"cohort_entries": 23, "cohort_subjects": 23},
                     4059173: {"cohort_entries": 464, "cohort_subjects": 427},
                     40480160: {"cohort_entries": 77, "cohort_subjects": 56}}


def test_cohort_rows_have_the_ohdsi_shape(gibleed_cohorts):
    cohort = gibleed_cohorts.table("cohort", "results")
    assert list(cohort.columns) == ["cohort_definition_id", "subject_id", "cohort_start_date",
                                    "cohort_end_date"]
    bad = cohort.filter(cohort.cohort_end_date < cohort.cohort_start_date).count().execute()
    assert bad == 0
    # cohort 4 is censored at 2000-01-01: no row starts earlier
    four = cohort.filter(cohort.cohort_definition_id == 4)
    assert str(four.cohort_start_date.min().execute()) >= "2000-01-01"


@pytest.fixture
def work_db(gibleed_csv_db, tmp_path):
    path = tmp_path / "cdm.duckdb"
    shutil.copy(gibleed_csv_db[0], path)
    db = database(f"duckdb://{path}?results_schema=results")
    yield db
    db.con.disconnect()


def test_demo_set_gi_bleed_and_incremental_runs(work_db, tmp_path):
    first = cohorts.generate_cohorts(work_db, cohorts.read_cohort_set(need(DEMO_SET)))
    # 6 and 7: diclofenac and celecoxib new users (first exposure, 365 days prior observation)
    assert first.counts.set_index("cohort_id")["cohort_subjects"].to_dict() == {
        1: 1800, 2: 569, 3: 266, 4: 1750, 5: 479, 6: 830, 7: 1800}
    again = cohorts.generate_cohorts(work_db, cohorts.read_cohort_set(DEMO_SET))
    assert [r.status for r in again.runs] == ["SKIPPED"] * 7
    assert again.counts["cohort_subjects"].tolist() == [1800, 569, 266, 1750, 479, 830, 1800]
    # change one definition: only it regenerates
    changed = tmp_path / "set"
    shutil.copytree(DEMO_SET, changed)
    spec = json.loads((changed / "cohorts" / "5.json").read_text())
    spec["PrimaryCriteria"]["PrimaryCriteriaLimit"]["Type"] = "First"
    (changed / "cohorts" / "5.json").write_text(json.dumps(spec))
    third = cohorts.generate_cohorts(work_db, cohorts.read_cohort_set(changed))
    assert [r.status for r in third.runs] == ["SKIPPED"] * 4 + ["COMPLETE"] + ["SKIPPED"] * 2
    assert third.counts.set_index("cohort_id")["cohort_subjects"][5] == 479
    forced = cohorts.generate_cohorts(work_db, cohorts.read_cohort_set(changed), force=True)
    assert [r.status for r in forced.runs] == ["COMPLETE"] * 7
    generation = work_db.table("cohort_generation", "results").execute()
    assert set(generation["generation_status"]) == {"COMPLETE"}
    assert generation["checksum"].str.len().eq(64).all()


def _set_of_five_with_one_broken(tmp_path) -> Path:
    """Cohorts 1–4 and a fifth whose entry event is a death: valid Circe, but this CDM has
    no death table, so its SQL fails in the database."""
    folder = tmp_path / "five"
    shutil.copytree(need(COHORTGENERATOR / "cohorts"), folder)
    spec = json.loads((folder / "1.json").read_text())
    spec["PrimaryCriteria"]["CriteriaList"] = [{"Death": {}}]
    (folder / "5.json").write_text(json.dumps(spec))
    return folder


def test_a_killed_runs_staging_tables_are_dropped_by_the_next(work_db):
    from pharmalab.cohorts import tables

    tables.ensure_tables(work_db)
    tables.create_stage(work_db, "_pl_pdead001_cohort", "cohort")
    result = cohorts.generate_cohorts(work_db, cohorts.read_cohort_set(need(COHORTGENERATOR)))
    assert not result.failed
    assert not [t for t in work_db.list_tables("results") if t.startswith("_pl_")]


def test_a_broken_cohort_fails_alone(work_db, tmp_path):
    work_db.con.drop_table("death")
    result = cohorts.generate_cohorts(work_db, cohorts.read_cohort_set(
        _set_of_five_with_one_broken(tmp_path)))
    status = {r.cohort_id: r.status for r in result.runs}
    assert status == {1: "COMPLETE", 2: "COMPLETE", 3: "COMPLETE", 4: "COMPLETE", 5: "FAILED"}
    assert "death" in result.failed[0].error.lower()
    counts = cohorts.cohort_counts(work_db)
    assert counts.set_index("cohort_id")["cohort_subjects"].to_dict() == {
        1: 1800, 2: 569, 3: 266, 4: 1750}
    # no staging or temp table left behind
    assert [t for t in work_db.list_tables("results") if t.startswith("_pl_")] == []
    generation = work_db.table("cohort_generation", "results").execute().set_index("cohort_id")
    assert generation.loc[5, "generation_status"] == "FAILED"


def test_a_failed_regeneration_keeps_the_previous_rows(work_db, tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(need(COHORTGENERATOR / "cohorts" / "1.json"), folder / "1.json")
    cohorts.generate_cohorts(work_db, cohorts.read_cohort_set(folder))
    work_db.con.drop_table("death")
    spec = json.loads((folder / "1.json").read_text())
    spec["PrimaryCriteria"]["CriteriaList"] = [{"Death": {}}]
    (folder / "1.json").write_text(json.dumps(spec))
    result = cohorts.generate_cohorts(work_db, cohorts.read_cohort_set(folder))
    assert result.runs[0].status == "FAILED"
    assert cohorts.cohort_counts(work_db, [1])["cohort_subjects"].tolist() == [1800]


# --- cohort-set validation: an error naming the file and the field, before anything runs ---


def _catalogue(tmp_path, rows: str) -> Path:
    folder = tmp_path / "set"
    (folder / "cohorts").mkdir(parents=True)
    for i in (1, 2):
        shutil.copy(need(COHORTGENERATOR / "cohorts" / f"{i}.json"), folder / "cohorts")
    (folder / "Cohorts.csv").write_text(rows)
    return folder


def test_duplicate_ids(tmp_path):
    folder = _catalogue(tmp_path, "cohort_id,cohort_name\n1,a\n2,b\n1,c\n")
    with pytest.raises(CohortDefinitionError, match=r"Cohorts.csv, line 4: duplicate "
                                                    r"cohort_id 1 \(first at line 2\)"):
        cohorts.read_cohort_set(folder)


def test_missing_definition_file(tmp_path):
    folder = _catalogue(tmp_path, "cohort_id,cohort_name\n1,a\n3,c\n")
    with pytest.raises(CohortDefinitionError, match=r"cohort 3: definition file .*3.json' "
                                                    "does not exist"):
        cohorts.read_cohort_set(folder)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda text: text[:-20], r"2.json: not valid JSON at line \d+"),
    (lambda text: text.replace('"PrimaryCriteria"', '"PrimaryCriterion"'),
     r"2.json: unknown field 'PrimaryCriterion'"),
    (lambda text: text.replace('"CodesetId": 0', '"CodesetId": 7'),
     r"2.json: field 'PrimaryCriteria.CriteriaList.0.DrugEra.CodesetId' = 7 names no "
     r"concept set"),
    (lambda text: text.replace('"Type": "First"', '"Type": 3', 1),
     r"2.json: field '.*Type': Input should be a valid string"),
])
def test_invalid_definitions_name_file_and_field(tmp_path, edit, message):
    folder = _catalogue(tmp_path, "cohort_id,cohort_name\n1,a\n2,b\n")
    path = folder / "cohorts" / "2.json"
    path.write_text(edit(path.read_text()))
    with pytest.raises(CohortDefinitionError, match=message):
        cohorts.read_cohort_set(folder)


# circepy's snake_case YAML: every condition occurrence of GI bleed (192671 and descendants)
GI_BLEED_YAML = (
    "title: GI bleed\n"
    "concept_sets:\n"
    "  - id: 0\n    name: GI bleed\n"
    "    expression:\n      items:\n"
    "        - concept: {concept_id: 192671}\n          include_descendants: true\n"
    "primary_criteria:\n  criteria_list:\n    - condition_occurrence: {codeset_id: 0}\n"
    "  observation_window: {prior_days: 0, post_days: 0}\n"
    "  primary_criteria_limit: {type: All}\n"
)


def test_folder_of_json_and_yaml(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    shutil.copy(need(COHORTGENERATOR / "cohorts" / "1.json"), folder / "1.json")
    (folder / "7.yaml").write_text(GI_BLEED_YAML)
    cohort_set = cohorts.read_cohort_set(folder)
    assert cohort_set.ids == [1, 7]
    assert [c.cohort_name for c in cohort_set] == ["1", "GI bleed"]


def test_yaml_cohort_generates(work_db, tmp_path):
    folder = tmp_path / "yaml"
    folder.mkdir()
    (folder / "7.yaml").write_text(GI_BLEED_YAML)
    result = cohorts.generate_cohorts(work_db, cohorts.read_cohort_set(folder))
    assert result.counts["cohort_subjects"].tolist() == [479]


def test_negative_control_file_errors(tmp_path):
    path = tmp_path / "nc.csv"
    path.write_text("outcome_concept_id,occurrence_type\n4059173,sometimes\n")
    with pytest.raises(CohortDefinitionError, match=r"nc.csv, line 2: occurrence_type must be "
                                                    r"'first' or 'all', found 'sometimes'"):
        cohorts.read_negative_controls(path)
    path.write_text("concept,name\n4059173,x\n")
    with pytest.raises(CohortDefinitionError, match="column 'outcome_concept_id' is missing"):
        cohorts.read_negative_controls(path)


def test_negative_controls_first_occurrence(work_db):
    controls = pd.DataFrame({"cohort_id": [1], "cohort_name": ["ankle"],
                             "outcome_concept_id": [4059173], "occurrence_type": ["first"],
                             "detect_on_descendants": [True]})
    counts = cohorts.generate_negative_control_cohorts(work_db, controls)
    # first occurrence: one entry per person (427 persons have the 464 events)
    assert counts[["cohort_entries", "cohort_subjects"]].values.tolist() == [[427, 427]]


# --- BigQuery: every cohort's SQL compiles offline and parses as BigQuery -----------------


@pytest.mark.parametrize("folder", [COHORTGENERATOR, DEMO_SET], ids=["cohortgenerator", "demo"])
def test_bigquery_sql_parses(folder):
    stats = {"cohort_inclusion_result": "stage_inc_result",
             "cohort_inclusion_stats": "stage_inc_stats",
             "cohort_summary_stats": "stage_summary_stats",
             "cohort_censor_stats": "stage_censor_stats"}
    for definition in cohorts.read_cohort_set(need(folder)):
        built = cohort_sql(definition, engine="bigquery", cdm_schema="cdm", vocab_schema="cdm",
                           results_schema="results", cohort_table="stage_cohort",
                           stats_tables=stats, temp_schema="scratch")
        assert len(built.statements) > 10
        for statement in built.statements:
            parsed = sqlglot.parse_one(statement, read="bigquery")
            assert parsed is not None
        inserts = [s for s in built.statements if s.lower().startswith("insert into results.")]
        assert any("stage_cohort" in s for s in inserts)


def test_same_definition_under_another_id(work_db, tmp_path):
    # translated SQL is cached; the cohort id is part of it, so a copy under id 7 has rows
    folder = tmp_path / "copies"
    folder.mkdir()
    for cohort_id in (1, 7):
        shutil.copy(need(COHORTGENERATOR / "cohorts" / "1.json"), folder / f"{cohort_id}.json")
    result = cohorts.generate_cohorts(work_db, cohorts.read_cohort_set(folder))
    assert result.counts["cohort_subjects"].tolist() == [1800, 1800]


def test_negative_controls_must_not_reuse_cohort_ids(tmp_path):
    controls = pd.DataFrame({"cohort_id": [4059173, 2], "cohort_name": ["a", "b"],
                             "outcome_concept_id": [4059173, 1], "occurrence_type": ["all"] * 2,
                             "detect_on_descendants": [True] * 2})
    with pytest.raises(CohortDefinitionError, match="cohort_id 2 is also a cohort of the set"):
        cohorts.check_ids_apart(controls, [1, 2, 3])


@pytest.mark.parametrize(("content", "message"), [
    (None, r"field 'PrimaryCriteria.CriteriaList.0.DrugEra.CodesetID' is not a Circe field"),
    (b"\xff\xfe\x00garbage", "not a UTF-8 text file"),
])
def test_typos_and_binary_files(tmp_path, content, message):
    folder = _catalogue(tmp_path, "cohort_id,cohort_name\n1,a\n")
    path = folder / "cohorts" / "1.json"
    if content is None:
        path.write_text(path.read_text().replace('"CodesetId"', '"CodesetID"'))
    else:
        path.write_bytes(content)
    with pytest.raises(CohortDefinitionError, match=message):
        cohorts.read_cohort_set(folder)


@pytest.mark.parametrize(("rows", "message"), [
    ("cohort_id,cohort_name\n1,a,extra\n", "line 2: more values than columns"),
    ("cohort_id,cohort_name\n99999999999999999999,a\n", "out of range"),
    ("cohort_id,cohort_name\n", "no cohorts listed"),
    ("id,cohort_name\n1,a\n", "column 'cohort_id' is missing"),
])
def test_bad_catalogues(tmp_path, rows, message):
    with pytest.raises(CohortDefinitionError, match=message):
        cohorts.read_cohort_set(_catalogue(tmp_path, rows))


def test_shared_entry_events_survive_a_failure_between(work_db, tmp_path):
    # 1, 5 and 2 share their entry events (built once and reused on DuckDB); 5 fails after
    # building them (its censoring criterion reads the dropped death table): 2 must rebuild
    folder = tmp_path / "chain"
    (folder / "cohorts").mkdir(parents=True)
    for i in (1, 2):
        shutil.copy(need(COHORTGENERATOR / "cohorts" / f"{i}.json"), folder / "cohorts")
    spec = json.loads((folder / "cohorts" / "1.json").read_text())
    spec["CensoringCriteria"] = [{"Death": {}}]
    (folder / "cohorts" / "5.json").write_text(json.dumps(spec))
    (folder / "Cohorts.csv").write_text("cohort_id,cohort_name\n1,a\n5,b\n2,c\n")
    work_db.con.drop_table("death")
    result = cohorts.generate_cohorts(work_db, cohorts.read_cohort_set(folder))
    assert [r.status for r in result.runs] == ["COMPLETE", "FAILED", "COMPLETE"]
    counts = result.counts.set_index("cohort_id")["cohort_subjects"].to_dict()
    assert (counts[1], counts[2]) == (1800, 569)
    stats = work_db.table("cohort_inc_result", "results").execute()
    assert sorted(stats[stats["mode_id"] == 0]["person_count"]) == [569, 1231]


def _two_observation_periods(db) -> None:
    """circe-be#229's person: observed 2001-01-01 – 2002-12-31 and 2003-03-01 – 2011-12-31,
    celecoxib 2002-11-04 – 2002-12-31 and 2003-03-01 – 2003-03-12."""
    raw = db.con.raw_sql
    raw("INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id, "
        "ethnicity_concept_id) VALUES (900000001, 8507, 1950, 0, 0)")
    raw("INSERT INTO observation_period (observation_period_id, person_id, "
        "observation_period_start_date, observation_period_end_date, period_type_concept_id) "
        "VALUES (900000001, 900000001, DATE '2001-01-01', DATE '2002-12-31', 44814724), "
        "(900000002, 900000001, DATE '2003-03-01', DATE '2011-12-31', 44814724)")
    raw("INSERT INTO drug_exposure (drug_exposure_id, person_id, drug_concept_id, "
        "drug_exposure_start_date, drug_exposure_end_date, drug_type_concept_id) VALUES "
        "(900000001, 900000001, 1118084, DATE '2002-11-04', DATE '2002-12-31', 38000177), "
        "(900000002, 900000001, 1118084, DATE '2003-03-01', DATE '2003-03-12', 38000177)")


def _celecoxib_exposure_eras(tmp_path, pad: int) -> Path:
    spec = json.loads((COHORTGENERATOR / "cohorts" / "3.json").read_text())
    spec["PrimaryCriteria"] = {
        "CriteriaList": [{"DrugExposure": {"CodesetId": 0}}],
        "ObservationWindow": {"PriorDays": 0, "PostDays": 0},
        "PrimaryCriteriaLimit": {"Type": "All"}}
    spec["QualifiedLimit"] = spec["ExpressionLimit"] = {"Type": "All"}
    spec["InclusionRules"] = []
    spec["EndStrategy"] = {"DateOffset": {"DateField": "EndDate", "Offset": 0}}
    spec["CollapseSettings"] = {"CollapseType": "ERA", "EraPad": pad}
    folder = tmp_path / f"eras{pad}"
    folder.mkdir()
    (folder / "31.json").write_text(json.dumps(spec))
    return folder


def _rows_of(db, person_id: int) -> list[tuple[str, str]]:
    rows = db.table("cohort", "results").execute()
    rows = rows[rows["subject_id"] == person_id].sort_values("cohort_start_date")
    return [(str(r.cohort_start_date)[:10], str(r.cohort_end_date)[:10])
            for r in rows.itertuples()]


def test_eras_within_observation_periods_circe_be_229(work_db, tmp_path):
    """Issue 15 item 9: Circe's era collapse (pad 90) stitches the two exposures across the
    unobserved 2003-01-01 – 2003-02-28 into one era 2002-11-04 – 2003-03-12 (the default,
    ATLAS's result); bounded to observation periods they are two eras, the first ending with
    its observation period. Switching the option regenerates the cohort."""
    _two_observation_periods(work_db)
    folder = _celecoxib_exposure_eras(tmp_path, 90)
    cohorts.generate_cohorts(work_db, cohorts.read_cohort_set(folder))
    assert _rows_of(work_db, 900000001) == [("2002-11-04", "2003-03-12")]
    again = cohorts.generate_cohorts(work_db, cohorts.read_cohort_set(folder),
                                     eras_within_observation=True)
    assert [r.status for r in again.runs] == ["COMPLETE"]
    assert _rows_of(work_db, 900000001) == [("2002-11-04", "2002-12-31"),
                                            ("2003-03-01", "2003-03-12")]
    # Second case: an exit 30 days after each exposure would run past the first period's
    # end; bounded, it is cut at 2002-12-31 (Circe's own end strategy caps it there too).
    spec = json.loads((folder / "31.json").read_text())
    spec["EndStrategy"] = {"DateOffset": {"DateField": "EndDate", "Offset": 30}}
    (folder / "31.json").write_text(json.dumps(spec))
    cohorts.generate_cohorts(work_db, cohorts.read_cohort_set(folder),
                             eras_within_observation=True)
    assert _rows_of(work_db, 900000001) == [("2002-11-04", "2002-12-31"),
                                            ("2003-03-01", "2003-04-11")]
    # The same set on another engine's SQL: the bounded collapse is in every translation.
    definition = next(iter(cohorts.read_cohort_set(folder)))
    for engine in ("pyspark", "bigquery", "postgres"):
        sql = cohort_sql(definition, engine=engine, cdm_schema="cdm", vocab_schema="cdm",
                         results_schema="results", cohort_table="cohort", stats_tables={},
                         stats=False, eras_within_observation=True)
        assert any("op_start_date, group_idx" in s.replace("\n", " ") for s in sql.statements)


def test_translation_in_worker_processes_gives_the_same_cohorts(work_db, tmp_path,
                                                                 monkeypatch):
    """circe's SQL translated in two spawned processes (as for a large set's first run) gives
    CohortGenerator's published counts and the same statistics, and lands in the cache."""
    monkeypatch.setenv("PHARMALAB_CACHE", str(tmp_path / "cache"))  # nothing translated yet
    cohort_set = cohorts.read_cohort_set(COHORTGENERATOR)
    result = cohorts.generate_cohorts(work_db, cohort_set, translation_workers=2)
    assert [r.status for r in result.runs] == ["COMPLETE"] * 4, [r.error for r in result.runs]
    assert result.counts["cohort_subjects"].tolist() == [1800, 569, 266, 1750]
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 4
    stats = work_db.table("cohort_inc_stats", "results").execute()
    reference = pd.read_csv(need(REFERENCE / "cg_cohort_inc_stats.csv"))
    assert len(stats) == len(reference) > 0
