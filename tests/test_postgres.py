"""PostgreSQL-specific faults on a real server (a throwaway cluster on a loopback port): bad
input leaves the server as it was; a connection lost mid-set stops it cleanly and a rerun
completes. The scenario suite that runs on PostgreSQL as on every engine is
tests/test_engines.py and the ``other_engine`` tests beside each capability."""

from __future__ import annotations

import pytest

from conftest import DATA

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("fault", ["bad value", "short line"])
def test_bad_input_leaves_postgres_as_it_was(postgres_server, gibleed_csv_folder, fault):
    from pharmalab import cdm
    from pharmalab.engine import database
    from pharmalab.errors import CdmInputError

    db = database(postgres_server.url(cdm_schema="bad_load"))
    if fault == "bad value":
        (gibleed_csv_folder / "person.csv").write_text(_corrupt_person(gibleed_csv_folder))
        expected = ("person.csv (table person), column year_of_birth: expected an integer, "
                    "found 'nineteen-fifty' at data row 1")
    else:  # drug_exposure comes late: the tables staged before it must not reach the server
        drug = gibleed_csv_folder / "drug_exposure.csv"
        lines = drug.read_text().splitlines()
        lines[100] = lines[100].rsplit(",", 3)[0]
        drug.write_text("\n".join(lines) + "\n")
        expected = "drug_exposure.csv (table drug_exposure): line 101 has"
    with pytest.raises(CdmInputError) as err:
        cdm.load(gibleed_csv_folder, db)
    assert str(err.value).startswith(expected), str(err.value)
    assert db.list_tables("cdm") == []  # all tables in one transaction: none written
    assert "bad_load" not in db.con.list_databases()  # nor an empty schema


def _corrupt_person(folder):
    lines = (folder / "person.csv").read_text().splitlines()
    header = lines[0].split(",")
    first = lines[1].split(",")
    first[header.index("year_of_birth")] = "nineteen-fifty"
    return "\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n"


def _rows(db, cohort_id, columns):
    t = db.table("cohort", "results")
    if cohort_id is not None:
        t = t.filter(t.cohort_definition_id == int(cohort_id))
    return t.select(columns).execute().sort_values(columns, ignore_index=True)


def test_a_load_leaves_planner_statistics_on_every_table(postgres_gibleed):
    """cdm load analyzes what it copied: the planner knows GiBleed's row counts at once
    (a table never analyzed has reltuples -1 in PostgreSQL ≥ 14)."""
    db, _ = postgres_gibleed
    rows = dict(db.con.raw_sql(
        "SELECT c.relname, c.reltuples FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'gibleed' AND c.relkind = 'r'").fetchall())
    assert rows["person"] == 2694 and rows["drug_exposure"] == 67707
    assert rows["death"] == 0  # analyzed and empty, not "never analyzed" (-1)


def test_a_lost_connection_stops_the_set_keeps_what_was_done_and_a_rerun_completes(
        postgres_server, postgres_gibleed):
    """The server ends our session (pg_terminate_backend, as a dropped network or a
    failover would) after cohort 1 of 4: one error naming the engine, the cohort and the
    table; cohort 1's rows kept; a rerun skips it and generates the other three."""
    import psycopg

    from pharmalab import cohorts
    from pharmalab.engine import database
    from pharmalab.errors import EngineConnectionError

    url = postgres_server.url(cdm_schema="gibleed", results_schema="lost_connection")
    cohort_set = cohorts.read_cohort_set(DATA / "cohorts" / "cohortgenerator")
    db = database(url)
    pid = db.con.raw_sql("SELECT pg_backend_pid()").fetchone()[0]

    def end_our_session(definition, status):
        if definition.cohort_id == 1:
            with psycopg.connect(f"postgresql://pharmalab@127.0.0.1:{postgres_server.port}"
                                 "/postgres", autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])

    with pytest.raises(EngineConnectionError) as lost:
        cohorts.generate_cohorts(db, cohort_set, progress=end_our_session)
    message = str(lost.value)
    assert message.startswith("lost the connection to postgres (postgres://pharmalab@127.0.0.1:")
    assert "while generating cohort 2 (" in message and "into lost_connection.cohort" in message
    assert "cohort 1 generated in this run is complete and kept" in message

    again = database(url)
    kept = _rows(again, None, ["cohort_definition_id", "subject_id"])
    assert kept.cohort_definition_id.unique().tolist() == [1]
    assert kept.subject_id.nunique() == 1800
    rerun = cohorts.generate_cohorts(again, cohort_set)
    assert [r.status for r in rerun.runs] == ["SKIPPED", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert rerun.counts["cohort_subjects"].tolist() == [1800, 569, 266, 1750]
    again.con.disconnect()
