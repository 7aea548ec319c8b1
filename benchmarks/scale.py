"""Benchmark: the demo study's whole CDM side on GiBleed × N (issue 19, item 6).

For each N (default 10, 100 and 1000) a fresh process runs ``pharmalab.study.run`` on the demo
study.toml with only its CDM sections kept (load, checks, the demo cohort set with statistics,
Table 1, incidence, Kaplan–Meier, extraction, PDC/persistence, pathways, patient flow) and its
``[cdm] source`` pointed at GiBleed × N as a folder of Parquet files (built by
``cdm_load.build``: every patient-level row copied N times with offset ids; N = 1000 is
2.69 M persons and 68 M drug exposures), loaded into a new DuckDB file. Each step's seconds come
from the run's manifest; its peak memory is the largest resident set sampled every 50 ms while
it ran (DuckDB works in the same process); the process's own high-water mark (``VmHWM``) is the
run's peak. The growth exponent of a step is the slope of log(seconds) on log(N) between
successive N: 1 is linear, above 1 grows worse than linearly.

With ``--memory-limit 5GB`` the study's DuckDB URL carries ``?memory_limit=5GB`` (DuckDB's own
setting; its default is 80% of the machine's memory, which it fills as cache on a large CDM).

Usage: python benchmarks/scale.py [--memory-limit SIZE] [N ...]
       (run by hand; writes benchmarks/RESULTS.md)
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from _results import update_section
from cdm_load import build

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
SRC = HERE.parent / "src"
TARGET_SECONDS, TARGET_PEAK_MB = 600, 8192

CHILD = r"""
import json, re, sys, threading, time
sys.path.insert(0, SRC)
from pharmalab.study import run

current, peaks, done = ["(start)"], {}, threading.Event()

def rss_mb():
    status = open("/proc/self/status").read()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024

def sample():
    while not done.is_set():
        step = current[0]
        peaks[step] = max(peaks.get(step, 0.0), rss_mb())
        time.sleep(0.05)

def progress(title, total):
    current[0] = title
    return lambda label=None: None

threading.Thread(target=sample, daemon=True).start()
result = run(STUDY, OUT, progress=progress)
done.set()
status = open("/proc/self/status").read()
hwm = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
print("RESULT", json.dumps({
    "steps": [{"step": s.title, "status": s.status, "seconds": s.seconds,
               "peak_mb": round(peaks.get(s.title, 0.0)), "error": s.error}
              for s in result.steps],
    "peak_mb": round(hwm)}))
"""


# What the measurements showed; kept with the table when the benchmark is rerun.
FINDINGS = (
    "Every step grows about linearly from × 100 to × 1000 (exponents 0.5–1.2; below 1 where "
    "fixed costs such as the demand step's forecast fits still weigh). Peak memory is "
    "DuckDB's cache: by default DuckDB takes up to 80% of the machine's memory (18.8 GB here "
    "at × 1000); with `?memory_limit=5GB` on the study's DuckDB URL the whole run peaks at "
    "6.1 GB in 770 s (881 s without a limit and before the era change below), DuckDB "
    "spilling to disk where it must. The "
    "checks step was dominated by rebuilding drug_era from drug_exposure to compare it with "
    "the shipped one (48 of 60 s at × 100): the sub-exposure days are now summed as the eras "
    "form instead of joined back to them, and the comparison no longer numbers the eras (a "
    "sort of all of them), 26 → 17 s at × 100 and 313 → 202 s at × 1000 (the run without a "
    "limit above predates this). Still above the 10-minute target at × 1000: the checks "
    "(202 s: one aggregate per table, orphan and observation-period anti-joins, birth/death "
    "joins and the era rebuild), patient-flow demand (209 s, of which about 45 s are the "
    "forecast fits that do not grow with N), the load (120 s, 1.15 × DuckDB's own Parquet "
    "floor) and Table 1 (73 s). Patient flow then built its fills, starters and episode "
    "months once per call as temporary tables instead of once per aggregate (2026-12-06): "
    "demand 60 → 43 s at × 100 and 209 → 163 s at × 1000, the whole run with the 5 GB limit "
    "770 → 749 s (adherence and pathways measured slower in that run, 74 → 104 s and "
    "23 → 33 s, with no change to their code: DuckDB spilling under the limit varies). What "
    "is left: the checks' drug-era derivation (7.8 of 9 s of the era comparison at × 100) "
    "and the demand step's ten patient-flow calls (final + four backtest origins per drug, "
    "each deriving its treatment episodes again).")


def study_file(n: int, folder: Path, memory_limit: str | None = None) -> Path:
    """The demo study's CDM sections with ``source`` = the Parquet folder, in WORK/scale_x{n}/."""
    sys.path.insert(0, str(SRC))
    from pharmalab.study import demo_cdm_side

    url = f"duckdb:///{{out}}/cdm.duckdb?memory_limit={memory_limit}" if memory_limit else None
    text = demo_cdm_side(url=url, source=str(folder))
    here = WORK / f"scale_x{n}"
    here.mkdir(parents=True, exist_ok=True)
    path = here / "study.toml"
    path.write_text(text)
    return path


