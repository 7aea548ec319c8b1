"""Spark-specific faults: the driver lost in the middle of a cohort set. The scenario suite
that runs on Spark as on every engine (a standalone cluster of two workers,
conftest.spark_cluster) is tests/test_engines.py and the ``other_engine`` tests beside each
capability."""

from __future__ import annotations

import shutil

import pytest

from conftest import DATA

pytestmark = pytest.mark.spark

COHORTGENERATOR = DATA / "cohorts" / "cohortgenerator"


_LOSE_THE_DRIVER = """
import os, signal, sys
from pharmalab import cdm, cohorts
from pharmalab.engine import database
from pharmalab.errors import EngineConnectionError

url, archive, folder, phase = sys.argv[1:5]
db = database(url)
cohort_set = cohorts.read_cohort_set(folder)
if phase == "first":
    cdm.load(archive, db)

    def lose_the_driver(definition, status):  # the JVM that holds the Spark session dies
        if definition.cohort_id == 1:
            os.kill(db.con._session.sparkContext._gateway.proc.pid, signal.SIGKILL)

    try:
        cohorts.generate_cohorts(db, cohort_set, progress=lose_the_driver)
    except EngineConnectionError as exc:
        print("LOST", exc)
else:
    result = cohorts.generate_cohorts(db, cohort_set)
    print("RERUN", [r.status for r in result.runs], result.counts["cohort_subjects"].tolist())
"""


def test_a_lost_driver_stops_the_set_and_a_rerun_completes(tmp_path):
    """The Spark driver (the JVM of pharmalab's session) dies after cohort 1 of 2: one
    error naming the engine, the cohort and the table; a new process skips cohort 1, whose
    rows were kept, and generates cohort 2 (CohortGenerator's counts).

    On a cluster of its own (one worker): the session's application holds every core of the
    suite's cluster, and a standalone master gives a second application none.
    """
    import subprocess
    import sys

    from conftest import GIBLEED_TAR, need
    from servers import ServerUnavailable, SparkStandalone

    folder = tmp_path / "cohorts"
    folder.mkdir()
    for cohort_id in (1, 2):
        shutil.copy(need(COHORTGENERATOR / "cohorts" / f"{cohort_id}.json"), folder)
    # only the tables the two cohorts read: loading all of GiBleed on Spark costs a minute
    full = tmp_path / "gibleed"
    shutil.unpack_archive(need(GIBLEED_TAR), full)
    cdm_folder = tmp_path / "cdm"
    cdm_folder.mkdir()
    for table in ("person", "observation_period", "drug_exposure", "drug_era", "concept",
                  "concept_ancestor", "cdm_source"):
        shutil.copy(full / "csv" / f"{table}.csv", cdm_folder)
    work = tmp_path / "work"  # the driver's warehouse and metastore, shared by both runs
    work.mkdir()
    printed = {}
    try:
        cluster = SparkStandalone.start(workers=1)
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        url = cluster.url(cdm_schema="lost_driver", results_schema="lost_driver_results")
        for phase in ("first", "again"):
            done = subprocess.run(
                [sys.executable, "-c", _LOSE_THE_DRIVER, url, str(cdm_folder),
                 str(folder), phase], cwd=work, capture_output=True, text=True, timeout=600)
            lines = [line for line in done.stdout.splitlines()
                     if line.startswith(("LOST", "RERUN"))]
            assert lines, done.stderr[-3000:]
            printed[phase] = lines[-1]
    finally:
        cluster.stop()
    assert printed["first"].startswith("LOST lost the connection to pyspark (pyspark://spark://")
    assert "while generating cohort 2 (" in printed["first"]
    assert "into lost_driver_results.cohort" in printed["first"]
    assert "cohort 1 generated in this run is complete and kept" in printed["first"]
    assert printed["again"] == "RERUN ['SKIPPED', 'COMPLETE'] [1800, 569]"
