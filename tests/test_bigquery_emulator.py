"""BigQuery through an emulator: what runs, what does not, and an emulator that is not running.

``bqemulator`` (PyPI; BigQuery's REST API over DuckDB, its SQL translated by sqlglot) runs from
its own virtual environment: ``make test-bigquery`` builds it, installs ``pharmalab[bigquery]``
and runs the tests marked ``bigquery_emulator``: the engine suite of tests/test_engines.py and
the ``other_engine`` tests beside each capability, on the emulator (conftest.bigquery_emulator);
without them these tests skip (``make test`` and CI run DuckDB, Spark and PostgreSQL).
pharmalab connects through Ibis's BigQuery backend and Google's client library with
``bigquery://PROJECT/DATASET?emulator=HOST:PORT``.

What runs on the emulator, on GiBleed, compared with DuckDB: ``cdm check``; the CohortGenerator
cohorts with inclusion, summary and censor statistics, and the negative-control outcomes, row
for row, with the published counts; incidence with age, gender and year strata; Table 1; KM
event tables; PDC per patient; persistence episodes; drug eras; extraction; patient flow;
pseudonyms and date offsets against Python's ``hmac``; the demo study's CDM steps (cohorts,
Table 1, incidence, Kaplan–Meier, extraction, PDC and persistence, pathways, patient flow) file
for file.

What does not: ``cdm load`` (refused on BigQuery by design; the emulator is seeded with its own
seed format instead, tests/servers.py); anything BigQuery itself would do differently from the
emulator's DuckDB (the emulator translates BigQuery SQL to DuckDB's, so this shows pharmalab's
SQL is accepted and means the same under that translation, not BigQuery's speed, quotas or
every corner of its semantics). Overrides the emulator needs are in
:mod:`pharmalab.engine.bigquery`.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.bigquery_emulator


def test_an_emulator_that_is_not_running_is_named_at_once():
    """Nothing listening on the port: an error within seconds (the client alone retries a
    refused connection for 600 s)."""
    import socket
    import time

    pytest.importorskip("google.cloud.bigquery")
    from pharmalab.engine import database
    from pharmalab.errors import EngineURLError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(EngineURLError, match=rf"BigQuery emulator at 127.0.0.1:{port} is not "
                                             "reachable"):
        database(f"bigquery://p/d?emulator=127.0.0.1:{port}")
    assert time.monotonic() - started < 30

