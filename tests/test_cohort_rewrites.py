"""DuckDB speed-ups of circe's SQL: the rewrites still apply to circepy's statements, tables
shared across a set are keyed by lineage, and rows and statistics equal circe's plain SQL."""

from __future__ import annotations

import json
import shutil
import tarfile

import pandas as pd
import pytest

from conftest import DATA, need
from pharmalab import cohorts
from pharmalab.cohorts import generate
from pharmalab.cohorts.reuse import Step, lineage
from pharmalab.cohorts.rewrite import REWRITES, rewrite_for_duckdb
from pharmalab.cohorts.sql import cohort_sql
from pharmalab.engine import database

COHORTGENERATOR = DATA / "cohorts" / "cohortgenerator"
PHENOTYPES = DATA / "cohorts" / "phenotype_library_cohorts.tar.xz"
# PhenotypeLibrary definitions that are not empty on GiBleed, chosen to cover every rewrite and
# the cases they must leave alone (all events per person, with and without inclusion rules).
# Over all 1,089 definitions that translate within 15 s, the rewrites and reuse gave the same
# rows and statistics as circe's plain SQL, except 1071, whose plain SQL is itself not
# deterministic (ties in its row_number()), and 7 that fail in both (circepy SQL errors).
PHENOTYPE_IDS = [23, 27, 62, 134, 254, 255, 456, 459, 532, 707, 864, 865, 919, 1044, 1048, 1085,
                 1106, 1153, 1160, 1164, 1171, 1180, 1185, 1186, 1192, 1199, 1221, 1263, 1271,
                 1285, 1289]

RESULT_TABLES = {
    "cohort": ["cohort_definition_id", "subject_id", "cohort_start_date", "cohort_end_date"],
    "cohort_inc_result": ["cohort_definition_id", "mode_id", "inclusion_rule_mask",
                          "person_count"],
    "cohort_inc_stats": ["cohort_definition_id", "mode_id", "rule_sequence", "person_count",
                         "gain_count", "person_total"],
    "cohort_summary_stats": ["cohort_definition_id", "mode_id", "base_count", "final_count"],
    "cohort_censor_stats": ["cohort_definition_id", "lost_count"],
}


def _statements(definition) -> list[str]:
    return list(cohort_sql(definition, engine="duckdb", cdm_schema="main", vocab_schema="main",
                           results_schema="results", cohort_table="_pl_x_cohort",
                           stats_tables={c: f"_pl_x_{c}" for c in
                                         ("cohort_inclusion_result", "cohort_inclusion_stats",
                                          "cohort_summary_stats", "cohort_censor_stats")}
                           ).statements)


@pytest.fixture(scope="module")
def cohortgenerator_set():
    return cohorts.read_cohort_set(need(COHORTGENERATOR))


def test_every_rewrite_applies_to_circepys_sql(cohortgenerator_set):
    # a newer circepy writing other SQL would silently lose them: this says so
    applied = set()
    for definition in cohortgenerator_set:
        statements = _statements(definition)
        assert not any("TO_DAYS" in s for s in statements)  # DATE + INTEGER, not INTERVAL
        applied.update(rewrite_for_duckdb(
            statements, one_event_per_person=definition.one_event_per_person)[1])
    assert applied == set(REWRITES)


def test_one_event_per_person_needs_the_definition_not_only_the_sql(cohortgenerator_set,
                                                                    tmp_path):
    # a string in a definition could put circe's "WHERE P.ordinal = 1" text into the SQL
    definition = next(iter(cohortgenerator_set))
    assert definition.one_event_per_person
    applied = set(rewrite_for_duckdb(_statements(definition), one_event_per_person=False)[1])
    assert applied == {"analyze", "truncate", "unused_ordinal"}
    spec = json.loads(definition.path.read_text())
    spec["PrimaryCriteria"]["PrimaryCriteriaLimit"] = {"Type": "All"}
    (tmp_path / "9.json").write_text(json.dumps(spec))
    (every,) = cohorts.read_cohort_set(tmp_path)
    assert not every.one_event_per_person


def test_lineage_shares_what_is_built_the_same_way(cohortgenerator_set):
    keys = {}
    for definition in cohortgenerator_set:
        statements, _ = rewrite_for_duckdb(_statements(definition), one_event_per_person=True)
        keys[definition.cohort_id] = {s.table: s.key for s in lineage(statements,
                                                                      volatile=r"\b_pl_\w+")
                                      if s.key}
    # all four share their entry events; 4 (1 censored at 2000-01-01) shares 1's included
    # events, ends and era collapse; 2 and 3 share the age rule, not the events it leaves
    assert len({k["qualified_events"] for k in keys.values()}) == 1
    for table in ("included_events", "cohort_rows", "final_cohort"):
        assert keys[4][table] == keys[1][table]
        assert len({keys[i][table] for i in (1, 2, 3)}) == 3
    assert keys[2]["inclusion_0"] == keys[3]["inclusion_0"]
    assert keys[2]["inclusion_events"] != keys[3]["inclusion_events"]