def measure(n: int, memory_limit: str | None = None) -> dict:
    """Run the study on GiBleed × n in a fresh process: steps, wall seconds, peak MB."""
    folder = build(n, "parquet")
    study = study_file(n, folder, memory_limit)
    out = study.parent / "results"
    (out / "cdm.duckdb").unlink(missing_ok=True)
    code = (CHILD.replace("SRC", repr(str(SRC))).replace("STUDY", repr(str(study)))
            .replace("OUT", repr(str(out))))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the study on × {n} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[0][len("RESULT "):])
    failed = [s for s in result["steps"] if s["status"] != "ok"]
    if failed:
        raise RuntimeError(f"× {n}: steps failed: {failed}")
    (out / "cdm.duckdb").unlink(missing_ok=True)  # × 1000 is several GB
    return {"n": n, "wall": wall, **result}


def exponents(runs: list[dict], step: str) -> list[str]:
    """Slope of log(seconds) on log(N) between successive runs, for ``step``."""
    slopes = []
    for a, b in itertools.pairwise(runs):
        ta = next(s["seconds"] for s in a["steps"] if s["step"] == step)
        tb = next(s["seconds"] for s in b["steps"] if s["step"] == step)
        slopes.append(f"{math.log(tb / ta) / math.log(b['n'] / a['n']):.2f}"
                      if ta > 0 and tb > 0 else "–")
    return slopes


def report(runs: list[dict], memory_limit: str | None = None) -> str:
    ns = [r["n"] for r in runs]
    head = ("| step | " + " | ".join(f"× {n} s | × {n} peak MB" for n in ns)
            + "".join(f" | exponent {a}→{b}" for a, b in itertools.pairwise(ns)) + " |")
    rule = "|---|" + "---:|---:|" * len(ns) + "---:|" * (len(ns) - 1)
    rows = []
    for step in [s["step"] for s in runs[0]["steps"]]:
        cells = []
        for r in runs:
            s = next(s for s in r["steps"] if s["step"] == step)
            cells += [f"{s['seconds']:.1f}", f"{s['peak_mb']:,}"]
        rows.append(f"| {step} | " + " | ".join(cells + exponents(runs, step)) + " |")
    whole = []
    for r in runs:
        whole += [f"**{r['wall']:.0f}**", f"**{r['peak_mb']:,}**"]
    rows.append("| whole run (process, incl. imports) | " + " | ".join(whole) + " |"
                + " |" * (len(ns) - 1))
    persons = ", ".join(f"× {n} = {2694 * n:,} persons" for n in ns)
    largest = runs[-1]
    verdict = ("PASS" if largest["wall"] <= TARGET_SECONDS and largest["peak_mb"] <= TARGET_PEAK_MB
               else "FAIL")
    return "\n".join([
        "The demo study's CDM side (`pharmalab run` of the demo study.toml without its sales, "
        "forecast, supply and marketing sections) on GiBleed × N loaded from Parquet into a new "
        f"DuckDB file ({persons})"
        + (f" with `?memory_limit={memory_limit}`" if memory_limit else "")
        + "; one fresh process per N, 2 cores. Peak MB: the largest "
        "resident set sampled during the step (the row *whole run*: the process's high-water "
        "mark). Exponent: slope of log(seconds) on log(N) between successive N.",
        "",
        f"- {verdict} — × {largest['n']} end to end ≤ {TARGET_SECONDS // 60} min with peak RSS "
        f"≤ {TARGET_PEAK_MB // 1024} GB: {largest['wall']:.0f} s, {largest['peak_mb']:,} MB",
        "",
        head, rule, *rows, "",
        FINDINGS, "",
        f"Run on {time.strftime('%Y-%m-%d')} with `python benchmarks/scale.py "
        + (f"--memory-limit {memory_limit} " if memory_limit else "")
        + f"{' '.join(map(str, ns))}`.",
    ])


def main(argv: list[str]) -> None:
    memory_limit = None
    if "--memory-limit" in argv:
        i = argv.index("--memory-limit")
        memory_limit = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    ns = [int(a) for a in argv] or [10, 100, 1000]
    runs = []
    for n in ns:
        runs.append(measure(n, memory_limit))
        print(f"× {n}: {runs[-1]['wall']:.0f} s, peak {runs[-1]['peak_mb']:,} MB", flush=True)
        for s in runs[-1]["steps"]:
            print(f"   {s['step']:<40} {s['seconds']:8.1f} s {s['peak_mb']:>7,} MB", flush=True)
    title = "Whole study at scale (`benchmarks/scale.py`)"
    if memory_limit:
        title = f"Whole study at scale, DuckDB memory_limit={memory_limit}"
    update_section(title, report(runs, memory_limit))


if __name__ == "__main__":
    main(sys.argv[1:])
