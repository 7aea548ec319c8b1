"""BigQuery: every capability that reads the CDM compiles its queries for BigQuery, offline.

The demo study's CDM side (checks, eras, cohorts, Table 1, incidence, Kaplan–Meier,
extraction with pseudonyms, PDC and persistence, pathways, patient flow) and the CDM
dispensing series run on DuckDB while every Ibis expression DuckDB's compiler is given is
recorded with the pharmalab module that built it. Each is then compiled with Ibis's BigQuery
compiler and parsed back as BigQuery SQL by sqlglot. The one engine-specific part, the
pseudonyms' HMAC (:mod:`pharmalab.extract.pseudonyms`), is built with BigQuery's functions
for the run (DuckDB has functions of the same names, so the study still runs, but DuckDB's
``sha256`` returns hex text where BigQuery's returns bytes: the pseudonyms that run writes
are not checked). Their values are checked on their own: the BigQuery SQL, transpiled to
DuckDB's by sqlglot (as BigQuery emulators run it), equals Python's ``hmac``. No BigQuery
project is used: the
compilation is offline (../shared/KNOWN.md, "BigQuery"). That the SQL runs and gives
DuckDB's rows is shown on a BigQuery emulator by tests/test_bigquery_emulator.py (``make
test-bigquery``). Cohort generation's own SQL (circe's
translation, then sqlglot) is checked in tests/test_cohorts.py; the CDM load refuses
BigQuery by design.
"""

from __future__ import annotations

import sys
from collections import defaultdict

import ibis
import pytest
import sqlglot

from conftest import cdm_side_of_the_demo, need

# the module that built each recorded query: pharmalab.<capability package>.<module>
CAPABILITIES = (
    "cdm.check", "cdm.eras", "cohorts.export", "cohorts.generate",
    "characterize.baseline", "characterize.incidence", "characterize.survival",
    "extract.run", "extract.kanonymity", "extract.pseudonyms", "extract.write",
    "journey.adherence", "journey.persistence", "journey.pathways",
    "demand.flow", "sales.dispensing",
)
# shared helpers are not capabilities: a query is credited to the capability that called them
_HELPERS = {"engine", "privacy", "atomic"}


def _builder() -> str:
    frame = sys._getframe(2)
    while frame is not None:
        parts = frame.f_globals.get("__name__", "").split(".")
        if parts[0] == "pharmalab" and len(parts) > 2 and parts[1] not in _HELPERS:
            return f"{parts[1]}.{parts[2]}"
        frame = frame.f_back
    return "?"


@pytest.fixture(scope="module")
def queries(tmp_path_factory) -> dict[str, list]:
    """The Ibis expressions each capability had DuckDB run: {"package.module": [expr, …]}."""
    from ibis.backends.sql.compilers.duckdb import DuckDBCompiler

    from pharmalab import sales
    from pharmalab.engine import database
    from pharmalab.extract import pseudonyms
    from pharmalab.study import demo_study_path, run

    need(demo_study_path())
    recorded = defaultdict(list)
    original = DuckDBCompiler.to_sqlglot

    def record(self, expr, *args, **kwargs):
        recorded[_builder()].append(expr)
        return original(self, expr, *args, **kwargs)

    folder = tmp_path_factory.mktemp("bigquery")
    (folder / "study.toml").write_text(cdm_side_of_the_demo())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DuckDBCompiler, "to_sqlglot", record)
        # the extraction builds BigQuery's HMAC expressions (values: see the last test)
        patch.setitem(pseudonyms._ENGINES, "duckdb", pseudonyms._ENGINES["bigquery"])
        result = run(folder / "study.toml", folder / "out")
        db = database(f"duckdb://{folder / 'out' / 'cdm.duckdb'}")
        series = sales.cdm_dispensing_series(db, ingredient_concept_ids=[1118084, 1124300],
                                             measure="exposures")
        db.con.disconnect()
    assert [s.status for s in result.steps] == ["ok"] * len(result.steps), result.steps
    assert len(series.frame) > 0
    return dict(recorded)


def test_every_capability_ran_its_queries_through_ibis(queries):
    missing = [c for c in CAPABILITIES if not queries.get(c)]
    assert missing == []


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_queries_compile_and_parse_as_bigquery(queries, capability):
    failures = []
    for expr in queries[capability]:
        try:
            sql = ibis.to_sql(expr, dialect="bigquery")
            sqlglot.parse_one(sql, read="bigquery")
        except Exception as exc:  # every failure, named, not only the first
            failures.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    assert failures == []


def test_pseudonyms_use_bigquerys_own_functions(queries):
    sql = "\n".join(ibis.to_sql(e, dialect="bigquery") for e in queries["extract.write"])
    for function in ("FROM_HEX(", "TO_HEX(", "SHA256(", "AS BYTES)", "AS INT64)"):
        assert function in sql


def test_bigquerys_hmac_equals_python(gibleed_csv_db):
    """The pseudonyms and date offsets as BigQuery SQL, read by sqlglot as BigQuery and run
    by DuckDB, equal the Python reference for every GiBleed person."""
    from pharmalab.engine import database
    from pharmalab.extract import pseudonyms
    from pharmalab.extract.keys import PseudonymKey

    db = database(f"duckdb://{gibleed_csv_db[0]}")
    key = PseudonymKey(b"a key for the bigquery test", "test")
    with pseudonyms.key_table(db, key) as keys:
        rel = db.table("person").select("person_id").cross_join(keys)
        digest = pseudonyms.hmac_hex("bigquery", rel, rel.person_id)
        expr = rel.select("person_id",
                          pseudonym=pseudonyms.digest_pseudonym("bigquery", digest),
                          offset=pseudonyms.digest_offset("bigquery", digest, 180))
        sql = ibis.to_sql(expr, dialect="bigquery")
        got = db.con.raw_sql(sqlglot.transpile(sql, read="bigquery", write="duckdb")[0]).df()
    db.con.disconnect()
    assert "FROM_HEX(" in sql and "SHA256(" in sql
    assert len(got) == 2694
    for row in got.itertuples():
        assert row.pseudonym == pseudonyms.pseudonym(key, row.person_id)
        assert row.offset == pseudonyms.date_offset(key, row.person_id, 180)
