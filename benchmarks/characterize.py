"""Benchmark: Table 1 + incidence + Kaplan–Meier on GiBleed × N (DuckDB).

For each N (default 10 and 100) a child process opens ``gibleed_x{N}.duckdb`` (see
``scaled_gibleed.py``), generates the demo study's cohorts into the schema ``bench_char``
(celecoxib 7 and diclofenac 6 new users, GI bleed 5; not timed), then times, best of
``REPEATS``: Table 1 of 7 vs 6 (FeatureExtraction-style covariates, SMDs), incidence of 5 in 7
and 6 (two windows, strata by age and gender) and Kaplan–Meier of 7 vs 6 with a log-rank test.
Peak RSS is the child's.

Usage: python benchmarks/characterize.py [N ...]   (writes benchmarks/RESULTS.md)
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

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, SRC)
from pharmalab import characterize as char, cohorts
from pharmalab.engine import database

db = database(URL)
cohort_set = cohorts.read_cohort_set(COHORTS)
generation = cohorts.generate_cohorts(db, cohort_set)
assert not generation.failed, [r.error for r in generation.failed]
counts = generation.counts.set_index("cohort_id")["cohort_subjects"].to_dict()
design = char.simple_design(
    [7, 6], [5], [char.TimeAtRisk.parse("start+0:end+0", id=1),
                  char.TimeAtRisk.parse("start+1:start+365", id=2)],
    strata=char.Strata(by_age=True, by_gender=True, age_breaks=(35, 45, 55)))
seconds = {}
def timed(name, fn):
    best = None
    for _ in range(REPEATS):
        t = time.perf_counter()
        value = fn()
        best = min(best or 1e9, time.perf_counter() - t)
    seconds[name] = best
    return value
one = timed("table_one", lambda: char.table_one(db, 7, 6))
inc = timed("incidence", lambda: char.incidence_rates(db, design))
km = timed("kaplan_meier", lambda: char.survival(db, [7, 6], 5,
                                                 char.TimeAtRisk.parse("start+1:start+365")))
overall = inc.summary[inc.summary.gender_id.isna() & inc.summary.age_group_id.isna()]
print(json.dumps({
    "seconds": seconds,
    "persons": {int(k): int(v) for k, v in counts.items()},
    "table_one_rows": len(one),
    "incidence_rows": len(inc.summary),
    "rate_p1000py": {f"{r.target_cohort_definition_id}/tar{r.tar_id}":
                     round(float(r.incidence_rate_p1000py), 2) for r in overall.itertuples()},
    "log_rank_chi2": km.log_rank.chi2,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(url: str) -> dict:
    code = (f"SRC = {str(HERE.parent / 'src')!r}\nURL = {url!r}\n"
            f"COHORTS = {str(DEMO_COHORTS)!r}\nREPEATS = {REPEATS}\n" + CHILD)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(ns: list[int]) -> None:
    rows = []
    for n in ns:
        path = build(n)
        t = time.perf_counter()
        result = run_child(f"duckdb://{path}?results_schema=bench_char")
        wall = time.perf_counter() - t
        s = result["seconds"]
        rows.append(
            f"| {n} | {result['persons']['7']:,} / {result['persons']['6']:,} "
            f"| {s['table_one']:.2f} | {s['incidence']:.2f} | {s['kaplan_meier']:.2f} "
            f"| {sum(s.values()):.2f} | {result['peak_rss_mb']:.0f} | {wall:.0f} |")
        print(n, json.dumps(result), flush=True)
    body = (
        "Table 1 (celecoxib 7 vs diclofenac 6 new users, every FeatureExtraction-style "
        "covariate and SMD), incidence of GI bleed (5) in both (2 windows, strata by age and "
        "gender) and Kaplan–Meier of 7 vs 6 with a log-rank test, on GiBleed × N in DuckDB; "
        f"best of {REPEATS} in one process (`python benchmarks/characterize.py "
        f"{' '.join(map(str, ns))}`). The rates do not change with N (every person is copied "
        "N times), which the child checks by printing them.\n\n"
        "| N | persons 7 / 6 | Table 1 s | incidence s | KM s | total s | peak RSS MB | "
        "wall s (incl. cohorts) |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    update_section("Characterization (Table 1, incidence, Kaplan–Meier)", body)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10, 100])
