"""The pharmalab command as a user runs it: numbers printed, one-line errors, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from conftest import DATA, GIBLEED_TAR, need

PHARMALAB = [sys.executable, "-m", "pharmalab.cli"]


def _run(*args, cwd=None):
    return subprocess.run([*PHARMALAB, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_cdm_load_then_check_prints_the_gibleed_numbers(tmp_path):
    db = tmp_path / "gibleed.duckdb"
    load = _run("cdm", "load", "eunomia:GiBleed", "--cdm", f"duckdb://{db}")
    assert load.returncode == 0, load.stderr
    assert "67,707" in load.stdout and "OMOP CDM v5.3" in load.stdout
    check = _run("cdm", "check", "--cdm", f"duckdb://{db}", "--out", tmp_path)
    assert check.returncode == 0, check.stderr
    for number in ("63,323 distinct of 67,707", "2,649", "8,652", "2,694"):
        assert number in check.stdout, number
    findings = pd.read_csv(tmp_path / "cdm_check.csv")
    assert list(findings.columns[:5]) == ["check", "table", "column", "severity",
                                          "rows_affected"]


def _assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_inputs_give_one_line_and_exit_2(tmp_path):
    folder = tmp_path / "cdm"
    folder.mkdir()
    (folder / "person.csv").write_text("person_id,gender_concept_id\n1,8507\n")
    target = tmp_path / "x.duckdb"
    _assert_one_line_error(_run("cdm", "load", folder, "--cdm", f"duckdb://{target}"),
                           "person.csv", "year_of_birth")
    _assert_one_line_error(_run("cdm", "load", tmp_path / "missing.zip", "--cdm",
                                f"duckdb://{target}"), "missing.zip", "does not exist")
    _assert_one_line_error(_run("cdm", "load", folder, "--cdm", "oracle://db"),
                           "unknown scheme 'oracle'")
    _assert_one_line_error(_run("cdm", "check", "--cdm", f"duckdb://{target}"),
                           "does not exist")
    assert not target.exists()
    study = tmp_path / "study.toml"
    study.write_text('[study]\nname = "x"\ncolour = "red"\n')
    _assert_one_line_error(_run("run", study, "--out", tmp_path / "never"),
                           "unknown key 'study.colour'", str(study))
    assert not (tmp_path / "never").exists()


def test_load_into_named_schemas(tmp_path):
    db = tmp_path / "s.duckdb"
    proc = _run("cdm", "load", "eunomia:GiBleed", "--cdm", f"duckdb://{db}", "--cdm-schema",
                "cdm", "--vocab-schema", "vocab")
    assert proc.returncode == 0, proc.stderr
    check = _run("cdm", "check", "--cdm", f"duckdb://{db}?cdm_schema=cdm&vocab_schema=vocab",
                 "--out", tmp_path)
    assert check.returncode == 0, check.stderr
    assert "2,694" in check.stdout and "v5.0 18-JAN-19" in check.stdout


def test_truncated_archive_from_the_cli(tmp_path):
    data = need(GIBLEED_TAR).read_bytes()
    broken = tmp_path / "broken.tar.xz"
    broken.write_bytes(data[:100_000])
    target = tmp_path / "x.duckdb"
    _assert_one_line_error(_run("cdm", "load", broken, "--cdm", f"duckdb://{target}"),
                           "broken.tar.xz", "truncated")
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["broken.tar.xz"]


def test_failed_study_step_exits_1(tmp_path):
    study = tmp_path / "study.toml"
    study.write_text('[study]\nname = "x"\n[[sales.inputs]]\nsource = "nope.csv"\n'
                     'ds_column = "Month"\ny_column = "Cost"\n')
    proc = _run("run", study, "--out", tmp_path / "out")
    assert proc.returncode == 1
    assert (tmp_path / "out" / "manifest.json").exists()
    assert "failed" in proc.stdout


def test_characterization_commands_on_the_demo_cohorts(gibleed_demo_cohorts, tmp_path):
    # a copy, so the child process can open it while the session's connection stays open
    gibleed_demo_cohorts.con.raw_sql("CHECKPOINT")
    path = tmp_path / "cdm.duckdb"
    shutil.copy(gibleed_demo_cohorts.url.target, path)
    url = f"duckdb://{path}?results_schema=results"
    inc = _run("incidence", "--cdm", url, "--target-id", 7, "--target-id", 6,
               "--outcome-id", 5, "--tar", "start+0:end+0", "--by-gender", "--out", tmp_path)
    assert inc.returncode == 0, inc.stderr
    summary = pd.read_csv(tmp_path / "incidence_summary.csv")
    overall = summary[summary.gender_id.isna()].set_index("target_cohort_definition_id")
    assert overall.loc[7, "persons_at_risk"] == 1800 and overall.loc[7, "outcomes"] == 113
    assert overall.loc[6, "persons_at_risk"] == 830 and overall.loc[6, "outcomes"] == 46
    km = _run("survival", "--cdm", url, "--target-id", 7, "--comparator-id", 6,
              "--outcome-id", 5, "--tar", "start+1:start+365", "--out", tmp_path)
    assert km.returncode == 0, km.stderr
    assert "log-rank chi² = 8.199" in km.stdout
    char = _run("characterize", "--cdm", url, "--target-id", 7, "--comparator-id", 6,
                "--out", tmp_path)
    assert char.returncode == 0, char.stderr
    one = pd.read_csv(tmp_path / "table_one.csv").set_index("covariate_name")
    assert one.loc["gender = FEMALE", ["target_count", "comparator_count"]].tolist() == [906, 435]
    _assert_one_line_error(
        _run("incidence", "--cdm", url, "--target-id", 7, "--outcome-id", 5, "--tar", "begin:end"),
        "time at risk 'begin:end'")
    _assert_one_line_error(
        _run("incidence", "--cdm", url, "--target-id", 99, "--outcome-id", 5),
        "target cohorts [99] have no rows")
    design = tmp_path / "design.json"
    design.write_text('{"targetDefs": [{"id": 7}]}')
    _assert_one_line_error(_run("incidence", "--cdm", url, "--design", design),
                           "design.json", "outcomeDefs must be a non-empty list")


def test_extract_command(gibleed_demo_cohorts, tmp_path):
    gibleed_demo_cohorts.con.raw_sql("CHECKPOINT")
    path = tmp_path / "cdm.duckdb"
    shutil.copy(gibleed_demo_cohorts.url.target, path)
    url = f"duckdb://{path}?results_schema=results"
    key = tmp_path / "key"
    key.write_text("a pseudonym key of thirty-two bytes!")
    # GiBleed's celecoxib users include persons alone in their age × gender × race ×
    # ethnicity class: refused, nothing written, the class named
    refused = _run("extract", "--cdm", url, "--cohort-id", 7, "--key-file", key,
                   "--out", tmp_path / "x")
    _assert_one_line_error(refused, "quasi-identifier class", "1 person")
    assert not (tmp_path / "x").exists()
    done = _run("extract", "--cdm", url, "--cohort-id", 7, "--key-file", key, "--window=-30:30",
                "--domains", "person,drug", "--allow-small-k", "--out", tmp_path / "x")
    assert done.returncode == 0, done.stderr
    assert "1,800" in done.stdout
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert manifest["k_anonymity"]["written_under_k_min"] is True
    assert manifest["window"]["start_day"] == -30
    assert sorted(manifest["tables"]) == ["drug_exposure", "person"]
    _assert_one_line_error(_run("extract", "--cdm", url, "--cohort-id", 7, "--window", "30:-30",
                                "--out", tmp_path / "y"), "window")


def test_journey_commands(gibleed_demo_cohorts, tmp_path):
    gibleed_demo_cohorts.con.raw_sql("CHECKPOINT")
    path = tmp_path / "cdm.duckdb"
    shutil.copy(gibleed_demo_cohorts.url.target, path)
    url = f"duckdb://{path}?results_schema=results"
    key = tmp_path / "key"
    key.write_text("a pseudonym key of thirty-two bytes!")
    pdc = _run("journey", "pdc", "--cdm", url, "--concept-id", 1118084, "--concept-id", 1124300,
               "--concept-id", 1177480, "--concept-id", 1115008, "--period-start", "2000-01-01",
               "--period-end", "2019-12-31", "--key-file", key, "--out", tmp_path)
    assert pdc.returncode == 0, pdc.stderr
    summary = pd.read_csv(tmp_path / "pdc_summary.csv").set_index("stratum_value")
    assert summary.loc["all", "patients"] == 857
    support = pd.read_csv(tmp_path / "support_list.csv")
    assert "person_id" not in support and support.person_pseudonym.gt(2**32).any()
    ways = _run("journey", "pathways", "--cdm", url, "--target-id", 1, "--event-id", 7,
                "--event-id", 5, "--out", tmp_path)
    assert ways.returncode == 0, ways.stderr
    pathways = pd.read_csv(tmp_path / "pathways.csv").set_index("pathway")
    assert pathways.n_persons.to_dict() == {"celecoxibNewUsers": 1445,
                                            "celecoxibNewUsers-giBleed": 355}
    _assert_one_line_error(
        _run("journey", "pdc", "--cdm", url, "--concept-id", 1118084, "--period-start",
             "2000-13-01", "--period-end", "2019-12-31"), "2000-13-01")


def test_journey_bad_inputs_are_one_line(tmp_path):
    path = tmp_path / "empty.duckdb"
    import duckdb

    duckdb.connect(str(path)).close()
    url = f"duckdb://{path}"
    _assert_one_line_error(
        _run("journey", "pdc", "--cdm", url, "--concept-id", 10**20, "--period-start",
             "2000-01-01", "--period-end", "2001-01-01"), "outside 0 … 2^63 − 1")
    short = tmp_path / "short.key"
    short.write_text("short")
    _assert_one_line_error(
        _run("journey", "pdc", "--cdm", url, "--concept-id", 1118084, "--period-start",
             "2000-01-01", "--period-end", "2001-01-01", "--key-file", short,
             "--out", tmp_path / "out"), "has 5 bytes; expected at least 16")
    assert not (tmp_path / "out").exists()  # the key is checked before anything is written


def test_cohorts_generate_refuses_bad_names_before_any_work(gibleed_csv_db, tmp_path):
    db = tmp_path / "cdm.duckdb"
    shutil.copy(gibleed_csv_db[0], db)
    folder = need(DATA / "cohorts" / "cohortgenerator")
    (tmp_path / "afile").write_text("")
    out_is_file = _run("cohorts", "generate", "--cdm", f"duckdb://{db}", "--cohorts", folder,
                       "--out", tmp_path / "afile")
    _assert_one_line_error(out_is_file, "--out", "afile", "is a file")
    bad_schema = _run("cohorts", "generate", "--cdm", f"duckdb://{db}?results_schema=res-ults",
                      "--cohorts", folder, "--out", tmp_path / "cg")
    _assert_one_line_error(bad_schema, "results_schema", "res-ults", "plain schema name")
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    schemas = {r[0] for r in con.sql("select schema_name from information_schema.schemata")
               .fetchall()}
    assert "res-ults" not in schemas and "results" not in schemas  # nothing was created


def test_forecast_reconcilers_option_names_an_unknown_method(tmp_path):
    proc = _run("forecast", "--sales", need(DATA / "sales" / "pbs.csv"), "--time-col", "Month",
                "--value-col", "Scripts", "--hierarchy", "Concession,Type,ATC1,ATC2",
                "--reconcilers", "BottomUp,MinTrace_ols", "--out", tmp_path / "fc")
    _assert_one_line_error(proc, "MinTrace_ols", "MinTrace_mint_shrink")
