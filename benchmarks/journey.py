"""Benchmark: PDC, persistence and treatment pathways on GiBleed × N (DuckDB).

For each N (default 1, 10 and 100) a child process opens ``gibleed_x{N}.duckdb`` (see
``scaled_gibleed.py``; N = 100 holds about 6.8 M drug exposures) and times, best of
``REPEATS``: PQA PDC of NSAIDs (celecoxib, diclofenac, ibuprofen, naproxen) over 2000–2019
with its per-patient result brought back, persistence of the first episode (60-day gap) with
its Kaplan–Meier, and the pathways of celecoxib users (cohort 1) over celecoxib, diclofenac
and GI-bleed cohorts (generated into the schema ``bench_journey``; not timed). At N = 1 it
also times the day-by-day loop reference of the tests (``tests/test_adherence.py``) on the
same PDC and checks that the two agree per patient.

Usage: python benchmarks/journey.py [N ...]   (writes benchmarks/RESULTS.md)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from _results import update_section
from scaled_gibleed import HERE, build

REPEATS = 3
DEMO_COHORTS = HERE.parent / "src" / "pharmalab" / "study" / "demo" / "cohorts"
NSAIDS = [1118084, 1124300, 1177480, 1115008]

CHILD = r"""
import datetime as dt, json, resource, sys, time
sys.path.insert(0, SRC)
sys.path.insert(0, TESTS)
from pharmalab import cohorts, journey
from pharmalab.engine import database

db = database(URL)
generation = cohorts.generate_cohorts(db, cohorts.read_cohort_set(COHORTS))
assert not generation.failed, [r.error for r in generation.failed]
seconds = {}
def timed(name, fn):
    best = None
    for _ in range(REPEATS):
        t = time.perf_counter()
        value = fn()
        best = min(best or 1e9, time.perf_counter() - t)
    seconds[name] = best
    return value
patients = timed("pdc", lambda: journey.pdc(db, NSAIDS, "2000-01-01", "2019-12-31").patients())
kept = timed("persistence", lambda: journey.persistence(db, NSAIDS, permissible_gap=60))
ways = timed("pathways", lambda: journey.treatment_pathways(
    db, 1, {7: "celecoxib", 6: "diclofenac", 5: "GI bleed"}))
result = {"seconds": seconds, "patients": len(patients),
          "exposures": int(db.table("drug_exposure").count().to_pandas()),
          "pathways": int(len(ways.table)),
          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
if REFERENCE:
    from test_adherence import reference_pdc, _ingredient_map
    exposures = db.table("drug_exposure").select(
        "drug_exposure_id", "person_id", "drug_concept_id", "drug_exposure_start_date",
        "drug_exposure_end_date", "days_supply").to_pandas()
    for column in ("drug_exposure_start_date", "drug_exposure_end_date"):
        exposures[column] = exposures[column].map(
            lambda v: v.date() if hasattr(v, "date") and v is not None else v)
    mapping = _ingredient_map(db, NSAIDS)
    t = time.perf_counter()
    ref = reference_pdc(exposures, mapping, dt.date(2000, 1, 1), dt.date(2019, 12, 31), 2, 91)
    result["reference_seconds"] = time.perf_counter() - t
    got = {int(r.person_id): (r.index_date, int(r.days_in_period), int(r.days_covered))
           for r in patients.itertuples()}
    assert got == ref, "engine and loop reference disagree"
print(json.dumps(result, default=str))
"""


def run_child(url: str, reference: bool) -> dict:
    code = (f"SRC = {str(HERE.parent / 'src')!r}\nTESTS = {str(HERE.parent / 'tests')!r}\n"
            f"URL = {url!r}\nCOHORTS = {str(DEMO_COHORTS)!r}\nREPEATS = {REPEATS}\n"
            f"NSAIDS = {NSAIDS!r}\nREFERENCE = {reference}\n" + CHILD)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(ns: list[int]) -> None:
    rows, reference = [], None
    for n in ns:
        t = time.perf_counter()
        result = run_child(f"duckdb://{build(n)}?results_schema=bench_journey", n == 1)
        wall = time.perf_counter() - t
        s = result["seconds"]
        if "reference_seconds" in result:
            reference = (result["reference_seconds"], s["pdc"], result["patients"])
        rows.append(f"| {n} | {result['exposures']:,} | {result['patients']:,} | {s['pdc']:.2f} "
                    f"| {s['persistence']:.2f} | {s['pathways']:.2f} "
                    f"| {result['peak_rss_mb']:.0f} | {wall:.0f} |")
        print(n, json.dumps(result), flush=True)
    body = (
        "PQA PDC of NSAIDs (4 ingredients, 2000–2019, per-patient result brought back), "
        "persistence of the first episode (60-day gap, with its Kaplan–Meier) and treatment "
        "pathways of celecoxib users on GiBleed × N in DuckDB; best of "
        f"{REPEATS} in one process (`python benchmarks/journey.py {' '.join(map(str, ns))}`)."
        "\n\n| N | drug exposures | PDC patients | PDC s | persistence s | pathways s | "
        "peak RSS MB | wall s (incl. cohorts) |\n|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows))
    if reference:
        ref_s, ours_s, patients = reference
        body += (f"\n\nAt N = 1 the day-by-day loop reference of the tests took {ref_s:.2f} s "
                 f"for the same {patients:,} patients (engine {ours_s:.2f} s, ratio "
                 f"{ref_s / ours_s:.1f}×), and agreed patient by patient. GiBleed records one "
                 "day of supply per fill, so the loop is cheap here; with 30–90-day fills it "
                 "grows with the days covered while the engine's cost does not.")
    update_section("Patient journey (PDC, persistence, pathways)", body)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 10, 100])
