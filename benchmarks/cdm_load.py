"""Benchmark: load GiBleed × N (N = 1, 10, 100) into DuckDB; record time and peak memory.

GiBleed × N replicates every patient-level row N times with offset identifiers (person and
every other ``*_id`` except concept ids, + k × 10,000,000 for copy k), so N = 100 is 269,400
persons and 6.8 M drug exposures; the vocabulary is copied once. The copies are written as a
folder of CSV files by DuckDB, then loaded by ``pharmalab.cdm.load`` in a fresh process
whose peak resident memory is read from the OS.

Usage: python benchmarks/cdm_load.py [N ...]      (run by hand; writes benchmarks/RESULTS.md)
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb
from _results import update_section

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
GIBLEED = (HERE / ".." / ".." / "shared" / "data" / "omop" / "gibleed_5.3_csv.tar.xz").resolve()
OFFSET = 10_000_000
VOCABULARY = {"concept", "vocabulary", "domain", "concept_class", "concept_relationship",
              "relationship", "concept_synonym", "concept_ancestor", "source_to_concept_map",
              "drug_strength", "cdm_source", "metadata", "cohort_definition",
              "attribute_definition"}


def build(n: int) -> Path:
    """Write GiBleed × n as CSV files into benchmarks/.work/gibleed_x{n}/ (cached)."""
    folder = WORK / f"gibleed_x{n}"
    if (folder / ".complete").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    base = WORK / "gibleed.duckdb"
    if not base.exists():
        sys.path.insert(0, str(HERE.parent / "src"))
        from pharmalab import cdm

        cdm.load(GIBLEED, f"duckdb://{base}")
    con = duckdb.connect(str(base), read_only=True)
    tables = [t for (t,) in con.execute("select table_name from information_schema.tables "
                                        "where table_schema = 'main'").fetchall()]
    con.execute(f"create temp table copies as select range as k from range({n})")
    for table in tables:
        described = con.execute(f"describe {table}").fetchall()
        columns = [r[0] for r in described]
        integer = {r[0] for r in described if r[1] == "BIGINT"}
        target = folder / f"{table}.csv"
        if table in VOCABULARY or "person_id" not in columns:
            con.execute(f"copy {table} to '{target}' (header)")
            continue
        select = ", ".join(
            f"{c} + k * {OFFSET} as {c}"
            if c in integer and c.endswith("_id") and not c.endswith("concept_id") else c
            for c in columns)
        con.execute(f"copy (select {select} from {table}, copies) to '{target}' (header)")
    con.close()
    (folder / ".complete").touch()
    return folder


def measure(folder: Path) -> dict:
    """Load ``folder`` into a new DuckDB file in a child process; time and peak RSS."""
    target = folder.with_suffix(".duckdb")
    target.unlink(missing_ok=True)
    code = (
        "import json, sys, time; sys.path.insert(0, {!r})\n"
        "from pharmalab import cdm\n"
        "t = time.perf_counter(); r = cdm.load({!r}, {!r})\n"
        "print(json.dumps({{'seconds': time.perf_counter() - t, 'rows': r.rows()}}))\n"
    ).format(str(HERE.parent / "src"), str(folder), f"duckdb://{target}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    csv_bytes = sum(p.stat().st_size for p in folder.glob("*.csv"))
    target.unlink(missing_ok=True)
    return {
        "persons": result["rows"]["person"],
        "drug_exposure": result["rows"]["drug_exposure"],
        "all_rows": sum(result["rows"].values()),
        "csv_mb": csv_bytes / 1e6,
        "seconds": result["seconds"],
        "peak_rss_mb": max(peak_kb, before) / 1024,
    }


def main(ns: list[int]) -> None:
    rows = []
    for n in ns:
        t = time.perf_counter()
        folder = build(n)
        print(f"built GiBleed x{n} in {time.perf_counter() - t:.1f} s", flush=True)
        m = measure(folder)
        rows.append((n, m))
        print(f"N={n}: {m}", flush=True)
    lines = [
        "GiBleed × N as a folder of CSV files → `pharmalab.cdm.load` → a new DuckDB file: "
        "all tables validated (every value cast to its CDM type in the engine), then written. "
        "Peak RSS is the loading process's (`ru_maxrss`). Machine: 2 cores, 24 GiB.",
        "",
        "| N | persons | drug_exposure rows | all rows | CSV size (MB) | load time (s) "
        "| rows/s | peak RSS (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, m in rows:
        lines.append(
            f"| {n} | {m['persons']:,} | {m['drug_exposure']:,} | {m['all_rows']:,} | "
            f"{m['csv_mb']:,.0f} | {m['seconds']:.1f} | {m['all_rows'] / m['seconds']:,.0f} | "
            f"{m['peak_rss_mb']:,.0f} |")
    lines.append("")
    lines.append(f"Run on {time.strftime('%Y-%m-%d')} with `python benchmarks/cdm_load.py "
                 f"{' '.join(map(str, ns))}`.")
    lines.append("")
    lines.append(
        "Both passes (validation, then the write) parse every CSV; the count after the write "
        "reads the DuckDB table. Peak memory stays well below the data size: DuckDB streams "
        "the CSV files, and its buffer manager (default limit 80% of RAM) holds what it "
        "writes.")
    update_section("CDM load (`benchmarks/cdm_load.py`)", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1, 10, 100])