def test_lineage_keys_nothing_that_reads_a_changing_table():
    statements = [
        "CREATE TEMP TABLE a (x int)",
        "INSERT INTO a SELECT 1",
        "CREATE TEMP TABLE b AS SELECT x FROM a",
        "CREATE TEMP TABLE c AS SELECT x FROM results._pl_p1_cohort",
        "CREATE TEMP TABLE d AS SELECT x FROM c",
    ]
    steps = lineage(statements, volatile=r"\b_pl_\w+")
    assert [s.key is not None for s in steps] == [False, False, True, False, False]
    # the same build after another insert into a is another table
    more = lineage(statements[:2] + ["INSERT INTO a SELECT 2"] + statements[2:3],
                   volatile=r"\b_pl_\w+")
    assert more[-1].key != steps[2].key
    assert lineage(statements[:3], volatile=r"\b_pl_\w+")[2].key == steps[2].key


def _plain(monkeypatch) -> None:
    """circe's statements as translated: no rewrites, no reuse."""
    monkeypatch.setattr(generate, "rewrite_for_duckdb", lambda s, **_: (list(s), []))
    monkeypatch.setattr(generate, "lineage", lambda s, volatile: [Step(x) for x in s])


def _results(db) -> dict[str, pd.DataFrame]:
    out = {}
    for table, columns in RESULT_TABLES.items():
        frame = db.table(table, "results").execute()[columns]
        out[table] = frame.sort_values(columns, ignore_index=True)
    return out


@pytest.fixture(scope="module")
def phenotype_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phenotypes")
    with tarfile.open(need(PHENOTYPES)) as archive:
        members = [m for m in archive.getmembers()
                   if m.name.endswith(tuple(f"/{i}.json" for i in PHENOTYPE_IDS))]
        archive.extractall(folder, members=members, filter="data")
    (json_folder,) = {p.parent for p in folder.rglob("*.json")}
    return cohorts.read_cohort_set(json_folder)


@pytest.mark.parametrize("stats", [True, False])
def test_rows_and_statistics_equal_circes_plain_sql(gibleed_csv_db, tmp_path, monkeypatch,
                                                     phenotype_set, cohortgenerator_set, stats):
    merged = (*cohortgenerator_set, *phenotype_set)
    assert len(phenotype_set) == len(PHENOTYPE_IDS)
    results = {}
    for mode in ("fast", "plain"):
        path = tmp_path / f"{mode}.duckdb"
        shutil.copy(gibleed_csv_db[0], path)
        db = database(f"duckdb://{path}?results_schema=results")
        with monkeypatch.context() as patch:
            if mode == "plain":
                _plain(patch)
            result = cohorts.generate_cohorts(db, cohorts.CohortSet(phenotype_set.folder, merged),
                                              stats=stats)
        assert not result.failed, [r.error for r in result.failed]
        results[mode] = (result.counts, _results(db))
        db.con.disconnect()
    counts = results["fast"][0].set_index("cohort_id")["cohort_subjects"]
    assert (counts > 0).all() and counts[1] == 1800 and counts[3] == 266
    pd.testing.assert_frame_equal(results["fast"][0], results["plain"][0])
    for table in RESULT_TABLES:
        pd.testing.assert_frame_equal(results["fast"][1][table], results["plain"][1][table])
    if not stats:
        assert results["fast"][1]["cohort_inc_result"].empty


def test_statistics_come_back_when_asked_for(gibleed_csv_db, tmp_path, cohortgenerator_set):
    path = tmp_path / "cdm.duckdb"
    shutil.copy(gibleed_csv_db[0], path)
    db = database(f"duckdb://{path}?results_schema=results")
    first = cohorts.generate_cohorts(db, cohortgenerator_set)
    assert len(db.table("cohort_inc_result", "results").execute()) > 0
    without = cohorts.generate_cohorts(db, cohortgenerator_set, stats=False)
    assert {r.status for r in without.runs} == {"COMPLETE"}  # statistics to be dropped
    assert db.table("cohort_inc_result", "results").execute().empty
    again = cohorts.generate_cohorts(db, cohortgenerator_set)
    assert {r.status for r in again.runs} == {"COMPLETE"}  # statistics to be made again
    stats = db.table("cohort_inc_result", "results").execute()
    masks = stats[(stats.cohort_definition_id == 2) & (stats.mode_id == 0)]
    assert sorted(masks.person_count) == [569, 1231]
    pd.testing.assert_frame_equal(first.counts, again.counts)
    db.con.disconnect()
